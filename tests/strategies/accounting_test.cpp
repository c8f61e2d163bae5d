// Accounting against closed forms: bytes per rank per phase and mask-aware FLOPs.
//  - ring_pass_kv sends and receives (N-1) x the local packed K+V block per rank;
//  - allgather receives (N-1) blocks per rank;
//  - summed over ranks, attention FLOPs equal the workload's mask-aware FLOPs, for every
//    strategy, layout and phase;
//  - zigzag gives every rank the same FLOPs in every ring step (contiguous does not);
//  - coalescing (query segment x key segment) blocks into fewer launches keeps every rank's
//    FLOPs of every step.
#include <gtest/gtest.h>

#include "harness/runner/runner.hpp"
#include "strategies/common.hpp"

namespace cpb {
namespace {

ExecResult run(const std::string& strategy, LayoutKind layout, int n, const Workload& w) {
  ExecSpec spec;
  spec.strategy = strategy;
  spec.layout = layout;
  spec.cp = n;
  spec.workload = w;
  spec.verify = false;
  auto res = execute_point(spec);
  EXPECT_TRUE(res.ok()) << res.error().detail();
  return std::move(res).value();
}

Workload gqa_workload(int64_t T, int64_t P) {
  return Workload{.batch = 2, .heads = 8, .kv_heads = 2, .head_dim = 16, .dtype = DType::bf16,
                  .mask = MaskKind::causal, .new_tokens = T, .cached_tokens = P};
}

TEST(Accounting, RingPassKvSendsNMinus1LocalKvBlocks) {
  for (int n : {1, 2, 3, 4, 5, 8}) {
    Workload w = gqa_workload(4 * n, 6 * n);
    // Local K+V of one rank: 2 (K and V) x B x tokens x Hkv x d x 2 bytes (bf16). GQA: only
    // Hkv heads travel, never the H repeated ones.
    const int64_t local = 2 * w.batch * (w.context() / n) * w.kv_heads * w.head_dim * 2;
    ExecResult r = run("ring_pass_kv", LayoutKind::zigzag, n, w);
    for (const auto& rank : r.ranks) {
      auto it = rank.accounting.phases.find("ring_kv");
      if (n == 1) {
        EXPECT_EQ(it, rank.accounting.phases.end());
        continue;
      }
      ASSERT_NE(it, rank.accounting.phases.end());
      EXPECT_EQ(it->second.bytes_sent, (n - 1) * local);
      EXPECT_EQ(it->second.bytes_recv, (n - 1) * local);
      EXPECT_EQ(it->second.ops, n - 1);
    }
  }
}

TEST(Accounting, AllGatherReceivesNMinus1Blocks) {
  for (int n : {2, 3, 5}) {
    Workload w = gqa_workload(2 * n, 0);
    const int64_t local = 2 * w.batch * (w.context() / n) * w.kv_heads * w.head_dim * 2;
    ExecResult r = run("allgather", LayoutKind::striped, n, w);
    for (const auto& rank : r.ranks) {
      const auto& c = rank.accounting.phases.at("kv_all_gather");
      EXPECT_EQ(c.bytes_recv, (n - 1) * local);
      EXPECT_EQ(c.bytes_sent, (n - 1) * local);
    }
  }
}

TEST(Accounting, FlopsSumToTheWorkloadsMaskAwareFlops) {
  for (const auto& strategy : strategy_names())
    for (LayoutKind layout : {LayoutKind::contiguous, LayoutKind::zigzag, LayoutKind::striped})
      for (MaskKind mask : {MaskKind::causal, MaskKind::full})
        for (int n : {1, 3, 4})
          for (int64_t P : {0, 7, 40}) {
            Workload w = gqa_workload(6 * n, P);
            w.mask = mask;
            // Strategies with head limits (ulysses: 8 heads over 3 ranks) refuse some points.
            if (!check_point({.strategy = strategy, .layout = layout, .cp = n, .workload = w}).ok())
              continue;
            ExecResult r = run(strategy, layout, n, w);
            double total = 0;
            for (const auto& rank : r.ranks) total += rank.accounting.total().flops;
            EXPECT_DOUBLE_EQ(total, workload_flops(w))
                << strategy << " " << to_string(layout) << " n=" << n << " P=" << P;
          }
  // The closed form itself: causal full prefill counts S(S+1)/2 pairs.
  Workload w = gqa_workload(10, 0);
  EXPECT_DOUBLE_EQ(workload_flops(w), 4.0 * 2 * 8 * 16 * (10 * 11 / 2));
}

double step_flops(const RankReport& r, int step) { return r.accounting.step_flops(step); }

TEST(Accounting, ZigzagBalancesEveryRingStep) {
  for (int n : {2, 3, 4, 5, 8}) {
    Workload w = gqa_workload(4 * n, 0);
    ExecResult zz = run("ring_pass_kv", LayoutKind::zigzag, n, w);
    ExecResult ct = run("ring_pass_kv", LayoutKind::contiguous, n, w);
    bool contiguous_unbalanced = false;
    for (int step = 0; step < n; ++step) {
      for (int r = 1; r < n; ++r) {
        EXPECT_DOUBLE_EQ(step_flops(zz.ranks[r], step), step_flops(zz.ranks[0], step))
            << "n=" << n << " step=" << step << " rank=" << r;
        if (step_flops(ct.ranks[r], step) != step_flops(ct.ranks[0], step))
          contiguous_unbalanced = true;
      }
    }
    EXPECT_TRUE(contiguous_unbalanced) << "contiguous causal ring should be unbalanced, n=" << n;
  }
}

// attend_segments coalesces blocks (coalesce_test.cpp has the rule): a zigzag ring_pass_kv rank
// issues N attention launches, one per step (step 0 is one causal block over its two chunks),
// where one per visible (query segment, key segment) pair made 2N + 1 under a causal mask and
// 4N under a full one; the FLOPs of each rank and step stay those of the uncoalesced pairs.
TEST(Accounting, CoalescedLaunchesKeepEveryStepsFlops) {
  for (MaskKind mask : {MaskKind::causal, MaskKind::full})
    for (int n : {1, 2, 3, 4, 5}) {
      Workload w = gqa_workload(4 * n, 0);
      w.mask = mask;
      auto pl = Placement::make(w, LayoutKind::zigzag, n);
      ASSERT_TRUE(pl.ok()) << pl.error().str();
      ExecResult r = run("ring_pass_kv", LayoutKind::zigzag, n, w);
      for (int rank = 0; rank < n; ++rank) {
        EXPECT_EQ(r.ranks[rank].accounting.phases.at("attention").ops, n)
            << to_string(mask) << " n=" << n << " rank=" << rank;
        for (int step = 0; step < n; ++step) {
          double pairs = 0;
          for (const Segment& qs : pl->q_segments(rank))
            for (const Segment& ks : pl->kv_segments((rank - step + n) % n)) {
              auto m = block_mask(mask, qs, ks);
              ASSERT_TRUE(m.ok()) << m.error().str();
              pairs += static_cast<double>(block_pairs(*m, qs.count, ks.count));
            }
          EXPECT_DOUBLE_EQ(step_flops(r.ranks[rank], step),
                           4.0 * w.batch * w.heads * w.head_dim * pairs)
              << to_string(mask) << " n=" << n << " rank=" << rank << " step=" << step;
        }
      }
    }
}

TEST(Accounting, PeakMemoryCountsInputsAndRingBuffers) {
  Workload w = gqa_workload(8, 0);
  ExecResult r = run("ring_pass_kv", LayoutKind::zigzag, 4, w);
  const int64_t kv_block = packed_kv_elems(w, 2) * 2;                // bf16
  const int64_t q = w.batch * 2 * w.heads * w.head_dim * 2;           // bf16
  const int64_t o = w.batch * 2 * w.heads * w.head_dim * 4;           // fp32
  const int64_t lse = w.batch * 2 * w.heads * 4;
  for (const auto& rank : r.ranks) EXPECT_EQ(rank.peak_memory_bytes, q + o + lse + 3 * kv_block);
}

}  // namespace
}  // namespace cpb

namespace cpb {
namespace {

// pass-Q (prefill): N-1 ring steps each send the local Q block; the all-to-all sends every other
// rank the fp32 partial (O and LSE) of its queries and receives N-1 partials of the local ones.
TEST(Accounting, RingPassQSendsQBlocksAndPartials) {
  for (int n : {2, 3, 4, 5}) {
    Workload w = gqa_workload(4 * n, 10 * n + 3);
    ExecResult r = run("ring_pass_q", LayoutKind::zigzag, n, w);
    const int64_t rows = w.batch * (w.new_tokens / n) * w.heads;
    for (const auto& rank : r.ranks) {
      const auto& ring = rank.accounting.phases.at("ring_q");
      EXPECT_EQ(ring.bytes_sent, (n - 1) * rows * w.head_dim * 2);
      EXPECT_EQ(ring.bytes_recv, (n - 1) * rows * w.head_dim * 2);
      const auto& a2a = rank.accounting.phases.at("a2a_partials");
      EXPECT_EQ(a2a.bytes_sent, (n - 1) * rows * (w.head_dim + 1) * 4);
      EXPECT_EQ(a2a.bytes_recv, (n - 1) * rows * (w.head_dim + 1) * 4);
      // K and V never move.
      EXPECT_EQ(rank.accounting.phases.count("ring_kv"), 0u);
    }
  }
}

// Eq. 1 of Yang et al.: passing Q moves fewer ring bytes than passing K and V exactly when
// T / (T + P) < 2 Hkv / H (here 2 * 2 / 8 = 50%).
TEST(Accounting, PassQMovesFewerRingBytesBelowTheEq1MissRate) {
  const int n = 4;
  for (auto [T, P] : {std::pair<int64_t, int64_t>{8, 200}, {32, 8}}) {
    Workload w = gqa_workload(T, P);
    const int64_t q = run("ring_pass_q", LayoutKind::zigzag, n, w).ranks[0].accounting.phases.at("ring_q").bytes_sent;
    const int64_t kv = run("ring_pass_kv", LayoutKind::zigzag, n, w).ranks[0].accounting.phases.at("ring_kv").bytes_sent;
    EXPECT_EQ(q < kv, w.miss_rate() < 2.0 * w.kv_heads / w.heads) << "T=" << T << " P=" << P;
  }
}

}  // namespace
}  // namespace cpb

namespace cpb {
namespace {

// Collectives record their group: a USP all-to-all runs inside u ranks, not N, which sets the
// algbw factor g/(g-1) of its record.
TEST(Accounting, CollectivesRecordTheirGroupSize) {
  Workload w = gqa_workload(16, 0);
  ExecSpec usp{.strategy = "usp", .layout = LayoutKind::zigzag, .cp = 4, .workload = w};
  usp.options.ulysses = 2;
  usp.verify = false;
  auto r = execute_point(usp);
  ASSERT_TRUE(r.ok()) << r.error().detail();
  EXPECT_EQ(r->ranks[0].accounting.phases.at("a2a_q").participants, 2);
  EXPECT_EQ(r->ranks[0].accounting.phases.at("ring_kv").participants, 0);
  ExecResult ag = run("allgather", LayoutKind::zigzag, 3, gqa_workload(12, 0));
  EXPECT_EQ(ag.ranks[1].accounting.phases.at("kv_all_gather").participants, 3);
}

TEST(Accounting, AttentionKnowsWhetherItsKvWereWrittenThisIteration) {
  // The ring's first step reads the rank's own K/V (inputs from before the iteration); every
  // later step reads what the previous sendrecv received. The all-gather's block reads the
  // gathered K/V; at cp 1 nothing is written before the block.
  for (int n : {1, 3}) {
    ExecResult r = run("ring_pass_kv", LayoutKind::zigzag, n, gqa_workload(4 * n, 0));
    for (const auto& rank : r.ranks) {
      int fresh = 0, stale = 0;
      for (const auto& op : rank.accounting.log) {
        if (op.kind != OpKind::attention) continue;
        EXPECT_EQ(op.kv_fresh, op.step > 0) << "step " << op.step;
        (op.kv_fresh ? fresh : stale) += 1;
      }
      EXPECT_GT(stale, 0);
      EXPECT_EQ(fresh > 0, n > 1);
    }
  }
  ExecResult ag = run("allgather", LayoutKind::contiguous, 3, gqa_workload(12, 0));
  for (const auto& rank : ag.ranks)
    for (const auto& op : rank.accounting.log)
      if (op.kind == OpKind::attention) EXPECT_TRUE(op.kv_fresh);
}

}  // namespace
}  // namespace cpb
