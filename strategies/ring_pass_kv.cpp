// ring_pass_kv (Ring Attention; Yang et al. 2024 pass-KV): K and V, packed in one buffer, rotate
// N-1 times around a ring of send/recv; at step k rank r attends its queries to the block of
// rank (r - k) mod N while the next block is in flight on the comm stream (double-buffered),
// and merges the partials by LSE. Bytes per rank: (N-1) x the packed K+V block, sent and
// received. Memory: the local block plus two ring buffers.
#include "strategies/common.hpp"

namespace cpb {
namespace {

class RingPassKV final : public RankStrategy {
 public:
  RingPassKV(const StrategyContext& ctx, Buf a, Buf b, int64_t block)
      : w_(ctx.workload), pl_(ctx.placement), ring_{a, b}, block_(block) {}

  Status run(Executor& ex, const RankTensors& io) override {
    const int n = ex.world(), r = ex.rank();
    const int next = (r + 1) % n, prev = (r - 1 + n) % n;
    const auto& q_segs = pl_.q_segments(r);
    Accumulator acc = make_accumulator(io, q_segs.size());
    Buf cur = io.kv;
    Event computed{};
    for (int step = 0; step < n; ++step) {
      ex.set_step(step);
      Event arrived{};
      if (step + 1 < n) {
        // The buffer we receive into was read by the previous step's attention (from step 2 on;
        // at step 1 it is fresh, and waiting would hold the transfer back by a whole step).
        Buf dst = ring_[step % 2];
        if (step > 1) ex.wait(Stream::comm, computed);
        const P2POp ops[] = {{P2POp::Kind::send, next, {cur, 0, block_}},
                             {P2POp::Kind::recv, prev, {dst, 0, block_}}};
        CPB_TRY(ex.p2p(Stream::comm, ops, "ring_kv"));
        arrived = ex.record(Stream::comm);
      }
      const int src = (r - step + n) % n;
      View k = packed_kv_view(w_, cur, 0, io.kv_capacity, pl_.kv_count(src), 0);
      View v = packed_kv_view(w_, cur, 0, io.kv_capacity, pl_.kv_count(src), 1);
      CPB_TRY(attend_segments(ex, Stream::compute, w_, q_segs, pl_.q_batches(ex.rank()), io.q,
                              pl_.kv_segments(src), k, v, acc));
      computed = ex.record(Stream::compute);
      if (step + 1 < n) {
        ex.wait(Stream::compute, arrived);
        cur = ring_[step % 2];
      }
    }
    return finish_accumulator(ex, Stream::compute, q_segs, acc);
  }

 private:
  Workload w_;
  const Placement& pl_;
  Buf ring_[2];
  int64_t block_;
};

CPB_REGISTER_STRATEGY((StrategyInfo{
    .name = "ring_pass_kv",
    .summary = "K,V blocks rotate N-1 times over a ring of send/recv; partials merged by LSE",
    .check = [](const StrategyContext&) -> Status { return {}; },
    .prepare = [](Executor& ex, const StrategyContext& ctx,
                  const RankTensors& io) -> Expected<std::unique_ptr<RankStrategy>> {
      const int64_t block = packed_kv_elems(ctx.workload, io.kv_capacity);
      Buf a, b;
      if (ex.world() > 1) {
        CPB_ASSIGN_OR_RETURN(a, ex.alloc("ring_pass_kv.ring0", ElemKind::act, block));
      }
      if (ex.world() > 2) {
        CPB_ASSIGN_OR_RETURN(b, ex.alloc("ring_pass_kv.ring1", ElemKind::act, block));
      }
      return std::unique_ptr<RankStrategy>(new RingPassKV(ctx, a, b, block));
    },
}));

}  // namespace
}  // namespace cpb
