// `cpbench calibrate` on the cpu backend end to end: the quick grid writes a profile that
// load_hardware_profile reads back with attention points and link curves, and that a sim run
// accepts; one rank gives a valid profile without links; bad arguments exit 2 with one line and
// write nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness/io/results.hpp"
#include "tests/support/calibrated_profile.hpp"
#include "tests/support/cli_run.hpp"
#include "tests/support/temp_dir.hpp"

namespace cpb {
namespace {

namespace fs = std::filesystem;
using testing_support::CmdResult;
using testing_support::cpbench;

class Calibrate : public ::testing::Test {
 protected:
  void SetUp() override { tmp_ = std::make_unique<testing_support::TempDir>("cpbench_cal"); }
  std::string path(const std::string& name) const { return tmp_->file(name); }

  // The sim runs a tiny sweep of every strategy family at `cp` on the profile.
  void expect_sim_accepts(const std::string& profile, int cp) {
    const std::string cfg = path("sim.yaml");
    std::ofstream(cfg) << "name: sim-on-calibrated\niterations: 1\nwarmup: 0\n"
                          "defaults: {heads: 4, kv_heads: 2, head_dim: 8, new_tokens: 64, cp: "
                       << cp << "}\naxes:\n  strategy: [ring_pass_kv, allgather, ring_pass_q"
                       << (cp > 1 ? ", ulysses" : "") << "]\n";
    CmdResult r = cpbench("run " + cfg + " --backend sim --quiet --hardware-profile " + profile +
                          " --run-dir " + path("sim-run"));
    ASSERT_EQ(r.code, 0) << r.out;
    auto recs = read_jsonl(path("sim-run") + "/results.jsonl");
    ASSERT_TRUE(recs.ok()) << recs.error().str();
    ASSERT_EQ(recs->size(), cp > 1 ? 4u : 3u);
    for (const auto& rec : *recs) {
      EXPECT_EQ(rec["status"], "ok") << rec.dump();
      EXPECT_TRUE(rec["predicted"].get<bool>());
      EXPECT_GT(rec["time"]["median"].get<double>(), 0);
    }
  }

  std::unique_ptr<testing_support::TempDir> tmp_;
};

TEST_F(Calibrate, CpuQuickWritesAProfileTheSimAccepts) {
  const std::string out = path("cpu.yaml");
  CmdResult r = cpbench("calibrate --backend cpu --quick --gpus 2 --name cpu-test --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("attention 1/"), std::string::npos) << "progress lines: " << r.out;
  EXPECT_NE(r.out.find("wrote " + out), std::string::npos) << r.out;
  testing_support::expect_calibrated_profile(out, 2);
  auto p = load_hardware_profile(out);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->name, "cpu-test");
  // The cpu backend runs each op inside its issuing call: no host issue costs in its profile.
  EXPECT_TRUE(p->issue_us.empty());
  expect_sim_accepts(out, 2);
  // Batched (small) transfers are also timed behind a head start (a value per pair of samples,
  // the wall time kept beside); the others by the wall time of one op per sample. Each series
  // carries the host's issue time.
  std::ifstream f(path("cpu.json"));
  const auto j = nlohmann::json::parse(f);
  const auto series = testing_support::calibration_series(out);
  // The batched sizes' tables take their samples of one op each (Grid::lone_tables), the batch's
  // times kept beside. Collectives are not issued a rank at a time (Grid::issue_staggered: the
  // barrier between turns would wait for a collective's peers).
  int batched = 0, walled = 0;
  for (const auto& s : series) {
    const std::string kind = s["kind"];
    if (kind != "sendrecv" && kind != "all_to_all" && kind != "all_gather") continue;
    EXPECT_GT(s.value("issue_us", 0.0), 0) << s.dump();           // a burst behind the head start
    EXPECT_GT(s.value("issue_isolated_us", 0.0), 0) << s.dump();  // one op a sample
    EXPECT_FALSE(s.contains("issue_staggered_us")) << s.dump();
    EXPECT_EQ(s["lone_seconds_per_op"].size(), 2u) << s.dump();  // the issue samples
    if (s["batch"].get<int>() == 8) {
      ++batched;
      EXPECT_EQ(s["seconds_per_op"], s["lone_seconds_per_op"]) << s.dump();
      EXPECT_EQ(s["seconds_per_op_from"].get<std::string>().rfind("lone:", 0), 0u) << s.dump();
      // Behind the head start, a value per pair of samples, or (the cpu's timer noise beat the
      // batch) the wall time per op.
      const bool headed = !s.value("head_start_noisy", false);
      EXPECT_EQ(s["batch_seconds_per_op"].size(), headed ? 3u : 5u) << s.dump();
      EXPECT_EQ(s.contains("wall_seconds_per_op"), headed) << s.dump();
    } else {
      ++walled;
      EXPECT_EQ(s["batch"].get<int>(), 1) << s.dump();
      EXPECT_FALSE(s.contains("batch_seconds_per_op")) << s.dump();
    }
  }
  EXPECT_EQ(batched, 6);  // 4 KiB and 16 KiB, three collectives
  EXPECT_GT(walled, 0);
  // The launch copies too: the head start and batch less the head start alone, a value per pair.
  EXPECT_TRUE(j["grid"]["head_start"].get<bool>());
  const auto launch = std::find_if(series.begin(), series.end(),
                                   [](const auto& s) { return s["kind"] == "launch"; });
  ASSERT_NE(launch, series.end());
  EXPECT_NE(launch->contains("seconds_per_op_from"), launch->value("head_start_noisy", false))
      << launch->dump();
  EXPECT_EQ((*launch)["seconds_per_op"].size(), 3u) << launch->dump();
  EXPECT_GT(p->launch_us, 0);
  // The cross-stream chain: the launch copies alternating between the streams, each waiting on
  // the one before; it gives the event calls' issue time (its wait_us is written for GPUs only:
  // the cpu backend's streams are one).
  const auto wait =
      std::find_if(series.begin(), series.end(), [](const auto& s) { return s["kind"] == "wait"; });
  ASSERT_NE(wait, series.end());
  EXPECT_EQ((*wait)["batch"], (*launch)["batch"]) << wait->dump();
  EXPECT_TRUE(wait->contains("wait_us")) << wait->dump();
  EXPECT_GT(wait->value("event_issue_us", 0.0), 0) << wait->dump();
  EXPECT_FALSE(wait->contains("issue_us")) << wait->dump();
  EXPECT_EQ(p->wait_us, 0);
  // The small-block rectangle: causal blocks with their queries last beside the squares, each
  // also measured warm; their records carry the host's issue time of isolated issues.
  EXPECT_TRUE(std::any_of(p->attention.begin(), p->attention.end(), [](const AttentionPoint& a) {
    return a.causal && a.sq < a.sk && !a.warm;
  }));
  EXPECT_TRUE(std::any_of(p->attention.begin(), p->attention.end(), [](const AttentionPoint& a) {
    return a.causal && a.sq < a.sk && a.warm;
  }));
  EXPECT_TRUE(std::any_of(p->attention.begin(), p->attention.end(),
                          [](const AttentionPoint& a) { return !a.causal && a.warm; }));
  EXPECT_EQ(j["grid"]["issue_samples"].get<int>(), 2);
  EXPECT_EQ(j["grid"]["issue_burst"].get<int>(), 2);
  // Small cold blocks take their samples of one op each, after the timer's flush; warm ones
  // keep their batches. Compute ops are also issued a rank at a time.
  int lone_blocks = 0;
  for (const auto& s : series) {
    if (s["kind"] != "attention" || s.contains("ranks")) continue;
    if (s["shape"]["warm"].get<bool>()) {
      EXPECT_GT(s.value("issue_us", 0.0), 0) << s.dump();
      EXPECT_FALSE(s.contains("batch_seconds_per_op")) << s.dump();
    }
    EXPECT_GT(s.value("issue_staggered_us", 0.0), 0) << s.dump();
    if (s.contains("batch_seconds_per_op")) {
      ++lone_blocks;
      EXPECT_FALSE(s["shape"]["shared"].get<bool>()) << s.dump();
      EXPECT_EQ(s["seconds_per_op"], s["lone_seconds_per_op"]) << s.dump();
    }
  }
  EXPECT_GT(lone_blocks, 0);
  // The issue costs in a run of one rank (Grid::issue_ranks): the chain's events, the smallest
  // blocks, a copy and a merge, in the JSON (the cpu backend's profile has no issue costs).
  const auto& fewer = j["summary"]["issue_us_ranks"];
  ASSERT_TRUE(fewer.contains("1")) << fewer.dump();
  for (const char* k : {"attention", "copy", "merge", "event"})
    EXPECT_GT(fewer["1"].value(k, 0.0), 0) << k << ": " << fewer.dump();
  EXPECT_FALSE(fewer.contains("2")) << fewer.dump();
  EXPECT_TRUE(p->issue_us_ranks.empty());
  const auto one = std::count_if(series.begin(), series.end(),
                                 [](const auto& s) { return s.value("ranks", 0) == 1; });
  EXPECT_EQ(one, 1 + 4 + 2);  // the chain, four blocks, a copy and a merge
}

TEST_F(Calibrate, OneRankSkipsTheLinksAndStaysValid) {
  const std::string out = path("one.yaml");
  CmdResult r = cpbench("calibrate --backend cpu --quick --gpus 1 --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("no link measured"), std::string::npos) << r.out;
  testing_support::expect_calibrated_profile(out, 1);
  auto p = load_hardware_profile(out);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->name, "cpu-x1");
  EXPECT_EQ(p->share_factor, 1);
  expect_sim_accepts(out, 1);
}

TEST_F(Calibrate, BadArgumentsExit2WithOneLineAndWriteNothing) {
  fs::create_directories(path("dir.yaml"));
  const std::string ok_out = " --out " + path("p.yaml");
  const struct {
    std::string args, says;
  } cases[] = {
      {"calibrate --backend cpu --quick", "--out: give the profile's path"},
      {"calibrate --backend cpu --quick --out " + path("p.txt"), "a profile is a .yaml file"},
      {"calibrate --backend cpu --quick --out " + path("missing/p.yaml"), "does not exist"},
      {"calibrate --backend cpu --quick --out " + path("dir.yaml"), "is a folder"},
      {"calibrate --backend cpu --quick --out /proc/cpbench-cal.yaml", "cannot write in /proc"},
      {"calibrate --backend tpu --quick" + ok_out, "--backend 'tpu'"},
      {"calibrate --backend cpu --quick --gpus -1" + ok_out, "--gpus must be >= 1"},
      // Without the cuda backend: "no cuda backend"; with it and no GPU or too few: says so.
      {"calibrate --backend cuda --quick --gpus 4096" + ok_out, "cuda"},
  };
  for (const auto& c : cases) {
    CmdResult r = cpbench(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.out;
    EXPECT_EQ(r.out.rfind("error: ", 0), 0u) << c.args << "\n" << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.says), std::string::npos) << c.args << "\n" << r.out;
  }
  // Nothing but the folder made above.
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(tmp_->path())) left.push_back(e.path().string());
  ASSERT_EQ(left.size(), 1u) << left.back();
  EXPECT_TRUE(fs::is_empty(path("dir.yaml")));
}

}  // namespace
}  // namespace cpb
