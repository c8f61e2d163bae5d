// The sweep driver behind `cpbench run`.
#include "harness/runner/sweep.hpp"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <nlohmann/json.hpp>

#include "harness/config/config.hpp"
#include "harness/core/backend.hpp"
#include "harness/core/fault.hpp"
#include "harness/core/mpi_world.hpp"
#include "harness/io/provenance.hpp"
#include "harness/io/results.hpp"
#include "harness/runner/record.hpp"
#include "harness/runner/runner.hpp"
#include "harness/runner/stats.hpp"
#include "harness/runner/trace.hpp"
#include "strategies/strategy.hpp"

#ifdef CPBENCH_HAVE_CUDA
#include "kernels/cuda/device.hpp"
#endif

namespace cpb {
namespace {

// Ctrl-C (SIGINT) or SIGTERM during a sweep: the first asks the sweep to stop after the point in
// flight (every finished point is already in results.jsonl, a line at a time), so that `--resume`
// continues where it stopped; a second one stops the process at once (the point in flight is
// lost; no record is ever half written: each is one write of a whole line).
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal != 0) _exit(128 + sig);
  g_stop_signal = sig;
  static const char msg[] =
      "\ncpbench: stopping after the point in flight (again to stop at once); `--resume` "
      "continues the run\n";
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
}

// Installs the handlers for the points loop and puts the previous ones back at the end.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // Whether to stop before the next point (under MPI: when any process was asked to, so that
  // all leave the lock-step loop together).
  static bool requested() {
    const bool mine = g_stop_signal != 0;
    return mpi::active() ? !mpi::all(!mine) : mine;
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

void say(const std::string& line) {
  if (!mpi::is_root()) return;  // under MPI rank 0 speaks for all
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

// Text from the config (a description, a path) may hold bytes that are not UTF-8: replace them
// rather than let the JSON writer throw.
std::string safe_dump(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string hms(double s) {
  auto t = static_cast<long long>(s + 0.5);
  return fmt::format("{:02}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
}

std::string short_desc(const Point& p) {
  return fmt::format("{} {} cp={} {} T={} P={}", p.strategy, to_string(p.layout), p.cp,
                     to_string(p.workload.mask), p.workload.new_tokens, p.workload.cached_tokens);
}

ExecSpec spec_for(const Point& p, const Experiment& ex, const std::string& backend,
                  const std::string& hardware_profile) {
  ExecSpec s;
  s.backend = backend;
  s.strategy = p.strategy;
  s.layout = p.layout;
  s.cp = p.cp;
  s.workload = p.workload;
  s.seed = p.seed;
  s.options = p.options;
  // --hardware-profile: for the points that name none (the sim's cost model, auto's C and BW).
  if (s.options.hardware_profile.empty()) s.options.hardware_profile = hardware_profile;
  s.warmup = ex.warmup;
  s.iterations = ex.iterations;
  s.verify = ex.verify;
  s.timeout_s = ex.timeout_s;
  s.trace = true;
  s.measure_overlap = backend == "cuda";
  s.cuda_graph = ex.cuda_graph;
  return s;
}

// bench.json in Google Benchmark's schema (one entry per ran point, median time), so its
// compare.py works on two runs.
nlohmann::json bench_json(const std::vector<nlohmann::json>& records, const nlohmann::json& prov) {
  nlohmann::json b;
  b["context"] = {{"date", utc_iso8601()},
                  {"host_name", prov.value("host", "unknown")},
                  {"executable", "cpbench"},
                  {"library_build_type", "release"}};
  b["benchmarks"] = nlohmann::json::array();
  for (const auto& r : records) {
    if (r.value("status", "") != "ok" || !r.contains("time")) continue;
    double med = r["time"].value("median", 0.0);
    b["benchmarks"].push_back({{"name", r["point_id"]},
                               {"run_name", r["point_id"]},
                               {"run_type", "iteration"},
                               {"repetitions", 1},
                               {"iterations", r["time"].value("n", 0)},
                               {"real_time", med * 1e3},
                               {"cpu_time", med * 1e3},
                               {"time_unit", "ms"},
                               {"tflops_per_gpu", r.value("tflops_per_gpu", 0.0)}});
  }
  return b;
}

}  // namespace

BackendChoice resolve_backend(const std::string& requested, std::string* error) {
  const int gpus = usable_gpus();
  if (mpi::active() && requested != "cuda" && !(requested == "auto" && gpus > 0)) {
    *error = fmt::format("under mpirun every process is one GPU rank: use --backend cuda (asked "
                         "for '{}'{})",
                         requested, gpus == 0 ? ", and no GPU is visible" : "");
    return {};
  }
  if (requested == "cpu") return {"cpu", "requested"};
  if (requested == "auto" || requested.empty()) {
    if (gpus > 0) return {"cuda", fmt::format("{} GPU(s) visible", gpus)};
    return {"cpu", "no GPU visible (or no cuda backend in this build)"};
  }
  if (requested == "cuda") {
    if (gpus == 0) {
      Status st = check_backend("cuda", 0);  // says whether the build lacks CUDA/NCCL
      *error = st.ok() ? "backend cuda: no GPU visible: use --backend cpu" : st.error().str();
      return {};
    }
    return {"cuda", fmt::format("requested, {} GPU(s) visible", gpus)};
  }
  if (requested == "sim") return {"sim", "requested: times predicted on a hardware profile"};
  *error = fmt::format("unknown backend '{}': use auto, cpu, cuda or sim", requested);
  return {};
}

int run_sweep(const SweepOptions& opts) {
  if (opts.gpus < 0) {
    say(fmt::format("error: --gpus must be >= 1 (got {})", opts.gpus));
    return 2;
  }
  limit_gpus(opts.gpus);
  ParseOptions po;
  po.strategies = strategy_names();
  po.filter = opts.filter;
  auto loaded = load_experiment(opts.config, po);
  if (!loaded) {
    say("error: " + loaded.error().str());
    return 2;
  }
  Experiment& ex = *loaded;
  if (opts.cuda_graph) ex.cuda_graph = true;
  auto fault = fault_from_env();
  if (!fault) {
    say("error: " + fault.error().str());
    return 2;
  }
  std::string berr;
  const std::string requested = opts.backend.empty() ? ex.backend : opts.backend;
  BackendChoice backend = resolve_backend(requested, &berr);
  if (!berr.empty()) {
    // A dry run only expands and checks the sweep: it may describe a GPU sweep on a laptop.
    if (!opts.dry_run) {
      say("error: " + berr);
      return 2;
    }
    backend = {"cpu", fmt::format("{} is not usable here ({}); points checked as on cpu",
                                  requested, berr)};
  }
  if (ex.points.empty()) {
    say(fmt::format("error: {}: no points left after `where`{}: loosen them", opts.config,
                    opts.filter.empty() ? "" : " and --filter"));
    return 2;
  }

  // Every point is checked before anything runs.
  std::vector<std::string> invalid(ex.points.size());
  int n_invalid = 0;
  for (size_t i = 0; i < ex.points.size(); ++i) {
    Status st = check_point(spec_for(ex.points[i], ex, backend.name, opts.hardware_profile));
    if (!st.ok()) {
      invalid[i] = st.error().str();
      ++n_invalid;
    }
  }

  if (opts.dry_run) {
    if (!mpi::is_root()) return n_invalid ? 1 : 0;
    std::printf("%s: %zu points (backend %s: %s)\n", ex.name.c_str(), ex.points.size(),
                backend.name.c_str(), backend.why.c_str());
    for (size_t i = 0; i < ex.points.size(); ++i) {
      const Point& p = ex.points[i];
      std::printf("%4zu  %-7s %s\n", i, invalid[i].empty() ? "ok" : "INVALID", p.id.c_str());
      if (!invalid[i].empty()) std::printf("      -> %s\n", invalid[i].c_str());
    }
    return n_invalid ? 1 : 0;
  }
  for (size_t i = 0; i < ex.points.size(); ++i)
    if (!invalid[i].empty())
      say(fmt::format("invalid point {} ({}): {}", i, short_desc(ex.points[i]), invalid[i]));

  // Under MPI only rank 0 touches the run folder; the others run the same points in lock-step.
  const bool root = mpi::is_root();
  RunFolder folder;
  std::set<std::string> done;
  std::unique_ptr<JsonlWriter> writer;
  std::vector<const char*> argv_c;
  for (const auto& a : opts.argv) argv_c.push_back(a.c_str());
  nlohmann::json prov = collect_provenance(static_cast<int>(argv_c.size()), argv_c.data());
  nlohmann::json manifest = {{"schema", "cpbench.manifest/1"},
                             {"name", ex.name},
                             {"description", ex.description},
                             {"config_path", ex.path},
                             {"config_text", ex.text},
                             {"backend", backend.name},
                             {"machine", backend_info(backend.name)},
                             {"hardware_profile", opts.hardware_profile},
                             {"backend_reason", backend.why},
                             {"warmup", ex.warmup},
                             {"iterations", ex.iterations},
                             {"verify", ex.verify},
                             {"filter", opts.filter},
                             {"points_total", ex.points.size()},
                             {"status", "running"},
                             {"started", utc_iso8601()},
                             {"provenance", prov}};
  auto write_manifest = [&]() -> bool {
    Status st = write_file_atomic(folder.manifest_path(), safe_dump(manifest, 2) + "\n");
    if (!st.ok()) say("error: " + st.error().str());
    return st.ok();
  };
  int setup = 0;
  if (root) setup = [&]() -> int {
    // The run folder: a new one, or the one to resume.
    if (opts.resume) {
      std::string dir = opts.run_dir;
      if (dir.empty()) {
        auto latest = latest_run_folder(opts.out, ex.name);
        if (!latest) {
          say("error: " + latest.error().str());
          return 2;
        }
        dir = *latest;
      }
      if (!std::filesystem::exists(std::filesystem::path(dir) / "manifest.json")) {
        say(fmt::format("error: --resume: {} holds no manifest.json: not a run folder", dir));
        return 2;
      }
      folder.dir = dir;
      if (std::filesystem::exists(folder.results_path())) {
        auto prev = read_jsonl(folder.results_path());
        if (!prev) {
          say("error: " + prev.error().str());
          return 2;
        }
        done = finished_point_ids(*prev);
      }
    } else if (!opts.run_dir.empty()) {
      std::error_code ec;
      if (std::filesystem::exists(std::filesystem::path(opts.run_dir) / "results.jsonl")) {
        say(fmt::format("error: --run-dir {} already holds results: add --resume to continue it",
                        opts.run_dir));
        return 2;
      }
      std::filesystem::create_directories(opts.run_dir, ec);
      if (ec) {
        say(fmt::format("error: cannot create {}: {}", opts.run_dir, ec.message()));
        return 2;
      }
      folder.dir = opts.run_dir;
    } else {
      auto created = create_run_folder(opts.out, ex.name);
      if (!created) {
        say("error: " + created.error().str());
        return 2;
      }
      folder = *created;
    }
    if (opts.resume) {
      // Keep what the first invocation recorded; note this one.
      std::ifstream old(folder.manifest_path());
      nlohmann::json prev = nlohmann::json::parse(old, nullptr, /*allow_exceptions=*/false);
      if (prev.is_object()) {
        nlohmann::json resumes = prev.value("resumes", nlohmann::json::array());
        resumes.push_back({{"started", manifest["started"]}, {"provenance", prov}});
        manifest["started"] = prev.value("started", manifest["started"].get<std::string>());
        manifest["provenance"] = prev.value("provenance", prov);
        manifest["resumes"] = resumes;
      }
    }
    if (!write_manifest()) return 2;
    auto opened = JsonlWriter::open(folder.results_path());
    if (!opened) {
      say("error: " + opened.error().str());
      return 2;
    }
    writer = std::make_unique<JsonlWriter>(std::move(*opened));
    return 0;
  }();
  if (mpi::active()) {
    // Everyone learns whether setup worked and which points a resume skips.
    std::string shared = std::to_string(setup);
    for (const auto& id : done) shared += "\n" + id;
    if (Status st = mpi::broadcast(shared); !st.ok()) {
      say("error: " + st.error().str());
      return 2;
    }
    std::istringstream in(shared);
    std::string line;
    std::getline(in, line);
    setup = std::stoi(line);
    done.clear();
    while (std::getline(in, line)) done.insert(line);
  }
  if (setup != 0) return setup;

  say(fmt::format("{}: {} points on {} ({}), writing {}", ex.name, ex.points.size(), backend.name,
                  backend.why, folder.dir));
  nlohmann::json brief = {{"git", prov.value("git", nlohmann::json())},
                          {"host", prov.value("host", "unknown")},
                          {"cpu", prov.value("cpu", nlohmann::json())},
                          {"cpbench_version", prov.value("cpbench_version", "unknown")}};
  int failures = 0, ran = 0, skipped = 0, executed = 0;
  size_t to_run = 0;  // valid points this invocation will run
  for (size_t j = 0; j < ex.points.size(); ++j)
    to_run += invalid[j].empty() && !done.count(ex.points[j].id);
  const size_t total = ex.points.size();
  auto t_start = std::chrono::steady_clock::now();
  StopSignals signals;
  bool stopped = false;
  for (size_t i = 0; i < total; ++i) {
    const Point& p = ex.points[i];
    if (StopSignals::requested()) {
      stopped = true;
      break;
    }
    if (done.count(p.id)) {
      ++skipped;
      continue;
    }
    std::string repro = fmt::format("cpbench run {} --backend {} --filter {}",
                                    shell_quote(ex.path), backend.name,
                                    shell_quote(point_filter(p)));
    nlohmann::json rec;
    std::string line;
    if (!invalid[i].empty()) {
      rec = point_record(p, backend.name, "invalid", invalid[i], nullptr, brief, repro);
      line = "INVALID " + invalid[i];
      ++failures;
    } else {
      ExecSpec spec = spec_for(p, ex, backend.name, opts.hardware_profile);
      if (fault->armed_for(p.index)) spec.fault = *fault;
      auto res = execute_point(spec);
      if (!res) {
        rec = point_record(p, backend.name, "error", res.error().str(), nullptr, brief, repro);
        line = "ERROR " + res.error().str();
        ++failures;
      } else {
        bool wrong = res->verify.ran && !res->verify.passed();
        rec = point_record(p, backend.name, wrong ? "wrong" : "ok",
                           !wrong                ? ""
                           : !res->verify.finite ? std::string(
                                                       "verification failed: NaN or Inf in the "
                                                       "output (or -inf LSE where the reference "
                                                       "has a finite one)")
                                                 : fmt::format(
                                                       "verification failed: max_rel_err {:.3g} > "
                                                       "{:.3g}",
                                                       res->verify.max_rel_err,
                                                       res->verify.tolerance),
                           &*res, brief, repro);
        if (root && !res->ranks.empty() && !res->ranks[0].trace.empty()) {
          std::error_code ec;
          std::filesystem::create_directories(folder.traces_dir(), ec);
          const std::string path = folder.file(fmt::format("traces/{}.json", p.index));
          Status ts_st = write_file_atomic(path, safe_dump(chrome_trace(*res, p.id)) + "\n");
          if (ts_st.ok()) rec["trace"] = fmt::format("traces/{}.json", p.index);
          else say("warning: " + ts_st.error().str());
        }
        TimeStats ts = summarize(res->iteration_times_s);
        const auto& detail = res->strategy_detail;
        std::string chose = detail.is_object() && detail.contains("choice")
                                ? fmt::format(" (chose {})", detail["choice"].get<std::string>())
                                : "";
        line = fmt::format("{}{} median {:.3f} ms{}", wrong ? "WRONG" : "ok", chose, ts.median * 1e3,
                           res->verify.ran ? fmt::format("  rel_err {:.1e}", res->verify.max_rel_err)
                                           : "");
        if (wrong) ++failures;
      }
    }
    Status st = root ? writer->append(rec) : Status{};
    if (!st.ok()) {
      say("error: " + st.error().str());
      return 2;
    }
    ++ran;
    if (!opts.quiet) {
      double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
      // Invalid points take no time: the ETA extrapolates from the points that ran.
      if (invalid[i].empty()) {
        ++executed;
        --to_run;
      }
      double eta = executed > 0 ? elapsed / executed * static_cast<double>(to_run) : 0;
      say(fmt::format("[{:>{}}/{}] {:<48} {}  elapsed {} ETA {}", i + 1,
                      std::to_string(total).size(), total, short_desc(p), line, hms(elapsed),
                      hms(eta)));
    }
  }

  // Under MPI a process may stop because another was signalled: it reports SIGINT's code.
  const int stop_sig = g_stop_signal != 0 ? static_cast<int>(g_stop_signal) : SIGINT;
  if (!root) return stopped ? 128 + stop_sig : 0;  // rank 0 reports the outcome
  // The run's outcome comes from the whole results file, where a point retried on resume has
  // several records and the last one counts.
  std::vector<nlohmann::json> latest;
  int failed_total = failures;
  if (auto all = read_jsonl(folder.results_path()); all) {
    std::map<std::string, size_t> where;
    for (const auto& r : *all) {
      const std::string id = r.value("point_id", "");
      auto [it, fresh] = where.emplace(id, latest.size());
      if (fresh) latest.push_back(r);
      else latest[it->second] = r;
    }
    failed_total = 0;
    for (const auto& r : latest) failed_total += r.value("status", "") != "ok";
    Status st = write_file_atomic(folder.bench_path(), safe_dump(bench_json(latest, prov), 2) + "\n");
    if (!st.ok()) say("warning: " + st.error().str());
  }
  manifest["status"] = stopped ? "interrupted" : "complete";
  manifest["finished"] = utc_iso8601();
  manifest["points_run"] = ran;
  manifest["points_skipped_on_resume"] = skipped;
  manifest["points_recorded"] = latest.size();
  manifest["points_failed"] = failed_total;
  if (!write_manifest()) return 2;
  if (stopped) {
    const int sig = stop_sig;
    say(fmt::format("{}: interrupted ({}) after {} points; {} of {} recorded in {}; `cpbench run "
                    "{} --resume --run-dir {}` runs the rest",
                    ex.name, sig == SIGTERM ? "SIGTERM" : "SIGINT", ran, latest.size(), total,
                    folder.dir, shell_quote(ex.path), shell_quote(folder.dir)));
    return 128 + sig;
  }
  say(fmt::format("{}: {} points run, {} skipped (already done), {} failed or invalid in the run "
                  "folder -> {}",
                  ex.name, ran, skipped, failed_total, folder.dir));
  return failed_total ? 1 : 0;
}

}  // namespace cpb
