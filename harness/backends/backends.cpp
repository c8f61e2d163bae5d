// Backend selection: the cpu reference everywhere, the cuda backend when it is built with NCCL.
#include <algorithm>

#include "harness/backends/cpu/cpu_executor.hpp"
#include "harness/backends/sim/sim_executor.hpp"
#include "harness/core/backend.hpp"
#include "harness/core/mpi_world.hpp"

#ifdef CPBENCH_HAVE_NCCL
#include "harness/backends/cuda/cuda_executor.hpp"
#endif
#ifdef CPBENCH_HAVE_CUDA
#include "kernels/cuda/device.hpp"
#endif

namespace cpb {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend(int world, DType dtype, double timeout_s) : world_(world, timeout_s), dtype_(dtype) {}
  std::string_view name() const override { return "cpu"; }
  int size() const override { return world_.size(); }
  Status run(const std::function<Status(Executor&)>& fn) override {
    return world_.run([&](int rank) -> Status {
      CpuExecutor ex(world_, rank, dtype_);
      return fn(ex);
    });
  }

 private:
  CpuWorld world_;
  DType dtype_;
};

}  // namespace

namespace {
int g_gpu_limit = 0;  // 0: no limit
}  // namespace

void limit_gpus(int n) { g_gpu_limit = n; }

int usable_gpus() {
#if defined(CPBENCH_HAVE_CUDA) && defined(CPBENCH_HAVE_NCCL)
  static const int visible = static_cast<int>(cuda::visible_devices().size());
  return g_gpu_limit > 0 ? std::min(visible, g_gpu_limit) : visible;
#else
  return 0;
#endif
}

std::vector<int64_t> gpu_free_bytes() {
  std::vector<int64_t> out;
#if defined(CPBENCH_HAVE_CUDA) && defined(CPBENCH_HAVE_NCCL)
  for (const auto& d : cuda::visible_devices()) {
    if (static_cast<int>(out.size()) >= usable_gpus()) break;
    out.push_back(d.free_memory);
  }
#endif
  return out;
}

Status gpu_reference_attention(const Workload& w, const std::vector<float>& q,
                               const std::vector<float>& k, const std::vector<float>& v,
                               std::vector<float>& o, std::vector<float>& lse) {
#ifdef CPBENCH_HAVE_NCCL
  return cuda_reference_attention(w, q, k, v, o, lse);
#else
  (void)w, (void)q, (void)k, (void)v, (void)o, (void)lse;
  return CPB_ERROR("the GPU reference needs the cuda backend, which this build does not have");
#endif
}

nlohmann::json backend_info(std::string_view name) {
  nlohmann::json j = {{"backend", name}};
  if (name == "sim") j["default_hardware_profile"] = sim::default_sim_profile();
#if defined(CPBENCH_HAVE_CUDA) && defined(CPBENCH_HAVE_NCCL)
  if (name == "cuda") {
    nlohmann::json gpus = nlohmann::json::array();
    for (const auto& d : cuda::visible_devices())
      gpus.push_back({{"index", d.index},
                      {"name", d.name},
                      {"sm", fmt::format("{}.{}", d.sm_major, d.sm_minor)},
                      {"memory_bytes", d.total_memory}});
    j["gpus"] = gpus;
    j["driver"] = cuda::driver_version();
    j["cuda_runtime"] = cuda::runtime_version();
    j["nccl"] = nccl_version();
  }
#endif
  return j;
}

bool backend_computes(std::string_view name) {
  return name != "sim";
}

Status check_backend(std::string_view name, int world) {
  if (name == "cpu") return {};
  if (name == "sim") {
    CPB_REQUIRE(!mpi::active(), "the sim backend runs every rank in one process: drop mpirun");
    return {};
  }
  if (name == "cuda") {
#if defined(CPBENCH_HAVE_CUDA) && defined(CPBENCH_HAVE_NCCL)
    if (mpi::active()) {
      // One rank per process: the launch decides the CP degree.
      CPB_REQUIRE(world == mpi::size(),
                  "under mpirun with {} processes every point needs cp = {} (got cp = {}): "
                  "filter the sweep (--filter \"cp == {}\") or change -np",
                  mpi::size(), mpi::size(), world, mpi::size());
      return {};
    }
    CPB_REQUIRE(world <= usable_gpus(),
                "cp = {} needs {} GPUs, {} visible: lower cp or use a larger machine", world,
                world, usable_gpus());
    return {};
#else
    (void)world;
    return CPB_ERROR("this build has no cuda backend (CUDA or NCCL was not found at configure "
                     "time): use --backend cpu");
#endif
  }
  return CPB_ERROR("backend '{}' cannot run points in this build: use cpu, sim{}", name,
                   usable_gpus() > 0 ? " or cuda" : "");
}

Expected<std::unique_ptr<Backend>> make_backend(std::string_view name, int world, DType dtype,
                                                double timeout_s,
                                                const std::string& hardware_profile) {
  CPB_TRY(check_backend(name, world));
  if (name == "sim") return sim::make_sim_backend(world, dtype, timeout_s, hardware_profile);
  if (name == "cpu") {
    CPB_REQUIRE(!mpi::active(), "the cpu backend runs in one process: drop mpirun, or use cuda");
    return std::unique_ptr<Backend>(new CpuBackend(world, dtype, timeout_s));
  }
#ifdef CPBENCH_HAVE_NCCL
  return make_cuda_backend(world, dtype, timeout_s);
#else
  return CPB_ERROR("internal: no backend '{}'", name);
#endif
}

}  // namespace cpb
