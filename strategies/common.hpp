// Building blocks shared by strategies: views into packed K/V buffers and "attend my queries to
// one source rank's keys", which splits the work into (query segment x key segment) blocks with
// the mask each pair needs, skips blocks with nothing visible, and accumulates into (O, LSE).
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
