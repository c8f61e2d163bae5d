// The sim timing engine against timelines worked out by hand: stream order, events, overlap of
// compute with a transfer, peers that are late, collectives, a double-buffered ring, and the
// programs that can never finish.
#include <gtest/gtest.h>

#include "harness/backends/sim/engine.hpp"
#include "harness/runner/runner.hpp"

namespace cpb::sim {
namespace {

SimOp compute(double d, std::vector<int> waits = {}) {
  SimOp o;
  o.stream = Stream::compute;
  o.kind = OpKind::attention;
  o.duration_s = d;
  o.waits = std::move(waits);
  return o;
}

SimOp comm_copy(double d) {
  SimOp o;
  o.stream = Stream::comm;
  o.kind = OpKind::copy;
  o.duration_s = d;
  return o;
}

SimOp exchange(double d, std::vector<Transfer> t, std::vector<int> waits = {}) {
  SimOp o;
  o.stream = Stream::comm;
  o.kind = OpKind::p2p;
  o.duration_s = d;
  o.transfers = std::move(t);
  o.waits = std::move(waits);
  return o;
}

TEST(SimEngine, OneStreamRunsInOrderAndStreamsOverlap) {
  RankProgram p;
  p.ops = {compute(2), compute(3)};
  SimOp c;
  c.stream = Stream::comm;
  c.kind = OpKind::copy;
  c.duration_s = 4;
  p.ops.push_back(c);
  auto tl = simulate({p});
  ASSERT_TRUE(tl.ok()) << tl.error().str();
  EXPECT_DOUBLE_EQ(tl->ops[0][1].begin_s, 2);
  EXPECT_DOUBLE_EQ(tl->ops[0][1].end_s, 5);
  EXPECT_DOUBLE_EQ(tl->ops[0][2].begin_s, 0);  // the other stream does not wait
  EXPECT_DOUBLE_EQ(tl->end_s, 5);
}

// The host issues a rank's ops one after the other: short ops issued slowly leave the GPU idle
// (each starts when its issue ends), long ones hide the issue of those behind them.
TEST(SimEngine, AnOpStartsNoEarlierThanItsIssue) {
  RankProgram p;
  p.ops = {compute(1), compute(1), compute(1)};
  for (auto& o : p.ops) o.issue_s = 5;
  auto tl = simulate({p});
  ASSERT_TRUE(tl.ok()) << tl.error().str();
  EXPECT_DOUBLE_EQ(tl->ops[0][0].begin_s, 5);
  EXPECT_DOUBLE_EQ(tl->ops[0][1].begin_s, 10);
  EXPECT_DOUBLE_EQ(tl->ops[0][2].begin_s, 15);
  EXPECT_DOUBLE_EQ(tl->end_s, 16);
  for (auto& o : p.ops) o.duration_s = 20;  // GPU-bound: issue hidden after the first op
  tl = simulate({p});
  ASSERT_TRUE(tl.ok()) << tl.error().str();
  EXPECT_DOUBLE_EQ(tl->end_s, 5 + 3 * 20);
  // The other stream's op is issued after the compute ops before it, whatever its stream.
  SimOp c;
  c.stream = Stream::comm;
  c.kind = OpKind::copy;
  c.duration_s = 1;
  c.issue_s = 2;
  p.ops.push_back(c);
  tl = simulate({p});
  ASSERT_TRUE(tl.ok()) << tl.error().str();
  EXPECT_DOUBLE_EQ(tl->ops[0][3].begin_s, 17);
  p.ops[1].issue_s = -1;
  EXPECT_FALSE(simulate({p}).ok());
}

// A host head start (the GPU busy with the timer's L2 flush while the host issues): the issue
// of the first ops is hidden up to the lead; the time still counts from the GPU's time 0.
TEST(SimEngine, AHostLeadHidesTheFirstIssues) {
  RankProgram p;
  p.ops = {compute(1), compute(1), compute(1)};
  for (auto& o : p.ops) o.issue_s = 5;
  p.host_lead_s = 12;  // issues end at -7, -2, 3
  auto tl = simulate({p});
  ASSERT_TRUE(tl.ok()) << tl.error().str();
  EXPECT_DOUBLE_EQ(tl->ops[0][0].begin_s, 0);
  EXPECT_DOUBLE_EQ(tl->ops[0][1].begin_s, 1);
  EXPECT_DOUBLE_EQ(tl->ops[0][2].begin_s, 3);
  EXPECT_DOUBLE_EQ(tl->end_s, 4);
}

TEST(SimEngine, EventsOrderStreams) {
  // comm op 0 (4 s), event 0 after it; compute waits on it: starts at 4. Event 1 is recorded on
  // the idle compute stream before any op: a wait on it costs nothing.
  RankProgram p;
  p.ops = {comm_copy(4), compute(1, {0, 1})};
  p.events = {{Stream::comm, 0}, {Stream::compute, -1}};
  auto tl = simulate({p});
  ASSERT_TRUE(tl.ok()) << tl.error().str();
  EXPECT_DOUBLE_EQ(tl->ops[0][1].begin_s, 4);
  EXPECT_DOUBLE_EQ(tl->end_s, 5);
}

TEST(SimEngine, ACrossStreamWaitCostsWaitS) {
  // Comm op 0 (4 s), event 0 after it; compute op 1 waits on it: starts wait_s late. Compute op
  // 2 waits on event 1, recorded after op 1 on its own stream: stream order, no latency.
  RankProgram p;
  p.ops = {comm_copy(4), compute(1, {0}), compute(1, {1})};
  p.events = {{Stream::comm, 0}, {Stream::compute, 1}};
  p.wait_s = 0.5;
  auto tl = simulate({p});
  ASSERT_TRUE(tl.ok()) << tl.error().str();
  EXPECT_DOUBLE_EQ(tl->ops[0][1].begin_s, 4.5);
  EXPECT_DOUBLE_EQ(tl->ops[0][2].begin_s, 5.5);
  EXPECT_DOUBLE_EQ(tl->end_s, 6.5);
}

TEST(SimEngine, TransfersWaitForTheLatePeer) {
  // Rank 1's exchange waits (event) for a 10 s compute op; rank 0 is ready at 0 but its transfer
  // only starts when rank 1's is ready.
  RankProgram a, b;
  a.ops = {exchange(2, {{1, true, 8}, {1, false, 8}})};
  b.ops = {compute(10), exchange(2, {{0, true, 8}, {0, false, 8}}, {0})};
  b.events = {{Stream::compute, 0}};
  auto tl = simulate({a, b});
  ASSERT_TRUE(tl.ok()) << tl.error().str();
  EXPECT_DOUBLE_EQ(tl->ops[0][0].begin_s, 10);
  EXPECT_DOUBLE_EQ(tl->ops[1][1].begin_s, 10);
  EXPECT_DOUBLE_EQ(tl->end_s, 12);
}

// A double-buffered ring over N ranks, as strategies/ring_pass_kv.cpp issues it: per step a
// transfer (t) on the comm stream beside the step's attention (c); the next attention waits for
// the transfer; from step 2 the transfer waits for the attention before the current one. Rank
// time = c + (N-1) * max(c, t) when transfers hide (t <= c), else t-bound.
RankProgram ring_rank(int n, int r, double c, double t) {
  RankProgram p;
  auto record = [&p](Stream s) {
    p.events.push_back({s, static_cast<int>(p.ops.size()) - 1});
    return static_cast<int>(p.events.size()) - 1;
  };
  int computed = -1, arrived_before = -1;
  for (int step = 0; step < n; ++step) {
    int arrived = -1;
    if (step + 1 < n) {
      std::vector<int> waits;
      if (step > 1) waits.push_back(computed);
      p.ops.push_back(exchange(t, {{(r + 1) % n, true, 1}, {(r - 1 + n) % n, false, 1}}, waits));
      arrived = record(Stream::comm);
    }
    std::vector<int> waits;
    if (step > 0) waits.push_back(arrived_before);
    p.ops.push_back(compute(c, waits));
    p.ops.back().step = step;
    computed = record(Stream::compute);
    arrived_before = arrived;
  }
  return p;
}

TEST(SimEngine, DoubleBufferedRingHidesShortTransfers) {
  for (int n : {2, 3, 4, 5})
    for (auto [c, t] : {std::pair{10.0, 3.0}, std::pair{10.0, 10.0}}) {
      std::vector<RankProgram> ranks;
      for (int r = 0; r < n; ++r) ranks.push_back(ring_rank(n, r, c, t));
      auto tl = simulate(ranks);
      ASSERT_TRUE(tl.ok()) << tl.error().str();
      EXPECT_DOUBLE_EQ(tl->end_s, n * c) << "n=" << n << " t=" << t;
    }
}

TEST(SimEngine, LongTransfersSetTheRingsPace) {
  // t > c: step k's attention waits for transfer k-1. Transfer 0 runs [0, t], transfer 1 right
  // after it on the comm stream [t, 2t]; transfer 2 waits for attention 1, which starts at t.
  const double c = 2, t = 5;
  const int n = 4;
  std::vector<RankProgram> ranks;
  for (int r = 0; r < n; ++r) ranks.push_back(ring_rank(n, r, c, t));
  auto tl = simulate(ranks);
  ASSERT_TRUE(tl.ok()) << tl.error().str();
  // attention k starts at k * t (transfer k-1 ends there): the last at 3t, ends 3t + c.
  EXPECT_DOUBLE_EQ(tl->end_s, 3 * t + c);
}

TEST(SimEngine, CollectivesWaitForEveryParticipant) {
  std::vector<RankProgram> ranks(3);
  for (int r = 0; r < 3; ++r) {
    ranks[r].ops = {compute(r + 1.0)};
    SimOp g;
    g.stream = Stream::comm;
    g.kind = OpKind::all_gather;
    g.collective = true;
    g.duration_s = 1;
    g.waits = {0};
    ranks[r].ops.push_back(g);
    ranks[r].events = {{Stream::compute, 0}};
  }
  auto tl = simulate(ranks);
  ASSERT_TRUE(tl.ok()) << tl.error().str();
  for (int r = 0; r < 3; ++r) EXPECT_DOUBLE_EQ(tl->ops[r][1].begin_s, 3);
  EXPECT_DOUBLE_EQ(tl->end_s, 4);
}

TEST(SimEngine, ProgramsThatCannotFinishAreErrors) {
  RankProgram a, b;
  a.ops = {exchange(1, {{1, true, 8}})};
  b.ops = {compute(1)};
  auto tl = simulate({a, b});
  ASSERT_FALSE(tl.ok());
  EXPECT_NE(tl.error().str().find("rank 0 op 0"), std::string::npos) << tl.error().str();
  EXPECT_NE(tl.error().str().find("no partner"), std::string::npos) << tl.error().str();

  // Both ranks receive first on one stream and send later on another that waits for the
  // receive: each send waits on its own receive, which waits on the peer's send.
  RankProgram c, d;
  c.ops = {exchange(1, {{1, false, 8}}), compute(1, {0})};
  c.ops[1].stream = Stream::compute;
  c.ops.push_back(exchange(1, {{1, true, 8}}, {1}));
  c.ops[2].stream = Stream::compute;
  c.events = {{Stream::comm, 0}, {Stream::compute, 1}};
  d = c;
  d.ops[0].transfers[0].peer = 0;
  d.ops[2].transfers[0].peer = 0;
  tl = simulate({c, d});
  ASSERT_FALSE(tl.ok());
  EXPECT_NE(tl.error().str().find("can never all run"), std::string::npos) << tl.error().str();

  RankProgram e;
  e.ops = {compute(1, {3})};
  tl = simulate({e});
  ASSERT_FALSE(tl.ok());
  EXPECT_NE(tl.error().str().find("never recorded"), std::string::npos) << tl.error().str();
}

TEST(SimEngine, SameProgramsSameTimeline) {
  std::vector<RankProgram> ranks;
  for (int r = 0; r < 4; ++r) ranks.push_back(ring_rank(4, r, 3.0 + r, 2.0));
  auto a = simulate(ranks), b = simulate(ranks);
  ASSERT_TRUE(a.ok() && b.ok());
  for (int r = 0; r < 4; ++r)
    for (size_t i = 0; i < a->ops[r].size(); ++i) {
      EXPECT_EQ(a->ops[r][i].begin_s, b->ops[r][i].begin_s);
      EXPECT_EQ(a->ops[r][i].end_s, b->ops[r][i].end_s);
    }
}

// The strategies' own op logs (cpu backend, one logged iteration per rank) played on the engine:
// every transfer finds its partner and every wait its event, for every strategy, layout-free
// phase and cp; and ring_pass_kv's timeline is the double-buffered ring's closed form.
std::vector<RankProgram> logged_programs(const std::string& strategy, int cp, const Workload& w,
                                         double attention_s, double transfer_s) {
  ExecSpec spec;
  spec.backend = "cpu";
  spec.strategy = strategy;
  spec.layout = LayoutKind::zigzag;
  spec.cp = cp;
  spec.workload = w;
  spec.verify = false;
  auto res = execute_point(spec);
  EXPECT_TRUE(res.ok()) << res.error().str();
  std::vector<RankProgram> ranks;
  if (!res.ok()) return ranks;
  for (const auto& rk : res->ranks)
    ranks.push_back(program_from_log(rk.accounting, [&](const OpRecord& rec) {
      if (rec.kind == OpKind::attention)
        return attention_s * rec.flops / rk.accounting.total().flops;
      return Executor::is_comm(rec.kind) ? transfer_s : 0.0;
    }));
  return ranks;
}

// 240 new tokens: zigzag-divisible on 1 to 5 ranks.
Workload small_prefill(MaskKind mask) {
  Workload w{.batch = 1, .heads = 8, .kv_heads = 4, .head_dim = 16, .dtype = DType::bf16};
  w.mask = mask;
  w.new_tokens = 240;
  return w;
}

TEST(SimEngine, EveryStrategysLogPlaysThrough) {
  Workload prefill = small_prefill(MaskKind::causal);
  Workload decode = prefill;
  decode.batch = 5;
  decode.new_tokens = 1;
  decode.cached_tokens = 77;
  for (const char* s : {"ring_pass_kv", "ring_pass_q", "allgather", "ulysses", "usp", "auto"})
    for (int cp : {1, 2, 3, 4, 5})
      for (const Workload* w : {&prefill, &decode}) {
        const bool heads_split = std::string(s) == "ulysses" || std::string(s) == "usp";
        if (heads_split && (w == &decode || prefill.heads % cp != 0)) continue;
        SCOPED_TRACE(testing::Message() << s << " cp=" << cp << " decode=" << (w == &decode));
        auto ranks = logged_programs(s, cp, *w, 1.0, 0.1);
        auto tl = simulate(ranks);
        ASSERT_TRUE(tl.ok()) << tl.error().str();
        EXPECT_GT(tl->end_s, 0);
      }
}

TEST(SimEngine, RingPassKvLogMatchesTheRingClosedForm) {
  // Under a full mask every step of every rank is the same work: c = attention / N per step
  // (causal zigzag is equal only up to the diagonals' extra pairs). With transfers shorter than
  // a step the ring takes N c; with longer ones (N - 1) t + c.
  const Workload w = small_prefill(MaskKind::full);
  for (int n : {2, 3, 4, 5}) {
    const double total = 8.0, c = total / n;
    for (double t : {0.5 * c, 3.0 * c}) {
      auto tl = simulate(logged_programs("ring_pass_kv", n, w, total, t));
      ASSERT_TRUE(tl.ok()) << tl.error().str();
      const double want = t <= c ? n * c : (n - 1) * t + c;
      EXPECT_NEAR(tl->end_s, want, 1e-9) << "n=" << n << " t=" << t;
    }
  }
}

}  // namespace
}  // namespace cpb::sim
