// What the cuda backend can see of the machine. Compiled only when nvcc is found; the rest of
// cpbench asks through these functions so that it builds and runs without CUDA.
#pragma once

#include <string>
#include <vector>

namespace cpb::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  long long total_memory = 0;
  long long free_memory = 0;
};

// Visible GPUs; empty when there is no driver or no device (never an error: the harness then
// falls back to the cpu backend).
std::vector<DeviceInfo> visible_devices();
// Driver and runtime versions as "13.0"; "none" without a driver.
std::string driver_version();
std::string runtime_version();

}  // namespace cpb::cuda
