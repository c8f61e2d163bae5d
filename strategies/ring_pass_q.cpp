// ring_pass_q (Yang et al. 2024, Algorithm 3; decode: Algorithm 4): K and V stay where they are;
// query blocks rotate N-1 times over a ring of send/recv. At step k rank r computes the partial
// (O, LSE) of the queries of rank (r - k) mod N against its own K/V, then one all-to-all returns
// every partial to the owner of its queries, who merges them by LSE. In decode each query block
// holds the new-token queries of the sequences its rank owns (sequence b on rank b mod N): the
// block's sequence ids follow from its source rank, so each visiting query attends the keys of
// its own sequence. Bytes per rank: (N-1) x the Q block (B_r·T_r·H·d·e) on the ring, plus the
// all-to-all of partial outputs, (N-1) x B_r·T_r·H·(d+1)·4 (O and LSE travel in fp32, so that
// merging stays exact). Memory, in two stages: the ring (two Q buffers, and the N partial
// (O, LSE) slots filled as the queries visit; the own slot is empty, kept so that slot j is rank
// j's) and the return (the filled slots, and the N - 1 partials received). The received partials
// reuse the ring buffers' memory; the filled slots live through both stages. That is the
// minimum with one all-to-all: every partial must be held, sent and received at once.
#include <vector>

#include "strategies/common.hpp"

namespace cpb {
namespace {

enum Stage { kRing = 0, kReturn = 1 };

struct Sizes {
  std::vector<int64_t> q_elems;     // per source rank: its Q block
  std::vector<int64_t> part_elems;  // per source rank: O then LSE of its queries, fp32
};

Sizes sizes_of(const Workload& w, const Placement& pl) {
  Sizes s;
  for (int r = 0; r < pl.world(); ++r) {
    const int64_t rows = static_cast<int64_t>(pl.q_batches(r).size()) * pl.q_count(r) * w.heads;
    s.q_elems.push_back(rows * w.head_dim);
    s.part_elems.push_back(rows * (w.head_dim + 1));
  }
  return s;
}

class RingPassQ final : public RankStrategy {
 public:
  RingPassQ(const StrategyContext& ctx, Sizes sizes, Buf ring0, Buf ring1, Buf sent, Buf got)
      : w_(ctx.workload),
        pl_(ctx.placement),
        sz_(std::move(sizes)),
        ring_{ring0, ring1},
        sent_(sent),
        got_(got) {}

  // Partial (O, LSE) views of source s's queries inside a slot starting at `offset`.
  std::pair<View, View> slot_views(Buf buf, int64_t offset, int s) const {
    const auto nb = static_cast<int64_t>(pl_.q_batches(s).size());
    const int64_t qc = pl_.q_count(s);
    View o = dense_view(buf, offset, nb, qc, w_.heads, w_.head_dim);
    View l = dense_view(buf, offset + nb * qc * w_.heads * w_.head_dim, nb, qc, w_.heads, 1);
    return {o, l};
  }

  Status run(Executor& ex, const RankTensors& io) override {
    const int n = ex.world(), r = ex.rank();
    const int next = (r + 1) % n, prev = (r - 1 + n) % n;
    ex.set_stage(kRing);
    // The ring buffers hold the previous run's received partials, which its merges read.
    ex.wait(Stream::comm, ex.record(Stream::compute));
    const View k = packed_kv_view(w_, io.kv, 0, io.kv_capacity, pl_.kv_count(r), 0);
    const View v = packed_kv_view(w_, io.kv, 0, io.kv_capacity, pl_.kv_count(r), 1);
    Buf cur = io.q.buf;
    Event computed{};
    for (int step = 0; step < n; ++step) {
      ex.set_step(step);
      const int src = (r - step + n) % n;
      Event arrived{};
      if (step + 1 < n) {
        const int incoming = (r - step - 1 + n) % n;
        // Into ring_[step % 2], last read by step - 1's attention (at step 1 it is fresh).
        if (step > 1) ex.wait(Stream::comm, computed);
        std::vector<P2POp> ops;
        if (sz_.q_elems[src] > 0)
          ops.push_back({P2POp::Kind::send, next, {cur, 0, sz_.q_elems[src]}});
        if (sz_.q_elems[incoming] > 0)
          ops.push_back({P2POp::Kind::recv, prev, {ring_[step % 2], 0, sz_.q_elems[incoming]}});
        if (!ops.empty()) CPB_TRY(ex.p2p(Stream::comm, ops, "ring_q"));
        arrived = ex.record(Stream::comm);
      }
      // The queries of `src` against my keys: my own go straight into the output, the others
      // into the slot that the all-to-all sends back to their owner.
      const auto& q_segs = pl_.q_segments(src);
      const auto nb = static_cast<int64_t>(pl_.q_batches(src).size());
      View q = dense_view(cur, 0, nb, pl_.q_count(src), w_.heads, w_.head_dim);
      Accumulator acc = make_accumulator(io, q_segs.size());
      if (src != r) std::tie(acc.o, acc.lse) = slot_views(sent_, slot_offset(src), src);
      CPB_TRY(attend_segments(ex, Stream::compute, w_, q_segs, pl_.q_batches(src), q,
                              pl_.kv_segments(r), k, v, acc));
      CPB_TRY(finish_accumulator(ex, Stream::compute, q_segs, acc));
      computed = ex.record(Stream::compute);
      if (step + 1 < n) {
        ex.wait(Stream::compute, arrived);
        cur = ring_[step % 2];
      }
    }
    if (n == 1) return {};

    // Partials go home: slot s of `sent_` to rank s; from rank j, the partial of my queries
    // against j's keys.
    ex.set_step(n);
    ex.set_stage(kReturn);
    // The received partials overwrite the ring buffers: the all-to-all follows the last read.
    ex.wait(Stream::comm, computed);
    std::vector<Range> send(n), recv(n);
    for (int j = 0; j < n; ++j) {
      send[j] = {sent_, slot_offset(j), j == r ? 0 : sz_.part_elems[j]};
      recv[j] = {got_, static_cast<int64_t>(j) * sz_.part_elems[r], j == r ? 0 : sz_.part_elems[r]};
    }
    CPB_TRY(ex.all_to_all(Stream::comm, send, recv, "a2a_partials"));
    ex.wait(Stream::compute, ex.record(Stream::comm));
    if (sz_.part_elems[r] == 0) return {};
    for (int j = 0; j < n; ++j) {
      if (j == r) continue;
      auto [po, pl] = slot_views(got_, static_cast<int64_t>(j) * sz_.part_elems[r], r);
      CPB_TRY(ex.merge(Stream::compute, {io.o, io.lse, po, pl}));
    }
    return {};
  }

  int64_t slot_offset(int s) const {
    int64_t off = 0;
    for (int j = 0; j < s; ++j) off += sz_.part_elems[j];
    return off;
  }

 private:
  Workload w_;
  const Placement& pl_;
  Sizes sz_;
  Buf ring_[2];
  Buf sent_, got_;
};

CPB_REGISTER_STRATEGY((StrategyInfo{
    .name = "ring_pass_q",
    .summary = "Q blocks rotate over a ring of send/recv, K,V stay; partials return by one "
               "all-to-all and merge by LSE (Yang et al. Alg. 3, decode Alg. 4)",
    .check = [](const StrategyContext&) -> Status { return {}; },
    .prepare = [](Executor& ex, const StrategyContext& ctx,
                  const RankTensors&) -> Expected<std::unique_ptr<RankStrategy>> {
      Sizes sz = sizes_of(ctx.workload, ctx.placement);
      const int n = ex.world(), r = ex.rank();
      int64_t q_max = 0, sent = 0;
      for (int s = 0; s < n; ++s) {
        q_max = std::max(q_max, sz.q_elems[s]);
        sent += sz.part_elems[s];
      }
      Buf a, b, slots, got;
      if (n > 1) {
        const Executor::Staged staged[] = {
            {"ring_pass_q.partials_out", ElemKind::f32, sent, kRing, kReturn},
            {"ring_pass_q.partials_in", ElemKind::f32, n * sz.part_elems[r], kReturn, kReturn},
            {"ring_pass_q.ring0", ElemKind::act, q_max, kRing, kRing},
            {"ring_pass_q.ring1", ElemKind::act, n > 2 ? q_max : 0, kRing, kRing},
        };
        CPB_ASSIGN_OR_RETURN(auto bufs, ex.alloc_staged("ring_pass_q.workspace", staged));
        slots = bufs[0];
        got = bufs[1];
        a = bufs[2];
        b = bufs[3];
      }
      return std::unique_ptr<RankStrategy>(new RingPassQ(ctx, std::move(sz), a, b, slots, got));
    },
}));

}  // namespace
}  // namespace cpb
