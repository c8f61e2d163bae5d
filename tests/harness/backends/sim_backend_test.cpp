// The sim backend end to end (execute_point with backend "sim"): every strategy runs on every cp
// from 1 to 5 in full prefill, partial prefill and decode, MHA and GQA, with predicted times and
// traces; two runs give identical numbers; ring_pass_kv's prediction is the double-buffered
// ring's closed form; and the predicted trace's slices are the engine's timeline.
#include <gtest/gtest.h>

#include <fstream>

#include "harness/runner/runner.hpp"
#include "harness/runner/trace.hpp"
#include "tests/support/temp_dir.hpp"

namespace cpb {
namespace {

const std::string kRound = std::string(CPBENCH_TEST_DATA) + "/profiles/sim_round_numbers.yaml";

ExecSpec sim_spec(const std::string& strategy, int cp, const Workload& w,
                  const std::string& profile = "") {
  ExecSpec spec;
  spec.backend = "sim";
  spec.strategy = strategy;
  spec.layout = LayoutKind::zigzag;
  spec.cp = cp;
  spec.workload = w;
  spec.iterations = 2;
  spec.warmup = 1;
  spec.trace = true;
  spec.options.hardware_profile = profile;
  return spec;
}

// 240 new tokens: zigzag-divisible on 1 to 5 ranks.
Workload prefill(MaskKind mask, int64_t heads, int64_t kv_heads) {
  Workload w{
      .batch = 1, .heads = heads, .kv_heads = kv_heads, .head_dim = 16, .dtype = DType::bf16};
  w.mask = mask;
  w.new_tokens = 240;
  return w;
}

TEST(SimBackend, EveryStrategyEveryPhaseAndCp) {
  Workload full = prefill(MaskKind::causal, 8, 8);
  Workload gqa = prefill(MaskKind::causal, 8, 2);
  Workload partial = gqa;
  partial.cached_tokens = 960;  // 20% miss rate
  Workload decode = gqa;
  decode.batch = 5;
  decode.new_tokens = 1;
  decode.cached_tokens = 77;
  for (const char* s : {"ring_pass_kv", "ring_pass_q", "allgather", "ulysses", "usp", "auto"})
    for (int cp : {1, 2, 3, 4, 5})
      for (const Workload* w : {&full, &gqa, &partial, &decode}) {
        const std::string name = s;
        const bool heads_split = name == "ulysses" || name == "usp";
        if (heads_split && (w == &decode || w->heads % cp != 0)) continue;
        SCOPED_TRACE(testing::Message() << s << " cp=" << cp << " phase=" << to_string(w->phase())
                                        << " Hkv=" << w->kv_heads);
        auto res = execute_point(sim_spec(s, cp, *w));  // the default (committed) profile
        ASSERT_TRUE(res.ok()) << res.error().str();
        EXPECT_EQ(res->clock, "sim");
        ASSERT_EQ(res->iteration_times_s.size(), 2u);
        EXPECT_GT(res->iteration_times_s[0], 0);
        EXPECT_EQ(res->iteration_times_s[0], res->iteration_times_s[1]);
        EXPECT_FALSE(res->verify.ran);
        EXPECT_NE(res->verify.reference.find("not verified"), std::string::npos);
        EXPECT_TRUE(res->o.empty());  // nothing computed, nothing gathered
        EXPECT_TRUE(res->backend_detail["predicted"].get<bool>());
        EXPECT_EQ(res->backend_detail["hardware_profile"]["name"], "h200x4-calibrated");
        ASSERT_EQ(static_cast<int>(res->ranks.size()), cp);
        for (const auto& rk : res->ranks) {
          EXPECT_FALSE(rk.trace.empty());
          EXPECT_GT(rk.peak_memory_bytes, 0);  // buffers are counted, not held
        }
      }
}

TEST(SimBackend, Deterministic) {
  for (const char* s : {"ring_pass_kv", "ulysses", "ring_pass_q"}) {
    auto a = execute_point(sim_spec(s, 4, prefill(MaskKind::causal, 8, 2)));
    auto b = execute_point(sim_spec(s, 4, prefill(MaskKind::causal, 8, 2)));
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->iteration_times_s, b->iteration_times_s) << s;
    EXPECT_EQ(chrome_trace(*a, "t").dump(), chrome_trace(*b, "t").dump()) << s;
  }
}

TEST(SimBackend, TraceSlicesAreTheTimeline) {
  auto res = execute_point(sim_spec("ring_pass_kv", 3, prefill(MaskKind::causal, 8, 2), kRound));
  ASSERT_TRUE(res.ok()) << res.error().str();
  double last_end = 0;
  for (const auto& rk : res->ranks) {
    double compute_end = 0;
    for (const auto& t : rk.trace) {
      EXPECT_GE(t.end_s, t.begin_s);
      if (t.stream == Stream::compute) {
        EXPECT_GE(t.begin_s, compute_end - 1e-15);  // one stream runs in order
        compute_end = t.end_s;
      }
      last_end = std::max(last_end, t.end_s);
    }
  }
  // The iteration ends when the last op of the slowest rank does.
  EXPECT_NEAR(res->iteration_times_s[0], last_end, 1e-15);
}

// Timed iterations price a block whose K/V the iteration received (kv_fresh) by the warm points,
// as the traced iteration does: the timed time is the trace's end, and the fresh blocks are
// faster than the cold ones (regression: timed iterations once priced every block cold).
TEST(SimBackend, TimedIterationsPriceFreshBlocksWarm) {
  testing_support::TempDir dir;
  const std::string path = dir.file("warm.yaml");
  std::ofstream(path) << "name: warm\npeak_tflops: 100\nbandwidth_gbps: 1\nattention:\n"
                         "  - {mask: full, head_dim: 16, sq: 1, sk: 1, tflops: 1}\n"
                         "  - {mask: full, head_dim: 16, sq: 4096, sk: 4096, tflops: 1}\n"
                         "  - {mask: full, head_dim: 16, sq: 1, sk: 1, tflops: 3, warm: true}\n"
                         "  - {mask: full, head_dim: 16, sq: 4096, sk: 4096, tflops: 3, "
                         "warm: true}\n"
                         "links:\n  nvlink:\n    ranks: 4\n"
                         "    sendrecv: {bytes: [1000, 2000], us: [1, 2]}\n";
  auto res = execute_point(sim_spec("ring_pass_kv", 2, prefill(MaskKind::full, 8, 4), path));
  ASSERT_TRUE(res.ok()) << res.error().str();
  double last_end = 0, fresh = 0, cold = 0;
  for (const auto& rk : res->ranks)
    for (const auto& t : rk.trace) {
      last_end = std::max(last_end, t.end_s);
      if (t.kind == OpKind::attention) (t.kv_fresh ? fresh : cold) = t.end_s - t.begin_s;
    }
  ASSERT_GT(fresh, 0);
  ASSERT_GT(cold, 0);
  EXPECT_NEAR(cold / fresh, 3, 1e-9);
  EXPECT_NEAR(res->iteration_times_s[0], last_end, 1e-15);
  EXPECT_EQ(res->iteration_times_s[0], res->iteration_times_s[1]);
}

TEST(SimBackend, RingPassKvMatchesTheRingClosedForm) {
  // Full mask: every rank does the same attention each step, c = FLOPs per step / 100 TF/s; the
  // transfer of the packed K,V block takes t = 1 ns per byte; no launch, merge or copy cost.
  // The double-buffered ring takes N c when transfers hide behind attention (t <= c), else
  // (N - 1) t + c.
  testing_support::TempDir dir;
  const std::string path = dir.file("ring.yaml");
  std::ofstream(path) << "name: ring\npeak_tflops: 100\nbandwidth_gbps: 1\nattention:\n"
                         "  - {mask: full, head_dim: 16, sq: 64, sk: 64, tflops: 100}\n"
                         "links:\n  nvlink:\n    ranks: 4\n"
                         "    sendrecv: {bytes: [1000, 2000], us: [1, 2]}\n";
  Workload w = prefill(MaskKind::full, 8, 4);
  for (int n : {2, 3, 4, 5})
    for (int64_t heads : {8, 16384}) {  // few heads: t > c; many (nothing is allocated): t < c
      w.heads = heads;
      auto res = execute_point(sim_spec("ring_pass_kv", n, w, path));
      ASSERT_TRUE(res.ok()) << res.error().str();
      const double c = res->ranks[0].accounting.step_flops(0) / 100e12;
      const double t =
          static_cast<double>(res->ranks[0].accounting.phases.at("ring_kv").bytes_sent) / (n - 1) *
          1e-9;
      const double want = t <= c ? n * c : (n - 1) * t + c;
      EXPECT_NEAR(res->iteration_times_s[0], want, want * 1e-12)
          << "n=" << n << " heads=" << heads << " c=" << c << " t=" << t;
    }
}

}  // namespace
}  // namespace cpb
