// Decode (one new token per sequence, B sequences, P cached tokens placed round-robin with P not
// divisible by N): ring_pass_q (Yang Alg. 4), allgather of partials and ring_pass_kv agree with
// the fp64 reference for B in {1, 3, 8}, every N, causal and full masks, GQA and MQA; and their
// bytes match the closed forms.
#include <gtest/gtest.h>

#include <tuple>

#include "harness/runner/runner.hpp"
#include "strategies/strategy.hpp"

namespace cpb {
namespace {

using Params = std::tuple<std::string, int, int, MaskKind, int>;  // strategy, N, B, mask, Hkv

Workload decode_workload(int n, int b, MaskKind mask, int kv_heads) {
  return Workload{.batch = b, .heads = 8, .kv_heads = kv_heads, .head_dim = 16,
                  .dtype = DType::bf16, .mask = mask, .new_tokens = 1,
                  .cached_tokens = 9 * n + (n > 1 ? 1 : 4)};
}

class Decode : public ::testing::TestWithParam<Params> {};

TEST_P(Decode, MatchesFp64Reference) {
  auto [strategy, n, b, mask, kv_heads] = GetParam();
  if (find_strategy(strategy) == nullptr) GTEST_SKIP() << strategy << " is not registered";
  ExecSpec spec;
  spec.strategy = strategy;
  spec.layout = LayoutKind::zigzag;  // decode ignores the layout: tokens go round-robin
  spec.cp = n;
  spec.workload = decode_workload(n, b, mask, kv_heads);
  spec.seed = static_cast<uint64_t>(100 * n + b);
  ASSERT_EQ(spec.workload.phase(), Phase::decode);
  if (n > 1) ASSERT_NE(spec.workload.cached_tokens % n, 0);
  auto res = execute_point(spec);
  ASSERT_TRUE(res.ok()) << res.error().detail();
  EXPECT_TRUE(res->verify.finite);
  EXPECT_LE(res->verify.max_rel_err, 1e-5);
  EXPECT_LE(res->verify.lse_max_abs_err, 1e-5);
  // Summed over ranks, every (query, key) pair is computed exactly once.
  double flops = 0;
  for (const auto& r : res->ranks) flops += r.accounting.total().flops;
  EXPECT_DOUBLE_EQ(flops, workload_flops(spec.workload));
}

std::string name(const ::testing::TestParamInfo<Params>& info) {
  auto [s, n, b, m, kv] = info.param;
  return fmt::format("{}_cp{}_b{}_{}_kv{}", s, n, b, to_string(m), kv);
}

INSTANTIATE_TEST_SUITE_P(
    Matrix, Decode,
    ::testing::Combine(::testing::Values("ring_pass_q", "allgather", "ring_pass_kv", "auto"),
                       ::testing::Values(1, 2, 3, 4, 5, 8), ::testing::Values(1, 3, 8),
                       ::testing::Values(MaskKind::causal, MaskKind::full),
                       ::testing::Values(2, 1)),
    name);

const PhaseCounters& phase(const RankReport& r, const std::string& name) {
  static const PhaseCounters none;
  auto it = r.accounting.phases.find(name);
  return it == r.accounting.phases.end() ? none : it->second;
}

// pass-Q decode: each step moves the sender's query block; the all-to-all returns, to every
// other rank, the partial (O, LSE) in fp32 of that rank's queries.
TEST(DecodeAccounting, RingPassQClosedForm) {
  for (int n : {2, 3, 4}) {
    for (int b : {1, 3, 8}) {
      Workload w = decode_workload(n, b, MaskKind::causal, 2);
      ExecResult res = *execute_point(
          {.strategy = "ring_pass_q", .cp = n, .workload = w, .verify = false});
      auto seqs = [&](int r) { return (b - r + n - 1) / n; };  // sequences b' with b' % n == r
      for (int r = 0; r < n; ++r) {
        int64_t ring = 0;
        for (int step = 0; step + 1 < n; ++step) ring += seqs((r - step + n) % n);
        EXPECT_EQ(phase(res.ranks[r], "ring_q").bytes_sent, ring * w.heads * w.head_dim * 2)
            << "n=" << n << " b=" << b << " r=" << r;
        int64_t others = 0;
        for (int s = 0; s < n; ++s)
          if (s != r) others += seqs(s);
        EXPECT_EQ(phase(res.ranks[r], "a2a_partials").bytes_sent,
                  others * w.heads * (w.head_dim + 1) * 4);
        EXPECT_EQ(phase(res.ranks[r], "a2a_partials").bytes_recv,
                  (n - 1) * seqs(r) * w.heads * (w.head_dim + 1) * 4);
      }
    }
  }
}

TEST(DecodeAccounting, AllGatherMovesQueriesAndPartialsNotTheCache) {
  const int n = 4, b = 6;
  Workload w = decode_workload(n, b, MaskKind::causal, 2);
  ExecResult res =
      *execute_point({.strategy = "allgather", .cp = n, .workload = w, .verify = false});
  const int64_t bq = (b + n - 1) / n;
  for (const auto& r : res.ranks) {
    EXPECT_EQ(phase(r, "q_all_gather").bytes_recv, (n - 1) * bq * w.heads * w.head_dim * 2);
    EXPECT_EQ(phase(r, "partials_all_gather").bytes_recv,
              int64_t{n - 1} * n * bq * w.heads * (w.head_dim + 1) * 4);
    EXPECT_EQ(phase(r, "kv_all_gather").bytes_recv, 0);
  }
}

}  // namespace
}  // namespace cpb
