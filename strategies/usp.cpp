// usp (Fang & Zhao 2024, Unified Sequence Parallelism; yunchang's layout): the N ranks form
// r = N/u groups of u consecutive ranks. Inside a group, Q, K and V go from sequence-sharded to
// head-sharded by three all-to-alls (Ulysses on the fastest links); across groups, the group's
// K/V block of its head slice rotates r-1 times over the strided ring x -> x+u mod N, overlapped
// with attention; an all-to-all in the group returns O and LSE (fp32) to the owners. u comes
// from the point's `ulysses` option, 0 = the largest divisor of N that the heads allow (u = 1 is
// a pure ring, u = N is ulysses). Bytes sent per rank, s = dtype bytes, h = Hkv/u or 1:
//   (u-1)/u * B*q_count*H*d*s + 2 (u-1) B kv_count h d s + (u-1)/u * B*q_count*H*(d+1)*4
//   + (r-1) * 2 B (kv tokens of a group) h d s   (with u = 1: (N-1) padded packed K/V blocks).
// The shared code is in ulysses_ring.cpp.
#include "strategies/ulysses_ring.hpp"

namespace cpb {
namespace {

Expected<UlyssesRingPlan> usp_plan(const StrategyContext& ctx) {
  int u = ctx.options.ulysses;
  CPB_REQUIRE(u >= 0, "usp needs ulysses >= 0 (0 chooses the largest the heads allow), got {}", u);
  if (u == 0) u = auto_ulysses_degree(ctx.workload, ctx.placement.world());
  return plan_ulysses_ring(ctx, u, "usp", "ulysses",
                           "choose another ulysses degree, or 0 to choose it automatically");
}

CPB_REGISTER_STRATEGY((StrategyInfo{
    .name = "usp",
    .summary = "Ulysses all-to-alls inside groups of u consecutive ranks, K,V ring across the "
               "r = N/u strided groups (USP)",
    .check = [](const StrategyContext& ctx) -> Status {
      CPB_TRY(usp_plan(ctx));
      return {};
    },
    .prepare = [](Executor& ex, const StrategyContext& ctx,
                  const RankTensors& io) -> Expected<std::unique_ptr<RankStrategy>> {
      CPB_ASSIGN_OR_RETURN(UlyssesRingPlan plan, usp_plan(ctx));
      return prepare_ulysses_ring(ex, ctx, io, plan);
    },
    .describe = [](const StrategyContext& ctx) -> nlohmann::json {
      auto plan = usp_plan(ctx);
      if (!plan.ok()) return {{"error", plan.error().message}};
      return plan->describe();
    },
}));

}  // namespace
}  // namespace cpb
