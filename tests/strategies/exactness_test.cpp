// The exactness matrix: every registered strategy x layout x mask x N in {1,2,3,4,5,8} x GQA
// ratio in {1,4,16} x phase (full prefill = 100% miss; partial prefill at 50%, 5% and 1% miss)
// agrees with the fp64 reference of the unsharded problem on fresh random inputs, relative error
// <= 1e-5, with no NaN or Inf anywhere.
#include <gtest/gtest.h>

#include <tuple>

#include "harness/runner/runner.hpp"
#include "strategies/strategy.hpp"

namespace cpb {
namespace {

// Miss rate in percent; 100 is full prefill (P = 0).
using Params = std::tuple<std::string, LayoutKind, MaskKind, int, int, int>;

Workload workload_for(int n, int gqa, int miss_pct, MaskKind mask) {
  Workload w;
  w.batch = 1;
  w.heads = 16;
  w.kv_heads = 16 / gqa;
  w.head_dim = 16;
  w.mask = mask;
  // New tokens: a multiple of 2N so every layout divides; cached tokens give the miss rate.
  const int64_t per = miss_pct == 100 ? 4 : miss_pct == 50 ? 3 : miss_pct == 5 ? 2 : 1;
  w.new_tokens = 2 * n * per;
  w.cached_tokens = w.new_tokens * (100 - miss_pct) / miss_pct;
  return w;
}

class Exactness : public ::testing::TestWithParam<Params> {};

TEST_P(Exactness, MatchesFp64Reference) {
  auto [strategy, layout, mask, n, gqa, miss] = GetParam();
  ExecSpec spec;
  spec.strategy = strategy;
  spec.layout = layout;
  spec.cp = n;
  spec.workload = workload_for(n, gqa, miss, mask);
  spec.seed = static_cast<uint64_t>(n * 1000 + gqa * 10 + miss);
  spec.timeout_s = 60;
  ASSERT_NEAR(spec.workload.miss_rate(), miss / 100.0, 1e-12);
  if (Status st = check_point(spec); !st.ok()) {
    // The only refusal the matrix may meet: ulysses cannot split 16 heads over 3 or 5 ranks.
    ASSERT_EQ(strategy, "ulysses") << st.error().str();
    EXPECT_NE(spec.workload.heads % n, 0) << st.error().str();
    EXPECT_NE(st.error().message.find("heads"), std::string::npos) << st.error().str();
    return;
  }
  auto res = execute_point(spec);
  ASSERT_TRUE(res.ok()) << res.error().detail();
  const auto& v = res->verify;
  EXPECT_TRUE(v.ran);
  EXPECT_TRUE(v.finite) << "NaN or Inf in the output";
  EXPECT_LE(v.max_rel_err, 1e-5) << spec.workload.str();
  EXPECT_LE(v.lse_max_abs_err, 1e-5) << spec.workload.str();
  EXPECT_TRUE(v.passed());
}

std::string name(const ::testing::TestParamInfo<Params>& info) {
  auto [strategy, layout, mask, n, gqa, miss] = info.param;
  return fmt::format("{}_{}_{}_cp{}_gqa{}_miss{}", strategy, to_string(layout), to_string(mask),
                     n, gqa, miss);
}

INSTANTIATE_TEST_SUITE_P(
    Matrix, Exactness,
    ::testing::Combine(::testing::ValuesIn(strategy_names()),
                       ::testing::Values(LayoutKind::contiguous, LayoutKind::zigzag,
                                         LayoutKind::striped),
                       ::testing::Values(MaskKind::causal, MaskKind::full),
                       ::testing::Values(1, 2, 3, 4, 5, 8), ::testing::Values(1, 4, 16),
                       ::testing::Values(100, 50, 5, 1)),
    name);

// Shapes the matrix does not reach: batch > 1, cached tokens that do not divide by N (uneven
// cache shards, padded messages), fp16 inputs, head_dim 64 and 128, odd N with MQA.
TEST(ExactnessExtra, BatchUnevenCacheAndWideHeads) {
  for (const auto& strategy : strategy_names())
    for (LayoutKind layout : {LayoutKind::contiguous, LayoutKind::zigzag, LayoutKind::striped})
      for (int n : {3, 5, 7}) {
        ExecSpec spec;
        spec.strategy = strategy;
        spec.layout = layout;
        spec.cp = n;
        spec.workload = Workload{.batch = 3, .heads = 8, .kv_heads = 1, .head_dim = n == 5 ? 128 : 64,
                                 .dtype = n == 3 ? DType::fp16 : DType::bf16,
                                 .mask = MaskKind::causal, .new_tokens = 2 * n,
                                 .cached_tokens = 5 * n + 2};
        spec.seed = 99;
        if (Status st = check_point(spec); !st.ok()) {
          // 8 heads do not split over 3, 5 or 7 ranks for ulysses; every other strategy runs.
          EXPECT_EQ(strategy, "ulysses") << st.error().str();
          continue;
        }
        auto res = execute_point(spec);
        ASSERT_TRUE(res.ok()) << res.error().detail();
        EXPECT_TRUE(res->verify.passed())
            << strategy << " " << to_string(layout) << " cp" << n
            << " rel=" << res->verify.max_rel_err;
      }
}

// The check must be able to fail: a perturbed output is caught.
TEST(ExactnessExtra, VerifyCatchesAWrongAnswer) {
  Workload w{.heads = 2, .kv_heads = 1, .head_dim = 8, .new_tokens = 8, .cached_tokens = 4};
  ExecSpec spec{.strategy = "ring_pass_kv", .layout = LayoutKind::zigzag, .cp = 2, .workload = w};
  auto res = execute_point(spec);
  ASSERT_TRUE(res.ok());
  ASSERT_TRUE(res->verify.passed());
  Inputs in = random_inputs(w, spec.seed);
  auto o = res->o;
  o[5] += 1e-3f;
  EXPECT_FALSE(verify_against_reference(w, in, o, res->lse, 1e-5).passed());
  auto lse = res->lse;
  lse[1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(verify_against_reference(w, in, res->o, lse, 1e-5).passed());
}

}  // namespace
}  // namespace cpb
