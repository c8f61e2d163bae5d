// A backend is a world of ranks for one point: it creates each rank's Executor (a cpu thread,
// or a GPU with its NCCL communicator) and runs the same function on all of them, returning the
// root-cause error if any rank fails (the others are aborted, never left hanging).
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "harness/core/executor.hpp"
#include "harness/core/status.hpp"

namespace cpb {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual int size() const = 0;
  virtual Status run(const std::function<Status(Executor&)>& fn) = 0;
  // What the backend adds to each record of its points (the sim: `predicted` and the hardware
  // profile), merged into the record's top level; null for none.
  virtual nlohmann::json describe() const { return nullptr; }
};

// "cpu", "sim", or "cuda" (when built with CUDA and NCCL). Errors say what to use instead.
// `hardware_profile` is the sim's profile ("" for its default); the others ignore it.
Expected<std::unique_ptr<Backend>> make_backend(std::string_view name, int world, DType dtype,
                                                double timeout_s,
                                                const std::string& hardware_profile = "");
// Whether the backend computes values (cpu, cuda) or only times ops (sim: no outputs to gather
// or verify, no host memory for them).
bool backend_computes(std::string_view name);
// Whether `name` can run `world` ranks here (cuda: that many GPUs visible), without starting it.
Status check_backend(std::string_view name, int world);
// GPUs the cuda backend can use (0 when it is not built): the visible ones, or fewer when
// limited (`cpbench run --gpus N`, N >= 1).
int usable_gpus();
// Free memory of each usable GPU now, in bytes (empty without the cuda backend).
std::vector<int64_t> gpu_free_bytes();
void limit_gpus(int n);
// The naive fp32 reference of the unsharded problem on GPU 0 (kernels/cuda reference_attention),
// for checks where the fp64 host reference is too slow. Errors when there is no cuda backend.
Status gpu_reference_attention(const Workload& w, const std::vector<float>& q,
                               const std::vector<float>& k, const std::vector<float>& v,
                               std::vector<float>& o, std::vector<float>& lse);

// What the backend runs on, for the manifest: GPUs, driver, CUDA runtime and NCCL versions.
nlohmann::json backend_info(std::string_view name);

}  // namespace cpb
