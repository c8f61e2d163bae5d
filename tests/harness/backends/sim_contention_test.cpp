// Power and SM sharing in the sim (harness/backends/sim/contention.hpp) against values worked out
// by hand: the sustained-load slowdown's interpolation over time and duty, an attention op
// slowed by its rank's duty and the load's time, a transfer stretched by the share of it that
// ran beside attention, and a profile without either effect leaving the timeline as it was.
#include <gtest/gtest.h>

#include "harness/backends/sim/contention.hpp"

namespace cpb::sim {
namespace {

HardwareProfile profile(double comm_share, std::vector<SustainedCurve> sustained) {
  HardwareProfile p;
  p.name = "t";
  p.comm_share_factor = comm_share;
  p.sustained = std::move(sustained);
  return p;
}

SustainedCurve curve(double duty, std::vector<double> t, std::vector<double> s,
                     int64_t tokens = 0) {
  SustainedCurve c;
  c.duty = duty;
  c.tokens = tokens;
  c.slowdown.x = std::move(t);
  c.slowdown.y = std::move(s);
  return c;
}

SimOp op(Stream s, OpKind k, double d, std::vector<Transfer> t = {}) {
  SimOp o;
  o.stream = s;
  o.kind = k;
  o.duration_s = d;
  o.transfers = std::move(t);
  return o;
}

TEST(SimContention, SlowdownIsLinearInTimeAndDutyAndHeldOutside) {
  const HardwareProfile p =
      profile(1, {curve(0.5, {0, 1}, {1.0, 1.1}), curve(1, {0, 1}, {1.0, 1.3})});
  EXPECT_DOUBLE_EQ(sustained_slowdown(p, 1, 0, 1), 1.0);
  EXPECT_DOUBLE_EQ(sustained_slowdown(p, 1, 0.5, 1), 1.15);
  EXPECT_DOUBLE_EQ(sustained_slowdown(p, 1, 7, 1), 1.3);      // held after the last time
  EXPECT_DOUBLE_EQ(sustained_slowdown(p, 0.75, 1, 1), 1.2);   // between the duties
  EXPECT_DOUBLE_EQ(sustained_slowdown(p, 0.25, 1, 1), 1.05);  // towards 1 at duty 0
  EXPECT_DOUBLE_EQ(sustained_slowdown(p, 0, 1, 1), 1.0);
  EXPECT_DOUBLE_EQ(sustained_slowdown(profile(1, {}), 1, 1, 1), 1.0);
}

TEST(SimContention, SlowdownIsLinearInLogBlockSizeAndHeldBeyond) {
  // 1K blocks slow by 1.2, 4K blocks by 1.1 (duty 1); sorted by tokens as the parser keeps them.
  const HardwareProfile p = profile(1, {curve(1, {0}, {1.2}, 1024), curve(1, {0}, {1.1}, 4096)});
  EXPECT_DOUBLE_EQ(sustained_slowdown(p, 1, 3, 1024), 1.2);
  EXPECT_DOUBLE_EQ(sustained_slowdown(p, 1, 3, 2048), 1.15);  // halfway in log2
  EXPECT_DOUBLE_EQ(sustained_slowdown(p, 1, 3, 16), 1.2);
  EXPECT_DOUBLE_EQ(sustained_slowdown(p, 1, 3, 65536), 1.1);
  EXPECT_DOUBLE_EQ(sustained_slowdown(p, 0.5, 3, 4096), 1.05);
}

TEST(SimContention, AttentionSlowsWithDutyAndTheLoadsTime) {
  // One rank busy with attention all the time (duty 1): flat slowdown 1.2 once 1 s in.
  const HardwareProfile p = profile(1, {curve(1, {0, 1}, {1.0, 1.2})});
  RankProgram r;
  r.ops = {op(Stream::compute, OpKind::attention, 0.5),
           op(Stream::compute, OpKind::attention, 0.5)};
  auto cold = simulate_with_contention({r}, p, 0);
  ASSERT_TRUE(cold.ok()) << cold.error().str();
  auto hot = simulate_with_contention({r}, p, 5);
  ASSERT_TRUE(hot.ok()) << hot.error().str();
  EXPECT_NEAR(hot->end_s, 1.2, 1e-12);
  // From a cool start: the mean of 1 + 0.2 t over the span, the span itself growing.
  EXPECT_GT(cold->end_s, 1.05);
  EXPECT_LT(cold->end_s, 1.12);
  // 1 s of attention in a 2.2 s iteration (the rest waits for a copy on the other stream): duty
  // 1 / 2.2, so that share of the slowdown; the second play takes the duty of the first.
  RankProgram w;
  w.ops = {op(Stream::compute, OpKind::attention, 1.0), op(Stream::comm, OpKind::copy, 2.2)};
  w.events = {{Stream::comm, 1}};
  SimOp after = op(Stream::compute, OpKind::copy, 0);
  after.waits = {0};
  w.ops.push_back(after);
  auto half = simulate_with_contention({w}, p, 5);
  ASSERT_TRUE(half.ok()) << half.error().str();
  const double first = 1 + 0.2 * (1.0 / 2.2), second = 1 + 0.2 * (first / 2.2);
  EXPECT_NEAR(half->ops[0][0].end_s - half->ops[0][0].begin_s, second, 1e-12);
}

TEST(SimContention, TransfersStretchForTheShareBesideAttention) {
  // Two ranks exchange 1 s transfers; rank 0 computes for 0.5 s beside its transfer, rank 1 not.
  const HardwareProfile p = profile(1.5, {});
  RankProgram r0, r1;
  r0.ops = {op(Stream::comm, OpKind::p2p, 1.0, {{1, true, 8}, {1, false, 8}}),
            op(Stream::compute, OpKind::attention, 0.5)};
  r1.ops = {op(Stream::comm, OpKind::p2p, 1.0, {{0, true, 8}, {0, false, 8}})};
  auto tl = simulate_with_contention({r0, r1}, p, 0);
  ASSERT_TRUE(tl.ok()) << tl.error().str();
  // Half of rank 0's transfer ran beside attention in the first play: 1 + 0.5 x 0.5. Its share
  // stays 0.5 / 1.25 = 0.4 in the second play: 1 + 0.5 x 0.4 = 1.2.
  EXPECT_NEAR(tl->ops[0][0].end_s, 1.2, 1e-12);
  EXPECT_NEAR(tl->ops[1][0].end_s, 1.0, 1e-12);
  // Neither effect: the plain timeline.
  auto plain = simulate_with_contention({r0, r1}, profile(1, {}), 3);
  ASSERT_TRUE(plain.ok());
  EXPECT_NEAR(plain->end_s, 1.0, 1e-12);
}

}  // namespace
}  // namespace cpb::sim
