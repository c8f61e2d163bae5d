// Memory per rank of every strategy against its closed form: what each holds (the I/O, and the
// buffers its header comment lists, each only over its stages) gives the minimum; the peak is
// what the staged workspace really takes and must stay within 1.2x of it (Step E's target).
// Exactness with the shared memory is covered by the exactness suites, which run the same code.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "harness/runner/runner.hpp"

namespace cpb {
namespace {

constexpr int64_t kBf16 = 2, kF32 = 4;
constexpr int64_t kSlack = 256 * 8;  // workspace alignment: at most 256 B per staged buffer

Workload workload(int n, int64_t heads, int64_t kv_heads) {
  return Workload{.batch = 1,
                  .heads = heads,
                  .kv_heads = kv_heads,
                  .head_dim = 64,
                  .dtype = DType::bf16,
                  .mask = MaskKind::causal,
                  .new_tokens = 64 * int64_t{n},
                  .cached_tokens = 0};
}

ExecResult run(const std::string& strategy, int n, int u, const Workload& w) {
  ExecSpec spec;
  spec.strategy = strategy;
  spec.layout = LayoutKind::zigzag;
  spec.cp = n;
  spec.workload = w;
  spec.options.ulysses = u;
  spec.seed = 7;
  spec.timeout_s = 60;
  spec.verify = false;
  auto res = execute_point(spec);
  EXPECT_TRUE(res.ok()) << res.error().detail();
  return std::move(res).value();
}

// Per rank (every rank holds T/N tokens here): Q, packed K/V, O and LSE.
struct Io {
  int64_t q_elems, kv_elems, lse_elems;
  int64_t bytes() const { return (q_elems + kv_elems) * kBf16 + (q_elems + lse_elems) * kF32; }
};
Io io_of(const Workload& w, int n) {
  const int64_t t = w.new_tokens / n;
  return {t * w.heads * w.head_dim, 2 * t * w.kv_heads * w.head_dim, t * w.heads};
}

struct Case {
  int n;
  int64_t heads, kv_heads;
};
const Case kCases[] = {{2, 8, 8}, {3, 6, 3}, {4, 8, 8}, {4, 16, 8}, {4, 16, 1}, {5, 10, 5}};

void expect_within_target(const ExecResult& res) {
  for (const auto& rk : res.ranks) {
    EXPECT_GE(rk.peak_memory_bytes, rk.minimum_memory_bytes);
    EXPECT_LE(static_cast<double>(rk.peak_memory_bytes),
              1.2 * static_cast<double>(rk.minimum_memory_bytes));
  }
}

TEST(StrategyMemory, RingPassKvHoldsTwoRingBuffers) {
  for (const auto& c : kCases) {
    Workload w = workload(c.n, c.heads, c.kv_heads);
    SCOPED_TRACE(fmt::format("cp {} {}", c.n, w.str()));
    const Io io = io_of(w, c.n);
    const int64_t rings = std::min(c.n - 1, 2);
    for (const auto& rk : run("ring_pass_kv", c.n, 0, w).ranks) {
      EXPECT_EQ(rk.minimum_memory_bytes, io.bytes() + rings * io.kv_elems * kBf16);
      EXPECT_EQ(rk.peak_memory_bytes, rk.minimum_memory_bytes);
    }
  }
}

TEST(StrategyMemory, RingPassQHoldsEveryPartialOnceEachWay) {
  for (const auto& c : kCases) {
    Workload w = workload(c.n, c.heads, c.kv_heads);
    SCOPED_TRACE(fmt::format("cp {} {}", c.n, w.str()));
    const Io io = io_of(w, c.n);
    const int64_t part = (io.q_elems + io.lse_elems) * kF32;  // one rank's (O, LSE) in fp32
    // Ring stage: two Q buffers and the N slots; return stage: the slots and N received.
    const int64_t ring = std::min(c.n - 1, 2) * io.q_elems * kBf16 + c.n * part;
    const int64_t back = 2 * c.n * part;
    const ExecResult res = run("ring_pass_q", c.n, 0, w);
    for (const auto& rk : res.ranks)
      EXPECT_NEAR(rk.minimum_memory_bytes, io.bytes() + std::max(ring, back), kSlack);
    expect_within_target(res);
  }
}

TEST(StrategyMemory, UlyssesHoldsItsBusiestStage) {
  for (const auto& c : kCases) {
    Workload w = workload(c.n, c.heads, c.kv_heads);
    SCOPED_TRACE(fmt::format("cp {} {}", c.n, w.str()));
    const Io io = io_of(w, c.n);
    const int64_t u = c.n;
    // Head slices: Q H/u heads; K/V Hkv/u heads (sharded) or 1 head (replicated, u > Hkv).
    const int64_t kv_slice = w.kv_heads % u == 0 ? io.kv_elems / u : io.kv_elems / w.kv_heads;
    const int64_t send = (u - 1) * (io.q_elems / u + kv_slice) * kBf16;
    const int64_t held = (io.q_elems + u * kv_slice) * kBf16;  // received Q and group K/V
    const int64_t acc = (io.q_elems + io.lse_elems) * kF32;    // every member's slice, fp32
    const int64_t back = (u - 1) * (io.q_elems + io.lse_elems) / u * kF32;
    const int64_t busiest = std::max({send + held, held + acc, acc + back});
    const ExecResult res = run("ulysses", c.n, 0, w);
    for (const auto& rk : res.ranks)
      EXPECT_NEAR(rk.minimum_memory_bytes, io.bytes() + busiest, kSlack);
    expect_within_target(res);
  }
}

TEST(StrategyMemory, UspWithinTargetForEveryDegree) {
  for (const auto& c : kCases)
    for (int u = 1; u <= c.n; ++u) {
      if (c.n % u != 0 || c.heads % u != 0 || (c.kv_heads % u != 0 && u % c.kv_heads != 0))
        continue;
      Workload w = workload(c.n, c.heads, c.kv_heads);
      SCOPED_TRACE(fmt::format("cp {} u {} {}", c.n, u, w.str()));
      expect_within_target(run("usp", c.n, u, w));
    }
}

TEST(StrategyMemory, AllgatherHoldsTheGatheredBlocks) {
  for (const auto& c : kCases) {
    Workload w = workload(c.n, c.heads, c.kv_heads);
    SCOPED_TRACE(fmt::format("cp {} {}", c.n, w.str()));
    const Io io = io_of(w, c.n);
    for (const auto& rk : run("allgather", c.n, 0, w).ranks) {
      EXPECT_EQ(rk.minimum_memory_bytes, io.bytes() + c.n * io.kv_elems * kBf16);
      EXPECT_EQ(rk.peak_memory_bytes, rk.minimum_memory_bytes);
    }
  }
}

}  // namespace
}  // namespace cpb
