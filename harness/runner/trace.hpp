// Chrome trace event JSON of a point's traced iteration (opens in Perfetto or chrome://tracing):
// one process per rank, one thread per stream (compute, comm), one complete ("X") slice per op
// with its phase, ring step, bytes and FLOPs (attention: also its block shape, mask and whether a
// transfer may run beside it). Times are each rank's own clock from the start of the iteration
// (CUDA events on cuda, the host clock on cpu, predicted on sim).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "harness/runner/runner.hpp"

namespace cpb {

nlohmann::json chrome_trace(const ExecResult& res, const std::string& title);

// Per rank and phase, the time the traced iteration spent in communication ops of that phase
// (sum of their durations), for algbw/busbw.
double phase_comm_seconds(const std::vector<TraceSlice>& trace, const std::string& phase);

}  // namespace cpb
