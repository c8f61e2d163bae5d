// The cpbench command line: run (a YAML sweep), list (what is registered), attend (one strategy
// on tensors from .npy files), compare (the regression gate between two result sets), report
// (the HTML page of a run, written by analysis/report.py), calibrate (measure this machine into a
// hardware profile). Exit codes: 0 success; 1 the work
// ran but some point failed, was invalid or gave a wrong answer (compare: a regression);
// 2 bad input (usage, config, files), nothing written.
#include <CLI/CLI.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "harness/calibrate/calibrate.hpp"
#include "harness/config/config.hpp"
#include "harness/core/mpi_world.hpp"
#include "harness/io/npy.hpp"
#include "harness/runner/compare.hpp"
#include "harness/runner/runner.hpp"
#include "harness/runner/stats.hpp"
#include "harness/runner/sweep.hpp"
#include "strategies/strategy.hpp"

#ifdef CPBENCH_HAVE_CUDA
#include "kernels/cuda/device.hpp"
#endif

namespace cpb {
namespace {

int fail(const std::string& msg) {
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  return 2;
}

int cmd_list() {
  std::printf("strategies:\n");
  for (const StrategyInfo* s : all_strategies())
    std::printf("  %-14s %s\n", s->name.c_str(), s->summary.c_str());
  std::printf("layouts:\n");
  std::printf("  %-14s %s\n", "contiguous", "rank i owns the i-th of N consecutive ranges");
  std::printf("  %-14s %s\n", "zigzag", "2N chunks, rank i owns chunks i and 2N-1-i");
  std::printf("  %-14s %s\n", "striped", "token j on rank j mod N");
  std::printf("backends:\n");
  std::printf("  %-14s %s\n", "cpu", "available: reference, ranks are threads, fp32 attention");
#ifdef CPBENCH_HAVE_CUDA
  auto devs = cuda::visible_devices();
#ifdef CPBENCH_HAVE_NCCL
  std::printf("  %-14s available: NCCL, one thread per GPU (driver %s, runtime %s), %zu GPU(s) "
              "visible\n",
              "cuda", cuda::driver_version().c_str(), cuda::runtime_version().c_str(),
              devs.size());
#else
  std::printf("  %-14s kernels compiled, but NCCL was not found: not available\n", "cuda");
#endif
#else
  std::printf("  %-14s %s\n", "cuda", "not compiled (no nvcc at configure time)");
#endif
  std::printf("  %-14s %s\n", "sim",
              "available: predicts times on a hardware profile (default "
              "results/profiles/h200x4-calibrated.yaml); computes nothing");
  std::printf("presets:\n");
  for (const auto& [name, p] : builtin_presets())
    std::printf("  %-16s heads %lld, kv_heads %lld, head_dim %lld  %s\n", name.c_str(),
                static_cast<long long>(p.heads), static_cast<long long>(p.kv_heads),
                static_cast<long long>(p.head_dim), p.description.c_str());
  return 0;
}

struct AttendOptions {
  std::string q, k, v, out, lse, strategy = "ring_pass_kv", layout = "zigzag";
  int cp = 1;
  int ulysses = 0;
  int auto_algorithm = 1;
  std::string hardware_profile;
  bool causal = false;
  int64_t cached_tokens = -1;
  bool verify = true;
};

int cmd_attend(const AttendOptions& o) {
  auto q = read_npy(o.q);
  if (!q) return fail(q.error().str());
  auto k = read_npy(o.k);
  if (!k) return fail(k.error().str());
  auto v = read_npy(o.v);
  if (!v) return fail(v.error().str());
  auto shape3 = [](const NpyArray& a, const std::string& path) -> std::string {
    if (a.shape.size() != 3)
      return fmt::format("{}: expected a 3-d array [tokens, heads, head_dim], got {} dimensions",
                         path, a.shape.size());
    return "";
  };
  for (auto [a, p] : {std::pair{&*q, o.q}, std::pair{&*k, o.k}, std::pair{&*v, o.v}})
    if (auto e = shape3(*a, p); !e.empty()) return fail(e);
  if (k->shape != v->shape)
    return fail(fmt::format("{} and {} must have the same shape [tokens, kv_heads, head_dim]",
                            o.k, o.v));
  if (q->shape[2] != k->shape[2])
    return fail(fmt::format("head_dim differs: {} in {}, {} in {}", q->shape[2], o.q, k->shape[2], o.k));
  if (q->shape[1] % k->shape[1] != 0)
    return fail(fmt::format("{} has {} heads, not a multiple of the {} kv heads of {}", o.q,
                            q->shape[1], k->shape[1], o.k));
  // NaN or Inf in an input makes every output it reaches meaningless: say where, and stop.
  for (auto [a, p] : {std::pair{&*q, o.q}, std::pair{&*k, o.k}, std::pair{&*v, o.v}})
    for (size_t i = 0; i < a->data.size(); ++i)
      if (!std::isfinite(a->data[i])) {
        const int64_t d = a->shape[2], h = a->shape[1];
        const auto e = static_cast<int64_t>(i);
        return fail(fmt::format("{}: element [{}, {}, {}] is {}: inputs must be finite", p,
                                e / (h * d), (e / d) % h, e % d,
                                std::isnan(a->data[i]) ? "NaN" : "Inf"));
      }
  Workload w;
  w.batch = 1;
  w.new_tokens = q->shape[0];
  w.heads = q->shape[1];
  w.head_dim = q->shape[2];
  w.kv_heads = k->shape[1];
  w.mask = o.causal ? MaskKind::causal : MaskKind::full;
  w.dtype = q->dtype == "<f2" ? DType::fp16 : DType::fp32;
  const int64_t keys = k->shape[0];
  if (o.cached_tokens >= 0 && keys != w.new_tokens + o.cached_tokens)
    return fail(fmt::format("{} has {} tokens but --cached-tokens {} + {} new tokens of {} = {}",
                            o.k, keys, o.cached_tokens, w.new_tokens, o.q,
                            w.new_tokens + o.cached_tokens));
  if (keys < w.new_tokens)
    return fail(fmt::format("{} has {} tokens, fewer than the {} queries of {}: K/V hold the "
                            "cached tokens followed by the new ones",
                            o.k, keys, w.new_tokens, o.q));
  w.cached_tokens = keys - w.new_tokens;
  auto layout = parse_layout(o.layout);
  if (!layout) return fail(layout.error().str());
  if (find_strategy(o.strategy) == nullptr)
    return fail(fmt::format("unknown strategy '{}': `cpbench list` shows the registered ones",
                            o.strategy));
  if (o.cp < 1) return fail(fmt::format("--cp must be >= 1 (got {})", o.cp));
  if (o.ulysses < 0) return fail(fmt::format("--ulysses must be >= 0 (got {})", o.ulysses));

  Inputs in{std::move(q->data), std::move(k->data), std::move(v->data)};
  ExecSpec spec;
  spec.strategy = o.strategy;
  spec.layout = *layout;
  spec.cp = o.cp;
  spec.workload = w;
  spec.options.ulysses = o.ulysses;
  spec.options.auto_algorithm = o.auto_algorithm;
  spec.options.hardware_profile = o.hardware_profile;
  spec.verify = o.verify;
  spec.inputs = &in;
  if (Status st = check_point(spec); !st.ok()) return fail(st.error().str());
  auto res = execute_point(spec);
  if (!res) {
    std::fprintf(stderr, "error: %s\n", res.error().str().c_str());
    return 1;
  }
  if (!mpi::is_root()) return 0;  // rank 0 holds the gathered output
  if (Status st = write_npy(o.out, {w.new_tokens, w.heads, w.head_dim}, res->o.data()); !st.ok())
    return fail(st.error().str());
  if (!o.lse.empty())
    if (Status st = write_npy(o.lse, {w.new_tokens, w.heads}, res->lse.data()); !st.ok())
      return fail(st.error().str());
  TimeStats ts = summarize(res->iteration_times_s);
  std::printf("%s %s cp=%d %s: %.3f ms (cpu wall clock)", o.strategy.c_str(), o.layout.c_str(),
              o.cp, w.str().c_str(), ts.median * 1e3);
  if (res->verify.ran)
    std::printf(", vs fp64 reference: max_abs_err %.3g max_rel_err %.3g %s%s", res->verify.max_abs_err,
                res->verify.max_rel_err, res->verify.passed() ? "ok" : "WRONG",
                res->verify.finite ? "" : " (NaN or Inf in the output)");
  std::printf("\n");
  if (!res->strategy_detail.is_null())
    std::printf("strategy detail: %s\n",
                res->strategy_detail.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                    .c_str());
  std::printf("wrote %s%s%s\n", o.out.c_str(), o.lse.empty() ? "" : " and ", o.lse.c_str());
  return res->verify.ran && !res->verify.passed() ? 1 : 0;
}

struct CompareCliOptions {
  std::vector<std::string> inputs;  // BASE NEW, or the run with --write-baseline
  std::string write_baseline;
  std::string metric = "time";
  bool force = false;
  CompareOptions stats;
};

int cmd_compare(const CompareCliOptions& o) {
  if (!o.write_baseline.empty()) {
    if (o.inputs.empty())
      return fail("compare --write-baseline OUT.json takes one or more run folders");
    if (Status st = write_baseline(o.inputs, o.write_baseline, o.metric); !st.ok())
      return fail(st.error().str());
    std::printf("wrote baseline %s from %s\n", o.write_baseline.c_str(), o.inputs[0].c_str());
    return 0;
  }
  if (o.inputs.size() != 2)
    return fail(
        fmt::format("compare takes BASE and NEW (run folders, results.jsonl or baseline "
                    "files), got {} paths",
                    o.inputs.size()));
  auto base = load_result_set(o.inputs[0], o.metric);
  if (!base) return fail(base.error().str());
  auto fresh = load_result_set(o.inputs[1], o.metric);
  if (!fresh) return fail(fresh.error().str());
  if (Status st = check_same_machine(*base, *fresh); !st.ok()) {
    if (!o.force) return fail(st.error().str());
    std::fprintf(stderr, "warning: --force: %s\n", st.error().message.c_str());
  }
  const Comparison c = compare_results(*base, *fresh, o.stats);
  std::fputs(render_markdown(c, *base, *fresh, o.stats).c_str(), stdout);
  return c.failed() ? 1 : 0;
}

// `cpbench report RUN_DIR [...]` hands over to the Python analysis (python3 -m analysis.report)
// run from the source tree; extra arguments are passed through. The interpreter: $CPBENCH_PYTHON,
// else the source tree's .venv, else python3 on PATH.
int cmd_report(const std::string& run_dir, const std::vector<std::string>& extra) {
  namespace fs = std::filesystem;
  const fs::path src = CPBENCH_SOURCE_DIR;
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec))
    return fail(fmt::format("{}: not a run folder (no such folder)", run_dir));
  std::string python = "python3";
  if (const char* env = std::getenv("CPBENCH_PYTHON"); env != nullptr && *env != '\0')
    python = env;
  else if (fs::exists(src / ".venv/bin/python3", ec))
    python = (src / ".venv/bin/python3").string();
  // The run folder is named relative to the caller's folder; the module runs in the source tree.
  std::vector<std::string> args = {python, "-m", "analysis.report",
                                   fs::absolute(run_dir, ec).string()};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return fail(fmt::format("cannot start {}: {}", python, std::strerror(errno)));
  if (pid == 0) {
    if (::chdir(src.c_str()) != 0) {
      std::fprintf(stderr, "error: cannot enter the source tree %s: %s\n", src.c_str(),
                   std::strerror(errno));
      ::_exit(2);
    }
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr,
                 "error: cannot run %s: %s (set CPBENCH_PYTHON to a python3 with "
                 "matplotlib, numpy and pandas)\n",
                 argv[0], std::strerror(errno));
    ::_exit(2);
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return fail(fmt::format("waiting for {}: {}", python, std::strerror(errno)));
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return fail(fmt::format("{} -m analysis.report was killed by signal {}", python, WTERMSIG(st)));
}

// `cpbench calibrate`: bad options exit 2 before anything is measured or written; a measurement
// that fails exits 1 (nothing written either).
int cmd_calibrate(const calibrate::Options& o) {
  if (auto plan = calibrate::check(o); !plan) return fail(plan.error().str());
  auto res = calibrate::run(o);
  if (!res) {
    std::fprintf(stderr, "error: %s\n", res.error().str().c_str());
    return 1;
  }
  std::printf("wrote %s, %s and %s in %.0f s: peak_tflops %.1f, bandwidth_gbps %.1f, "
              "launch_us %.2f, share_factor %.3f, %zu attention points\n",
              res->yaml_path.c_str(), res->json_path.c_str(), res->series_path.c_str(),
              res->seconds, res->peak_tflops,
              res->bandwidth_gbps, res->launch_us, res->share_factor, res->attention_points);
  return 0;
}

}  // namespace
}  // namespace cpb

namespace {
int run_main(int argc, char** argv);
}  // namespace

// The last line of defence: nothing below main throws on purpose, but a library might; a user
// gets one line and exit code 2, never an abort.
int main(int argc, char** argv) {
  // Under mpirun every process is one rank of the cuda backend (harness/core/mpi_world.hpp).
  if (cpb::Status st = cpb::mpi::init(&argc, &argv); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.error().str().c_str());
    return 2;
  }
  int rc = 2;
  try {
    rc = run_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: internal: %s\n", e.what());
  }
  cpb::mpi::finalize();
  return rc;
}

namespace {
int run_main(int argc, char** argv) {
  using namespace cpb;
  CLI::App app{
      "cpbench: context-parallel attention benchmarks (run, list, attend, compare, report, "
      "calibrate)",
      "cpbench"};
  app.require_subcommand(1);
  app.set_version_flag("--version", CPBENCH_VERSION);

  SweepOptions so;
  auto* run = app.add_subcommand("run", "Run the sweep of a YAML experiment");
  run->add_option("config", so.config, "Experiment YAML file")->required();
  run->add_option("--backend", so.backend, "auto | cuda | cpu | sim (default: the file's)")
      ->check(CLI::IsMember({"auto", "cuda", "cpu", "sim"}));
  run->add_option("--out", so.out, "Parent folder of run folders")->capture_default_str();
  run->add_option("--run-dir", so.run_dir, "Exact run folder to write (or, with --resume, continue)");
  run->add_option("--filter", so.filter, "Keep only points where EXPR holds, e.g. \"cp >= 2\"");
  run->add_flag("--resume", so.resume, "Continue the latest run folder of this experiment, skipping recorded points");
  run->add_flag("--dry-run", so.dry_run, "Print the expanded points and exit; writes nothing");
  run->add_flag("--quiet", so.quiet, "No progress line per point");
  run->add_option("--gpus", so.gpus, "cuda: use at most N of the visible GPUs (rank r on GPU r)");
  run->add_flag("--cuda-graph", so.cuda_graph,
                "cuda: time CUDA graph replays of each point's iteration (as `cuda_graph: true`)");
  run->add_option("--hardware-profile", so.hardware_profile,
                  "Profile YAML for points that name none: sim's cost model (default "
                  "results/profiles/h200x4-calibrated.yaml), auto's C and BW");

  auto* list = app.add_subcommand("list", "List strategies, layouts, backends and presets");

  AttendOptions ao;
  auto* attend = app.add_subcommand("attend", "Run one strategy on Q/K/V from .npy files");
  attend->add_option("--q", ao.q, "Queries [T, H, d] (.npy float32 or float16)")->required();
  attend->add_option("--k", ao.k, "Keys [P+T, Hkv, d]: cached tokens, then new ones")->required();
  attend->add_option("--v", ao.v, "Values, same shape as keys")->required();
  attend->add_option("--strategy", ao.strategy, "Strategy name")->capture_default_str();
  attend->add_option("--cp", ao.cp, "CP degree N (ranks)")->capture_default_str();
  attend->add_option("--layout", ao.layout, "contiguous | zigzag | striped")->capture_default_str();
  attend->add_option("--ulysses", ao.ulysses, "Ulysses degree u for usp (0: automatic)");
  attend->add_option("--auto-algorithm", ao.auto_algorithm,
                     "auto: Yang et al. Algorithm 1 or 5")
      ->check(CLI::IsMember({1, 5}));
  attend->add_option("--hardware-profile", ao.hardware_profile,
                     "auto: YAML profile with peak_tflops and bandwidth_gbps (default: the "
                     "paper's H100 + RDMA constants)");
  attend->add_flag("--causal", ao.causal, "Causal mask (default: full)");
  attend->add_option("--cached-tokens", ao.cached_tokens,
                     "P: how many leading K/V tokens are cache (default: K tokens - Q tokens)");
  attend->add_option("--out", ao.out, "Output O [T, H, d] float32 .npy")->required();
  attend->add_option("--lse", ao.lse, "Output LSE [T, H] float32 .npy (natural log)");
  attend->add_flag("!--no-verify", ao.verify, "Skip the fp64 reference check");

  CompareCliOptions co;
  auto* compare = app.add_subcommand(
      "compare", "Regression gate: per-point Mann-Whitney U test and threshold, BASE vs NEW");
  compare
      ->add_option("inputs", co.inputs,
                   "BASE NEW: run folders, results.jsonl or baseline files (with "
                   "--write-baseline: the run folders to make it from)")
      ->required();
  compare
      ->add_option("--threshold", co.stats.threshold,
                   "Relative change of the median that counts (0.05 = 5%)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 10.0));
  compare->add_option("--alpha", co.stats.alpha, "Significance level of the one-sided test")
      ->capture_default_str()
      ->check(CLI::Range(1e-12, 0.5));
  compare->add_flag("--force", co.force, "Compare results from different machines");
  compare->add_option("--metric", co.metric, "Record key holding the samples")
      ->capture_default_str()
      ->check(CLI::IsMember({"time", "time_compute_only", "time_comm_only"}));
  compare->add_option("--write-baseline", co.write_baseline,
                      "Write a baseline file (cpbench.baseline/1) from run folders instead (two or "
                      "more runs of the same code: each point's between-run spread is kept and "
                      "raises its threshold)");

  std::string report_dir;
  auto* report =
      app.add_subcommand("report", "Write RUN_DIR/report.html (python3 -m analysis.report)");
  report->add_option("run_dir", report_dir, "Run folder")->required();
  report->allow_extras();

  calibrate::Options cal;
  cal.backend = "cuda";
  auto* calib = app.add_subcommand(
      "calibrate", "Measure this machine into a hardware profile (the sim backend's tables)");
  calib->add_option("--out", cal.out, "Profile to write, FILE.yaml (raw samples: FILE.json)");
  calib->add_option("--name", cal.name, "Profile name (default: from the machine, e.g. h200x2)");
  calib->add_option("--gpus", cal.gpus, "Ranks to measure on (default: every visible GPU; cpu: 2)");
  calib->add_option("--backend", cal.backend, "cuda (GPUs) or cpu (the reference, for tests)")
      ->capture_default_str();
  calib->add_flag("--quick", cal.quick, "A tiny grid (seconds), for tests and smoke runs");
  calib->add_option("--machine", cal.machine, "The machine in words (default: from the backend)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (*run) {
    so.argv.assign(argv, argv + argc);
    return run_sweep(so);
  }
  if (*list) return cmd_list();
  if (*attend) return cmd_attend(ao);
  if (*compare) return cmd_compare(co);
  if (*report) return cmd_report(report_dir, report->remaining());
  if (*calib) {
    cal.argv.assign(argv, argv + argc);
    return cmd_calibrate(cal);
  }
  return 2;
}
}  // namespace
