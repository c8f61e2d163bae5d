// The regression gate: Mann-Whitney U against hand-computed values, scipy's documented example
// and an exact permutation count; the gate's error rates on synthetic samples (a 10% regression
// is caught, pure noise is not flagged); matching of points across result sets; the machine
// check; and `cpbench compare` end to end with its exit codes.
#include "harness/runner/compare.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tests/support/cli_run.hpp"
#include "tests/support/temp_dir.hpp"

namespace cpb {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Mann-Whitney U.

TEST(CompareMannWhitney, SeparatedSamplesByHand) {
  // Every NEW value beats every BASE value: u = 3*3 = 9, mean 4.5, var = 9/12 * 7 = 5.25.
  const MannWhitney mw = mann_whitney({1, 2, 3}, {4, 5, 6});
  EXPECT_DOUBLE_EQ(mw.u, 9);
  EXPECT_NEAR(mw.z, 4.5 / std::sqrt(5.25), 1e-12);
  EXPECT_NEAR(mw.p_greater, 0.5 * std::erfc(4.0 / std::sqrt(5.25) / std::sqrt(2.0)), 1e-12);
  EXPECT_NEAR(mw.p_greater, 0.04042779918502615, 1e-12);
  EXPECT_NEAR(mw.p_two, 2 * mw.p_greater, 1e-12);
  EXPECT_NEAR(mw.p_less, 0.9854518341293739, 1e-12);
  // Swapping the sides mirrors the one-sided p-values.
  const MannWhitney back = mann_whitney({4, 5, 6}, {1, 2, 3});
  EXPECT_DOUBLE_EQ(back.u, 0);
  EXPECT_NEAR(back.p_less, mw.p_greater, 1e-15);
  EXPECT_NEAR(back.p_two, mw.p_two, 1e-15);
}

TEST(CompareMannWhitney, ScipyDocumentedExample) {
  // scipy.stats.mannwhitneyu docs: males [19, 22, 16, 29, 24] vs females [20, 11, 17, 12],
  // method="asymptotic": statistic 17.0, pvalue 0.11134688653314041. Our u counts the pairs in
  // which the second sample is larger, so the males go second.
  const MannWhitney mw = mann_whitney({20, 11, 17, 12}, {19, 22, 16, 29, 24});
  EXPECT_DOUBLE_EQ(mw.u, 17);
  EXPECT_NEAR(mw.p_two, 0.11134688653314041, 1e-12);
}

TEST(CompareMannWhitney, TieCorrectionByHand) {
  // base {1,1,2,2}, new {2,3,3,3}: u = 2 (the 2 over the 1s) + 1 (half of two ties) + 12 = 15.
  // Tie runs of 2, 3, 3 -> sum t^3 - t = 6 + 24 + 24 = 54; var = 16/12 * (9 - 54/56).
  const MannWhitney mw = mann_whitney({1, 1, 2, 2}, {2, 3, 3, 3});
  EXPECT_DOUBLE_EQ(mw.u, 15);
  const double sd = std::sqrt(16.0 / 12 * (9 - 54.0 / 56));
  EXPECT_NEAR(mw.z, 7 / sd, 1e-12);
  EXPECT_NEAR(mw.p_greater, 0.5 * std::erfc(6.5 / sd / std::sqrt(2.0)), 1e-12);
  EXPECT_NEAR(mw.p_two, 0.04705744628217288, 1e-12);
}

TEST(CompareMannWhitney, DegenerateInputsGiveNoEvidence) {
  for (const MannWhitney& mw :
       {mann_whitney({}, {1, 2}), mann_whitney({1, 2}, {}), mann_whitney({5, 5, 5}, {5, 5})}) {
    EXPECT_EQ(mw.p_two, 1);
    EXPECT_EQ(mw.p_less, 1);
    EXPECT_EQ(mw.p_greater, 1);
  }
}

TEST(CompareMannWhitney, UCountsPairsAndApproximatesTheExactPermutationTest) {
  // u is the count of pairs (b, n) with n > b, ties half; and for 8 + 8 samples without ties the
  // normal approximation's one-sided p is close to the exact one from all C(16, 8) splits.
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> small(0, 5);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> b(6), n(9);
    for (auto& x : b) x = small(rng);
    for (auto& x : n) x = small(rng) + (trial % 3);
    double pairs = 0;
    for (double x : b)
      for (double y : n) pairs += y > x ? 1 : y == x ? 0.5 : 0;
    EXPECT_DOUBLE_EQ(mann_whitney(b, n).u, pairs);
  }
  const std::vector<double> base = {3.1, 2.7, 3.9, 2.2, 3.3, 2.9, 4.4, 3.0};
  const std::vector<double> fresh = {3.8, 4.1, 3.5, 2.8, 4.6, 3.6, 4.0, 5.2};
  std::vector<double> all = base;
  all.insert(all.end(), fresh.begin(), fresh.end());
  const double u_obs = mann_whitney(base, fresh).u;
  int at_least = 0, total = 0;
  for (unsigned mask = 0; mask < (1u << 16); ++mask) {
    if (__builtin_popcount(mask) != 8) continue;
    std::vector<double> b, n;
    for (int i = 0; i < 16; ++i) ((mask >> i) & 1u ? n : b).push_back(all[i]);
    double u = 0;
    for (double x : b)
      for (double y : n) u += y > x;
    at_least += u >= u_obs;
    ++total;
  }
  ASSERT_EQ(total, 12870);
  const double exact = static_cast<double>(at_least) / total;
  EXPECT_NEAR(mann_whitney(base, fresh).p_greater, exact, 0.01) << "exact " << exact;
}

// ---------------------------------------------------------------------------------------------
// The gate on synthetic samples: lognormal noise with a 3% spread, as GPU timings have.

std::vector<double> lognormal_samples(std::mt19937_64& rng, double median, int n) {
  std::normal_distribution<double> noise(0.0, 0.03);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = median * std::exp(noise(rng));
  return v;
}

PointSamples point(const std::string& id, std::vector<double> samples,
                   const std::string& strategy = "ring_pass_kv") {
  return {id,
          {{"strategy", strategy}, {"layout", "zigzag"}, {"cp", 4}, {"new_tokens", 8192}},
          std::move(samples)};
}

ResultSet result_set(std::vector<PointSamples> pts, const std::string& gpu = "NVIDIA H200") {
  ResultSet rs;
  rs.source = "mem";
  rs.metric = "time";
  rs.machine = {{"backend", "cuda"},
                {"gpus", {gpu, gpu}},
                {"cpu", "x"},
                {"logical_cores", 8},
                {"host", "vm"}};
  rs.points = std::move(pts);
  return rs;
}

Verdict verdict_of(const std::vector<double>& base, const std::vector<double>& fresh,
                   const CompareOptions& opts = {}) {
  const auto c =
      compare_results(result_set({point("p", base)}), result_set({point("p", fresh)}), opts);
  return c.points.at(0).verdict;
}

TEST(CompareGate, TenPercentRegressionWith30SamplesIsCaught) {
  std::mt19937_64 rng(20261122);
  for (int trial = 0; trial < 20; ++trial) {
    const auto base = lognormal_samples(rng, 1e-3, 30);
    const auto slow = lognormal_samples(rng, 1.1e-3, 30);
    EXPECT_EQ(verdict_of(base, slow), Verdict::regression) << "trial " << trial;
  }
}

TEST(CompareGate, PureNoiseIsFlaggedInFewerThanOnePercentOfTrials) {
  std::mt19937_64 rng(42);
  int flagged = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const auto a = lognormal_samples(rng, 1e-3, 30);
    const auto b = lognormal_samples(rng, 1e-3, 30);
    flagged += verdict_of(a, b) != Verdict::same;
  }
  EXPECT_LT(flagged, 2);
}

// With no threshold the verdict is the test's alone: on pure noise it must flag about alpha of
// the trials in each direction (a test that always said "significant" would flag all 200).
TEST(CompareGate, WithoutAThresholdNoiseIsFlaggedAtAboutAlpha) {
  std::mt19937_64 rng(7);
  CompareOptions opts;
  opts.threshold = 0;
  int flagged = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const auto a = lognormal_samples(rng, 1e-3, 30);
    const auto b = lognormal_samples(rng, 1e-3, 30);
    flagged += verdict_of(a, b, opts) != Verdict::same;
  }
  EXPECT_LE(flagged, 12) << "expected about 2 * alpha * 200 = 4";
}

TEST(CompareGate, SignificantButSmallShiftIsNotARegression) {
  // 2% slower with 200 samples is significant, but below the 5% threshold.
  std::mt19937_64 rng(3);
  const auto base = lognormal_samples(rng, 1e-3, 200);
  const auto slow = lognormal_samples(rng, 1.02e-3, 200);
  EXPECT_LT(mann_whitney(base, slow).p_greater, 0.01);
  EXPECT_EQ(verdict_of(base, slow), Verdict::same);
  EXPECT_EQ(verdict_of(base, slow, {.threshold = 0.01}), Verdict::regression);
}

TEST(CompareGate, ImprovementIsNotARegression) {
  std::mt19937_64 rng(5);
  const auto c = compare_results(result_set({point("p", lognormal_samples(rng, 1e-3, 30))}),
                                 result_set({point("p", lognormal_samples(rng, 0.9e-3, 30))}), {});
  EXPECT_EQ(c.points.at(0).verdict, Verdict::improvement);
  EXPECT_EQ(c.improvements, 1);
  EXPECT_EQ(c.regressions, 0);
  EXPECT_FALSE(c.failed());
  EXPECT_LT(c.points[0].change, -0.05);
}

TEST(CompareGate, TooFewSamplesIsNeverARegression) {
  // Twice as slow, but 4 samples on one side.
  EXPECT_EQ(verdict_of({1, 1.01, 0.99, 1.02}, {2, 2.1, 1.9, 2.05, 2, 2.2}),
            Verdict::too_few_samples);
  EXPECT_EQ(verdict_of({1, 1.01, 0.99, 1.02, 1}, {2, 2.1, 1.9, 2.05}), Verdict::too_few_samples);
  EXPECT_EQ(verdict_of({1, 1.01, 0.99, 1.02, 1}, {2, 2.1, 1.9, 2.05, 2.2}), Verdict::regression);
}

// ---------------------------------------------------------------------------------------------
// Matching points.

TEST(CompareMatch, MissingAndNewPointsAreListed) {
  std::mt19937_64 rng(9);
  auto s = [&] { return lognormal_samples(rng, 1e-3, 10); };
  const ResultSet base = result_set({point("a", s()), point("b", s(), "allgather")});
  const ResultSet fresh = result_set({point("a", s()), point("c", s(), "pass_q")});
  const auto c = compare_results(base, fresh, {});
  ASSERT_EQ(c.points.size(), 1u);
  EXPECT_EQ(c.points[0].id, "a");
  ASSERT_EQ(c.missing.size(), 1u);
  EXPECT_EQ(c.missing[0].id, "b");
  ASSERT_EQ(c.added.size(), 1u);
  EXPECT_EQ(c.added[0].id, "c");
  EXPECT_TRUE(c.failed()) << "a point of BASE that NEW never ran fails the gate";
  const std::string md = render_markdown(c, base, fresh, {});
  EXPECT_NE(md.find("Missing in NEW (ok in BASE) (1):\n- allgather zigzag cp=4 T=8192"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("New in NEW (not in BASE) (1):\n- pass_q"), std::string::npos) << md;
  EXPECT_NE(md.find("| 0 | ring_pass_kv | zigzag | 4 | T=8192 |"), std::string::npos) << md;
}

nlohmann::json record(const std::string& id, const std::string& status,
                      const std::vector<double>& samples) {
  nlohmann::json r = {{"schema", "cpbench.result/1"},
                      {"point_id", id},
                      {"status", status},
                      {"config", {{"strategy", "allgather"}, {"cp", 2}}}};
  if (status == "ok") r["time"] = {{"median", 0}, {"samples", samples}};
  return r;
}

TEST(CompareMatch, LastRecordOfAPointWinsAndOnlyOkCounts) {
  const std::vector<nlohmann::json> records = {
      record("a", "ok", {1, 2, 3}), record("b", "error", {}), record("a", "error", {}),
      record("b", "ok", {4, 5, 6}), record("c", "wrong", {})};
  auto rs = result_set_from_records(records, nullptr, "time", "x");
  ASSERT_TRUE(rs.ok()) << rs.error().str();
  ASSERT_EQ(rs->points.size(), 1u);
  EXPECT_EQ(rs->points[0].id, "b");
  EXPECT_EQ(rs->points[0].samples, (std::vector<double>{4, 5, 6}));
  EXPECT_EQ(rs->not_ok.at("a"), "error");
  EXPECT_EQ(rs->not_ok.at("c"), "wrong");
  EXPECT_TRUE(rs->machine.is_null());
}

TEST(CompareMatch, APointThatFailsInNewFailsTheGate) {
  const std::vector<double> s = {1, 1, 1, 1, 1, 1};
  const ResultSet base = result_set({point("a", s), point("b", s)});
  ResultSet fresh = result_set({point("a", s)});
  fresh.not_ok["b"] = "wrong";
  const auto c = compare_results(base, fresh, {});
  EXPECT_EQ(c.regressions, 0);
  EXPECT_EQ(c.failed_in_new.at("b"), "wrong");
  EXPECT_TRUE(c.failed());
  EXPECT_NE(render_markdown(c, base, fresh, {}).find("**wrong in NEW**"), std::string::npos);
}

TEST(CompareMatch, NullSampleIsAnError) {
  nlohmann::json r = record("a", "ok", {1, 2});
  r["time"]["samples"].push_back(nullptr);
  auto rs = result_set_from_records({r}, nullptr, "time", "x.jsonl");
  ASSERT_FALSE(rs.ok());
  EXPECT_NE(rs.error().message.find("x.jsonl: point a: time.samples holds null"), std::string::npos)
      << rs.error().message;
}

// ---------------------------------------------------------------------------------------------
// Machines.

nlohmann::json manifest(const std::string& gpu, int n_gpus, const std::string& host = "vm") {
  nlohmann::json gpus = nlohmann::json::array();
  for (int i = 0; i < n_gpus; ++i) gpus.push_back({{"index", i}, {"name", gpu}, {"sm", "9.0"}});
  return {{"schema", "cpbench.manifest/1"},
          {"name", "t"},
          {"started", "2026-11-22T00:00:00Z"},
          {"backend", "cuda"},
          {"machine", {{"backend", "cuda"}, {"gpus", gpus}, {"driver", "13.0"}}},
          {"provenance",
           {{"host", host},
            {"cpu", {{"model", "Intel(R) Xeon(R) Processor"}, {"logical_cores", 64}}},
            {"git", {{"sha", "abc"}}}}}};
}

TEST(CompareMachine, SummaryNamesTheGpus) {
  EXPECT_EQ(machine_summary(machine_description(manifest("NVIDIA H200", 4))),
            "cuda on 4x NVIDIA H200");
  nlohmann::json cpu = manifest("", 0);
  cpu["machine"] = {{"backend", "cpu"}};
  EXPECT_EQ(machine_summary(machine_description(cpu)),
            "cpu on Intel(R) Xeon(R) Processor (64 logical cores)");
  EXPECT_TRUE(machine_description(nullptr).is_null());
}

TEST(CompareMachine, DifferentGpusAreRefusedAndTheHostNameIsNot) {
  ResultSet a = result_set({}), b = result_set({});
  a.machine = machine_description(manifest("NVIDIA H100 80GB HBM3", 4, "node-a"));
  b.machine = machine_description(manifest("NVIDIA H200", 4, "node-b"));
  a.source = "BASE_DIR";
  b.source = "NEW_DIR";
  const Status st = check_same_machine(a, b);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("BASE_DIR is cuda on 4x NVIDIA H100 80GB HBM3"),
            std::string::npos)
      << st.error().message;
  EXPECT_NE(st.error().message.find("NEW_DIR is cuda on 4x NVIDIA H200"), std::string::npos);
  EXPECT_NE(st.error().message.find("--force"), std::string::npos);
  b.machine = machine_description(manifest("NVIDIA H100 80GB HBM3", 4, "node-b"));
  EXPECT_TRUE(check_same_machine(a, b).ok());
  b.machine = machine_description(manifest("NVIDIA H100 80GB HBM3", 8, "node-a"));
  EXPECT_FALSE(check_same_machine(a, b).ok());  // 8 GPUs are another machine
  b.machine = nullptr;
  EXPECT_FALSE(check_same_machine(a, b).ok());  // unknown: no manifest
}

// ---------------------------------------------------------------------------------------------
// The CLI end to end.

using testing_support::CmdResult;
using testing_support::cpbench;

class CompareCli : public ::testing::Test {
 protected:
  // A run folder whose two points have 30 samples around the given medians.
  std::string run(const std::string& name, double median_a, double median_b,
                  const std::string& gpu = "NVIDIA H200") {
    const fs::path dir = tmp_.path() / name;
    fs::create_directories(dir);
    std::ofstream(dir / "manifest.json") << manifest(gpu, 2).dump(2);
    std::ofstream out(dir / "results.jsonl");
    std::mt19937_64 rng(seed_++);
    out << record("a", "ok", lognormal_samples(rng, median_a, 30)).dump() << "\n";
    out << record("b", "ok", lognormal_samples(rng, median_b, 30)).dump() << "\n";
    return dir.string();
  }

  testing_support::TempDir tmp_{"cpbench_compare"};
  uint64_t seed_ = 1;
};

TEST_F(CompareCli, ExitCodes) {
  const std::string base = run("base", 1e-3, 2e-3);
  const std::string same = run("same", 1e-3, 2e-3);
  const std::string slow = run("slow", 1e-3, 2.3e-3);
  auto r = cpbench("compare " + base + " " + same);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("| 1 | allgather | - | 2 | - |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PASS"), std::string::npos) << r.out;
  r = cpbench("compare " + base + " " + slow + "/results.jsonl");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("**REGRESSION**"), std::string::npos) << r.out;
  // The improvement seen from the other side passes.
  r = cpbench("compare " + slow + " " + base);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("improvement"), std::string::npos) << r.out;
}

TEST_F(CompareCli, BadInputIsOneLineAndExit2) {
  const std::string base = run("base", 1e-3, 2e-3);
  const fs::path broken = tmp_.path() / "broken";
  fs::create_directories(broken);
  std::ofstream(broken / "results.jsonl") << "{\"point_id\": \"a\", \"status\n";
  std::ofstream(broken / "results.jsonl", std::ios::app) << "\"ok\"}\n";
  for (const std::string& args : {"compare " + base + " " + broken.string(),
                                  "compare " + base + " /no/such/run", "compare " + base}) {
    const auto r = cpbench(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << args << "\n" << r.out;
  }
  for (const char* bad : {" --alpha 2", " --alpha 0", " --threshold -0.1", " --threshold abc",
                          " --metric speed"}) {
    const auto r = cpbench("compare " + base + " " + base + bad);
    EXPECT_EQ(r.code, 2) << bad << "\n" << r.out;
  }
  std::ofstream(tmp_.path() / "bad.json") << "{\"schema\": ";
  const auto r = cpbench("compare " + base + " " + (tmp_.path() / "bad.json").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("malformed JSON"), std::string::npos) << r.out;
}

TEST_F(CompareCli, DifferentMachinesNeedForce) {
  const std::string base = run("base", 1e-3, 2e-3, "NVIDIA H100 80GB HBM3");
  const std::string other = run("other", 1e-3, 2e-3, "NVIDIA H200");
  auto r = cpbench("compare " + base + " " + other);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("2x NVIDIA H100 80GB HBM3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2x NVIDIA H200"), std::string::npos) << r.out;
  r = cpbench("compare --force " + base + " " + other);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("warning: --force: different machines"), std::string::npos) << r.out;
}

TEST_F(CompareCli, BaselineFileRoundTrips) {
  const std::string base = run("base", 1e-3, 2e-3);
  const std::string slow = run("slow", 1.2e-3, 2e-3);
  const std::string file = (tmp_.path() / "baselines" / "h200x2.json").string();
  fs::create_directories(tmp_.path() / "baselines");
  auto r = cpbench("compare --write-baseline " + file + " " + base);
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream in(file);
  const nlohmann::json doc = nlohmann::json::parse(in);
  EXPECT_EQ(doc["schema"], kBaselineSchema);
  EXPECT_EQ(doc["machine"]["gpus"], nlohmann::json({"NVIDIA H200", "NVIDIA H200"}));
  EXPECT_EQ(doc["points"].size(), 2u);
  EXPECT_EQ(doc["points"][0]["samples"].size(), 30u);
  r = cpbench("compare " + file + " " + base);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("0 regression(s)"), std::string::npos) << r.out;
  r = cpbench("compare " + file + " " + slow);
  EXPECT_EQ(r.code, 1) << r.out;
  // A baseline of one metric does not compare against another.
  r = cpbench("compare --metric time_comm_only " + file + " " + base);
  EXPECT_EQ(r.code, 2) << r.out;
}

// A baseline of two runs whose medians lay 8% apart (the between-run noise of short GPU points)
// raises that point's threshold to 8%: a later run 6% slower is not a regression, one 15% slower
// still is; the other point, whose runs agreed, keeps the 5% threshold.
TEST_F(CompareCli, BaselineOfTwoRunsCarriesTheirSpread) {
  const std::string first = run("first", 1e-3, 2e-3);
  const std::string second = run("second", 1.08e-3, 2e-3);
  const std::string file = (tmp_.path() / "two.json").string();
  auto r = cpbench("compare --write-baseline " + file + " " + first + " " + second);
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream in(file);
  const nlohmann::json doc = nlohmann::json::parse(in);
  ASSERT_EQ(doc["points"].size(), 2u);
  const double spread_a = doc["points"][0].value("between_run_spread", 0.0);
  EXPECT_NEAR(spread_a, 0.08, 0.02);
  EXPECT_LT(doc["points"][1].value("between_run_spread", 0.0), 0.02);
  EXPECT_EQ(doc["source"]["runs"].size(), 2u);
  r = cpbench("compare " + file + " " + run("six", 1.06e-3, 2e-3));
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("runs of BASE differed so much"), std::string::npos) << r.out;
  r = cpbench("compare " + file + " " + run("fifteen", 1.15e-3, 2e-3));
  EXPECT_EQ(r.code, 1) << r.out;
  r = cpbench("compare " + file + " " + run("b_slow", 1e-3, 2.2e-3));
  EXPECT_EQ(r.code, 1) << r.out;
  // Runs of different machines do not make one baseline.
  const std::string h100 = run("h100", 1e-3, 2e-3, "NVIDIA H100 80GB HBM3");
  r = cpbench("compare --write-baseline " + (tmp_.path() / "mixed.json").string() + " " + first +
              " " + h100);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_FALSE(fs::exists(tmp_.path() / "mixed.json"));
}

// `report` hands over to python3 -m analysis.report in the source tree; $CPBENCH_PYTHON picks the
// interpreter, so echo and false stand in for it here.
TEST(ReportCli, RunsTheAnalysisModuleAndPassesItsExitCode) {
  testing_support::TempDir tmp("cpbench_report");
  const std::string dir = tmp.path().string();
  auto r = cpbench("report " + dir + " --no-plots", "CPBENCH_PYTHON=/bin/echo");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "-m analysis.report " + dir + " --no-plots\n");
  EXPECT_EQ(cpbench("report " + dir, "CPBENCH_PYTHON=/bin/false").code, 1);
  r = cpbench("report " + dir, "CPBENCH_PYTHON=/no/such/python");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("CPBENCH_PYTHON"), std::string::npos) << r.out;
  r = cpbench("report " + dir + "/missing");
  EXPECT_EQ(r.code, 2) << r.out;
}

}  // namespace
}  // namespace cpb
