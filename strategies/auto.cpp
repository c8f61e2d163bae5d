// auto: picks ring_pass_kv or ring_pass_q for each point by Yang et al. 2024 Algorithm 1 or 5
// (strategies/heuristic.hpp) and then is that strategy: its check, its prepare, its bytes on the
// wire. C and BW come from the point (peak_tflops, bandwidth_gbps), else from the point's
// hardware_profile, else from the paper's machine; the record's strategy_detail says which
// strategy was chosen, by which test, with which numbers and where each number came from.
//
// The choice is a function of the point alone (shape, token counts, cp, options), so check,
// prepare (on every rank) and describe each recompute it rather than share state: every rank
// reaches the same choice without talking to the others.
#include "strategies/heuristic.hpp"
#include "strategies/strategy.hpp"

namespace cpb {
namespace {

struct AutoChoice {
  ResolvedHardware hw;
  HeuristicDecision decision;
  const StrategyInfo* chosen = nullptr;
};

// Prefixes an error with what auto was doing, keeping where it was raised.
Error in_auto(Error e, const std::string& what, const char* file, int line) {
  e.message = what + ": " + e.message;
  return std::move(e).hop(file, line);
}

Expected<AutoChoice> choose(const StrategyContext& ctx) {
  AutoChoice c;
  auto hw = resolve_hardware(ctx.options);
  if (!hw) return in_auto(std::move(hw).error(), "auto", __FILE__, __LINE__);
  c.hw = *hw;
  auto d = decide_pass_kv_or_q(
      heuristic_inputs(ctx.workload, ctx.placement.world(), c.hw, ctx.options.auto_algorithm));
  if (!d) return in_auto(std::move(d).error(), "auto", __FILE__, __LINE__);
  c.decision = std::move(*d);
  c.chosen = find_strategy(c.decision.choice);
  CPB_REQUIRE(c.chosen != nullptr,
              "auto chose {} ({}), but no strategy named '{}' is registered in this build: run "
              "it with strategy {} or {} explicitly, or build one that has {}",
              c.decision.choice, c.decision.reason, c.decision.choice, kPassKV, kPassQ,
              c.decision.choice);
  return c;
}

nlohmann::json describe_auto(const StrategyContext& ctx) {
  auto c = choose(ctx);
  if (!c) {
    // describe() has no error channel; check() has already refused such a point, so this is
    // only reached by a caller that skipped it.
    return {{"error", c.error().message}};
  }
  nlohmann::json j = to_json(c->decision);
  j["inputs"]["C_source"] = c->hw.peak_flops_source;
  j["inputs"]["BW_source"] = c->hw.bandwidth_source;
  return j;
}

CPB_REGISTER_STRATEGY((StrategyInfo{
    .name = "auto",
    .summary = "chooses ring_pass_kv or ring_pass_q by Yang et al. Algorithm 1 or 5",
    .check = [](const StrategyContext& ctx) -> Status {
      CPB_ASSIGN_OR_RETURN(AutoChoice c, choose(ctx));
      if (auto st = c.chosen->check(ctx); !st)
        return in_auto(std::move(st).error(), fmt::format("auto chose {}", c.decision.choice),
                       __FILE__, __LINE__);
      return {};
    },
    .prepare = [](Executor& ex, const StrategyContext& ctx,
                  const RankTensors& io) -> Expected<std::unique_ptr<RankStrategy>> {
      CPB_ASSIGN_OR_RETURN(AutoChoice c, choose(ctx));
      return c.chosen->prepare(ex, ctx, io);
    },
    .describe = describe_auto,
}));

}  // namespace
}  // namespace cpb
