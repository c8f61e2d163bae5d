// Ctrl-C and SIGTERM in the middle of a sweep (issue: a stopped sweep loses nothing): the run
// stops after the point in flight with exit 130 / 143, results.jsonl holds only whole records of
// finished points, the manifest says "interrupted", and --resume then completes the run to the
// same set of points as a run that was never stopped. A second Ctrl-C stops at once and still
// leaves no half-written record.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/cli_run.hpp"
#include "tests/support/temp_dir.hpp"

extern char** environ;

namespace cpb {
namespace {

namespace fs = std::filesystem;

// Points that take a noticeable time each on the cpu backend, so that a signal lands mid-sweep.
const char* kSweep = R"(name: sig
backend: cpu
warmup: 0
iterations: 2
verify: false
defaults: {heads: 8, kv_heads: 4, head_dim: 32, new_tokens: 240, mask: causal}
axes:
  strategy: [ring_pass_kv, ring_pass_q, allgather]
  cp: [1, 2, 3, 4]
)";

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> lines_of(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

struct Spawned {
  pid_t pid = -1;
  int wait() const {
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }
};

Spawned spawn_run(const fs::path& cfg, const fs::path& run_dir, const fs::path& log) {
  std::vector<std::string> args = {CPBENCH_BINARY,   "run",    cfg.string(), "--run-dir",
                                   run_dir.string(), "--quiet"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  Spawned s;
  EXPECT_EQ(posix_spawn(&s.pid, argv[0], &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  return s;
}

// Waits until results.jsonl holds at least `n` lines (or 60 s pass).
bool wait_for_records(const fs::path& results, size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(results) && lines_of(results).size() >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::set<std::string> point_ids(const fs::path& results, bool* all_whole) {
  std::set<std::string> ids;
  *all_whole = true;
  for (const auto& line : lines_of(results)) {
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("point_id")) {
      *all_whole = false;
      continue;
    }
    ids.insert(j["point_id"].get<std::string>());
  }
  return ids;
}

class Signals : public ::testing::TestWithParam<int> {
 protected:
  testing_support::TempDir tmp_;
  fs::path cfg_ = tmp_.path() / "sig.yaml";
  void SetUp() override { std::ofstream(cfg_) << kSweep; }
};

TEST_P(Signals, StopAfterThePointInFlightThenResume) {
  const int sig = GetParam();
  const fs::path run = tmp_.path() / "run";
  Spawned p = spawn_run(cfg_, run, tmp_.path() / "log.txt");
  ASSERT_TRUE(wait_for_records(run / "results.jsonl", 2)) << "no records within 60 s";
  kill(p.pid, sig);
  const int code = p.wait();
  const std::string log = read_text(tmp_.path() / "log.txt");
  EXPECT_EQ(code, 128 + sig) << log;
  EXPECT_NE(log.find("--resume"), std::string::npos) << log;

  bool whole = false;
  const auto partial = point_ids(run / "results.jsonl", &whole);
  EXPECT_TRUE(whole) << "a record was cut";
  EXPECT_LT(partial.size(), 12u) << "the sweep ran to the end: the signal came too late";
  std::ifstream m(run / "manifest.json");
  EXPECT_EQ(nlohmann::json::parse(m)["status"], "interrupted");

  auto resumed = testing_support::cpbench("run " + cfg_.string() + " --resume --quiet --run-dir " +
                                          run.string());
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  const auto after = point_ids(run / "results.jsonl", &whole);
  EXPECT_TRUE(whole);

  // The same set of points as a run that was never stopped.
  const fs::path clean = tmp_.path() / "clean";
  auto full =
      testing_support::cpbench("run " + cfg_.string() + " --quiet --run-dir " + clean.string());
  ASSERT_EQ(full.code, 0) << full.out;
  EXPECT_EQ(after, point_ids(clean / "results.jsonl", &whole));
  std::ifstream m2(run / "manifest.json");
  EXPECT_EQ(nlohmann::json::parse(m2)["status"], "complete");
}

INSTANTIATE_TEST_SUITE_P(Sweep, Signals, ::testing::Values(SIGINT, SIGTERM), [](const auto& info) {
  return info.param == SIGINT ? "SIGINT" : "SIGTERM";
});

TEST(SignalsTwice, SecondCtrlCStopsAtOnceAndLeavesWholeRecords) {
  testing_support::TempDir tmp;
  const fs::path cfg = tmp.path() / "sig.yaml", run = tmp.path() / "run";
  std::ofstream(cfg) << kSweep;
  Spawned p = spawn_run(cfg, run, tmp.path() / "log.txt");
  ASSERT_TRUE(wait_for_records(run / "results.jsonl", 1));
  kill(p.pid, SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(p.pid, SIGINT);
  EXPECT_EQ(p.wait(), 130);
  bool whole = false;
  point_ids(run / "results.jsonl", &whole);
  EXPECT_TRUE(whole);
  // Whatever the state, a resume finishes the run.
  auto resumed = testing_support::cpbench("run " + cfg.string() + " --resume --quiet --run-dir " +
                                          run.string());
  EXPECT_EQ(resumed.code, 0) << resumed.out;
}

}  // namespace
}  // namespace cpb
