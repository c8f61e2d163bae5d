// ulysses (DeepSpeed Ulysses, Jacobs et al. 2023): four all-to-alls over the whole CP group turn
// sequence-sharded Q, K, V into head-sharded ones (H/N query heads of every token per rank; KV
// heads sharded Hkv/N per rank when Hkv % N == 0, or the one KV head a rank's query heads use,
// replicated, when N % Hkv == 0), each rank attends its heads over the whole sequence, and one
// all-to-all returns O with its LSE (fp32) to the owners. It is usp with u = N, r = 1 (the
// shared code is in ulysses_ring.cpp). Bytes sent per rank, s = dtype bytes, h = Hkv/N or 1:
//   (N-1)/N * B*q_count*H*d*s (Q) + 2 (N-1) B kv_count h d s (K, V)
//   + (N-1)/N * B*q_count*H*(d+1)*4 (O and LSE); received: the same with the peers' counts.
// Needs H % N == 0 and no decode.
#include "strategies/ulysses_ring.hpp"

namespace cpb {
namespace {

Expected<UlyssesRingPlan> ulysses_plan(const StrategyContext& ctx) {
  return plan_ulysses_ring(ctx, ctx.placement.world(), "ulysses", "cp",
                           "use usp, which splits cp into ulysses x ring, or another cp");
}

CPB_REGISTER_STRATEGY((StrategyInfo{
    .name = "ulysses",
    .summary = "all-to-all sequence-sharded -> head-sharded Q,K,V; local attention over the "
               "whole sequence; all-to-all O,LSE back (DeepSpeed Ulysses)",
    .check = [](const StrategyContext& ctx) -> Status {
      CPB_TRY(ulysses_plan(ctx));
      return {};
    },
    .prepare = [](Executor& ex, const StrategyContext& ctx,
                  const RankTensors& io) -> Expected<std::unique_ptr<RankStrategy>> {
      CPB_ASSIGN_OR_RETURN(UlyssesRingPlan plan, ulysses_plan(ctx));
      return prepare_ulysses_ring(ex, ctx, io, plan);
    },
    .describe = [](const StrategyContext& ctx) -> nlohmann::json {
      auto plan = ulysses_plan(ctx);
      if (!plan.ok()) return {{"error", plan.error().message}};
      return plan->describe();
    },
}));

}  // namespace
}  // namespace cpb
