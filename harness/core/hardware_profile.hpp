// A hardware profile: the few numbers about a machine that a strategy decision or a cost model
// needs, read from a small YAML file so that they are measured once and committed rather than
// typed into every experiment. Today it holds what `auto`'s pass-KV / pass-Q heuristic needs
// (Yang et al. 2024: C, the attention FLOP rate, and BW, the per-rank bandwidth of the CP ring
// link); the sim backend will add link classes and throughput tables to the same schema, so the
// parser is a table of fields that grows by one entry per key.
//
// Schema (top-level map):
//   name:           required text   what the profile is called in records
//   peak_tflops:    required number > 0, TFLOP/s (1e12 FLOP/s) of attention on one rank
//   bandwidth_gbps: required number > 0, GB/s (1e9 B/s) per rank on the CP ring link
//   description, machine, source: optional text
//   extra:          optional map, ignored: free-form notes and keys of tools that are not ours
// Any other key is an error, so that a typo ("bandwith_gbps") never silently falls back to a
// default.
#pragma once

#include <string>
#include <vector>

#include "harness/core/status.hpp"

namespace cpb {

struct HardwareProfile {
  std::string path;  // file it was read from ("<string>" for text)
  std::string name;
  double peak_tflops = 0;     // C in TFLOP/s
  double bandwidth_gbps = 0;  // BW in GB/s (1e9 B/s) per rank
  std::string description;
  std::string machine;
  std::string source;  // where the numbers come from (a run folder, a paper)

  // The same numbers in SI units, the form the formulas take.
  double peak_flops() const { return peak_tflops * 1e12; }
  double bandwidth_bytes_per_s() const { return bandwidth_gbps * 1e9; }
};

// Reads a profile file. Errors read "file:line: key: what to change"; a missing or unreadable
// file is an error naming the path.
Expected<HardwareProfile> load_hardware_profile(const std::string& path);
// Same from text (tests); `path` names it in messages.
Expected<HardwareProfile> parse_hardware_profile(const std::string& text, const std::string& path);
// The top-level keys a profile may have (sorted), for messages and documentation.
const std::vector<std::string>& hardware_profile_keys();

}  // namespace cpb
