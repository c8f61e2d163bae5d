// Building blocks shared by strategies: views into packed K/V buffers and "attend my queries to
// one source rank's keys", which splits the work into (query segment x key segment) blocks with
// the mask each pair needs, skips blocks with nothing visible, coalesces the rest into as few
// launches as single block masks allow, and accumulates into (O, LSE).
#pragma once

#include <vector>

#include "harness/core/executor.hpp"
#include "strategies/strategy.hpp"

namespace cpb {

// Elements of a packed [2][B][capacity][Hkv][d] K/V buffer.
int64_t packed_kv_elems(const Workload& w, int64_t capacity);
// K (which = 0) or V (which = 1) view of the first `tokens` tokens of a packed K/V block that
// starts at element `offset` of `buf`.
View packed_kv_view(const Workload& w, Buf buf, int64_t offset, int64_t capacity, int64_t tokens,
                    int which);

// Tracks, per query segment, whether its rows already hold a partial result.
struct Accumulator {
  View o, lse;
  std::vector<bool> started;  // one per query segment
};
Accumulator make_accumulator(const RankTensors& io, size_t q_segments);

// One attention launch: local queries [q_begin, q_begin + q_count) against local keys
// [k_begin, k_begin + k_count) under `mask`, covering query segments q_seg_first..q_seg_last.
struct AttnBlock {
  int64_t q_begin = 0, q_count = 0;
  int64_t k_begin = 0, k_count = 0;
  BlockMask mask;
  bool accumulate = false;  // the covered segments already hold a partial result
  size_t q_seg_first = 0, q_seg_last = 0;
};

// The launches that attend q_segs to kv_segs, every visible (query, key) pair exactly once, given
// which query segments have started. Every launch in accumulate mode re-reads and rewrites the
// fp32 accumulator and small blocks run the kernels less efficiently, so pairs are coalesced:
//  1. per query segment, key segments consecutive in kv_segs and adjacent in local memory merge
//     when their masks form one BlockMask: full + full -> full, and full (c keys) + causal(d)
//     -> causal(d + c) when d >= -1 (every row still sees every key of the full part); segments
//     with nothing visible are left out and never merged over;
//  2. consecutive query segments adjacent in local memory whose runs cover the same keys, all
//     with full masks, and that have the same `started` flag merge into one launch per run
//     (causal runs stay apart: one diagonal over both segments would need the second's to
//     continue the first's, which no layout produces).
//  0. first of all, when every segment has the same `started` flag, query and key segments
//     are each back to back and one mask over the whole block gives every pair its own mask,
//     one launch (the first step of a zigzag ring: causal(P_r), P_r the rank's cached keys).
// Errors as block_mask does.
Expected<std::vector<AttnBlock>> coalesce_blocks(MaskKind mask, const std::vector<Segment>& q_segs,
                                                 const std::vector<Segment>& kv_segs,
                                                 const std::vector<bool>& started);

// Attends the queries (segments q_segs of view q) to the keys/values k, v whose tokens are
// described by kv_segs (local index -> global position), accumulating into acc. `q_batches`
// names the sequence of each batch entry of q (k and v hold every sequence); when it is
// 0..B-1 the whole batch is one block, otherwise (decode) each query attends its own sequence.
Status attend_segments(Executor& ex, Stream s, const Workload& w,
                       const std::vector<Segment>& q_segs, const std::vector<int64_t>& q_batches,
                       const View& q, const std::vector<Segment>& kv_segs, const View& k,
                       const View& v, Accumulator& acc);
// Gives rows of query segments that saw no key at all O = 0 and LSE = -inf.
Status finish_accumulator(Executor& ex, Stream s, const std::vector<Segment>& q_segs,
                          Accumulator& acc);

}  // namespace cpb
