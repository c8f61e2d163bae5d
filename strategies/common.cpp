// Packed K/V views and the segment-by-segment attention used by every strategy.
#include "strategies/common.hpp"

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

Status attend_segments(Executor& ex, Stream s, const Workload& w,
                       const std::vector<Segment>& q_segs, const std::vector<int64_t>& q_batches,
                       const View& q, const std::vector<Segment>& kv_segs, const View& k,
                       const View& v, Accumulator& acc) {
  if (q_batches.empty()) return {};
  bool whole = static_cast<int64_t>(q_batches.size()) == k.batch;
  for (size_t i = 0; whole && i < q_batches.size(); ++i)
    whole = q_batches[i] == static_cast<int64_t>(i);
  for (size_t i = 0; i < q_segs.size(); ++i) {
    const Segment& qs = q_segs[i];
    for (const Segment& ks : kv_segs) {
      CPB_ASSIGN_OR_RETURN(BlockMask m, block_mask(w.mask, qs, ks));
      if (m.kind == BlockMask::Kind::none) continue;
      AttnArgs a;
      a.q = q.slice(qs.local_begin, qs.count);
      a.k = k.slice(ks.local_begin, ks.count);
      a.v = v.slice(ks.local_begin, ks.count);
      a.o = acc.o.slice(qs.local_begin, qs.count);
      a.lse = acc.lse.slice(qs.local_begin, qs.count);
      a.mask = m;
      a.scale = w.scale();
      a.accumulate = acc.started[i];
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
      acc.started[i] = true;
    }
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
