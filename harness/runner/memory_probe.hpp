// What a point will allocate on each rank, known before anything is: the rank's inputs and
// outputs and the strategy's prepare run against an executor that holds no memory and runs
// nothing, and count exactly what the real backend would allocate (cpbench's own buffers; the
// CUDA context, NCCL's buffers and the timing flush come on top, see kGpuOverheadBytes). The
// cuda backend's preflight compares it with each GPU's free memory, so that a point that cannot
// fit is reported before it allocates anything.
#pragma once

#include <cstdint>
#include <vector>

#include "harness/core/status.hpp"
#include "harness/runner/runner.hpp"

namespace cpb {

// An allowance, not a measurement, for what a rank's GPU holds besides cpbench's buffers while a
// point runs: the CUDA context (commonly about 0.5 GiB), NCCL's buffers and the cache-flush buffer
// (twice the L2). A point within it of the free memory may still fail to allocate; it is then
// recorded as an error, not a crash.
inline constexpr int64_t kGpuOverheadBytes = int64_t{3} << 29;  // 1.5 GiB

// cpbench's allocations on `rank` for this point (peak_memory_bytes of the real run).
Expected<int64_t> rank_memory_bytes(const ExecSpec& spec, int rank);

// Whether every rank's buffers plus kGpuOverheadBytes fit in its GPU's free memory;
// `free_bytes[g]` is GPU g's, rank r runs on GPU r (under MPI: this process's rank on GPU
// `device`). The error names the rank, the estimate and the free memory.
Status check_gpu_memory(const ExecSpec& spec, const std::vector<int64_t>& free_bytes,
                        int only_rank = -1, int device = -1);

}  // namespace cpb
