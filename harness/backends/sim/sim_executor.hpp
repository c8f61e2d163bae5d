// The sim backend: ranks are threads of one process (a CpuWorld gives them the barrier and the
// abort), each with a SimExecutor that holds no memory and computes nothing. Each op a strategy
// issues is captured with its stream, the events its stream waited on and where each event
// stands; at the end of an iteration (timer_stop) every rank's captured ops are played together
// by the timing engine (engine.hpp) with the durations the cost model (cost_model.hpp) gives on
// the hardware profile, adjusted for power and SM sharing (contention.hpp: a point's load builds
// up over its iterations), and each rank's timer reads the predicted time of its own streams. Trace
// marks resolve to the predicted begin and end of their op, so a traced iteration becomes a
// predicted Chrome trace in the format of real ones.
//
// The profile is the point's `hardware_profile` (the experiment key or `cpbench run
// --hardware-profile`), else the committed default_sim_profile() (4x H200, measured by
// `cpbench calibrate` and validated against measured runs out of sample:
// results/sim/validation-h200x4-calibrated/); the record names it (backend_detail). Ops skipped by the
// compute-only / comm-only variants are left out of the played program, as they are left out of
// a real run. Buffers are only counted (peak memory is still reported); reads give zeros, so
// there is nothing to verify.
#pragma once

#include <memory>
#include <string>

#include "harness/backends/sim/cost_model.hpp"
#include "harness/core/backend.hpp"

namespace cpb::sim {

// The profile the sim uses when a point names none (a path inside the source tree).
std::string default_sim_profile();

// A world of `world` sim ranks on the profile at `profile_path` ("" for the default).
Expected<std::unique_ptr<Backend>> make_sim_backend(int world, DType dtype, double timeout_s,
                                                    const std::string& profile_path);

}  // namespace cpb::sim
