// The sim cost model (cost_model.hpp): interpolation of the profile's tables and the cost of each
// op kind.
#include "harness/backends/sim/cost_model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

namespace cpb::sim {

double interpolate_time(const ProfileCurve& c, double x) {
  const auto& xs = c.x;
  const auto& ys = c.y;
  if (xs.empty()) return 0;
  if (x <= xs.front()) return ys.front();
  if (xs.size() == 1) return ys.front() * x / xs.front();
  const size_t hi = static_cast<size_t>(std::upper_bound(xs.begin(), xs.end(), x) - xs.begin());
  // Above the last size the last segment goes on; inside, the segment around x.
  const size_t b = std::min(hi, xs.size() - 1), a = b - 1;
  return ys[a] + (ys[b] - ys[a]) * (x - xs[a]) / (xs[b] - xs[a]);
}

double interpolate_throughput(const ProfileCurve& c, double x) {
  const auto& xs = c.x;
  const auto& ys = c.y;
  if (xs.empty()) return 0;
  if (x <= xs.front()) return ys.front();
  if (x >= xs.back()) return ys.back();
  const size_t b = static_cast<size_t>(std::upper_bound(xs.begin(), xs.end(), x) - xs.begin());
  const size_t a = b - 1;
  const double f = std::log2(x / xs[a]) / std::log2(xs[b] / xs[a]);
  return ys[a] + (ys[b] - ys[a]) * f;
}

namespace {

// The log of the rate at (lq, lk) = (log2 Sq, log2 Sk) from measured points around it, if they
// are there: on the diagonal (Sq = Sk) the two squares around it, linear in log2 of the size;
// elsewhere the four corners of the smallest rectangle of measured Sq and Sk values around it,
// bilinear. Either way an exact match is that point's rate.
std::optional<double> bracketed_log_rate(const std::vector<const AttentionPoint*>& pts, double lq,
                                         double lk) {
  auto l2 = [](int64_t x) { return std::log2(static_cast<double>(x)); };
  auto find = [&](double q, double k) -> const AttentionPoint* {
    for (const auto* a : pts)
      if (l2(a->sq) == q && l2(a->sk) == k) return a;
    return nullptr;
  };
  // The measured values of one axis just below and above x (on the diagonal: the squares').
  auto around = [&](double x, auto value, auto keep) -> std::optional<std::pair<double, double>> {
    double lo = -std::numeric_limits<double>::infinity(), hi = -lo;
    for (const auto* a : pts) {
      if (!keep(a)) continue;
      const double v = value(a);
      if (v <= x) lo = std::max(lo, v);
      if (v >= x) hi = std::min(hi, v);
    }
    if (!std::isfinite(lo) || !std::isfinite(hi)) return std::nullopt;
    return std::pair{lo, hi};
  };
  auto frac = [](double x, std::pair<double, double> r) {
    return r.second > r.first ? (x - r.first) / (r.second - r.first) : 0.0;
  };
  if (lq == lk) {
    const auto r = around(
        lq, [&](const AttentionPoint* a) { return l2(a->sq); },
        [](const AttentionPoint* a) { return a->sq == a->sk; });
    if (r) {
      const AttentionPoint *a = find(r->first, r->first), *b = find(r->second, r->second);
      const double f = frac(lq, *r);
      return std::log(a->tflops) * (1 - f) + std::log(b->tflops) * f;
    }
  }
  const auto all = [](const AttentionPoint*) { return true; };
  const auto rq = around(
      lq, [&](const AttentionPoint* a) { return l2(a->sq); }, all);
  const auto rk = around(
      lk, [&](const AttentionPoint* a) { return l2(a->sk); }, all);
  if (!rq || !rk) return std::nullopt;
  const AttentionPoint* c[4] = {find(rq->first, rk->first), find(rq->first, rk->second),
                                find(rq->second, rk->first), find(rq->second, rk->second)};
  if (std::find(std::begin(c), std::end(c), nullptr) != std::end(c)) return std::nullopt;
  const double fq = frac(lq, *rq), fk = frac(lk, *rk);
  auto lg = [](const AttentionPoint* a) { return std::log(a->tflops); };
  return (lg(c[0]) * (1 - fk) + lg(c[1]) * fk) * (1 - fq) +
         (lg(c[2]) * (1 - fk) + lg(c[3]) * fk) * fq;
}

// The rate of one (head_dim, gqa, heads) family's points at a block of (sq, sk): the block's
// (log2 Sq, log2 Sk) clamped to the points' range, then interpolated between the measured points
// around it where they are there (bracketed_log_rate), else the weighted geometric mean of its
// nearest points (weights 1 / distance^2), an exact match being that point's rate. Outside the
// grid the edge's rate holds, never a blend of far points.
double family_tflops(const std::vector<const AttentionPoint*>& pts, int64_t sq, int64_t sk) {
  auto l2 = [](double x) { return std::log2(x); };
  double q_lo = std::numeric_limits<double>::infinity(), q_hi = -q_lo, k_lo = q_lo, k_hi = -q_lo;
  for (const auto* a : pts) {
    q_lo = std::min(q_lo, l2(static_cast<double>(a->sq)));
    q_hi = std::max(q_hi, l2(static_cast<double>(a->sq)));
    k_lo = std::min(k_lo, l2(static_cast<double>(a->sk)));
    k_hi = std::max(k_hi, l2(static_cast<double>(a->sk)));
  }
  const double lq = std::clamp(l2(static_cast<double>(sq)), q_lo, q_hi);
  const double lk = std::clamp(l2(static_cast<double>(sk)), k_lo, k_hi);
  if (const auto lr = bracketed_log_rate(pts, lq, lk)) return std::exp(*lr);
  std::vector<std::pair<double, double>> near;  // (distance^2, TF/s)
  for (const auto* a : pts) {
    const double dq = l2(static_cast<double>(a->sq)) - lq, dk = l2(static_cast<double>(a->sk)) - lk;
    near.emplace_back(dq * dq + dk * dk, a->tflops);
  }
  constexpr size_t kNearest = 3;
  std::sort(near.begin(), near.end());
  if (near.size() > kNearest) near.resize(kNearest);
  if (near.front().first == 0) return near.front().second;
  double wsum = 0, lsum = 0;
  for (const auto& [d2, tf] : near) {
    wsum += 1 / d2;
    lsum += std::log(tf) / d2;
  }
  return std::exp(lsum / wsum);
}

}  // namespace

CostModel::CostModel(HardwareProfile profile) : p_(std::move(profile)) {
  for (const auto& a : p_.attention)
    if (a.causal) causal_dims_[a.head_dim] |= a.sq < a.sk;
}

bool CostModel::causal_rectangles(int64_t head_dim) const {
  double best = std::numeric_limits<double>::infinity();
  bool any = false;
  for (const auto& [d, rect] : causal_dims_) {
    const double dist = std::abs(std::log2(static_cast<double>(d) / static_cast<double>(head_dim)));
    if (dist < best) {
      best = dist;
      any = rect;
    } else if (dist == best) {
      any = any || rect;
    }
  }
  return any;
}

std::vector<const AttentionPoint*> CostModel::nearest_dim_points(bool causal,
                                                                 int64_t head_dim) const {
  auto dist = [&](const AttentionPoint& a) {
    return std::abs(std::log2(static_cast<double>(a.head_dim) / static_cast<double>(head_dim)));
  };
  double best_d = std::numeric_limits<double>::infinity();
  for (const auto& a : p_.attention)
    if (a.causal == causal) best_d = std::min(best_d, dist(a));
  std::vector<const AttentionPoint*> pts;
  for (const auto& a : p_.attention)
    if (a.causal == causal && dist(a) == best_d) pts.push_back(&a);
  return pts;
}

double CostModel::attention_tflops(bool causal, int64_t head_dim, double gqa, int64_t heads,
                                   int64_t sq, int64_t sk, bool shared, bool warm) const {
  auto l2 = [](double x) { return std::log2(x); };
  // The points of this mask, then of the head_dim nearest to the block's, then of its modes:
  // the shared ones for a block beside a transfer, the warm ones for a block whose K/V were
  // just written, where that head_dim has any whose Sq and Sk span the block's (a decode
  // block's mode is its own table's), else the others.
  std::vector<const AttentionPoint*> pts = nearest_dim_points(causal, head_dim);
  if (pts.empty()) return p_.peak_tflops;
  auto keep_mode = [&](bool want, auto flag) {
    bool mode = false;
    if (want) {
      int64_t q_lo = std::numeric_limits<int64_t>::max(), q_hi = 0, k_lo = q_lo, k_hi = 0;
      for (const auto* a : pts)
        if (flag(a)) {
          q_lo = std::min(q_lo, a->sq), q_hi = std::max(q_hi, a->sq);
          k_lo = std::min(k_lo, a->sk), k_hi = std::max(k_hi, a->sk);
        }
      mode = q_hi > 0 && sq >= q_lo && sq <= q_hi && sk >= k_lo && sk <= k_hi;
    }
    // (A head_dim with points of one mode only serves every block with them.)
    if (std::any_of(pts.begin(), pts.end(),
                    [&](const AttentionPoint* a) { return flag(a) == mode; }))
      std::erase_if(pts, [&](const AttentionPoint* a) { return flag(a) != mode; });
  };
  keep_mode(shared, [](const AttentionPoint* a) { return a->shared; });
  keep_mode(warm, [](const AttentionPoint* a) { return a->warm; });
  // Then the GQA ratio nearest to the block's (log2 distance).
  double best_g = std::numeric_limits<double>::infinity();
  for (const auto* a : pts)
    best_g = std::min(best_g, std::abs(l2(a->gqa) - l2(std::max(gqa, 1.0))));
  std::erase_if(pts, [&](const AttentionPoint* a) {
    return std::abs(l2(a->gqa) - l2(std::max(gqa, 1.0))) != best_g;
  });
  // Then B·H: the rate of each of the two measured head counts around the block's (or of the
  // nearest one, beyond them), linear in log2(heads) between the two; where some points do not
  // give heads, those alone serve (profiles written by hand).
  std::vector<int64_t> hs;
  for (const auto* a : pts) hs.push_back(a->heads);
  std::sort(hs.begin(), hs.end());
  hs.erase(std::unique(hs.begin(), hs.end()), hs.end());
  auto rate_at = [&](int64_t h) {
    std::vector<const AttentionPoint*> fam;
    for (const auto* a : pts)
      if (a->heads == h) fam.push_back(a);
    return family_tflops(fam, sq, sk);
  };
  if (hs.front() == 0 || heads <= 0 || heads <= hs.front()) return rate_at(hs.front());
  if (heads >= hs.back()) return rate_at(hs.back());
  size_t b = 1;
  while (hs[b] < heads) ++b;
  const double f = l2(static_cast<double>(heads) / static_cast<double>(hs[b - 1])) /
                   l2(static_cast<double>(hs[b]) / static_cast<double>(hs[b - 1]));
  return std::exp(std::log(rate_at(hs[b - 1])) * (1 - f) + std::log(rate_at(hs[b])) * f);
}

const std::string& CostModel::link_class(int rank, const std::vector<int>& peers) const {
  for (int q : peers)
    if (p_.node_of(q) != p_.node_of(rank)) return p_.inter_node_link;
  return p_.intra_node_link;
}

Expected<double> CostModel::transfer_seconds(const OpRecord& rec, int rank, int world) const {
  const double bytes = static_cast<double>(
      rec.kind == OpKind::p2p ? std::max(rec.bytes_sent, rec.bytes_recv) : rec.bytes_sent);
  if (bytes <= 0) return 0.0;
  if (p_.links.empty()) return bytes / p_.bandwidth_bytes_per_s();
  std::vector<int> peers;
  if (rec.kind == OpKind::all_gather) {
    for (int q = 0; q < world; ++q) peers.push_back(q);
  } else {
    for (const auto& t : rec.transfers) peers.push_back(t.peer);
  }
  const std::string& cls = link_class(rank, peers);
  const auto it = p_.links.find(cls);
  CPB_REQUIRE(it != p_.links.end(),
              "hardware profile {}: links.{}: missing: rank {}'s {} crosses a {} link; measure "
              "one and add it under links:",
              p_.path, cls, rank, to_string(rec.kind), cls);
  const char* key = rec.kind == OpKind::p2p          ? "sendrecv"
                    : rec.kind == OpKind::all_to_all ? "all_to_all"
                                                     : "all_gather";
  const ProfileCurve& c = rec.kind == OpKind::p2p          ? it->second.sendrecv
                          : rec.kind == OpKind::all_to_all ? it->second.all_to_all
                                                           : it->second.all_gather;
  CPB_REQUIRE(!c.empty(), "hardware profile {}: links.{}.{}: missing: add the {} curve of {}",
              p_.path, cls, key, key, cls);
  return interpolate_time(c, bytes);
}

double CostModel::issue_seconds(const OpRecord& rec, int world) const {
  const auto by_ranks = p_.issue_us_ranks.find(world);
  auto us = [&](std::string_view k) {
    if (by_ranks != p_.issue_us_ranks.end())
      if (const auto it = by_ranks->second.find(k); it != by_ranks->second.end()) return it->second;
    const auto it = p_.issue_us.find(k);
    return it == p_.issue_us.end() ? 0.0 : it->second;
  };
  return (us(to_string(rec.kind)) + 2.0 * static_cast<double>(rec.waits.size()) * us("event")) *
         1e-6;
}

Expected<double> CostModel::seconds(const OpRecord& rec, int rank, int world) const {
  double t = p_.launch_us * 1e-6;
  switch (rec.kind) {
    case OpKind::attention: {
      if (rec.flops <= 0) return t;
      const bool causal = rec.mask.kind == BlockMask::Kind::causal &&
                          block_pairs(rec.mask, rec.sq, rec.sk) < rec.sq * rec.sk;
      const double gqa = rec.kv_heads > 0
                             ? static_cast<double>(rec.heads) / static_cast<double>(rec.kv_heads)
                             : 1.0;
      const bool shared = rec.stream == Stream::compute && rec.comm_in_flight;
      const int64_t bh = rec.batch * rec.heads;
      double rate =
          attention_tflops(causal, rec.head_dim, gqa, bh, rec.sq, rec.sk, shared, rec.kv_fresh);
      // The table's causal points are squares on the diagonal and, where measured, blocks with
      // their queries last (diag = Sk - Sq). A causal block with more visible pairs than that
      // (queries after more keys) is priced between it and a full block: the rate moves from
      // the causal to the full one (log scale) as the visible pairs go from the measured
      // block's to all of them.
      if (causal) {
        const int64_t ref_diag =
            rec.sq < rec.sk && causal_rectangles(rec.head_dim) ? rec.sk - rec.sq : 0;
        const double all = static_cast<double>(rec.sq) * static_cast<double>(rec.sk);
        const double ref =
            static_cast<double>(block_pairs({BlockMask::Kind::causal, ref_diag}, rec.sq, rec.sk));
        const double visible = static_cast<double>(block_pairs(rec.mask, rec.sq, rec.sk));
        const double w = all > ref ? std::clamp((visible - ref) / (all - ref), 0.0, 1.0) : 0.0;
        if (w > 0) {
          const double full =
              attention_tflops(false, rec.head_dim, gqa, bh, rec.sq, rec.sk, shared, rec.kv_fresh);
          rate = std::exp(std::log(rate) * (1 - w) + std::log(full) * w);
        }
      }
      return t + rec.flops / (rate * 1e12) * (shared ? p_.share_factor : 1.0);
    }
    case OpKind::merge:
    case OpKind::reset:
    case OpKind::copy: {
      const ProfileCurve& c =
          rec.kind == OpKind::merge && !p_.merge_gbps.empty() ? p_.merge_gbps : p_.copy_gbps;
      if (c.empty() || rec.mem_bytes <= 0) return t;
      const double bytes = static_cast<double>(rec.mem_bytes);
      return t + bytes / (interpolate_throughput(c, bytes) * 1e9);
    }
    case OpKind::p2p:
    case OpKind::all_to_all:
    case OpKind::all_gather: {
      CPB_ASSIGN_OR_RETURN(double x, transfer_seconds(rec, rank, world));
      return t + x;
    }
  }
  return t;
}

}  // namespace cpb::sim
