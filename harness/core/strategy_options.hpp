// Per-point knobs that only some strategies read: USP's Ulysses degree and the inputs of `auto`'s
// pass-KV / pass-Q heuristic (Yang et al. 2024, Algorithms 1 and 5). Kept apart from the workload
// so that the shape of the problem and the way it is solved stay separate.
#pragma once

#include <string>

namespace cpb {

struct StrategyOptions {
  int ulysses = 0;         // USP: Ulysses degree u (0: the largest the heads allow)
  int auto_algorithm = 1;  // auto: Yang Algorithm 1 or 5
  double peak_tflops = 0;  // auto: C in TFLOP/s (0: from the profile, else the default)
  double bandwidth_gbps = 0;  // auto: BW in GB/s per rank (0: from the profile, else the default)
  std::string hardware_profile;  // auto: YAML profile giving peak_tflops and bandwidth_gbps
};

}  // namespace cpb
