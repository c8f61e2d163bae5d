// `cpbench calibrate --quick` on the GPUs (label `gpu`): the profile reads back with sane tables
// and link curves (on 2 GPUs when there are 2), and the sim backend predicts every strategy on it.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "harness/calibrate/calibrate.hpp"
#include "harness/core/backend.hpp"
#include "harness/core/hardware_profile.hpp"
#include "harness/runner/runner.hpp"
#include "strategies/strategy.hpp"
#include "tests/support/calibrated_profile.hpp"
#include "tests/support/temp_dir.hpp"

namespace cpb {
namespace {

TEST(CalibrateGpu, QuickProfileReadsBackAndDrivesTheSim) {
  if (usable_gpus() < 1) GTEST_SKIP() << "no GPU";
  const int gpus = std::min(2, usable_gpus());
  testing_support::TempDir tmp("cpbench_cal_gpu");
  calibrate::Options o;
  o.backend = "cuda";
  o.quick = true;
  o.gpus = gpus;
  o.out = tmp.file("gpu.yaml");
  o.argv = {"cpbench_gpu_tests", "calibrate", "--quick"};
  auto res = calibrate::run(o);
  ASSERT_TRUE(res.ok()) << res.error().detail();
  testing_support::expect_calibrated_profile(o.out, gpus);
  // A GPU's attention runs at TF/s, not GF/s: a unit slip would show here.
  EXPECT_GT(res->peak_tflops, 1.0);
  // The host's issue time per call, for the kinds the grid issues (transfers with 2 GPUs).
  auto prof = load_hardware_profile(o.out);
  ASSERT_TRUE(prof.ok()) << prof.error().str();
  std::vector<std::string> kinds = {"attention", "copy", "merge"};
  if (gpus > 1) kinds.insert(kinds.end(), {"p2p", "all_to_all", "all_gather"});
  for (const auto& k : kinds) {
    ASSERT_TRUE(prof->issue_us.count(k)) << k;
    EXPECT_GT(prof->issue_us.at(k), 0) << k;
    EXPECT_LT(prof->issue_us.at(k), 1000) << k;  // microseconds, not seconds or nanoseconds
  }
  // With 2 GPUs, the issue costs again in a run of one rank (its own backend).
  if (gpus > 1) {
    ASSERT_TRUE(prof->issue_us_ranks.count(1));
    for (const std::string k : {"attention", "copy", "merge", "event"}) {
      ASSERT_TRUE(prof->issue_us_ranks.at(1).count(k)) << k;
      EXPECT_GT(prof->issue_us_ranks.at(1).at(k), 0) << k;
      EXPECT_LT(prof->issue_us_ranks.at(1).at(k), 1000) << k;
    }
  } else {
    EXPECT_TRUE(prof->issue_us_ranks.empty());
  }
  for (const std::string strategy : {"ring_pass_kv", "allgather", "ring_pass_q", "ulysses"}) {
    ExecSpec spec;
    spec.backend = "sim";
    spec.strategy = strategy;
    spec.cp = gpus;
    spec.workload = Workload{.batch = 1, .heads = 8, .kv_heads = 2, .head_dim = 128};
    spec.workload.new_tokens = 4096;
    spec.options.hardware_profile = o.out;
    auto run = execute_point(spec);
    ASSERT_TRUE(run.ok()) << strategy << ": " << run.error().str();
    EXPECT_GT(run->iteration_times_s.at(0), 0) << strategy;
  }
}

}  // namespace
}  // namespace cpb
