// Runs one config point: builds the placement, scatters the inputs to the ranks, lets the
// strategy prepare and run warmup + timed iterations on every rank, gathers each rank's O and
// LSE back into global order and verifies them against the fp64 reference. Timing follows the
// measurement rules of DESIGN.md: the same iteration count on every rank, a barrier before each
// iteration, per-iteration per-rank times, and the max over ranks per iteration.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness/core/executor.hpp"
#include "harness/core/fault.hpp"
#include "harness/core/layout.hpp"
#include "harness/core/status.hpp"
#include "harness/core/strategy_options.hpp"
#include "harness/core/workload.hpp"
#include "strategies/strategy.hpp"

namespace cpb {

struct Inputs {
  std::vector<float> q;  // [B, T, H, d]
  std::vector<float> k;  // [B, P+T, Hkv, d], positions in order
  std::vector<float> v;
};

// Fresh random inputs (standard normal, rounded to the workload dtype so that the reference and
// every backend consume the same values). Deterministic in the seed on every platform.
Inputs random_inputs(const Workload& w, uint64_t seed);

struct ExecSpec {
  std::string backend = "cpu";  // cpu | cuda | sim
  std::string strategy;
  LayoutKind layout = LayoutKind::zigzag;
  int cp = 1;
  Workload workload;
  uint64_t seed = 0;
  StrategyOptions options;
  int warmup = 0;
  int iterations = 1;
  bool verify = true;
  double timeout_s = 120;
  bool trace = false;            // one more iteration with every op timed (Chrome trace)
  bool measure_overlap = false;  // compute-only and comm-only variants (exposed comm, overlap)
  // Time replays of the iteration captured into a CUDA graph (after the first, op-by-op,
  // iteration) instead of issuing every op each time; backends without graphs run op by op.
  bool cuda_graph = false;
  // Injected failure of one rank (CPBENCH_FAULT; reliability tests): armed when kind != none.
  FaultSpec fault;
  const Inputs* inputs = nullptr;  // optional: use these instead of random inputs
};

struct RankReport {
  std::vector<double> times_s;  // per timed iteration (wall clock on cpu)
  std::vector<double> issue_s;  // host seconds spent issuing each timed iteration's ops
  int steps = 1;                // ring steps the strategy numbered (1 when it numbers none)
  bool graph = false;           // the timed iterations (and variants) were CUDA graph replays
  // Host time in the backend's calls over the timed iterations, by op kind (and "event").
  std::map<std::string, HostCalls> host_calls;
  std::vector<double> compute_only_s;  // the same iterations without communication
  std::vector<double> comm_only_s;     // the same iterations without compute
  std::vector<TraceSlice> trace;       // the traced iteration
  Accounting accounting;               // one iteration, with its op log
  int64_t peak_memory_bytes = 0;
  // The least the same buffers need (Executor::minimum_memory_bytes): the strategy's minimum.
  int64_t minimum_memory_bytes = 0;
};

struct VerifyReport {
  bool ran = false;
  bool finite = true;          // no NaN/Inf in O, and LSE is -inf only where the reference is
  double max_abs_err = 0;      // max |O - O_ref|
  double max_rel_err = 0;      // max |O - O_ref| / max |O_ref|
  double lse_max_abs_err = 0;  // over rows where the reference LSE is finite
  double tolerance = 0;        // max_rel_err bound for this backend and dtype
  std::string reference;       // what the output was compared with
  bool passed() const { return ran && finite && max_rel_err <= tolerance; }
};

struct ExecResult {
  std::string backend;
  std::string clock;  // "wall" (cpu), "cuda_event" or "sim" (predicted)
  nlohmann::json backend_detail;  // Backend::describe(), merged into the record
  nlohmann::json strategy_detail;  // the strategy's describe(), or null
  std::vector<RankReport> ranks;
  std::vector<double> iteration_times_s;  // max over ranks, per timed iteration
  std::vector<double> issue_s;            // host issue time, max over ranks, per iteration
  std::vector<double> compute_only_s;     // max over ranks, per iteration (empty if not measured)
  std::vector<double> comm_only_s;
  std::vector<float> o;    // [B, T, H, d] global order
  std::vector<float> lse;  // [B, T, H]
  VerifyReport verify;
};

// Above this many FLOPs (a few seconds of the fp64 host reference) a GPU point is verified
// against the single-GPU result instead.
inline constexpr double kCpuReferenceMaxFlops = 2e10;

// Checks that the point can run (placement divisibility, strategy limits, memory) without
// running it.
Status check_point(const ExecSpec& spec);
// A rank's inputs and outputs (Q, the packed K/V block, O and LSE), allocated on `ex`; the
// runner and the memory preflight (memory_probe.hpp) allocate them alike.
Expected<RankTensors> allocate_rank_io(Executor& ex, const Workload& w, const Placement& pl,
                                       int rank);

// Host bytes a cpu-backend run of the point needs at most: the global inputs and outputs, the
// fp64 reference when verifying, and every rank's buffers (all ranks live in one process), with
// the largest strategy working set (N gathered K/V blocks).
int64_t cpu_host_bytes_estimate(const ExecSpec& spec, const Placement& pl);
// MemAvailable of /proc/meminfo in bytes; -1 when unknown.
int64_t host_available_bytes();
// The host memory the preflight plans a point against: CPBENCH_HOST_MEMORY_GIB (GiB, > 0) when
// set, for machines whose MemAvailable understates what they may use (virtual machines whose
// memory grows as it is touched), else host_available_bytes(); an error on a bad value.
Expected<int64_t> host_memory_budget();
Expected<ExecResult> execute_point(const ExecSpec& spec);

// Compares O and LSE with the fp64 reference of the same inputs.
VerifyReport verify_against_reference(const Workload& w, const Inputs& in,
                                      const std::vector<float>& o, const std::vector<float>& lse,
                                      double tolerance);

}  // namespace cpb
