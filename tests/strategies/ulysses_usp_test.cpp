// ulysses and usp: exactness against the fp64 reference over every legal (u, r) split of N in
// {2, 3, 4, 6, 8} x KV heads sharded, replicated (MQA) and GQA x layout x mask x full and
// partial prefill (cached tokens that do not divide by N, so ranks and groups hold different
// numbers of keys and every message size must come from the placement); the clear errors of
// points they cannot run; bytes per rank per phase against closed forms; FLOPs summed over
// ranks equal to the workload's; and usp's automatic choice of u.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "harness/runner/runner.hpp"
#include "strategies/strategy.hpp"
#include "strategies/ulysses_ring.hpp"

namespace cpb {
namespace {

constexpr LayoutKind kLayouts[] = {LayoutKind::contiguous, LayoutKind::zigzag, LayoutKind::striped};

std::vector<int> divisors(int n) {
  std::vector<int> d;
  for (int u = 1; u <= n; ++u)
    if (n % u == 0) d.push_back(u);
  return d;
}

bool kv_rule_allows(int64_t kv_heads, int u) {
  return kv_heads % u == 0 || u % kv_heads == 0;
}

// H = 24 query heads, d = 16, B = 2; T = 4N new tokens (zigzag needs a multiple of 2N). Partial
// prefill: about 25% miss with P = 3T + 1 cached tokens, which never divides by N >= 2.
Workload workload_for(int n, int64_t kv_heads, MaskKind mask, bool partial) {
  Workload w;
  w.batch = 2;
  w.heads = 24;
  w.kv_heads = kv_heads;
  w.head_dim = 16;
  w.mask = mask;
  w.new_tokens = 4 * int64_t{n};
  w.cached_tokens = partial ? 3 * w.new_tokens + 1 : 0;
  return w;
}

ExecSpec spec_for(const std::string& strategy, LayoutKind layout, int n, int u, const Workload& w) {
  ExecSpec spec;
  spec.strategy = strategy;
  spec.layout = layout;
  spec.cp = n;
  spec.workload = w;
  spec.options.ulysses = u;
  spec.seed = static_cast<uint64_t>(n * 1000 + u * 100 + w.kv_heads);
  spec.timeout_s = 60;
  return spec;
}

// One exactness point: strategy ("ulysses", or "usp" with a fixed u), N, kv heads.
struct Point {
  std::string strategy;
  int n = 1;
  int u = 0;
  int64_t kv_heads = 1;
};

void PrintTo(const Point& p, std::ostream* os) {
  *os << p.strategy << " cp " << p.n << " u " << p.u << " kv_heads " << p.kv_heads;
}

std::vector<Point> legal_points() {
  std::vector<Point> pts;
  for (int n : {2, 3, 4, 6, 8})
    for (int64_t kv : {24, 8, 1}) {
      if (kv_rule_allows(kv, n)) pts.push_back({"ulysses", n, n, kv});
      for (int u : divisors(n))
        if (kv_rule_allows(kv, u)) pts.push_back({"usp", n, u, kv});
    }
  return pts;
}

class UlyssesUspExactness : public ::testing::TestWithParam<Point> {};

TEST_P(UlyssesUspExactness, MatchesFp64Reference) {
  const Point& p = GetParam();
  for (LayoutKind layout : kLayouts)
    for (MaskKind mask : {MaskKind::causal, MaskKind::full})
      for (bool partial : {false, true}) {
        ExecSpec spec =
            spec_for(p.strategy, layout, p.n, p.u, workload_for(p.n, p.kv_heads, mask, partial));
        SCOPED_TRACE(
            fmt::format("{} {} {}", to_string(layout), to_string(mask), spec.workload.str()));
        auto res = execute_point(spec);
        ASSERT_TRUE(res.ok()) << res.error().detail();
        const auto& v = res->verify;
        EXPECT_TRUE(v.finite) << "NaN or Inf in the output";
        EXPECT_LE(v.max_rel_err, 1e-5);
        EXPECT_LE(v.lse_max_abs_err, 1e-5);
        EXPECT_TRUE(v.passed());
        const int u = p.strategy == "ulysses" ? p.n : p.u;
        EXPECT_EQ(res->strategy_detail.value("ulysses", -1), u);
        EXPECT_EQ(res->strategy_detail.value("ring", -1), p.n / u);
      }
}

std::string point_name(const ::testing::TestParamInfo<Point>& info) {
  const Point& p = info.param;
  return fmt::format("{}_cp{}_u{}_kv{}", p.strategy, p.n, p.u, p.kv_heads);
}

INSTANTIATE_TEST_SUITE_P(UspMatrix, UlyssesUspExactness, ::testing::ValuesIn(legal_points()),
                         point_name);

// The (u, kv heads) pairs the matrix skips are refused before anything runs, with the rule.
TEST(UspErrors, IllegalKvSplitsOfTheMatrixAreNamed) {
  int refused = 0;
  for (int n : {2, 3, 4, 6, 8})
    for (int64_t kv : {24, 8, 1}) {
      Workload w = workload_for(n, kv, MaskKind::causal, true);
      if (!kv_rule_allows(kv, n)) {
        auto st = check_point(spec_for("ulysses", LayoutKind::zigzag, n, 0, w));
        ASSERT_FALSE(st.ok()) << "cp " << n << " kv " << kv;
        EXPECT_NE(st.error().message.find(fmt::format(
                      "ulysses needs kv_heads ({}) and cp ({}) to divide one another", kv, n)),
                  std::string::npos)
            << st.error().message;
        ++refused;
      }
      for (int u : divisors(n)) {
        if (kv_rule_allows(kv, u)) continue;
        auto st = check_point(spec_for("usp", LayoutKind::zigzag, n, u, w));
        ASSERT_FALSE(st.ok()) << "cp " << n << " u " << u << " kv " << kv;
        EXPECT_NE(st.error().message.find(fmt::format(
                      "usp needs kv_heads ({}) and ulysses ({}) to divide one another: kv heads "
                      "are sharded when kv_heads % ulysses == 0 and replicated when ulysses % "
                      "kv_heads == 0",
                      kv, u)),
                  std::string::npos)
            << st.error().message;
        ++refused;
      }
    }
  EXPECT_EQ(refused, 2 + 3);  // ulysses at cp 3 and 6; usp u = 3 (cp 3, 6) and u = 6
}

TEST(UlyssesErrors, HeadsNotDivisibleByCp) {
  Workload w{.batch = 1, .heads = 12, .kv_heads = 12, .head_dim = 16, .new_tokens = 10};
  auto st = check_point(spec_for("ulysses", LayoutKind::contiguous, 5, 0, w));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("ulysses needs heads (12) divisible by cp (5)"),
            std::string::npos)
      << st.error().message;
}

TEST(UlyssesErrors, KvHeadsNeitherShardedNorReplicated) {
  Workload w{.batch = 1, .heads = 6, .kv_heads = 3, .head_dim = 16, .new_tokens = 4};
  auto st = check_point(spec_for("ulysses", LayoutKind::contiguous, 2, 0, w));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find(
                "ulysses needs kv_heads (3) and cp (2) to divide one another: kv heads are "
                "sharded when kv_heads % cp == 0 and replicated when cp % kv_heads == 0"),
            std::string::npos)
      << st.error().message;
}

TEST(UspErrors, UlyssesDegreeMustDivideCpAndHeads) {
  Workload w = workload_for(4, 8, MaskKind::causal, false);
  for (int u : {3, 5, 8}) {
    auto st = check_point(spec_for("usp", LayoutKind::zigzag, 4, u, w));
    ASSERT_FALSE(st.ok()) << "u " << u;
    EXPECT_NE(st.error().message.find(fmt::format("usp needs ulysses ({}) to divide cp (4)", u)),
              std::string::npos)
        << st.error().message;
  }
  auto neg = check_point(spec_for("usp", LayoutKind::zigzag, 4, -1, w));
  ASSERT_FALSE(neg.ok());
  EXPECT_NE(neg.error().message.find("usp needs ulysses >= 0"), std::string::npos);
  // u divides cp but not the heads.
  Workload h = w;
  h.heads = 6;
  h.kv_heads = 6;
  auto st = check_point(spec_for("usp", LayoutKind::zigzag, 4, 4, h));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("usp needs heads (6) divisible by ulysses (4)"),
            std::string::npos)
      << st.error().message;
}

TEST(UlyssesErrors, DecodeIsRefused) {
  Workload w{
      .batch = 4, .heads = 8, .kv_heads = 2, .head_dim = 16, .new_tokens = 1, .cached_tokens = 30};
  ASSERT_EQ(w.phase(), Phase::decode);
  for (const char* s : {"ulysses", "usp"}) {
    auto st = check_point(spec_for(s, LayoutKind::striped, 2, 0, w));
    ASSERT_FALSE(st.ok()) << s;
    EXPECT_NE(st.error().message.find(
                  fmt::format("{} does not run decode (one token per sequence): use ring_pass_q, "
                              "allgather or ring_pass_kv",
                              s)),
              std::string::npos)
        << st.error().message;
  }
}

// Accounting: every rank holds the same numbers of queries and keys (P divides by N), so the
// closed forms use one q_count and one kv_count.
ExecResult run_unverified(const std::string& strategy, LayoutKind layout, int n, int u,
                          const Workload& w) {
  ExecSpec spec = spec_for(strategy, layout, n, u, w);
  spec.verify = false;
  auto res = execute_point(spec);
  EXPECT_TRUE(res.ok()) << res.error().detail();
  return std::move(res).value();
}

Workload accounting_workload(int n, int64_t kv_heads, int64_t cached_per_rank) {
  return Workload{.batch = 2,
                  .heads = 24,
                  .kv_heads = kv_heads,
                  .head_dim = 16,
                  .dtype = DType::bf16,
                  .mask = MaskKind::causal,
                  .new_tokens = 4 * int64_t{n},
                  .cached_tokens = cached_per_rank * n};
}

const PhaseCounters* phase_of(const RankReport& r, const std::string& name) {
  auto it = r.accounting.phases.find(name);
  return it == r.accounting.phases.end() ? nullptr : &it->second;
}

// Checks one rank's bytes against the closed forms for Ulysses degree u and ring degree r.
void expect_usp_bytes(const RankReport& rank, const Workload& w, int n, int u) {
  const int r = n / u;
  const int64_t B = w.batch, H = w.heads, d = w.head_dim, s = 2;  // bf16
  const int64_t qc = w.new_tokens / n, kc = w.context() / n;
  const int64_t h = w.kv_heads % u == 0 ? w.kv_heads / u : 1;
  const int64_t local_q = B * qc * H * d * s;
  const std::pair<const char*, int64_t> a2a[] = {
      {"a2a_q", (u - 1) * B * qc * (H / u) * d * s},
      {"a2a_k", (u - 1) * B * kc * h * d * s},
      {"a2a_v", (u - 1) * B * kc * h * d * s},
      {"a2a_o", (u - 1) * B * qc * (H / u) * (d + 1) * 4}};
  EXPECT_EQ(a2a[0].second * u, (u - 1) * local_q);  // (u-1)/u of the local Q bytes
  for (const auto& [name, bytes] : a2a) {
    const PhaseCounters* c = phase_of(rank, name);
    if (u == 1) {
      EXPECT_EQ(c, nullptr) << name;
      continue;
    }
    ASSERT_NE(c, nullptr) << name;
    EXPECT_EQ(c->bytes_sent, bytes) << name;
    EXPECT_EQ(c->bytes_recv, bytes) << name;
    EXPECT_EQ(c->ops, 1) << name;
  }
  const PhaseCounters* ring = phase_of(rank, "ring_kv");
  if (r == 1) {
    EXPECT_EQ(ring, nullptr);
    return;
  }
  ASSERT_NE(ring, nullptr);
  // The group's K/V block: K and V of all u members' tokens, h heads each.
  const int64_t group_block = 2 * B * (u * kc) * h * d * s;
  EXPECT_EQ(ring->bytes_sent, (r - 1) * group_block);
  EXPECT_EQ(ring->bytes_recv, (r - 1) * group_block);
  EXPECT_EQ(ring->ops, r - 1);
}

TEST(UlyssesAccounting, AllToAllBytesPerRank) {
  for (int n : {2, 3, 4, 6, 8})
    for (int64_t kv : {24, 8, 1})
      for (int64_t cached : {0, 5}) {
        if (!kv_rule_allows(kv, n)) continue;
        Workload w = accounting_workload(n, kv, cached);
        ExecResult res = run_unverified("ulysses", LayoutKind::zigzag, n, 0, w);
        for (const auto& rank : res.ranks) {
          SCOPED_TRACE(fmt::format("cp {} kv {} cached {}", n, kv, cached));
          expect_usp_bytes(rank, w, n, n);
        }
      }
}

TEST(UspAccounting, AllToAllAndRingBytesPerRank) {
  for (int n : {2, 4, 6, 8})
    for (int64_t kv : {24, 8, 1})
      for (int u : divisors(n)) {
        if (!kv_rule_allows(kv, u)) continue;
        Workload w = accounting_workload(n, kv, 3);
        ExecResult res = run_unverified("usp", LayoutKind::striped, n, u, w);
        for (const auto& rank : res.ranks) {
          SCOPED_TRACE(fmt::format("cp {} u {} kv {}", n, u, kv));
          expect_usp_bytes(rank, w, n, u);
        }
      }
}

// usp with u = 1 is the pure ring: the same bytes as ring_pass_kv.
TEST(UspAccounting, PureRingMatchesRingPassKv) {
  Workload w = accounting_workload(4, 8, 2);
  ExecResult usp = run_unverified("usp", LayoutKind::zigzag, 4, 1, w);
  ExecResult ring = run_unverified("ring_pass_kv", LayoutKind::zigzag, 4, 0, w);
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(usp.ranks[r].accounting.phases.at("ring_kv").bytes_sent,
              ring.ranks[r].accounting.phases.at("ring_kv").bytes_sent);
  }
}

TEST(UspAccounting, FlopsSumToTheWorkloadsMaskAwareFlops) {
  for (LayoutKind layout : kLayouts)
    for (MaskKind mask : {MaskKind::causal, MaskKind::full})
      for (int64_t P : {0, 7, 40})
        for (int u : {0, 1, 2, 3, 6}) {
          const int n = 6;
          // ulysses (u = 0 here) with sharded KV heads, usp u = 3 and 6 replicated (MQA).
          Workload w = accounting_workload(n, u == 0 ? 24 : u >= 3 ? 1 : 8, 0);
          w.cached_tokens = P;
          w.mask = mask;
          const std::string strategy = u == 0 ? "ulysses" : "usp";
          ExecResult r = run_unverified(strategy, layout, n, u, w);
          double total = 0;
          for (const auto& rank : r.ranks) total += rank.accounting.total().flops;
          EXPECT_DOUBLE_EQ(total, workload_flops(w))
              << strategy << " u=" << u << " " << to_string(layout) << " P=" << P;
        }
}

// describe() with ulysses = 0 reports the largest u the heads allow.
TEST(UspDescribe, AutomaticDegreeIsTheLargestLegal) {
  const StrategyInfo* usp = find_strategy("usp");
  ASSERT_NE(usp, nullptr);
  ASSERT_TRUE(usp->describe);
  struct Case {
    int n;
    int64_t heads, kv_heads;
    int u;
    const char* kv;
  };
  const Case cases[] = {
      {8, 24, 8, 8, "sharded"},    {6, 24, 24, 6, "sharded"}, {6, 24, 8, 2, "sharded"},
      {4, 24, 1, 4, "replicated"}, {3, 16, 16, 1, "sharded"}, {5, 16, 4, 1, "sharded"},
      {8, 24, 2, 8, "replicated"}, {6, 12, 4, 2, "sharded"},  {1, 8, 8, 1, "sharded"},
  };
  for (const Case& c : cases) {
    Workload w{.batch = 1,
               .heads = c.heads,
               .kv_heads = c.kv_heads,
               .head_dim = 16,
               .new_tokens = 2 * int64_t{c.n}};
    auto pl = Placement::make(w, LayoutKind::zigzag, c.n);
    ASSERT_TRUE(pl.ok()) << pl.error().detail();
    StrategyOptions opt;
    opt.ulysses = 0;
    nlohmann::json j = usp->describe(StrategyContext{w, *pl, opt});
    EXPECT_EQ(j, (nlohmann::json{{"ulysses", c.u}, {"ring", c.n / c.u}, {"kv_heads", c.kv}}))
        << "cp " << c.n << " heads " << c.heads << "/" << c.kv_heads << ": " << j.dump();
    EXPECT_EQ(auto_ulysses_degree(w, c.n), c.u);
  }
}

// The exactness matrix's shape (H = 16) at cp 3 and 5: ulysses cannot run, usp falls back to the
// pure ring (u = 1) and is exact.
TEST(UspExactnessExtra, AutomaticFallsBackToRingWhenHeadsDoNotSplit) {
  for (int n : {3, 5})
    for (int64_t kv : {16, 4, 1})
      for (int64_t P : {0, 7}) {
        Workload w{.batch = 1,
                   .heads = 16,
                   .kv_heads = kv,
                   .head_dim = 16,
                   .mask = MaskKind::causal,
                   .new_tokens = 4 * int64_t{n},
                   .cached_tokens = P};
        ExecSpec spec = spec_for("usp", LayoutKind::zigzag, n, 0, w);
        auto res = execute_point(spec);
        ASSERT_TRUE(res.ok()) << res.error().detail();
        EXPECT_TRUE(res->verify.passed()) << "cp " << n << " rel " << res->verify.max_rel_err;
        EXPECT_EQ(res->strategy_detail.value("ulysses", -1), 1);
        EXPECT_EQ(res->strategy_detail.value("ring", -1), n);
        EXPECT_FALSE(check_point(spec_for("ulysses", LayoutKind::zigzag, n, 0, w)).ok());
      }
}

// Shapes beyond the matrix: batch 3, fp16, wider heads, odd cp with cached tokens that split
// unevenly, replicated KV heads with more than one KV head (each slice must pick the KV head
// its query heads use), and a degenerate single rank.
TEST(UspExactnessExtra, Fp16WideHeadsUnevenCacheAndSingleRank) {
  struct Case {
    const char* strategy;
    int n, u;
    Workload w;
  };
  const Case cases[] = {
      {"usp", 6, 3,
       Workload{.batch = 3,
                .heads = 6,
                .kv_heads = 1,
                .head_dim = 64,
                .dtype = DType::fp16,
                .new_tokens = 12,
                .cached_tokens = 17}},
      {"ulysses", 4, 0,
       Workload{.batch = 3,
                .heads = 8,
                .kv_heads = 2,
                .head_dim = 128,
                .mask = MaskKind::full,
                .new_tokens = 8,
                .cached_tokens = 9}},
      {"ulysses", 8, 0,
       Workload{.batch = 2,
                .heads = 16,
                .kv_heads = 2,
                .head_dim = 16,
                .new_tokens = 16,
                .cached_tokens = 13}},
      {"usp", 8, 4,
       Workload{.batch = 2,
                .heads = 24,
                .kv_heads = 2,
                .head_dim = 16,
                .mask = MaskKind::full,
                .new_tokens = 16,
                .cached_tokens = 5}},
      {"usp", 6, 6,
       Workload{.batch = 1,
                .heads = 12,
                .kv_heads = 3,
                .head_dim = 16,
                .new_tokens = 12,
                .cached_tokens = 7}},
      {"usp", 1, 0,
       Workload{.batch = 2,
                .heads = 4,
                .kv_heads = 2,
                .head_dim = 16,
                .new_tokens = 6,
                .cached_tokens = 3}},
      {"ulysses", 1, 0,
       Workload{.batch = 2, .heads = 4, .kv_heads = 1, .head_dim = 16, .new_tokens = 6}},
  };
  for (const Case& c : cases)
    for (LayoutKind layout : kLayouts) {
      auto res = execute_point(spec_for(c.strategy, layout, c.n, c.u, c.w));
      ASSERT_TRUE(res.ok()) << res.error().detail();
      EXPECT_TRUE(res->verify.passed()) << c.strategy << " cp " << c.n << " " << to_string(layout)
                                        << " " << res->verify.max_rel_err;
    }
}

}  // namespace
}  // namespace cpb
