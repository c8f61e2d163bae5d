// Fault injection (CPBENCH_FAULT, harness/core/fault.hpp) on the cpu backend: a rank that throws
// or hangs in the middle of a point makes that point `error` within the timeout, the sweep goes
// on to the next points, and a malformed value is refused before anything runs.
#include "harness/core/fault.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "harness/io/results.hpp"
#include "tests/support/cli_run.hpp"
#include "tests/support/temp_dir.hpp"

namespace cpb {
namespace {

namespace fs = std::filesystem;

TEST(FaultSpec, Parses) {
  auto f = parse_fault("hang:1:3");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->kind, FaultSpec::Kind::hang);
  EXPECT_EQ(f->rank, 1);
  EXPECT_TRUE(f->armed_for(3));
  EXPECT_FALSE(f->armed_for(2));
  f = parse_fault("throw:0");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->kind, FaultSpec::Kind::throw_exception);
  EXPECT_TRUE(f->armed_for(0) && f->armed_for(7));
  f = parse_fault("nan:2");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->kind, FaultSpec::Kind::nan_output);
  f = parse_fault("");
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->armed_for(0));
}

TEST(FaultSpec, RejectsMalformedValues) {
  for (const char* bad : {"hang", "hang:", "crash:1", "hang:-1", "hang:1:x", "hang:1:2:3",
                          "throw:99999999", "HANG:1", " hang:1"}) {
    auto f = parse_fault(bad);
    ASSERT_FALSE(f.ok()) << bad;
    EXPECT_NE(f.error().message.find("KIND:RANK[:POINT]"), std::string::npos) << bad;
  }
}

const char* kSweep = R"(name: fault
backend: cpu
warmup: 0
iterations: 2
timeout_s: 1
defaults: {heads: 8, kv_heads: 4, head_dim: 16, new_tokens: 96, mask: causal}
axes:
  strategy: [ring_pass_kv, ring_pass_q, allgather]
  cp: [2, 3]
)";

struct Outcome {
  testing_support::CmdResult cmd;
  std::vector<nlohmann::json> records;
  double seconds = 0;
};

Outcome run_with_fault(const std::string& fault) {
  testing_support::TempDir tmp;
  const fs::path cfg = tmp.path() / "f.yaml", run = tmp.path() / "run";
  std::ofstream(cfg) << kSweep;
  Outcome o;
  const auto t0 = std::chrono::steady_clock::now();
  o.cmd = testing_support::cpbench("run " + cfg.string() + " --quiet --run-dir " + run.string(),
                                   "CPBENCH_FAULT=" + fault);
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (auto r = read_jsonl((run / "results.jsonl").string()); r.ok()) o.records = *r;
  return o;
}

// Point 2 is ring_pass_q at cp 2 (the last axis varies fastest); rank 1 fails there.
void expect_only_point_2_failed(const Outcome& o, const std::string& why) {
  EXPECT_EQ(o.cmd.code, 1) << o.cmd.out;
  ASSERT_EQ(o.records.size(), 6u) << o.cmd.out;
  for (const auto& r : o.records) {
    if (r["index"] == 2) {
      EXPECT_EQ(r["status"], "error") << r.dump();
      EXPECT_NE(r["error"].get<std::string>().find(why), std::string::npos) << r["error"];
    } else {
      EXPECT_EQ(r["status"], "ok") << r.dump();
    }
  }
}

TEST(Fault, ARankThatThrowsFailsOnlyItsPoint) {
  Outcome o = run_with_fault("throw:1:2");
  expect_only_point_2_failed(o, "injected fault (CPBENCH_FAULT): rank 1 threw");
}

TEST(Fault, ARankThatHangsFailsOnlyItsPointWithinTheTimeout) {
  Outcome o = run_with_fault("hang:1:2");
  // The peer waiting for rank 1 gives up after timeout_s (1 s) and names it.
  expect_only_point_2_failed(o, "from rank 1: a rank hung");
  EXPECT_LT(o.seconds, 30) << "the sweep took too long: something waited for more than the timeout";
}

TEST(Fault, ANanInARanksOutputIsCaughtByTheVerification) {
  Outcome o = run_with_fault("nan:1:2");
  EXPECT_EQ(o.cmd.code, 1) << o.cmd.out;
  ASSERT_EQ(o.records.size(), 6u) << o.cmd.out;
  for (const auto& r : o.records) {
    if (r["index"] == 2) {
      EXPECT_EQ(r["status"], "wrong") << r.dump();
      EXPECT_NE(r["error"].get<std::string>().find("NaN or Inf in the output"), std::string::npos)
          << r["error"];
      EXPECT_FALSE(r["verify"]["finite"].get<bool>());
    } else {
      EXPECT_EQ(r["status"], "ok") << r.dump();
    }
  }
}

TEST(Fault, MalformedSwitchIsRefusedBeforeAnythingRuns) {
  testing_support::TempDir tmp;
  const fs::path cfg = tmp.path() / "f.yaml";
  std::ofstream(cfg) << kSweep;
  auto r =
      testing_support::cpbench("run " + cfg.string() + " --out " + (tmp.path() / "runs").string(),
                               "CPBENCH_FAULT=explode:1");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("CPBENCH_FAULT='explode:1'"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(tmp.path() / "runs"));
}

}  // namespace
}  // namespace cpb
