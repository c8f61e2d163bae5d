// The regression gate on the sim backend, CI's version of scripts/regression.sh: the committed
// baseline (results/baselines/sim-h200x4-calibrated.json) passes against a fresh run of the sweep,
// and a baseline made 10% faster for one point (as if the code had since lost 10% there) fails the
// gate on exactly that point. The sim is deterministic, so neither outcome is a matter of luck.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/cli_run.hpp"
#include "tests/support/temp_dir.hpp"

namespace cpb {
namespace {

namespace fs = std::filesystem;
using testing_support::cpbench;

const std::string kSource = CPBENCH_SOURCE_DIR;
const std::string kBaseline = kSource + "/results/baselines/sim-h200x4-calibrated.json";

fs::path run_sweep(const fs::path& dir) {
  const fs::path run = dir / "run";
  // The whole sweep (about a second on sim): a point of the baseline missing from NEW fails.
  auto r =
      cpbench("run " + kSource +
              "/experiments/ci/regression.yaml --backend sim --quiet --run-dir " + run.string());
  EXPECT_EQ(r.code, 0) << r.out;
  return run;
}

TEST(RegressionSim, CommittedBaselinePasses) {
  testing_support::TempDir tmp;
  const fs::path run = run_sweep(tmp.path());
  auto r = cpbench("compare " + kBaseline + " " + run.string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("0 regression(s)"), std::string::npos) << r.out;
}

TEST(RegressionSim, ATenPercentSlowdownOfOnePointFails) {
  testing_support::TempDir tmp;
  const fs::path run = run_sweep(tmp.path());
  std::ifstream in(kBaseline);
  nlohmann::json base = nlohmann::json::parse(in);
  std::string slowed;
  for (auto& p : base["points"]) {
    const auto& c = p["config"];
    if (c["cp"] == 2 && c["strategy"] == "ring_pass_q" && c["phase"] == "decode") {
      for (auto& s : p["samples"]) s = s.get<double>() / 1.1;
      slowed = p["id"].get<std::string>();
    }
  }
  ASSERT_FALSE(slowed.empty()) << "the baseline has no cp 2 ring_pass_q decode point";
  const fs::path faster = tmp.path() / "faster.json";
  std::ofstream(faster) << base.dump();
  auto r = cpbench("compare " + faster.string() + " " + run.string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("1 regression(s)"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace cpb
