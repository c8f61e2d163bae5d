// What ops do to each other beyond stream order, which the per-op cost model (cost_model.hpp)
// cannot see: the sim plays an iteration (engine.hpp), then plays it again with each op's
// duration adjusted from where the first play put it, twice (enough for the timeline to settle:
// each adjustment moves it by a few percent). Both effects come from a hardware profile
// (hardware_profile.hpp) measured by `cpbench calibrate`:
//   - power (`sustained`): a GPU busy with attention for a share `duty` of its time runs it at
//     lower clocks once its power limit is reached, after a fraction of a second, and how much
//     depends on the blocks (on 4x H200, 16K blocks slowed 15%, 64K blocks less). A rank's duty is
//     its attention time over its iteration time; each of its attention ops is slowed by the mean
//     slowdown, for its block size (the geometric mean of its query and key tokens), over the
//     iteration's span of the load, which begins at the point's first iteration
//     (`load_s` is the time of the point's iterations so far): between points the host verifies
//     and the GPU idles, so each point starts cool.
//   - transfers beside attention (`comm_share_factor`): a transfer is stretched by
//     1 + (factor - 1) x the share of it that ran beside an attention op of its rank.
#pragma once

#include <vector>

#include "harness/backends/sim/engine.hpp"
#include "harness/core/hardware_profile.hpp"
#include "harness/core/status.hpp"

namespace cpb::sim {

// Attention's time multiplier for blocks of `tokens` under a steady load of this duty (0..1)
// `seconds` after the load began: each measured curve linear in time and held at its ends; over
// the curves of one block size, linear in duty, 1 at duty 0, the highest duty's curve above it;
// between block sizes linear in log2(tokens), held beyond the measured ones; 1 without curves.
double sustained_slowdown(const HardwareProfile& p, double duty, double seconds, double tokens);

// Plays `ranks` with the effects above for an iteration that starts `load_s` after the load.
Expected<Timeline> simulate_with_contention(std::vector<RankProgram> ranks,
                                            const HardwareProfile& p, double load_s);

}  // namespace cpb::sim
