// Pieces shared by the Google Benchmark microbenchmarks (kernels_bench.cpp, nccl_bench.cpp):
// CUDA checks that become cpb::Status values, move-only owners of device memory, streams and
// events, an L2 flush for the kernel timings, host pools of random values generated once per
// process and tiled into device buffers, the environment knobs, and the run context (GPU,
// driver, runtime, git sha, repro line) written into every benchmark's JSON output. Everything
// here reports failure as a value: a benchmark turns it into SkipWithError and returns, so a
// broken GPU never crashes or hangs the binary.
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "harness/core/status.hpp"
#include "harness/io/provenance.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/kernels.hpp"

// Returns a cpb::Error from the enclosing function when a CUDA runtime call fails.
#define CPB_BENCH_CUDA(call)                                                         \
  do {                                                                               \
    const cudaError_t cpb_bench_err_ = (call);                                       \
    if (cpb_bench_err_ != cudaSuccess)                                               \
      return CPB_ERROR("CUDA error {} ({}) in {}", cudaGetErrorName(cpb_bench_err_), \
                       cudaGetErrorString(cpb_bench_err_), #call);                   \
  } while (0)

namespace cpb::bench {

// Marks the running benchmark as failed with the error's message and origin. The caller must
// return (or break out of the timing loop) right after.
inline void skip(benchmark::State& state, const Error& e) {
  state.SkipWithError(e.detail().c_str());
}

// Google Benchmark's loop with one manually timed iteration per step: `iteration` returns the
// seconds of one iteration (CUDA events). Returns the summed seconds, or nothing once the first
// failure has marked the benchmark skipped.
template <class Iteration>
std::optional<double> manual_time_loop(benchmark::State& state, Iteration&& iteration) {
  double total = 0.0;
  for (auto _ : state) {
    Expected<double> sec = iteration();
    if (!sec.ok()) {
      skip(state, sec.error());
      return std::nullopt;
    }
    state.SetIterationTime(*sec);
    total += *sec;
  }
  return total;
}

// Converts the int status of a kernels/cuda launcher into a Status.
inline Status launched(int err, const char* what) {
  if (err != 0) {
    const auto e = static_cast<cudaError_t>(err);
    return CPB_ERROR("CUDA error {} ({}) launching {}", cudaGetErrorName(e), cudaGetErrorString(e),
                     what);
  }
  return {};
}

// Number of visible GPUs, or an error that says why there are none.
inline Expected<int> visible_gpu_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    return CPB_ERROR("no CUDA device visible ({}: {}); these benchmarks need a GPU",
                     cudaGetErrorName(e), cudaGetErrorString(e));
  }
  if (n == 0) return CPB_ERROR("no CUDA device visible; these benchmarks need a GPU");
  return n;
}

// A positive integer from the environment, `fallback` when unset; an error when malformed.
inline Expected<int64_t> env_positive(const char* name, int64_t fallback) {
  const char* s = std::getenv(name);
  if (s == nullptr || *s == '\0') return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0)
    return CPB_ERROR("{}='{}' is not a positive integer", name, s);
  return static_cast<int64_t>(v);
}

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { reset(); }

  // Allocates on the current device; `what` names the buffer in the error.
  Status alloc(size_t bytes, const char* what) {
    reset();
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes == 0 ? 1 : bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      return CPB_ERROR("cudaMalloc of {} ({} bytes) failed: {} ({} of {} bytes free)", what, bytes,
                       cudaGetErrorString(e), free_b, total_b);
    }
    p_ = p;
    bytes_ = bytes;
    return {};
  }
  void reset() {
    if (p_ != nullptr) cudaFree(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  void* get() const { return p_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

class Stream {
 public:
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
    if (s_ != nullptr) cudaStreamDestroy(s_);
  }
  Status create() {
    CPB_BENCH_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
    return {};
  }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// A start/stop pair of timing events on one stream.
class EventTimer {
 public:
  EventTimer() = default;
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  ~EventTimer() {
    if (start_ != nullptr) cudaEventDestroy(start_);
    if (stop_ != nullptr) cudaEventDestroy(stop_);
  }
  Status create() {
    CPB_BENCH_CUDA(cudaEventCreate(&start_));
    CPB_BENCH_CUDA(cudaEventCreate(&stop_));
    return {};
  }
  Status start(cudaStream_t s) {
    CPB_BENCH_CUDA(cudaEventRecord(start_, s));
    return {};
  }
  Status stop(cudaStream_t s) {
    CPB_BENCH_CUDA(cudaEventRecord(stop_, s));
    return {};
  }
  // Blocks until the stop event has completed; seconds between the two events.
  Expected<double> elapsed_s() {
    CPB_BENCH_CUDA(cudaEventSynchronize(stop_));
    float ms = 0.0f;
    CPB_BENCH_CUDA(cudaEventElapsedTime(&ms, start_, stop_));
    return static_cast<double>(ms) * 1e-3;
  }
  cudaEvent_t stop_event() const { return stop_; }
  cudaEvent_t start_event() const { return start_; }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// Overwrites a buffer twice the size of the L2 cache before each timed iteration, so that small
// problems are not timed out of a warm L2 (nvbench's "cold" measurement).
class L2Flush {
 public:
  Status init() {
    int dev = 0, l2 = 0;
    CPB_BENCH_CUDA(cudaGetDevice(&dev));
    CPB_BENCH_CUDA(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    const size_t bytes = 2 * static_cast<size_t>(l2 > 0 ? l2 : (1 << 20));
    return buf_.alloc(bytes, "L2 flush buffer");
  }
  Status run(cudaStream_t s) {
    ++round_;
    CPB_BENCH_CUDA(cudaMemsetAsync(buf_.get(), round_ & 0xff, buf_.bytes(), s));
    return {};
  }

 private:
  DeviceBuffer buf_;
  int round_ = 0;
};

// Deterministic uniform values in [-1, 1) (splitmix64), made once per process on first use.
inline const std::vector<float>& random_f32_pool() {
  static const std::vector<float> pool = [] {
    std::vector<float> v(size_t{1} << 23);  // 32 MiB
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (float& f : v) {
      x += 0x9e3779b97f4a7c15ull;
      uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      f = static_cast<float>(static_cast<double>(z >> 40) * 0x1.0p-23 - 1.0);
    }
    return v;
  }();
  return pool;
}

// The same values rounded to bf16 (16 Mi elements, 32 MiB), converted once.
inline const std::vector<uint16_t>& random_bf16_pool() {
  static const std::vector<uint16_t> pool = [] {
    const auto& f = random_f32_pool();
    std::vector<uint16_t> v(f.size() * 2);
    // Two passes over the f32 pool, the second negated, so bf16 rows differ from f32 rows.
    std::vector<float> neg(f.size());
    for (size_t i = 0; i < f.size(); ++i) neg[i] = -f[i];
    cuda::floats_to_act(cuda::ActType::bf16, f.data(), v.data(), static_cast<int64_t>(f.size()));
    cuda::floats_to_act(cuda::ActType::bf16, neg.data(), v.data() + f.size(),
                        static_cast<int64_t>(neg.size()));
    return v;
  }();
  return pool;
}

// Fills `bytes` of device memory at `dst` by repeating the host pool, starting `offset` bytes
// into it (so that buffers filled from one pool do not start with the same values).
inline Status upload_tiled(void* dst, size_t bytes, const void* pool, size_t pool_bytes,
                           size_t offset = 0) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* p = static_cast<const unsigned char*>(pool);
  size_t done = 0, at = offset % pool_bytes;
  while (done < bytes) {
    const size_t n = std::min(bytes - done, pool_bytes - at);
    CPB_BENCH_CUDA(cudaMemcpy(d + done, p + at, n, cudaMemcpyHostToDevice));
    done += n;
    at = 0;
  }
  return {};
}

inline Status upload_random_bf16(const DeviceBuffer& b, size_t offset_elems) {
  const auto& pool = random_bf16_pool();
  return upload_tiled(b.get(), b.bytes(), pool.data(), pool.size() * sizeof(uint16_t),
                      offset_elems * sizeof(uint16_t));
}

inline Status upload_random_f32(const DeviceBuffer& b, size_t offset_elems) {
  const auto& pool = random_f32_pool();
  return upload_tiled(b.get(), b.bytes(), pool.data(), pool.size() * sizeof(float),
                      offset_elems * sizeof(float));
}

// Adds provenance to the "context" block of the benchmark output (console header and JSON):
// cpbench version, git sha and dirty flag, the repro line, the timing-relevant environment
// (NCCL_*, CUDA_VISIBLE_DEVICES, ...), GPUs, driver and runtime. Call it with the full argv,
// before benchmark::Initialize removes its flags.
inline void add_context(int argc, char** argv) {
  const auto prov = collect_provenance(argc, argv);
  auto str = [](const nlohmann::json& j) {
    return j.is_string() ? j.get<std::string>() : j.dump();
  };
  benchmark::AddCustomContext("cpbench_version", str(prov.value("cpbench_version", "unknown")));
  if (prov.contains("git")) {
    benchmark::AddCustomContext("git_sha", str(prov["git"].value("sha", "unknown")));
    benchmark::AddCustomContext("git_dirty", str(prov["git"].value("dirty", nlohmann::json())));
  }
  benchmark::AddCustomContext("repro", str(prov.value("repro", "")));
  benchmark::AddCustomContext("env", str(prov.value("env", nlohmann::json::object())));
  benchmark::AddCustomContext("cuda_driver", cuda::driver_version());
  benchmark::AddCustomContext("cuda_runtime", cuda::runtime_version());
  // Properties only: no context is created on GPUs that the benchmark will not use.
  std::string gpus;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    n = 0;
  }
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    if (!gpus.empty()) gpus += "; ";
    gpus += std::to_string(i) + ": " + p.name + " (sm_" + std::to_string(p.major) +
            std::to_string(p.minor) + ", " + std::to_string(p.totalGlobalMem >> 20) + " MiB)";
  }
  benchmark::AddCustomContext("gpus", gpus.empty() ? "none" : gpus);
}

}  // namespace cpb::bench
