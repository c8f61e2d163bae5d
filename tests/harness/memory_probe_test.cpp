// The memory preflight: the probe's count of a rank's buffers equals what the real run allocates
// (the cpu backend's peak) for every strategy, phase and rank, and a point whose buffers do not
// fit a GPU's free memory is refused with the estimate and the free memory, before anything is
// allocated (here with made-up free memory; the GPU test uses the real one).
#include "harness/runner/memory_probe.hpp"

#include <gtest/gtest.h>

#include "strategies/strategy.hpp"

namespace cpb {
namespace {

ExecSpec spec_of(const std::string& strategy, int cp, int64_t batch, int64_t t, int64_t p) {
  ExecSpec s;
  s.backend = "cpu";
  s.strategy = strategy;
  s.layout = LayoutKind::zigzag;
  s.cp = cp;
  s.workload = Workload{.batch = batch,
                        .heads = 8,
                        .kv_heads = 4,
                        .head_dim = 16,
                        .dtype = DType::bf16,
                        .mask = MaskKind::causal,
                        .new_tokens = t,
                        .cached_tokens = p};
  s.verify = false;
  s.seed = 3;
  return s;
}

TEST(MemoryProbe, EqualsWhatTheRunAllocates) {
  int checked = 0;
  for (const auto& strategy : strategy_names())
    for (int cp : {1, 2, 3, 4})
      for (auto [b, t, p] :
           {std::tuple<int64_t, int64_t, int64_t>{1, 48, 0}, {2, 24, 37}, {5, 1, 41}}) {
        ExecSpec s = spec_of(strategy, cp, b, t, p);
        if (!check_point(s).ok()) continue;  // e.g. ulysses in decode
        auto res = execute_point(s);
        ASSERT_TRUE(res.ok()) << res.error().str();
        for (int r = 0; r < cp; ++r) {
          auto est = rank_memory_bytes(s, r);
          ASSERT_TRUE(est.ok()) << est.error().str();
          EXPECT_EQ(*est, res->ranks[r].peak_memory_bytes)
              << strategy << " cp " << cp << " rank " << r << " " << s.workload.str();
          ++checked;
        }
      }
  EXPECT_GT(checked, 100);
}

TEST(MemoryProbe, APointThatDoesNotFitIsRefusedWithTheNumbers) {
  ExecSpec s = spec_of("ring_pass_kv", 2, 1, 48, 0);
  auto need = rank_memory_bytes(s, 1);
  ASSERT_TRUE(need.ok());
  const int64_t roomy = *need + kGpuOverheadBytes;
  EXPECT_TRUE(check_gpu_memory(s, {roomy, roomy}).ok());
  auto st = check_gpu_memory(s, {roomy, roomy - 1});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("rank 1's GPU 1"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find("GiB free"), std::string::npos) << st.error().message;
  // Under MPI only this process's rank and its GPU are checked.
  EXPECT_TRUE(check_gpu_memory(s, {roomy - 1}, /*only_rank=*/0, /*device=*/0).ok() ==
              (rank_memory_bytes(s, 0).value() + kGpuOverheadBytes <= roomy - 1));
  // No GPUs known: nothing to check.
  EXPECT_TRUE(check_gpu_memory(s, {}).ok());
}

}  // namespace
}  // namespace cpb
