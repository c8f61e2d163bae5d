// Packed K/V views and the segment-by-segment attention used by every strategy.
#include "strategies/common.hpp"

#include <algorithm>
#include <limits>
#include <optional>

namespace cpb {

int64_t packed_kv_elems(const Workload& w, int64_t capacity) {
  return 2 * w.batch * capacity * w.kv_heads * w.head_dim;
}

View packed_kv_view(const Workload& w, Buf buf, int64_t offset, int64_t capacity, int64_t tokens,
                    int which) {
  View v;
  v.buf = buf;
  v.offset = offset + which * w.batch * capacity * w.kv_heads * w.head_dim;
  v.batch = w.batch;
  v.batch_stride = capacity * w.kv_heads * w.head_dim;
  v.tokens = tokens;
  v.heads = w.kv_heads;
  v.dim = w.head_dim;
  return v;
}

Accumulator make_accumulator(const RankTensors& io, size_t q_segments) {
  return {io.o, io.lse, std::vector<bool>(q_segments, false)};
}

namespace {

// Keys [begin, begin + count) that one query segment sees through a single mask.
struct KeyRun {
  int64_t begin = 0, count = 0;
  BlockMask mask;
};

// Grows `run` by the key segment `ks` (mask m, something visible) when it follows the run in
// local memory and one mask over both shows exactly the pairs of the two.
bool extend_run(KeyRun& run, const Segment& ks, const BlockMask& m) {
  using Kind = BlockMask::Kind;
  if (run.begin + run.count != ks.local_begin || run.mask.kind != Kind::full) return false;
  if (m.kind == Kind::causal) {
    // Run key j' = c + j of the causal part is visible iff j <= i + d, i.e. j' <= i + d + c; the
    // full part (j' <= c - 1) stays visible to every row i >= 0 under that rule iff d >= -1.
    if (m.diag < -1) return false;
    run.mask = {Kind::causal, m.diag + run.count};
  }
  run.count += ks.count;
  return true;
}

Expected<std::vector<KeyRun>> key_runs(MaskKind mask, const Segment& qs,
                                       const std::vector<Segment>& kv_segs) {
  std::vector<KeyRun> runs;
  for (const Segment& ks : kv_segs) {
    CPB_ASSIGN_OR_RETURN(BlockMask m, block_mask(mask, qs, ks));
    if (m.kind == BlockMask::Kind::none) continue;
    if (runs.empty() || !extend_run(runs.back(), ks, m))
      runs.push_back({ks.local_begin, ks.count, m});
  }
  return runs;
}

// Whether one launch per run can serve both query segments: the same keys, all visible to
// every row.
bool same_full_runs(const std::vector<KeyRun>& a, const std::vector<KeyRun>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].begin != b[i].begin || a[i].count != b[i].count ||
        a[i].mask.kind != BlockMask::Kind::full || b[i].mask.kind != BlockMask::Kind::full)
      return false;
  }
  return true;
}

// Whether segments follow each other in local memory, in order.
bool back_to_back(const std::vector<Segment>& segs) {
  for (size_t i = 1; i < segs.size(); ++i)
    if (segs[i - 1].local_begin + segs[i - 1].count != segs[i].local_begin) return false;
  return true;
}

// One mask over all query segments x all key segments, when both are back to back and every
// pair's mask is what that one mask gives there (zigzag's first step: the rank's two chunks
// against themselves are causal(0) in local coordinates, with the cache in front causal(P_r)).
// Each pair (query offset qo, qc rows; key offset ko, kc keys) bounds the combined diagonal d:
// none needs d <= ko - qo - qc, full d >= ko + kc - 1 - qo, causal(ds) d == ds + ko - qo.
// Empty when no single mask fits; a `none` mask when nothing is visible.
Expected<std::optional<BlockMask>> whole_mask(MaskKind mask, const std::vector<Segment>& q_segs,
                                              const std::vector<Segment>& kv_segs) {
  if (q_segs.empty() || kv_segs.empty() || !back_to_back(q_segs) || !back_to_back(kv_segs))
    return std::optional<BlockMask>();
  constexpr int64_t kInf = std::numeric_limits<int64_t>::max() / 4;
  int64_t lo = -kInf, hi = kInf;
  bool any_visible = false;
  for (const Segment& qs : q_segs)
    for (const Segment& ks : kv_segs) {
      CPB_ASSIGN_OR_RETURN(BlockMask m, block_mask(mask, qs, ks));
      const int64_t qo = qs.local_begin - q_segs[0].local_begin;
      const int64_t ko = ks.local_begin - kv_segs[0].local_begin;
      switch (m.kind) {
        case BlockMask::Kind::none:
          hi = std::min(hi, ko - qo - qs.count);
          break;
        case BlockMask::Kind::full:
          lo = std::max(lo, ko + ks.count - 1 - qo);
          break;
        case BlockMask::Kind::causal:
          lo = std::max(lo, m.diag + ko - qo);
          hi = std::min(hi, m.diag + ko - qo);
          break;
      }
      any_visible = any_visible || m.kind != BlockMask::Kind::none;
    }
  if (lo > hi) return std::optional<BlockMask>();
  if (!any_visible) return std::optional<BlockMask>(BlockMask{BlockMask::Kind::none, 0});
  const int64_t keys = kv_segs.back().local_begin + kv_segs.back().count - kv_segs[0].local_begin;
  // Every key visible to row 0 (d >= keys - 1 allowed): one full block.
  if (hi >= keys - 1) return std::optional<BlockMask>(BlockMask{BlockMask::Kind::full, 0});
  return std::optional<BlockMask>(BlockMask{BlockMask::Kind::causal, lo});
}

}  // namespace

Expected<std::vector<AttnBlock>> coalesce_blocks(MaskKind mask, const std::vector<Segment>& q_segs,
                                                 const std::vector<Segment>& kv_segs,
                                                 const std::vector<bool>& started) {
  if (std::all_of(started.begin(), started.end(), [&](bool b) { return b == started[0]; })) {
    CPB_ASSIGN_OR_RETURN(std::optional<BlockMask> whole, whole_mask(mask, q_segs, kv_segs));
    if (whole) {
      if (whole->kind == BlockMask::Kind::none) return std::vector<AttnBlock>();
      const Segment &qf = q_segs.front(), &ql = q_segs.back();
      const Segment &kf = kv_segs.front(), &kl = kv_segs.back();
      return std::vector<AttnBlock>{{qf.local_begin, ql.local_begin + ql.count - qf.local_begin,
                                     kf.local_begin, kl.local_begin + kl.count - kf.local_begin,
                                     *whole, static_cast<bool>(started[0]), 0, q_segs.size() - 1}};
    }
  }
  std::vector<std::vector<KeyRun>> runs;
  for (const Segment& qs : q_segs) {
    CPB_ASSIGN_OR_RETURN(auto r, key_runs(mask, qs, kv_segs));
    runs.push_back(std::move(r));
  }
  std::vector<AttnBlock> blocks;
  for (size_t first = 0, last = 0; first < q_segs.size(); first = ++last) {
    // The merged segments share one `started` flag, so every launch of the group has a single
    // accumulate mode and leaves all of them equally started.
    while (last + 1 < q_segs.size() &&
           q_segs[last].local_begin + q_segs[last].count == q_segs[last + 1].local_begin &&
           started[last + 1] == started[first] && same_full_runs(runs[first], runs[last + 1]))
      ++last;
    const int64_t q_begin = q_segs[first].local_begin;
    const int64_t q_count = q_segs[last].local_begin + q_segs[last].count - q_begin;
    bool accumulate = started[first];
    for (const KeyRun& run : runs[first]) {
      blocks.push_back({q_begin, q_count, run.begin, run.count, run.mask, accumulate, first, last});
      accumulate = true;
    }
  }
  return blocks;
}

Status attend_segments(Executor& ex, Stream s, const Workload& w,
                       const std::vector<Segment>& q_segs, const std::vector<int64_t>& q_batches,
                       const View& q, const std::vector<Segment>& kv_segs, const View& k,
                       const View& v, Accumulator& acc) {
  if (q_batches.empty()) return {};
  bool whole = static_cast<int64_t>(q_batches.size()) == k.batch;
  for (size_t i = 0; whole && i < q_batches.size(); ++i)
    whole = q_batches[i] == static_cast<int64_t>(i);
  CPB_ASSIGN_OR_RETURN(std::vector<AttnBlock> blocks,
                       coalesce_blocks(w.mask, q_segs, kv_segs, acc.started));
  for (const AttnBlock& blk : blocks) {
    AttnArgs a;
    a.q = q.slice(blk.q_begin, blk.q_count);
    a.k = k.slice(blk.k_begin, blk.k_count);
    a.v = v.slice(blk.k_begin, blk.k_count);
    a.o = acc.o.slice(blk.q_begin, blk.q_count);
    a.lse = acc.lse.slice(blk.q_begin, blk.q_count);
    a.mask = blk.mask;
    a.scale = w.scale();
    a.accumulate = blk.accumulate;
    if (whole) {
      CPB_TRY(ex.attention(s, a));
    } else {
      // Each query block entry attends the keys of its own sequence.
      for (size_t lb = 0; lb < q_batches.size(); ++lb) {
        const auto b = static_cast<int64_t>(lb);
        AttnArgs one = a;
        one.q = a.q.batches(b, 1);
        one.o = a.o.batches(b, 1);
        one.lse = a.lse.batches(b, 1);
        one.k = a.k.batches(q_batches[lb], 1);
        one.v = a.v.batches(q_batches[lb], 1);
        CPB_TRY(ex.attention(s, one));
      }
    }
    for (size_t i = blk.q_seg_first; i <= blk.q_seg_last; ++i) acc.started[i] = true;
  }
  return {};
}

Status finish_accumulator(Executor& ex, Stream s, const std::vector<Segment>& q_segs,
                          Accumulator& acc) {
  for (size_t i = 0; i < q_segs.size(); ++i) {
    if (acc.started[i]) continue;
    const Segment& qs = q_segs[i];
    CPB_TRY(ex.reset(s, acc.o.slice(qs.local_begin, qs.count),
                     acc.lse.slice(qs.local_begin, qs.count)));
    acc.started[i] = true;
  }
  return {};
}

}  // namespace cpb
