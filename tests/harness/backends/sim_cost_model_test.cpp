// The sim cost model (harness/backends/sim/cost_model.hpp) against hand-computed values: the
// curves' interpolation inside, below and above the measured sizes, the attention table's
// exact points, log-space blend, clamping and nearest head_dim, and the cost of each op kind on
// tests/data/profiles/sim_round_numbers.yaml (round numbers, so the expected seconds are
// written from the schema's formulas).
#include <gtest/gtest.h>

#include <cmath>

#include "harness/backends/sim/cost_model.hpp"

namespace cpb::sim {
namespace {

const std::string kRound = std::string(CPBENCH_TEST_DATA) + "/profiles/sim_round_numbers.yaml";

CostModel round_model() {
  auto p = load_hardware_profile(kRound);
  EXPECT_TRUE(p.ok()) << p.error().message;
  return CostModel(p.ok() ? *p : HardwareProfile{});
}

TEST(SimInterpolation, TimeCurveIsPiecewiseLinearWithLatencyFloorAndLastSlope) {
  ProfileCurve c{{100, 200, 400}, {10, 20, 60}};
  EXPECT_DOUBLE_EQ(interpolate_time(c, 150), 15);
  EXPECT_DOUBLE_EQ(interpolate_time(c, 300), 40);
  EXPECT_DOUBLE_EQ(interpolate_time(c, 200), 20);
  EXPECT_DOUBLE_EQ(interpolate_time(c, 10), 10);    // below: the smallest size's time
  EXPECT_DOUBLE_EQ(interpolate_time(c, 600), 100);  // above: the last segment's slope (0.2/B)
  ProfileCurve one{{100}, {10}};
  EXPECT_DOUBLE_EQ(interpolate_time(one, 300), 30);  // one point: proportional above it
  EXPECT_DOUBLE_EQ(interpolate_time(one, 50), 10);
}

TEST(SimInterpolation, ThroughputCurveIsLinearInLogBytesAndClamped) {
  ProfileCurve c{{1024, 4096}, {100, 300}};
  EXPECT_DOUBLE_EQ(interpolate_throughput(c, 2048), 200);  // halfway in log2
  EXPECT_DOUBLE_EQ(interpolate_throughput(c, 10), 100);
  EXPECT_DOUBLE_EQ(interpolate_throughput(c, 1 << 20), 300);
}

TEST(SimAttentionTable, ExactPointsBlendsAndClamps) {
  HardwareProfile p;
  p.peak_tflops = 777;
  p.attention = {{false, 128, 1, 0, 1024, 1024, 400},
                 {false, 128, 1, 0, 4096, 4096, 600},
                 {true, 128, 1, 0, 1024, 1024, 300},
                 {false, 64, 1, 0, 1024, 1024, 200}};
  CostModel m(p);
  EXPECT_DOUBLE_EQ(m.attention_tflops(false, 128, 1, 32, 1024, 1024), 400);
  EXPECT_DOUBLE_EQ(m.attention_tflops(false, 128, 1, 32, 4096, 4096), 600);
  // Equidistant in log space from both full points: their geometric mean.
  EXPECT_NEAR(m.attention_tflops(false, 128, 1, 32, 2048, 2048), std::sqrt(400.0 * 600.0), 1e-9);
  // Outside the points the rate stays within their range.
  const double far = m.attention_tflops(false, 128, 1, 32, 1 << 20, 1 << 20);
  EXPECT_GE(far, 400);
  EXPECT_LE(far, 600);
  // The causal points alone serve a causal block; the nearest head_dim's points another d.
  EXPECT_DOUBLE_EQ(m.attention_tflops(true, 128, 1, 32, 8192, 8192), 300);
  EXPECT_DOUBLE_EQ(m.attention_tflops(false, 80, 1, 32, 1024, 1024), 200);  // 80 nearer 64
  // No point for the mask: the peak.
  HardwareProfile only_full = p;
  only_full.attention.pop_back();
  only_full.attention.erase(only_full.attention.begin() + 2);
  EXPECT_DOUBLE_EQ(CostModel(only_full).attention_tflops(true, 128, 1, 32, 64, 64), 777);
  // Points that give heads are told apart by them.
  HardwareProfile heads;
  heads.attention = {{true, 128, 1, 8, 1024, 1024, 400}, {true, 128, 1, 32, 1024, 1024, 600}};
  EXPECT_DOUBLE_EQ(CostModel(heads).attention_tflops(true, 128, 1, 8, 1024, 1024), 400);
  EXPECT_DOUBLE_EQ(CostModel(heads).attention_tflops(true, 128, 1, 32, 1024, 1024), 600);
  // Between two head counts: linear in log2(heads) on a log scale (16 is halfway from 8 to 32).
  EXPECT_NEAR(CostModel(heads).attention_tflops(true, 128, 1, 16, 1024, 1024),
              std::sqrt(400.0 * 600.0), 1e-9);
  EXPECT_DOUBLE_EQ(CostModel(heads).attention_tflops(true, 128, 1, 4, 1024, 1024), 400);
  EXPECT_DOUBLE_EQ(CostModel(heads).attention_tflops(true, 128, 1, 64, 1024, 1024), 600);
  // Beside a transfer: the shared points of the mask where there are any, else the others.
  HardwareProfile modes = heads;
  AttentionPoint beside{true, 128, 1, 8, 1024, 1024, 700};
  beside.shared = true;
  modes.attention.push_back(beside);
  const CostModel mm(modes);
  EXPECT_DOUBLE_EQ(mm.attention_tflops(true, 128, 1, 8, 1024, 1024, /*shared=*/true), 700);
  EXPECT_DOUBLE_EQ(mm.attention_tflops(true, 128, 1, 8, 1024, 1024, /*shared=*/false), 400);
  modes.attention.push_back({false, 128, 1, 8, 1024, 1024, 250});
  EXPECT_DOUBLE_EQ(CostModel(modes).attention_tflops(false, 128, 1, 8, 1024, 1024, true), 250);
  // Outside the shared points' sizes (a decode block beside a transfer): the block's own points.
  AttentionPoint full_beside{false, 128, 1, 8, 1024, 1024, 900};
  full_beside.shared = true;
  modes.attention.push_back(full_beside);
  modes.attention.push_back({false, 128, 1, 8, 1, 1024, 3});
  EXPECT_DOUBLE_EQ(CostModel(modes).attention_tflops(false, 128, 1, 8, 1024, 1024, true), 900);
  EXPECT_DOUBLE_EQ(CostModel(modes).attention_tflops(false, 128, 1, 8, 1, 1024, true), 3);
  // A head_dim whose points are all shared serves blocks alone with them (no empty table).
  HardwareProfile only_shared;
  AttentionPoint s32{true, 32, 1, 8, 1024, 1024, 77};
  s32.shared = true;
  only_shared.attention = {s32};
  EXPECT_DOUBLE_EQ(CostModel(only_shared).attention_tflops(true, 32, 1, 8, 1024, 1024, false), 77);
  // A head_dim without shared points: its own points, not another head_dim's shared ones.
  modes.attention.push_back({true, 16, 1, 8, 1024, 1024, 5});
  EXPECT_DOUBLE_EQ(CostModel(modes).attention_tflops(true, 16, 1, 8, 1024, 1024, true), 5);
}

TEST(SimAttentionTable, InterpolatesBetweenTheMeasuredPointsAroundTheBlock) {
  // A full rectangle of Sq in {16, 64} x Sk in {16, 256}: bilinear in (log2 Sq, log2 Sk) on a
  // log scale. Rates chosen as 2^(a + b log2 Sq + c log2 Sk), which bilinear reproduces exactly.
  auto r = [](double q, double k) {
    return std::exp2(1 + 0.5 * std::log2(q) + 0.25 * std::log2(k));
  };
  HardwareProfile p;
  for (int64_t q : {16, 64})
    for (int64_t k : {16, 256}) p.attention.push_back({false, 16, 1, 8, q, k, r(q, k)});
  const CostModel m(p);
  EXPECT_NEAR(m.attention_tflops(false, 16, 1, 8, 32, 64), r(32, 64), 1e-9);
  EXPECT_NEAR(m.attention_tflops(false, 16, 1, 8, 30, 240), r(30, 240), 1e-9);
  EXPECT_NEAR(m.attention_tflops(false, 16, 1, 8, 16, 100), r(16, 100), 1e-9);  // on an edge
  EXPECT_DOUBLE_EQ(m.attention_tflops(false, 16, 1, 8, 64, 16), r(64, 16));     // a corner
  // Beyond the rectangle: clamped to its edge.
  EXPECT_NEAR(m.attention_tflops(false, 16, 1, 8, 30, 4096), r(30, 256), 1e-9);
  // A missing corner: the nearest points' blend instead (within the points' range).
  HardwareProfile three = p;
  three.attention.pop_back();
  const double b = CostModel(three).attention_tflops(false, 16, 1, 8, 32, 64);
  EXPECT_GE(b, r(16, 16));
  EXPECT_LE(b, r(64, 16));
  // On the diagonal: between the two squares around it, linear in log2 of the size, even where
  // no off-diagonal point exists (causal squares).
  HardwareProfile sq;
  sq.attention = {{true, 16, 1, 8, 32, 32, 2}, {true, 16, 1, 8, 128, 128, 32}};
  EXPECT_NEAR(CostModel(sq).attention_tflops(true, 16, 1, 8, 64, 64), 8, 1e-9);
  EXPECT_NEAR(CostModel(sq).attention_tflops(true, 16, 1, 8, 45, 45),
              std::exp2(1 + 4 * (std::log2(45.0) - 5) / 2), 1e-9);
}

// The TF/s `m` gives a causal block of one head of `head_dim` at (sq, sk) with offset `diag`.
double causal_rate(const CostModel& m, int64_t head_dim, int64_t sq, int64_t sk, int64_t diag) {
  OpRecord r;
  r.kind = OpKind::attention;
  r.batch = r.heads = r.kv_heads = 1;
  r.head_dim = head_dim;
  r.sq = sq;
  r.sk = sk;
  r.mask = {BlockMask::Kind::causal, diag};
  r.flops = 4.0 * static_cast<double>(head_dim * block_pairs(r.mask, sq, sk));
  auto s = m.seconds(r, 0, 1);
  EXPECT_TRUE(s.ok());
  return s.ok() ? r.flops / *s / 1e12 : 0;
}

TEST(SimCostModel, CausalBlocksPastTheDiagonalMoveToTheFullRate) {
  // Causal squares at 100 TF/s, full blocks at 400: a causal block on the diagonal pays the
  // causal rate, one whose every pair is visible the full rate, one halfway (in visible pairs
  // beyond the diagonal block's) their geometric mean.
  HardwareProfile p;
  p.attention = {{true, 64, 1, 0, 64, 64, 100}, {false, 64, 1, 0, 64, 64, 400}};
  const CostModel m(p);
  auto rate = [&](int64_t diag) { return causal_rate(m, 64, 64, 64, diag); };
  EXPECT_NEAR(rate(0), 100, 1e-9);
  EXPECT_NEAR(rate(63), 400, 1e-9);  // every pair visible: counted as full
  // In between: the weight is the share of the pairs beyond the diagonal block's that are visible.
  const double on_diag = 64.0 * 65 / 2, all = 64.0 * 64;
  for (int64_t d = 1; d < 63; ++d) {
    const double v = static_cast<double>(block_pairs({BlockMask::Kind::causal, d}, 64, 64));
    const double w = (v - on_diag) / (all - on_diag);
    EXPECT_NEAR(rate(d), std::exp(std::log(100.0) * (1 - w) + std::log(400.0) * w), 1e-6) << d;
  }
}

OpRecord attention_op(BlockMask::Kind kind, int64_t diag, bool in_flight) {
  OpRecord r;
  r.kind = OpKind::attention;
  r.batch = 1;
  r.heads = 4;
  r.kv_heads = 2;
  r.head_dim = 16;
  r.sq = 64;
  r.sk = 64;
  r.mask = {kind, diag};
  r.flops = 4.0 * 4 * 16 * static_cast<double>(block_pairs(r.mask, r.sq, r.sk));
  r.comm_in_flight = in_flight;
  return r;
}

TEST(SimCostModel, CausalBlocksWithTheirQueriesLastComeFromTheCausalRectangle) {
  // Causal points of Sq < Sk (queries last, diag = Sk - Sq) beside the squares: such a block
  // is read from them; one with more visible pairs moves from there to the full rate.
  HardwareProfile p;
  p.attention = {{true, 16, 1, 0, 32, 32, 1},   {true, 16, 1, 0, 32, 128, 3},
                 {true, 16, 1, 0, 128, 128, 4}, {false, 16, 1, 0, 32, 128, 8},
                 {false, 16, 1, 0, 32, 32, 2},  {false, 16, 1, 0, 128, 128, 16}};
  const CostModel m(p);
  auto rate = [&](int64_t diag) { return causal_rate(m, 16, 32, 128, diag); };
  EXPECT_NEAR(rate(96), 3, 1e-9);  // the measured block
  EXPECT_NEAR(rate(40), 3, 1e-9);  // fewer pairs visible: that block's rate
  const double ref = static_cast<double>(block_pairs({BlockMask::Kind::causal, 96}, 32, 128));
  const double v = static_cast<double>(block_pairs({BlockMask::Kind::causal, 110}, 32, 128));
  const double w = (v - ref) / (32.0 * 128 - ref);
  EXPECT_NEAR(rate(110), std::exp(std::log(3.0) * (1 - w) + std::log(8.0) * w), 1e-6);
  // Without the rectangle (squares only), the same block is measured from the diagonal.
  HardwareProfile squares = p;
  std::erase_if(squares.attention, [](const AttentionPoint& a) { return a.causal && a.sq < a.sk; });
  const double on_diag = static_cast<double>(block_pairs({BlockMask::Kind::causal, 0}, 32, 128));
  const double w0 = (ref - on_diag) / (32.0 * 128 - on_diag);
  const double causal = CostModel(squares).attention_tflops(true, 16, 1, 1, 32, 128);
  EXPECT_NEAR(causal_rate(CostModel(squares), 16, 32, 128, 96),
              std::exp(std::log(causal) * (1 - w0) + std::log(8.0) * w0), 1e-6);
}

TEST(SimCostModel, BlocksReadingFreshKvUseTheWarmPoints) {
  // Cold and warm points of one family: an op whose K/V an earlier op wrote (kv_fresh) pays the
  // warm rate inside the warm points' sizes, the cold one outside them and when not fresh.
  HardwareProfile p;
  p.attention = {{false, 16, 1, 0, 16, 16, 1},
                 {false, 16, 1, 0, 1024, 1024, 2},
                 {false, 16, 1, 0, 16, 16, 3},
                 {false, 16, 1, 0, 256, 256, 6}};
  p.attention[2].warm = p.attention[3].warm = true;
  const CostModel m(p);
  EXPECT_DOUBLE_EQ(m.attention_tflops(false, 16, 1, 0, 16, 16, false, false), 1);
  EXPECT_DOUBLE_EQ(m.attention_tflops(false, 16, 1, 0, 16, 16, false, true), 3);
  EXPECT_DOUBLE_EQ(m.attention_tflops(false, 16, 1, 0, 256, 256, false, true), 6);
  EXPECT_DOUBLE_EQ(m.attention_tflops(false, 16, 1, 0, 1024, 1024, false, true), 2);
  OpRecord r = attention_op(BlockMask::Kind::full, 0, false);
  r.sq = r.sk = 16;
  r.heads = r.kv_heads = 1;
  r.flops = 4.0 * 16 * 16 * 16;
  auto cold = m.seconds(r, 0, 1);
  r.kv_fresh = true;
  auto warm = m.seconds(r, 0, 1);
  ASSERT_TRUE(cold.ok() && warm.ok());
  EXPECT_NEAR(*cold / *warm, 3, 1e-9);
  // A family without warm points prices fresh blocks from its cold ones.
  HardwareProfile cold_only;
  cold_only.attention = {p.attention[0]};
  EXPECT_DOUBLE_EQ(CostModel(cold_only).attention_tflops(false, 16, 1, 0, 16, 16, false, true), 1);
}

TEST(SimCostModel, EveryOpKindOnRoundNumbers) {
  const CostModel m = round_model();
  const double launch = 2e-6;
  auto secs = [&](const OpRecord& r, int rank = 0, int world = 4) {
    auto s = m.seconds(r, rank, world);
    EXPECT_TRUE(s.ok()) << s.error().message;
    return s.ok() ? *s : -1.0;
  };
  // Full 64 x 64 block, 4 heads, d 16: 4*4*16*4096 FLOPs at 100 TF/s.
  const double full_flops = 4.0 * 4 * 16 * 4096;
  EXPECT_NEAR(secs(attention_op(BlockMask::Kind::full, 0, false)), launch + full_flops / 100e12,
              1e-18);
  // With a transfer in flight beside it: x share_factor 1.5.
  EXPECT_NEAR(secs(attention_op(BlockMask::Kind::full, 0, true)),
              launch + 1.5 * full_flops / 100e12, 1e-18);
  // Causal diag 0: 64*65/2 visible pairs at the causal 50 TF/s.
  EXPECT_NEAR(secs(attention_op(BlockMask::Kind::causal, 0, false)),
              launch + 4.0 * 4 * 16 * 2080 / 50e12, 1e-18);
  // A causal mask that hides nothing is a full block.
  EXPECT_NEAR(secs(attention_op(BlockMask::Kind::causal, 63, false)), launch + full_flops / 100e12,
              1e-18);
  // Nothing visible: the launch alone.
  EXPECT_DOUBLE_EQ(secs(attention_op(BlockMask::Kind::none, 0, false)), launch);

  OpRecord merge;
  merge.kind = OpKind::merge;
  merge.mem_bytes = 5000;
  EXPECT_NEAR(secs(merge), launch + 5000 / 50e9, 1e-18);
  OpRecord copy;
  copy.kind = OpKind::copy;
  copy.mem_bytes = 5000;
  EXPECT_NEAR(secs(copy), launch + 5000 / 100e9, 1e-18);
  copy.kind = OpKind::reset;
  EXPECT_NEAR(secs(copy), launch + 5000 / 100e9, 1e-18);

  // Transfers: 1 ns per byte sent (the curve through (1000 B, 1 us) and (2000 B, 2 us)).
  OpRecord p2p;
  p2p.kind = OpKind::p2p;
  p2p.stream = Stream::comm;
  p2p.bytes_sent = 3000;
  p2p.bytes_recv = 5000;  // the larger direction counts
  p2p.transfers = {{1, true, 3000}, {3, false, 5000}};
  EXPECT_NEAR(secs(p2p), launch + 5000e-9, 1e-15);
  OpRecord a2a = p2p;
  a2a.kind = OpKind::all_to_all;
  a2a.bytes_sent = 1500;
  EXPECT_NEAR(secs(a2a), launch + 1500e-9, 1e-15);
  OpRecord ag;
  ag.kind = OpKind::all_gather;
  ag.stream = Stream::comm;
  ag.bytes_sent = 1200;
  EXPECT_NEAR(secs(ag), launch + 1200e-9, 1e-15);
  ag.bytes_sent = 0;
  EXPECT_DOUBLE_EQ(secs(ag), launch);
}

TEST(SimCostModel, ProfilesWithoutTablesUseCAndBW) {
  HardwareProfile p;
  p.peak_tflops = 200;
  p.bandwidth_gbps = 50;
  CostModel m(p);
  OpRecord a = attention_op(BlockMask::Kind::full, 0, false);
  EXPECT_NEAR(*m.seconds(a, 0, 2), a.flops / 200e12, 1e-18);
  OpRecord t;
  t.kind = OpKind::p2p;
  t.bytes_sent = 1'000'000;
  t.transfers = {{1, true, 1'000'000}};
  EXPECT_NEAR(*m.seconds(t, 0, 2), 1e6 / 50e9, 1e-15);
  OpRecord c;
  c.kind = OpKind::merge;
  c.mem_bytes = 1 << 20;
  EXPECT_DOUBLE_EQ(*m.seconds(c, 0, 2), 0);  // no copy or merge table: nothing but launch_us
}

// The host's issue time: the kind's issue_us, plus an event record and wait per wait; nothing
// for a kind the profile leaves out, nor without issue_us. A run of R ranks takes the kinds that
// issue_us_ranks gives for R from there, the others from issue_us.
TEST(SimCostModel, IssueTimeComesFromTheProfilesIssueCosts) {
  HardwareProfile p;
  p.peak_tflops = 200;
  p.bandwidth_gbps = 50;
  OpRecord a = attention_op(BlockMask::Kind::full, 0, false);
  a.waits = {0, 3};
  EXPECT_DOUBLE_EQ(CostModel(p).issue_seconds(a, 4), 0);
  p.issue_us = {{"attention", 5}, {"event", 0.5}};
  p.issue_us_ranks[2] = {{"attention", 3}, {"p2p", 7}};
  CostModel m(p);
  EXPECT_NEAR(m.issue_seconds(a, 4), (5 + 2 * 2 * 0.5) * 1e-6, 1e-18);
  EXPECT_NEAR(m.issue_seconds(a, 2), (3 + 2 * 2 * 0.5) * 1e-6, 1e-18);
  OpRecord t;
  t.kind = OpKind::p2p;
  EXPECT_DOUBLE_EQ(m.issue_seconds(t, 4), 0);
  EXPECT_NEAR(m.issue_seconds(t, 2), 7e-6, 1e-18);
}

TEST(SimCostModel, LinkClassFollowsTheTopologyAndMissingLinksAreErrors) {
  HardwareProfile p = *load_hardware_profile(kRound);
  p.gpus_per_node = 2;  // ranks {0,1} and {2,3}
  CostModel m(p);
  EXPECT_EQ(m.link_class(0, {1}), "nvlink");
  EXPECT_EQ(m.link_class(1, {2}), "rdma");
  OpRecord t;
  t.kind = OpKind::p2p;
  t.bytes_sent = 1000;
  t.transfers = {{2, true, 1000}};
  auto s = m.seconds(t, 1, 4);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("links.rdma: missing"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("sim_round_numbers.yaml"), std::string::npos);
  // An all-gather spans every rank, so it crosses nodes.
  OpRecord ag;
  ag.kind = OpKind::all_gather;
  ag.bytes_sent = 1000;
  EXPECT_FALSE(m.seconds(ag, 0, 4).ok());
  EXPECT_TRUE(m.seconds(ag, 0, 2).ok());
  // A link class without the op's curve.
  p.links["rdma"].ranks = 4;
  p.links["rdma"].sendrecv = {{1000}, {1e-6}};
  auto a2a = CostModel(p).seconds(
      [] {
        OpRecord r;
        r.kind = OpKind::all_to_all;
        r.bytes_sent = 1000;
        r.transfers = {{3, true, 1000}};
        return r;
      }(),
      0, 4);
  ASSERT_FALSE(a2a.ok());
  EXPECT_NE(a2a.error().message.find("links.rdma.all_to_all: missing"), std::string::npos)
      << a2a.error().message;
}

}  // namespace
}  // namespace cpb::sim
