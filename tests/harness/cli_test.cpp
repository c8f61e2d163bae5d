// The cpbench command end to end: every bad input exits non-zero with one clear line and writes
// nothing; an invalid point becomes a record while the sweep goes on; --dry-run writes nothing;
// --resume completes an interrupted run to the same set of points; attend round-trips .npy.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <memory>
#include <string>

#include "harness/io/npy.hpp"
#include "harness/io/results.hpp"
#include "harness/runner/runner.hpp"
#include "strategies/strategy.hpp"
#include "tests/support/cli_run.hpp"
#include "tests/support/scoped_env.hpp"
#include "tests/support/temp_dir.hpp"

namespace cpb {
namespace {

namespace fs = std::filesystem;

using testing_support::CmdResult;
using testing_support::cpbench;

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<testing_support::TempDir>("cpbench_cli");
    dir_ = tmp_->path();
  }
  void TearDown() override { tmp_.reset(); }

  std::string write(const std::string& name, const std::string& text) {
    auto p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  std::string out() const { return (dir_ / "runs").string(); }
  bool wrote_nothing() const { return !fs::exists(dir_ / "runs"); }
  std::vector<nlohmann::json> records() const {
    for (const auto& e : fs::directory_iterator(dir_ / "runs")) {
      auto r = read_jsonl((e.path() / "results.jsonl").string());
      if (r.ok()) return *r;
    }
    return {};
  }

  std::unique_ptr<testing_support::TempDir> tmp_;
  fs::path dir_;
};

const char* kGood = R"(name: t
iterations: 1
warmup: 0
defaults: {heads: 4, kv_heads: 2, head_dim: 8, new_tokens: 12}
axes:
  strategy: [ring_pass_kv, allgather]
  cp: [1, 2, 3]
)";

// --cuda-graph asks for graph replays; the cpu backend has none, runs op by op and says so.
TEST_F(Cli, CudaGraphOnTheCpuBackendRunsOpByOp) {
  auto cfg = write("good.yaml", kGood);
  CmdResult r = cpbench("run " + cfg + " --backend cpu --cuda-graph --quiet --out " + out());
  ASSERT_EQ(r.code, 0) << r.out;
  auto recs = records();
  ASSERT_EQ(recs.size(), 6u);
  for (const auto& rec : recs) {
    EXPECT_TRUE(rec["verify"]["passed"].get<bool>());
    EXPECT_FALSE(rec["host"]["cuda_graph"].get<bool>()) << rec["host"].dump();
    // Op by op, the host time of each kind of call is there: attention on every rank.
    const auto& calls = rec["host"]["calls"];
    EXPECT_GE(calls["attention"]["calls_per_iteration"].get<double>(), 1) << calls.dump();
    EXPECT_GT(calls["attention"]["us_per_iteration"].get<double>(), 0) << calls.dump();
    if (rec["cp"].get<int>() > 1 && rec["strategy"] == "ring_pass_kv")
      EXPECT_GE(calls["p2p"]["calls_per_iteration"].get<double>(), 1) << calls.dump();
  }
}

TEST_F(Cli, RunWritesOneRecordPerPointAndAManifest) {
  auto cfg = write("good.yaml", kGood);
  CmdResult r = cpbench("run " + cfg + " --backend cpu --out " + out());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[6/6]"), std::string::npos) << "progress line: " << r.out;
  EXPECT_NE(r.out.find("ETA"), std::string::npos);
  auto recs = records();
  ASSERT_EQ(recs.size(), 6u);
  for (const auto& rec : recs) {
    EXPECT_EQ(rec["status"], "ok");
    EXPECT_TRUE(rec["verify"]["passed"].get<bool>());
    EXPECT_EQ(rec["time"]["clock"], "wall");
    EXPECT_GT(rec["tflops_per_gpu"].get<double>(), 0);
    EXPECT_EQ(rec["memory"]["peak_bytes_per_rank"].size(), rec["cp"].get<size_t>());
    // One traced iteration per point, as a Chrome trace: a process per rank, a thread per stream.
    ASSERT_TRUE(rec.contains("trace")) << rec.dump();
    fs::path run = fs::directory_iterator(dir_ / "runs")->path();
    std::ifstream tf(run / rec["trace"].get<std::string>());
    auto trace = nlohmann::json::parse(tf);
    std::set<int> pids;
    int slices = 0;
    for (const auto& ev : trace["traceEvents"]) {
      pids.insert(ev["pid"].get<int>());
      if (ev["ph"] == "X") {
        ++slices;
        EXPECT_GE(ev["dur"].get<double>(), 0);
        EXPECT_TRUE(ev["tid"] == 0 || ev["tid"] == 1);
      }
    }
    EXPECT_EQ(pids.size(), rec["cp"].get<size_t>());
    EXPECT_GT(slices, 0);
  }
  for (const auto& e : fs::directory_iterator(dir_ / "runs")) {
    std::ifstream m(e.path() / "manifest.json");
    auto j = nlohmann::json::parse(m);
    EXPECT_EQ(j["status"], "complete");
    EXPECT_EQ(j["points_total"], 6);
    EXPECT_TRUE(fs::exists(e.path() / "bench.json"));
    EXPECT_EQ(e.path().filename().string().rfind("t-", 0), 0u);
  }
}

TEST_F(Cli, InvalidPointIsRecordedAndTheSweepGoesOn) {
  // 12 new tokens: zigzag needs a multiple of 2*cp, so cp = 5 is invalid, cp = 3 is fine.
  auto cfg = write("bad_point.yaml", R"(name: t
iterations: 1
defaults: {heads: 4, kv_heads: 2, head_dim: 8, new_tokens: 12, layout: zigzag}
axes:
  cp: [3, 5, 2]
)");
  CmdResult r = cpbench("run " + cfg + " --backend cpu --out " + out());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("multiple of 10"), std::string::npos) << r.out;
  auto recs = records();
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0]["status"], "ok");
  EXPECT_EQ(recs[1]["status"], "invalid");
  EXPECT_NE(recs[1]["error"].get<std::string>().find("multiple of 10"), std::string::npos);
  EXPECT_EQ(recs[2]["status"], "ok");
}

TEST_F(Cli, HeadsThatDoNotSplitOverCpAreAnInvalidPoint) {
  auto cfg = write("heads.yaml", R"(name: t
iterations: 1
defaults: {heads: 16, kv_heads: 4, head_dim: 8, new_tokens: 24, strategy: ulysses}
axes:
  cp: [3, 4]
)");
  CmdResult r = cpbench("run " + cfg + " --backend cpu --out " + out());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("heads (16) divisible by cp (3)"), std::string::npos) << r.out;
  auto recs = records();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0]["status"], "invalid");
  EXPECT_EQ(recs[1]["status"], "ok");
}

TEST_F(Cli, DryRunPrintsPointsAndWritesNothing) {
  auto cfg = write("good.yaml", kGood);
  CmdResult r = cpbench("run " + cfg + " --dry-run --out " + out());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("6 points"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("strategy=allgather"), std::string::npos) << r.out;
  EXPECT_TRUE(wrote_nothing());
}

TEST_F(Cli, FilterSelectsPoints) {
  auto cfg = write("good.yaml", kGood);
  CmdResult r = cpbench("run " + cfg + " --backend cpu --out " + out() +
                  " --filter \"strategy == allgather and cp >= 2\"");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(records().size(), 2u);
}

TEST_F(Cli, ResumeCompletesAnInterruptedRun) {
  auto cfg = write("good.yaml", kGood);
  ASSERT_EQ(cpbench("run " + cfg + " --backend cpu --out " + out()).code, 0);
  fs::path run = fs::directory_iterator(dir_ / "runs")->path();
  auto full = records();
  std::set<std::string> want;
  for (const auto& r : full) want.insert(r["point_id"].get<std::string>());
  // Keep two records and half of a third, as a killed run could leave them.
  std::string text;
  {
    std::ifstream in(run / "results.jsonl");
    std::string line;
    for (int i = 0; i < 3 && std::getline(in, line); ++i) text += i < 2 ? line + "\n" : line.substr(0, 20);
  }
  std::ofstream(run / "results.jsonl", std::ios::trunc) << text;
  CmdResult r = cpbench("run " + cfg + " --backend cpu --out " + out() + " --resume");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("4 points run, 2 skipped"), std::string::npos) << r.out;
  auto again = read_jsonl((run / "results.jsonl").string());
  ASSERT_TRUE(again.ok());
  std::set<std::string> got;
  for (const auto& rec : *again) EXPECT_TRUE(got.insert(rec["point_id"].get<std::string>()).second);
  EXPECT_EQ(got, want);
}

TEST_F(Cli, ReproCommandRerunsExactlyThatPoint) {
  auto cfg = write("good.yaml", kGood);
  ASSERT_EQ(cpbench("run " + cfg + " --backend cpu --out " + out()).code, 0);
  auto rec = records().at(4);
  std::string repro = rec["repro"];
  ASSERT_EQ(repro.rfind("cpbench run ", 0), 0u) << repro;
  fs::remove_all(dir_ / "runs");
  CmdResult r = cpbench(repro.substr(std::string("cpbench ").size()) + " --out " + out());
  ASSERT_EQ(r.code, 0) << r.out;
  auto again = records();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0]["point_id"], rec["point_id"]);
}

// A resumed run reports the outcome of the whole run folder: an invalid point recorded by the
// first invocation still makes the run fail.
TEST_F(Cli, ResumeReportsTheWholeRunFolder) {
  auto cfg = write("bad_point.yaml", R"(name: t
iterations: 1
defaults: {heads: 4, kv_heads: 2, head_dim: 8, new_tokens: 12, layout: zigzag}
axes:
  cp: [3, 5]
)");
  EXPECT_EQ(cpbench("run " + cfg + " --backend cpu --out " + out()).code, 1);
  CmdResult r = cpbench("run " + cfg + " --backend cpu --out " + out() + " --resume");
  EXPECT_EQ(r.code, 1) << r.out;
  fs::path run = fs::directory_iterator(dir_ / "runs")->path();
  std::ifstream m(run / "manifest.json");
  auto j = nlohmann::json::parse(m);
  EXPECT_EQ(j["points_failed"], 1);
  EXPECT_EQ(j["points_recorded"], 2);
}

// Bytes that are not UTF-8 in the config's text end up replaced in the JSON, not in a crash.
TEST_F(Cli, NonUtf8TextDoesNotCrash) {
  std::string yaml = std::string(kGood) + "description: caf\xe9\n";
  auto cfg = write("latin1.yaml", yaml);
  CmdResult r = cpbench("run " + cfg + " --backend cpu --out " + out() + " --filter \"cp == 1\"");
  EXPECT_TRUE(r.code == 0 || r.code == 2) << r.out;
  if (r.code == 0) {
    fs::path run = fs::directory_iterator(dir_ / "runs")->path();
    std::ifstream m(run / "manifest.json");
    auto parsed = nlohmann::json::parse(m, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(parsed.is_discarded());
  } else {
    EXPECT_EQ(r.out.rfind("error: ", 0), 0u) << r.out;
  }
}

TEST_F(Cli, ResumeWithoutARunFolderSaysWhatToDo) {
  auto cfg = write("good.yaml", kGood);
  CmdResult r = cpbench("run " + cfg + " --backend cpu --out " + out() + " --resume");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--resume"), std::string::npos) << r.out;
}

struct BadConfig {
  const char* name;
  const char* yaml;
  const char* expect;  // substring of the one-line message
};

class CliBadConfig : public Cli, public ::testing::WithParamInterface<BadConfig> {};

TEST_P(CliBadConfig, ExitsTwoWithOneClearLineAndWritesNothing) {
  const auto& c = GetParam();
  auto cfg = write("bad.yaml", c.yaml);
  CmdResult r = cpbench("run " + cfg + " --backend cpu --out " + out());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find(c.expect), std::string::npos) << r.out;
  EXPECT_EQ(r.out.rfind("error: ", 0), 0u) << r.out;
  EXPECT_TRUE(wrote_nothing());
}

INSTANTIATE_TEST_SUITE_P(
    Inputs, CliBadConfig,
    ::testing::Values(
        BadConfig{"unknown_key", "name: t\ndefaults: {heads: 4, kv_heads: 4, head_dim: 8, new_tokens: 4}\naxes:\n  cpp: [1]\n",
                  "bad.yaml:4"},
        BadConfig{"unknown_key_names_key", "name: t\ndefaults: {heads: 4, kv_heads: 4, head_dim: 8, new_tokens: 4}\naxes:\n  cpp: [1]\n",
                  "cpp"},
        BadConfig{"wrong_type", "name: t\ndefaults: {heads: four, kv_heads: 4, head_dim: 8, new_tokens: 4}\n",
                  "heads"},
        BadConfig{"empty_axis", "name: t\ndefaults: {heads: 4, kv_heads: 4, head_dim: 8, new_tokens: 4}\naxes:\n  cp: []\n",
                  "cp"},
        BadConfig{"cp_zero", "name: t\ndefaults: {heads: 4, kv_heads: 4, head_dim: 8, new_tokens: 4, cp: 0}\n",
                  "cp"},
        BadConfig{"cp_negative", "name: t\ndefaults: {heads: 4, kv_heads: 4, head_dim: 8, new_tokens: 4, cp: -2}\n",
                  "cp"},
        BadConfig{"miss_rate_zero", "name: t\ndefaults: {heads: 4, kv_heads: 4, head_dim: 8, context: 100, miss_rate: 0}\n",
                  "miss_rate"},
        BadConfig{"miss_rate_above_one", "name: t\ndefaults: {heads: 4, kv_heads: 4, head_dim: 8, context: 100, miss_rate: 1.5}\n",
                  "miss_rate"},
        BadConfig{"unknown_strategy", "name: t\ndefaults: {heads: 4, kv_heads: 4, head_dim: 8, new_tokens: 4, strategy: ring}\n",
                  "ring_pass_kv"},
        BadConfig{"unknown_layout", "name: t\ndefaults: {heads: 4, kv_heads: 4, head_dim: 8, new_tokens: 4, layout: zz}\n",
                  "zigzag"},
        BadConfig{"unknown_preset", "name: t\ndefaults: {preset: llama9, new_tokens: 4}\n",
                  "llama3-8b"},
        BadConfig{"syntax", "name: t\ndefaults: {heads: [4\n", "bad.yaml"},
        BadConfig{"heads_not_multiple_of_kv_heads",
                  "name: t\ndefaults: {heads: 6, kv_heads: 4, head_dim: 8, new_tokens: 4}\n",
                  "kv_heads"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(Cli, NegativeGpusIsRefused) {
  auto cfg = write("good.yaml", kGood);
  CmdResult r = cpbench("run " + cfg + " --gpus -1 --out " + out());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--gpus"), std::string::npos) << r.out;
  EXPECT_TRUE(wrote_nothing());
}

TEST_F(Cli, MissingConfigFile) {
  CmdResult r = cpbench("run " + (dir_ / "nope.yaml").string() + " --out " + out());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("nope.yaml"), std::string::npos) << r.out;
  EXPECT_TRUE(wrote_nothing());
}

// The sim backend: predicted records (clock "sim", "predicted": true, the profile named), verify
// skipped with its reason, a predicted trace; a bad profile is an error record naming the file.
TEST_F(Cli, SimBackendWritesPredictedRecords) {
  auto cfg = write("good.yaml", kGood);
  CmdResult r = cpbench("run " + cfg + " --backend sim --out " + out());
  ASSERT_EQ(r.code, 0) << r.out;
  auto recs = records();
  ASSERT_EQ(recs.size(), 6u);
  for (const auto& rec : recs) {
    EXPECT_EQ(rec["status"], "ok") << rec.dump();
    EXPECT_EQ(rec["backend"], "sim");
    EXPECT_TRUE(rec["predicted"].get<bool>());
    EXPECT_EQ(rec["time"]["clock"], "sim");
    EXPECT_GT(rec["time"]["median"].get<double>(), 0);
    EXPECT_EQ(rec["hardware_profile"]["name"], "h200x4-calibrated");
    EXPECT_FALSE(rec["verify"]["ran"].get<bool>());
    EXPECT_NE(rec["verify"]["reason"].get<std::string>().find("predicted"), std::string::npos);
    ASSERT_TRUE(rec.contains("trace")) << rec.dump();
  }
  fs::remove_all(dir_ / "runs");
  r = cpbench("run " + cfg + " --backend sim --hardware-profile " + (dir_ / "nope.yaml").string() +
              " --out " + out());
  EXPECT_EQ(r.code, 1) << r.out;
  for (const auto& rec : records()) {
    EXPECT_EQ(rec["status"], "error");
    EXPECT_NE(rec["error"].get<std::string>().find("nope.yaml"), std::string::npos) << rec.dump();
  }
}

TEST_F(Cli, ListShowsStrategiesLayoutsAndPresets) {
  CmdResult r = cpbench("list");
  EXPECT_EQ(r.code, 0);
  for (const char* s : {"ring_pass_kv", "allgather", "zigzag", "striped", "llama3-405b-tp8", "cpu"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
}

// attend: Q/K/V from .npy, O and LSE to .npy, equal to the reference.
TEST_F(Cli, AttendRoundTripsNpy) {
  Workload w{.heads = 4, .kv_heads = 2, .head_dim = 8, .dtype = DType::fp32, .new_tokens = 12,
             .cached_tokens = 5};
  Inputs in = random_inputs(w, 3);
  auto q = (dir_ / "q.npy").string(), k = (dir_ / "k.npy").string(), v = (dir_ / "v.npy").string();
  ASSERT_TRUE(write_npy(q, {12, 4, 8}, in.q.data()).ok());
  ASSERT_TRUE(write_npy(k, {17, 2, 8}, in.k.data()).ok());
  ASSERT_TRUE(write_npy(v, {17, 2, 8}, in.v.data()).ok());
  auto o = (dir_ / "o.npy").string(), l = (dir_ / "lse.npy").string();
  CmdResult r = cpbench("attend --q " + q + " --k " + k + " --v " + v +
                  " --strategy ring_pass_kv --cp 3 --layout zigzag --causal --cached-tokens 5 --out " +
                  o + " --lse " + l);
  ASSERT_EQ(r.code, 0) << r.out;
  auto on = read_npy(o);
  auto ln = read_npy(l);
  ASSERT_TRUE(on.ok() && ln.ok());
  EXPECT_EQ(on->shape, (std::vector<int64_t>{12, 4, 8}));
  EXPECT_EQ(ln->shape, (std::vector<int64_t>{12, 4}));
  auto ref = verify_against_reference(w, in, on->data, ln->data, 1e-5);
  EXPECT_TRUE(ref.passed()) << ref.max_rel_err;
}

// attend runs every registered strategy; usp takes --ulysses, auto reports its choice.
TEST_F(Cli, AttendRunsEveryStrategy) {
  Workload w{.heads = 8, .kv_heads = 4, .head_dim = 8, .dtype = DType::fp32, .new_tokens = 16,
             .cached_tokens = 48};
  Inputs in = random_inputs(w, 5);
  auto q = (dir_ / "q.npy").string(), k = (dir_ / "k.npy").string(), v = (dir_ / "v.npy").string();
  ASSERT_TRUE(write_npy(q, {16, 8, 8}, in.q.data()).ok());
  ASSERT_TRUE(write_npy(k, {64, 4, 8}, in.k.data()).ok());
  ASSERT_TRUE(write_npy(v, {64, 4, 8}, in.v.data()).ok());
  auto o = (dir_ / "o.npy").string(), l = (dir_ / "lse.npy").string();
  for (const auto& s : strategy_names()) {
    std::string extra = s == "usp" ? " --ulysses 2" : "";
    CmdResult r = cpbench("attend --q " + q + " --k " + k + " --v " + v + " --strategy " + s +
                          " --cp 4 --layout zigzag --causal --out " + o + " --lse " + l + extra);
    ASSERT_EQ(r.code, 0) << s << "\n" << r.out;
    if (s == "auto") EXPECT_NE(r.out.find("\"choice\""), std::string::npos) << r.out;
    if (s == "usp") EXPECT_NE(r.out.find("\"ulysses\":2"), std::string::npos) << r.out;
    auto on = read_npy(o);
    auto ln = read_npy(l);
    ASSERT_TRUE(on.ok() && ln.ok());
    EXPECT_TRUE(verify_against_reference(w, in, on->data, ln->data, 1e-5).passed()) << s;
  }
  CmdResult bad = cpbench("attend --q " + q + " --k " + k + " --v " + v +
                          " --strategy usp --ulysses 3 --cp 4 --out " + o);
  EXPECT_EQ(bad.code, 2) << bad.out;
  // Bad values of auto's options: an algorithm other than 1 or 5, a missing profile.
  for (const std::string& args :
       {std::string(" --strategy auto --auto-algorithm 3"),
        std::string(" --strategy auto --hardware-profile ") + (dir_ / "none.yaml").string(),
        std::string(" --strategy usp --ulysses -1")}) {
    CmdResult r = cpbench("attend --q " + q + " --k " + k + " --v " + v + " --cp 4 --out " + o +
                          args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
  }
}

TEST_F(Cli, AttendRejectsBadNpy) {
  Workload w{.heads = 4, .kv_heads = 2, .head_dim = 8, .dtype = DType::fp32, .new_tokens = 4};
  Inputs in = random_inputs(w, 3);
  auto q = (dir_ / "q.npy").string(), k = (dir_ / "k.npy").string(), v = (dir_ / "v.npy").string();
  ASSERT_TRUE(write_npy(q, {4, 4, 8}, in.q.data()).ok());
  ASSERT_TRUE(write_npy(k, {4, 2, 8}, in.k.data()).ok());
  ASSERT_TRUE(write_npy(v, {4, 2, 8}, in.v.data()).ok());
  auto garbage = write("garbage.npy", "not a numpy file at all");
  auto flat = (dir_ / "flat.npy").string();
  ASSERT_TRUE(write_npy(flat, {4 * 2 * 8}, in.k.data()).ok());
  auto v3 = (dir_ / "v3.npy").string();
  ASSERT_TRUE(write_npy(v3, {2, 2, 8}, in.v.data()).ok());
  // A NaN in Q and an Inf in V: refused with where they are.
  std::vector<float> nan_q = in.q, inf_v = in.v;
  nan_q[static_cast<size_t>((2 * 4 + 1) * 8 + 5)] = std::numeric_limits<float>::quiet_NaN();
  inf_v[static_cast<size_t>((3 * 2 + 0) * 8 + 2)] = -std::numeric_limits<float>::infinity();
  auto qn = (dir_ / "qn.npy").string(), vi = (dir_ / "vi.npy").string();
  ASSERT_TRUE(write_npy(qn, {4, 4, 8}, nan_q.data()).ok());
  ASSERT_TRUE(write_npy(vi, {4, 2, 8}, inf_v.data()).ok());
  auto o = (dir_ / "o.npy").string();
  struct Case {
    std::string args, expect;
  } cases[] = {
      {"--q " + (dir_ / "missing.npy").string() + " --k " + k + " --v " + v, "missing.npy"},
      {"--q " + garbage + " --k " + k + " --v " + v, "garbage.npy"},
      {"--q " + q + " --k " + flat + " --v " + v, "3-d"},
      {"--q " + q + " --k " + k + " --v " + v3, "same shape"},
      {"--q " + q + " --k " + k + " --v " + v + " --cached-tokens 3", "--cached-tokens"},
      {"--q " + q + " --k " + k + " --v " + v + " --strategy nope", "unknown strategy"},
      {"--q " + q + " --k " + k + " --v " + v + " --layout nope", "unknown layout"},
      {"--q " + q + " --k " + k + " --v " + v + " --cp 0", "--cp"},
      {"--q " + q + " --k " + k + " --v " + v + " --cp 3 --layout zigzag", "multiple of 6"},
      {"--q " + qn + " --k " + k + " --v " + v, "qn.npy: element [2, 1, 5] is NaN"},
      {"--q " + q + " --k " + k + " --v " + vi, "vi.npy: element [3, 0, 2] is Inf"},
  };
  for (const auto& c : cases) {
    CmdResult r = cpbench("attend " + c.args + " --out " + o);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << c.args << "\n" << r.out;
    EXPECT_FALSE(fs::exists(o)) << c.args;
  }
}

}  // namespace
}  // namespace cpb

namespace cpb {
namespace {

// A point far beyond this machine's memory is refused before anything is allocated.
TEST(CliMemory, HugePointIsInvalidNotACrash) {
  ExecSpec spec;
  spec.strategy = "allgather";
  spec.layout = LayoutKind::contiguous;
  spec.cp = 8;
  spec.workload = Workload{.batch = 64, .heads = 128, .kv_heads = 8, .head_dim = 128,
                           .new_tokens = 1 << 20, .cached_tokens = 0};
  Status st = check_point(spec);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("GiB of host memory"), std::string::npos) << st.error().str();
  EXPECT_NE(st.error().message.find("CPBENCH_HOST_MEMORY_GIB"), std::string::npos)
      << st.error().str();
}

// CPBENCH_HOST_MEMORY_GIB replaces MemAvailable in that check (a VM whose memory grows as it is
// touched reads too little there); a value that is not a positive number is an error naming it.
TEST(CliMemory, HostMemoryBudgetComesFromTheEnvironmentWhenSet) {
  ExecSpec spec;
  spec.strategy = "ring_pass_kv";
  spec.layout = LayoutKind::contiguous;
  spec.cp = 2;
  spec.workload = Workload{.batch = 1, .heads = 2, .kv_heads = 2, .head_dim = 16,
                           .new_tokens = 1 << 16, .cached_tokens = 0};  // ~0.3 GiB with verify
  {
    cpb::testing_support::ScopedEnv env("CPBENCH_HOST_MEMORY_GIB", "0.01");
    Status st = check_point(spec);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("0.0 GiB is available (CPBENCH_HOST_MEMORY_GIB)"),
              std::string::npos)
        << st.error().str();
  }
  {
    cpb::testing_support::ScopedEnv env("CPBENCH_HOST_MEMORY_GIB", "4096");
    auto b = host_memory_budget();
    ASSERT_TRUE(b.ok()) << b.error().str();
    EXPECT_EQ(*b, int64_t{4096} << 30);
    EXPECT_TRUE(check_point(spec).ok());
  }
  for (const char* bad : {"lots", "-3", "0", "12GiB", "nan"}) {
    cpb::testing_support::ScopedEnv env("CPBENCH_HOST_MEMORY_GIB", bad);
    Status st = check_point(spec);
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.error().message.find("CPBENCH_HOST_MEMORY_GIB='" + std::string(bad) + "'"),
              std::string::npos)
        << st.error().str();
  }
}

}  // namespace
}  // namespace cpb
