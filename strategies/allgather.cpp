// allgather (Llama 3 context parallelism): every rank all-gathers the packed K/V blocks of all
// ranks, then attends its own queries to each gathered block and merges the partials by LSE.
// Bytes per rank: (N-1) x the packed K+V block received (and its own block sent to N-1 peers,
// counted once as nccl-tests does). Memory: N K/V blocks.
#include "strategies/common.hpp"

namespace cpb {
namespace {

class AllGather final : public RankStrategy {
 public:
  AllGather(const StrategyContext& ctx, Buf gathered, int64_t block)
      : w_(ctx.workload), pl_(ctx.placement), gathered_(gathered), block_(block) {}

  Status run(Executor& ex, const RankTensors& io) override {
    const int n = ex.world();
    const auto& q_segs = pl_.q_segments(ex.rank());
    Accumulator acc = make_accumulator(io, q_segs.size());
    ex.set_step(0);
    Buf src = io.kv;
    if (n > 1) {
      CPB_TRY(ex.all_gather(Stream::comm, {io.kv, 0, block_}, {gathered_, 0, n * block_},
                            "kv_all_gather"));
      ex.wait(Stream::compute, ex.record(Stream::comm));
      src = gathered_;
    }
    for (int s = 0; s < n; ++s) {
      const int64_t off = n > 1 ? s * block_ : 0;
      View k = packed_kv_view(w_, src, off, io.kv_capacity, pl_.kv_count(s), 0);
      View v = packed_kv_view(w_, src, off, io.kv_capacity, pl_.kv_count(s), 1);
      CPB_TRY(attend_segments(ex, Stream::compute, w_, q_segs, pl_.q_batches(ex.rank()), io.q, pl_.kv_segments(s), k, v, acc));
    }
    return finish_accumulator(ex, Stream::compute, q_segs, acc);
  }

 private:
  Workload w_;
  const Placement& pl_;
  Buf gathered_;
  int64_t block_;
};

CPB_REGISTER_STRATEGY((StrategyInfo{
    .name = "allgather",
    .summary = "all-gather K,V of every rank, then attend locally (Llama 3 CP)",
    .check = [](const StrategyContext&) -> Status { return {}; },
    .prepare = [](Executor& ex, const StrategyContext& ctx,
                  const RankTensors& io) -> Expected<std::unique_ptr<RankStrategy>> {
      const int64_t block = packed_kv_elems(ctx.workload, io.kv_capacity);
      Buf gathered;
      if (ex.world() > 1) {
        CPB_ASSIGN_OR_RETURN(gathered, ex.alloc("allgather.kv", ElemKind::act, ex.world() * block));
      }
      return std::unique_ptr<RankStrategy>(new AllGather(ctx, gathered, block));
    },
}));

}  // namespace
}  // namespace cpb
