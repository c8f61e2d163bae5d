// Power and SM sharing over a simulated iteration (contention.hpp).
#include "harness/backends/sim/contention.hpp"

#include <algorithm>
#include <cmath>

namespace cpb::sim {
namespace {

// Piecewise linear through the points, held at the first and last values outside them.
double linear_held(const ProfileCurve& c, double x) {
  if (c.x.empty()) return 1;
  if (x <= c.x.front()) return c.y.front();
  if (x >= c.x.back()) return c.y.back();
  const size_t b = static_cast<size_t>(std::upper_bound(c.x.begin(), c.x.end(), x) - c.x.begin());
  const size_t a = b - 1;
  return c.y[a] + (c.y[b] - c.y[a]) * (x - c.x[a]) / (c.x[b] - c.x[a]);
}

bool is_transfer(OpKind k) {
  return k == OpKind::p2p || k == OpKind::all_to_all || k == OpKind::all_gather;
}

// Samples of the load's time over one iteration's span, for the mean slowdown.
constexpr int kSpanSamples = 8;
// Plays after the first: each one's durations come from the play before it.
constexpr int kReplays = 2;

// The curves of one block size (sorted by duty).
double slowdown_of_size(const std::vector<const SustainedCurve*>& cs, double duty, double seconds) {
  if (cs.empty() || duty <= 0) return 1;
  if (duty <= cs.front()->duty)
    return 1 + (linear_held(cs.front()->slowdown, seconds) - 1) * duty / cs.front()->duty;
  for (size_t i = 1; i < cs.size(); ++i)
    if (duty <= cs[i]->duty) {
      const double a = linear_held(cs[i - 1]->slowdown, seconds),
                   b = linear_held(cs[i]->slowdown, seconds);
      return a + (b - a) * (duty - cs[i - 1]->duty) / (cs[i]->duty - cs[i - 1]->duty);
    }
  return linear_held(cs.back()->slowdown, seconds);
}

}  // namespace

double sustained_slowdown(const HardwareProfile& p, double duty, double seconds, double tokens) {
  // The block sizes measured (sorted: the profile keeps the curves by tokens, then duty).
  std::vector<int64_t> sizes;
  for (const auto& c : p.sustained)
    if (sizes.empty() || sizes.back() != c.tokens) sizes.push_back(c.tokens);
  auto of = [&](int64_t t) {
    std::vector<const SustainedCurve*> cs;
    for (const auto& c : p.sustained)
      if (c.tokens == t) cs.push_back(&c);
    return slowdown_of_size(cs, duty, seconds);
  };
  if (sizes.size() <= 1 || sizes.front() == 0 || tokens <= static_cast<double>(sizes.front()))
    return of(sizes.empty() ? 0 : sizes.front());
  if (tokens >= static_cast<double>(sizes.back())) return of(sizes.back());
  size_t b = 1;
  while (static_cast<double>(sizes[b]) < tokens) ++b;
  const double lo = std::log2(static_cast<double>(sizes[b - 1])),
               hi = std::log2(static_cast<double>(sizes[b]));
  const double f = (std::log2(tokens) - lo) / (hi - lo);
  return of(sizes[b - 1]) + (of(sizes[b]) - of(sizes[b - 1])) * f;
}

Expected<Timeline> simulate_with_contention(std::vector<RankProgram> ranks,
                                            const HardwareProfile& p, double load_s) {
  CPB_ASSIGN_OR_RETURN(Timeline tl, simulate(ranks));
  if (p.sustained.empty() && p.comm_share_factor == 1) return tl;
  std::vector<std::vector<double>> base(ranks.size());
  for (size_t r = 0; r < ranks.size(); ++r)
    for (const SimOp& o : ranks[r].ops) base[r].push_back(o.duration_s);
  for (int pass = 0; pass < kReplays; ++pass) {
    for (size_t r = 0; r < ranks.size(); ++r) {
      auto& ops = ranks[r].ops;
      const auto& at = tl.ops[r];
      const double span = tl.rank_end_s[r];
      double busy = 0;
      for (size_t i = 0; i < ops.size(); ++i)
        if (ops[i].kind == OpKind::attention) busy += at[i].end_s - at[i].begin_s;
      const double duty = span > 0 ? std::min(1.0, busy / span) : 0;
      for (size_t i = 0; i < ops.size(); ++i) {
        if (ops[i].kind == OpKind::attention) {
          double slow = 0;
          for (int k = 0; k < kSpanSamples; ++k)
            slow += sustained_slowdown(p, duty, load_s + (k + 0.5) / kSpanSamples * span,
                                       ops[i].block_tokens);
          ops[i].duration_s = base[r][i] * slow / kSpanSamples;
        } else if (is_transfer(ops[i].kind) && p.comm_share_factor != 1) {
          const double len = at[i].end_s - at[i].begin_s;
          double beside = 0;
          if (len > 0)
            for (size_t j = 0; j < ops.size(); ++j)
              if (ops[j].kind == OpKind::attention)
                beside += std::max(0.0, std::min(at[i].end_s, at[j].end_s) -
                                            std::max(at[i].begin_s, at[j].begin_s));
          const double share = len > 0 ? std::min(1.0, beside / len) : 0;
          ops[i].duration_s = base[r][i] * (1 + (p.comm_share_factor - 1) * share);
        }
      }
    }
    CPB_ASSIGN_OR_RETURN(tl, simulate(ranks));
  }
  return tl;
}

}  // namespace cpb::sim
