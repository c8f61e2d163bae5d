// The pass-KV / pass-Q decision of Yang et al. 2024 ("Context Parallelism for Scalable
// Million-Token Inference", arXiv 2411.01783), as a pure function of the point, plus the step
// that gathers its hardware inputs (C, BW) from a point's options, a hardware profile or the
// paper's defaults. `auto` (strategies/auto.cpp) uses both; tests and tools can ask the decision
// without running anything.
//
// Symbols (per sequence; the batch scales compute and communication alike, so it cancels):
//   T new tokens, P cached tokens, N CP ranks, NH query heads, NKV KV heads, e bytes per element,
//   C attention FLOP/s per rank, BW bytes/s per rank on the ring link.
// Eq. 1: Q is the smaller message iff T/(T+P) <= 2*NKV/NH.
// Eq. 2: pass-KV's transfer hides under attention iff T >= N*C*NKV*e / (2*NH*BW).
// Algorithm 1: pass-KV if Eq. 2 holds or T/(T+P) >= 2*NKV/NH, else pass-Q.
// Algorithm 5 (Appendix C, which charges pass-Q for its All2All of partial outputs): the second
//   test becomes T/(T+P) >= 2*NKV/NH - 4*T*BW/(N*C*e).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "harness/core/status.hpp"
#include "harness/core/strategy_options.hpp"
#include "harness/core/workload.hpp"

namespace cpb {

// Defaults for C and BW when neither the point nor a hardware profile gives them: the paper's
// machine, an H100 at 800 TF/s BF16 peak on a 400 Gb/s (= 50 GB/s) RDMA link per GPU. They are
// the paper's numbers, not a measurement of the machine at hand; records say so (kDefaultSource).
inline constexpr double kDefaultPeakFlops = 800e12;  // C, FLOP/s
inline constexpr double kDefaultBandwidth = 50e9;    // BW, B/s per rank
inline constexpr const char* kDefaultSource = "default (Yang et al. 2024 H100 + 400 Gb/s RDMA)";

inline constexpr const char* kPassKV = "ring_pass_kv";
inline constexpr const char* kPassQ = "ring_pass_q";

struct HeuristicInputs {
  int64_t new_tokens = 0;                 // T (per sequence), >= 1
  int64_t cached_tokens = 0;              // P (per sequence), >= 0
  int64_t cp = 1;                         // N, >= 1
  int64_t heads = 0;                      // NH
  int64_t kv_heads = 0;                   // NKV
  int64_t elem_bytes = 2;                 // e
  double peak_flops = kDefaultPeakFlops;  // C, FLOP/s
  double bandwidth = kDefaultBandwidth;   // BW, B/s
  int algorithm = 1;                      // 1 or 5
};

struct HeuristicDecision {
  HeuristicInputs inputs;
  std::string choice;              // kPassKV or kPassQ
  double eq2_min_new_tokens = 0;   // Eq. 2: pass-KV hides its transfer iff T >= this
  double miss_rate_threshold = 0;  // pass-KV iff the miss rate is >= this (Alg. 1 or 5)
  double miss_rate = 0;            // T / (T + P)
  std::string decided_by;          // "eq2", "miss_rate", or "neither" (pass-Q)
  std::string reason;              // one line for people
};

// Yang et al. Algorithm 1 or 5 on `in`. Pure; errors only on inputs that make the formulas
// meaningless (T < 1, P < 0, N < 1, NH or NKV < 1, e < 1, C or BW not finite and > 0, an
// algorithm other than 1 or 5). Eq. 2 is tested first, so when both tests hold, decided_by is
// "eq2". Ties go to pass-KV (the paper's tests are ">=").
Expected<HeuristicDecision> decide_pass_kv_or_q(const HeuristicInputs& in);

// {"choice", "algorithm", "inputs": {T, P, N, NH, NKV, e, C, BW}, "thresholds":
// {"eq2_min_new_tokens", "miss_rate_threshold"}, "miss_rate", "decided_by", "reason"}.
nlohmann::json to_json(const HeuristicDecision& d);

// C and BW for a point, and where each came from: the point's own value (options.peak_tflops,
// options.bandwidth_gbps, when > 0) over the hardware profile (options.hardware_profile, when
// set; read and validated even when the point overrides both numbers, so a broken profile never
// goes unnoticed) over the defaults above. Reads a file, so it is not pure.
struct ResolvedHardware {
  double peak_flops = kDefaultPeakFlops;
  double bandwidth = kDefaultBandwidth;
  std::string peak_flops_source = kDefaultSource;  // "point (peak_tflops)", "profile NAME (PATH)"
  std::string bandwidth_source = kDefaultSource;
};
Expected<ResolvedHardware> resolve_hardware(const StrategyOptions& options);

// The heuristic's inputs for a workload on `cp` ranks with the given hardware.
HeuristicInputs heuristic_inputs(const Workload& w, int cp, const ResolvedHardware& hw,
                                 int algorithm);

}  // namespace cpb
