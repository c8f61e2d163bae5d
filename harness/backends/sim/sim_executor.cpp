// SimExecutor and the sim Backend (sim_executor.hpp): op capture per iteration, the shared
// per-iteration simulation, predicted timers and trace marks.
#include "harness/backends/sim/sim_executor.hpp"

#include <algorithm>
#include <filesystem>
#include <mutex>

#include "harness/backends/cpu/cpu_executor.hpp"
#include "harness/backends/sim/contention.hpp"
#include "harness/backends/sim/engine.hpp"
#include "harness/core/null_executor.hpp"

namespace cpb::sim {
namespace {

// What the ranks share: the world's barrier, each rank's program of the current iteration and
// the timeline rank 0 computes from them.
struct SimShared {
  SimShared(int world, double timeout_s, CostModel m)
      : cpu(world, timeout_s), model(std::move(m)), programs(static_cast<size_t>(world)) {}
  CpuWorld cpu;
  CostModel model;
  std::vector<RankProgram> programs;
  Timeline timeline;
  double load_s = 0;  // predicted time of the point's iterations so far (contention.hpp)
};

class SimExecutor final : public NullOpsExecutor {
 public:
  SimExecutor(SimShared& shared, int rank, DType dtype)
      : NullOpsExecutor(rank, shared.cpu.size(), dtype), sh_(shared) {
    keep_every_record();  // each timed iteration is priced from its ops' records
  }
  std::string_view backend() const override { return "sim"; }

  Status barrier() override { return sh_.cpu.barrier(rank()); }
  Status timer_start() override {
    log_ = {};
    last_[0] = last_[1] = -1;
    pending_[0].clear();
    pending_[1].clear();
    marks_.clear();
    return {};
  }
  Expected<double> timer_stop() override;
  std::string_view clock() const override { return "sim"; }

 protected:
  // The base hands every op that runs (not skipped) to range_push with its record: that is the
  // capture point. Waits and events are tracked here per iteration (the base logs only the
  // first iteration).
  void range_push(const OpRecord& rec) override {
    OpRecord r = rec;
    auto& w = pending_[static_cast<int>(rec.stream)];
    r.waits = std::move(w);
    w.clear();
    last_[static_cast<int>(rec.stream)] = static_cast<int>(log_.log.size());
    log_.log.push_back(std::move(r));
  }
  void do_record(Stream s, Event e) override {
    if (static_cast<int>(log_.events.size()) <= e.id) log_.events.resize(e.id + 1);
    log_.events[static_cast<size_t>(e.id)] = {s, last_[static_cast<int>(s)]};
  }
  void do_wait(Stream s, Event e) override { pending_[static_cast<int>(s)].push_back(e.id); }
  // Marks come in pairs around each op: the first before the op is captured, the second after.
  void do_mark(Stream s, int slot) override {
    if (static_cast<int>(marks_.size()) <= slot) marks_.resize(slot + 1);
    const int captured = static_cast<int>(log_.log.size());
    marks_[static_cast<size_t>(slot)] = {s, captured, (slot % 2) == 1};
  }
  Expected<double> do_mark_seconds(int slot) override;

 private:
  struct Mark {
    Stream stream = Stream::compute;
    int captured = 0;  // ops captured when the mark was set
    bool second = false;
  };
  SimShared& sh_;
  Accounting log_;  // this iteration's ops and events
  int last_[2] = {-1, -1};
  std::vector<int> pending_[2];
  std::vector<Mark> marks_;
  std::vector<OpTime> times_;  // this rank's ops in the last simulated iteration
};

Expected<double> SimExecutor::timer_stop() {
  const int r = rank();
  // Durations first: a cost the profile cannot give (a missing link class) is this rank's error.
  std::vector<double> cost;
  for (const OpRecord& rec : log_.log) {
    CPB_ASSIGN_OR_RETURN(double s, sh_.model.seconds(rec, r, world()));
    cost.push_back(s);
  }
  size_t next = 0;
  sh_.programs[static_cast<size_t>(r)] = program_from_log(
      log_, [&](const OpRecord&) { return cost[next++]; },
      [&](const OpRecord& rec) { return sh_.model.issue_seconds(rec, world()); });
  sh_.programs[static_cast<size_t>(r)].host_lead_s = sh_.model.profile().issue_lead_us * 1e-6;
  sh_.programs[static_cast<size_t>(r)].wait_s = sh_.model.profile().wait_us * 1e-6;
  CPB_TRY(barrier());
  if (r == 0) {
    CPB_ASSIGN_OR_RETURN(sh_.timeline,
                         simulate_with_contention(sh_.programs, sh_.model.profile(), sh_.load_s));
    sh_.load_s += sh_.timeline.end_s;
  }
  CPB_TRY(barrier());
  times_ = sh_.timeline.ops[static_cast<size_t>(r)];
  return sh_.timeline.rank_end_s[static_cast<size_t>(r)];
}

Expected<double> SimExecutor::do_mark_seconds(int slot) {
  CPB_REQUIRE(slot >= 0 && slot < static_cast<int>(marks_.size()), "internal: sim mark {} unset",
              slot);
  const Mark& m = marks_[static_cast<size_t>(slot)];
  // The op a first mark precedes is the next one captured; a second mark follows the op just
  // captured, unless it was skipped: then both marks stand where the stream was.
  const Mark& first = m.second ? marks_[static_cast<size_t>(slot - 1)] : m;
  const Mark& second = m.second ? m : marks_[static_cast<size_t>(slot + 1)];
  if (second.captured > first.captured) {
    const OpTime& t = times_[static_cast<size_t>(first.captured)];
    return m.second ? t.end_s : t.begin_s;
  }
  double at = 0;
  for (int i = first.captured - 1; i >= 0; --i)
    if (log_.log[static_cast<size_t>(i)].stream == m.stream) {
      at = times_[static_cast<size_t>(i)].end_s;
      break;
    }
  return at;
}

class SimBackend final : public Backend {
 public:
  SimBackend(int world, double timeout_s, DType dtype, CostModel model)
      : shared_(world, timeout_s, std::move(model)), dtype_(dtype) {}
  std::string_view name() const override { return "sim"; }
  int size() const override { return shared_.cpu.size(); }
  Status run(const std::function<Status(Executor&)>& fn) override {
    return shared_.cpu.run([&](int rank) -> Status {
      SimExecutor ex(shared_, rank, dtype_);
      return fn(ex);
    });
  }
  nlohmann::json describe() const override {
    const HardwareProfile& p = shared_.model.profile();
    return {{"predicted", true},
            {"hardware_profile",
             {{"name", p.name}, {"path", p.path}, {"source", p.source}, {"machine", p.machine}}}};
  }

 private:
  SimShared shared_;
  DType dtype_;
};

}  // namespace

std::string default_sim_profile() {
  return (std::filesystem::path(CPBENCH_SOURCE_DIR) / "results" / "profiles" /
          "h200x4-calibrated.yaml")
      .string();
}

Expected<std::unique_ptr<Backend>> make_sim_backend(int world, DType dtype, double timeout_s,
                                                    const std::string& profile_path) {
  const std::string path = profile_path.empty() ? default_sim_profile() : profile_path;
  auto profile = load_hardware_profile(path);
  if (!profile.ok()) {
    Error e = std::move(profile).error();
    e.message = "sim backend: " + e.message;
    return e;
  }
  return std::unique_ptr<Backend>(
      new SimBackend(world, timeout_s, dtype, CostModel(std::move(*profile))));
}

}  // namespace cpb::sim
