// Google Benchmark microbenchmarks of the NCCL primitives the strategies use, in one process
// with one thread per GPU, the way the cuda backend runs: ring sendrecv (rank r sends to r+1 and
// receives from r-1 in one group), all-to-all (grouped send/recv to every rank, itself included)
// and all-gather, in bf16, for message sizes of 1 MiB to 1 GiB by powers of 4. Sizes, algbw and
// busbw follow nccl-tests (doc/PERFORMANCE.md) so the numbers line up with
// reference/nccl_h200x4.csv: `bytes` is nccl-tests' "size" column, algbw = bytes / time and
// busbw = algbw · factor (sendrecv 1, alltoall and all_gather (n−1)/n). Every rank times each
// operation with CUDA events on its own stream; the iteration's time is the maximum over ranks.
// The main thread drives the rank threads one command at a time and waits for all of them, which
// is the host barrier between iterations, so every rank runs the same iterations. Before timing,
// each size runs once and its received data are checked against the pattern the senders wrote.
// NVLink SHARP (NCCL_NVLS_ENABLE) is turned off unless the environment says otherwise. A rank
// that fails or a step that exceeds the timeout aborts the communicators: the benchmark is
// skipped with the reason, never hung.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "benchmarks/bench_common.hpp"

#define CPB_BENCH_NCCL(call)                                                              \
  do {                                                                                    \
    const ncclResult_t cpb_bench_nccl_err_ = (call);                                      \
    if (cpb_bench_nccl_err_ != ncclSuccess)                                               \
      return CPB_ERROR("NCCL error {} ({}) in {}", static_cast<int>(cpb_bench_nccl_err_), \
                       ncclGetErrorString(cpb_bench_nccl_err_), #call);                   \
  } while (0)

namespace cpb::bench {
namespace {

using Clock = std::chrono::steady_clock;

enum class Coll { sendrecv, alltoall, all_gather };

// nccl-tests' bus-bandwidth factor.
double bus_factor(Coll c, int n) {
  return c == Coll::sendrecv ? 1.0 : static_cast<double>(n - 1) / static_cast<double>(n);
}

const char* nccl_tests_name(Coll c) {
  switch (c) {
    case Coll::sendrecv:
      return "sendrecv_perf";
    case Coll::alltoall:
      return "alltoall_perf";
    case Coll::all_gather:
      return "all_gather_perf";
  }
  return "?";
}

// One rank's buffers (bf16 elements) for a nominal nccl-tests size of `bytes` on n ranks. As in
// nccl-tests, the per-peer chunk of alltoall and all_gather is (bytes/2)/n elements rounded down,
// and `size_bytes` (the "size" column, the numerator of algbw) is what that rounding leaves:
// sendrecv: the bytes each rank sends (and receives);
// alltoall: one rank's whole send buffer, n chunks, the one to itself included;
// all_gather: one rank's whole receive buffer, n chunks (each rank contributes one).
struct Counts {
  size_t send = 0, recv = 0, chunk = 0;  // elements
  size_t size_bytes = 0;
};

Counts counts_for(Coll c, size_t bytes, int n) {
  const size_t elems = bytes / 2, un = static_cast<size_t>(n);
  Counts k;
  switch (c) {
    case Coll::sendrecv:
      k = {elems, elems, elems, 0};
      break;
    case Coll::alltoall:
      k.chunk = elems / un;
      k.send = k.recv = k.chunk * un;
      break;
    case Coll::all_gather:
      k.chunk = elems / un;
      k.send = k.chunk;
      k.recv = k.chunk * un;
      break;
  }
  k.size_bytes = (c == Coll::sendrecv ? k.send : k.recv) * 2;
  return k;
}

// The byte a sender writes into the chunk it sends to `peer_slot`; receivers check for it.
unsigned char pattern(int src, int peer_slot) {
  return static_cast<unsigned char>(1 + (src * 31 + peer_slot * 7) % 251);
}

std::string nccl_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  if (v >= 10000)
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
           std::to_string(v % 100);
  return std::to_string(v / 1000) + "." + std::to_string(v / 100 % 10) + "." +
         std::to_string(v % 100);
}

// The communicators over the first n GPUs and their rank threads. Commands are posted by the
// benchmark thread and run by every rank thread at once; post() returns when all have answered
// (or the timeout has passed, which aborts the world). After an abort every call fails with the
// reason, so the remaining benchmarks are skipped instead of hanging.
class NcclWorld {
 public:
  NcclWorld(int n, double timeout_s) : n_(n), timeout_s_(timeout_s) {}

  Status start() {
    comms_.assign(static_cast<size_t>(n_), nullptr);
    for (int r = 0; r < n_; ++r) ranks_.push_back(std::make_unique<Rank>());
    std::vector<int> devs(static_cast<size_t>(n_));
    for (int i = 0; i < n_; ++i) devs[static_cast<size_t>(i)] = i;
    CPB_BENCH_NCCL(ncclCommInitAll(comms_.data(), n_, devs.data()));
    for (int r = 0; r < n_; ++r) threads_.emplace_back([this, r] { worker(r); });
    started_ = true;
    return post(Cmd::init, "rank setup");
  }

  int size() const { return n_; }

  // Allocates and fills every rank's buffers for one collective and size; nothing moves yet.
  Expected<Counts> prepare(Coll c, size_t bytes) {
    coll_ = c;
    counts_ = counts_for(c, bytes, n_);
    if (counts_.chunk == 0)
      return CPB_ERROR("{} bytes is too small for {} on {} ranks", bytes, nccl_tests_name(c), n_);
    if (Status st = post(Cmd::prepare, "allocate"); !st.ok()) {
      if (!dead()) (void)post(Cmd::release, "free");
      return std::move(st).error();
    }
    return counts_;
  }

  // One checked operation (received data compared with what the senders wrote), then `warmup`
  // untimed ones.
  Status warm(int warmup) {
    warmup_ = warmup;
    return post(Cmd::warm, "verify and warm up");
  }

  // One timed operation on every rank; the maximum of the ranks' event times in seconds.
  Expected<double> iterate() {
    CPB_TRY(post(Cmd::iterate, "timed iteration"));
    double worst = 0.0;
    for (const auto& rk : ranks_) worst = std::max(worst, rk->seconds);
    return worst;
  }

  void release() {
    if (!dead()) (void)post(Cmd::release, "free");
  }

  // Stops the rank threads and destroys the communicators. After an abort the idle threads
  // stop by themselves; any that stay stuck in a call are left behind so the process can exit.
  void shutdown() {
    if (!started_) {
      for (auto& c : comms_)
        if (c != nullptr) ncclCommDestroy(c);
      comms_.clear();
      return;
    }
    if (post(Cmd::quit, "shut down").ok()) {
      for (auto& t : threads_) t.join();
      for (auto& c : comms_)
        if (c != nullptr) ncclCommDestroy(c);
    } else {
      const auto deadline = Clock::now() + std::chrono::seconds(5);
      while (exited_.load(std::memory_order_acquire) < n_ && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      const bool all = exited_.load(std::memory_order_acquire) == n_;
      for (auto& t : threads_) all ? t.join() : t.detach();
    }
    threads_.clear();
    comms_.clear();
  }

  bool dead() const {
    std::lock_guard lock(mu_);
    return dead_.has_value();
  }

 private:
  enum class Cmd { init, prepare, warm, iterate, release, quit };

  struct Rank {
    Stream stream;
    EventTimer timer;
    cudaEvent_t sync = nullptr;
    DeviceBuffer send, recv;
    Status status;
    double seconds = 0.0;
  };

  // Runs `cmd` on every rank thread and waits for all of them.
  Status post(Cmd cmd, const char* what) {
    {
      std::lock_guard lock(mu_);
      if (dead_) return *dead_;
    }
    done_.store(0, std::memory_order_relaxed);
    cmd_ = cmd;
    seq_.fetch_add(1, std::memory_order_release);
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s_);
    const auto spin_until = Clock::now() + std::chrono::milliseconds(2);
    while (done_.load(std::memory_order_acquire) < n_) {
      const auto now = Clock::now();
      if (now > deadline) {
        abort_all(
            CPB_ERROR("{} unfinished on some of {} ranks after {} s "
                      "(CPBENCH_BENCH_TIMEOUT_S): communicators aborted",
                      what, n_, timeout_s_));
        std::lock_guard lock(mu_);
        return *dead_;
      }
      if (now < spin_until)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    std::optional<Error> first;
    for (int r = 0; r < n_; ++r) {
      Status& st = ranks_[static_cast<size_t>(r)]->status;
      if (!st.ok() && !first) first = std::move(st).error().on_rank(r);
      st = Status();
    }
    if (!first) return {};
    // A failure while NCCL traffic was in flight leaves the communicators unusable.
    if (cmd == Cmd::warm || cmd == Cmd::iterate || cmd == Cmd::init) abort_all(*first);
    return std::move(*first);
  }

  void abort_all(Error why) {
    std::lock_guard lock(mu_);
    if (dead_) return;
    dead_ = std::move(why);
    aborted_.store(true, std::memory_order_release);
    // comms_ itself stays unchanged (rank threads read it); dead_ tells shutdown not to destroy.
    for (auto c : comms_)
      if (c != nullptr) ncclCommAbort(c);
  }

  bool aborted() const { return aborted_.load(std::memory_order_acquire); }

  void worker(int r) {
    Rank& rk = *ranks_[static_cast<size_t>(r)];
    uint64_t seen = 0;
    auto idle_since = Clock::now();
    for (;;) {
      const uint64_t s = seq_.load(std::memory_order_acquire);
      if (s == seen) {
        if (aborted()) break;  // no command will come after an abort
        // Spin while commands come quickly (between iterations), sleep when idle.
        if (Clock::now() - idle_since < std::chrono::milliseconds(2))
          std::this_thread::yield();
        else
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        continue;
      }
      seen = s;
      const Cmd cmd = cmd_;
      try {
        rk.status = run(cmd, r, rk);
      } catch (const std::exception& e) {  // a rank thread must answer, whatever happened
        rk.status = CPB_ERROR("exception in rank thread: {}", e.what());
      }
      done_.fetch_add(1, std::memory_order_acq_rel);
      idle_since = Clock::now();
      if (cmd == Cmd::quit) break;
    }
    rk.send.reset();
    rk.recv.reset();
    if (rk.sync != nullptr) cudaEventDestroy(rk.sync);
    rk.sync = nullptr;
    exited_.fetch_add(1, std::memory_order_acq_rel);
  }

  Status run(Cmd cmd, int r, Rank& rk) {
    switch (cmd) {
      case Cmd::init:
        CPB_BENCH_CUDA(cudaSetDevice(r));
        CPB_TRY(rk.stream.create());
        CPB_TRY(rk.timer.create());
        CPB_BENCH_CUDA(cudaEventCreateWithFlags(&rk.sync, cudaEventDisableTiming));
        return {};
      case Cmd::prepare:
        return prepare_rank(r, rk);
      case Cmd::warm:
        return warm_rank(r, rk);
      case Cmd::iterate:
        return iterate_rank(r, rk);
      case Cmd::release:
        rk.send.reset();
        rk.recv.reset();
        return {};
      case Cmd::quit:
        return {};
    }
    return {};
  }

  Status prepare_rank(int r, Rank& rk) {
    const size_t send_b = counts_.send * 2, recv_b = counts_.recv * 2, chunk_b = counts_.chunk * 2;
    size_t free_b = 0, total_b = 0;
    CPB_BENCH_CUDA(cudaMemGetInfo(&free_b, &total_b));
    const size_t need = send_b + recv_b + (size_t{256} << 20);  // and room for NCCL
    if (need > free_b)
      return CPB_ERROR("{} needs {} MiB of GPU memory per rank, {} MiB free",
                       nccl_tests_name(coll_), need >> 20, free_b >> 20);
    CPB_TRY(rk.send.alloc(send_b, "send buffer"));
    CPB_TRY(rk.recv.alloc(recv_b, "receive buffer"));
    auto* send = rk.send.as<unsigned char>();
    if (coll_ == Coll::alltoall) {
      for (int p = 0; p < n_; ++p)
        CPB_BENCH_CUDA(cudaMemset(send + static_cast<size_t>(p) * chunk_b, pattern(r, p), chunk_b));
    } else {
      CPB_BENCH_CUDA(cudaMemset(send, pattern(r, 0), send_b));
    }
    CPB_BENCH_CUDA(cudaMemset(rk.recv.get(), 0, recv_b));
    CPB_BENCH_CUDA(cudaDeviceSynchronize());
    return {};
  }

  // Enqueues one operation of the current collective on the rank's stream.
  Status launch(int r, Rank& rk) {
    if (aborted()) return CPB_ERROR("communicators were aborted");
    ncclComm_t comm = comms_[static_cast<size_t>(r)];
    cudaStream_t s = rk.stream.get();
    auto* send = rk.send.as<uint16_t>();  // bf16 elements
    auto* recv = rk.recv.as<uint16_t>();
    switch (coll_) {
      case Coll::sendrecv:
        CPB_BENCH_NCCL(ncclGroupStart());
        CPB_BENCH_NCCL(ncclSend(send, counts_.send, ncclBfloat16, (r + 1) % n_, comm, s));
        CPB_BENCH_NCCL(ncclRecv(recv, counts_.recv, ncclBfloat16, (r - 1 + n_) % n_, comm, s));
        CPB_BENCH_NCCL(ncclGroupEnd());
        return {};
      case Coll::alltoall:
        CPB_BENCH_NCCL(ncclGroupStart());
        for (int p = 0; p < n_; ++p) {
          const size_t off = static_cast<size_t>(p) * counts_.chunk;
          CPB_BENCH_NCCL(ncclSend(send + off, counts_.chunk, ncclBfloat16, p, comm, s));
          CPB_BENCH_NCCL(ncclRecv(recv + off, counts_.chunk, ncclBfloat16, p, comm, s));
        }
        CPB_BENCH_NCCL(ncclGroupEnd());
        return {};
      case Coll::all_gather:
        CPB_BENCH_NCCL(ncclAllGather(send, recv, counts_.chunk, ncclBfloat16, comm, s));
        return {};
    }
    return {};
  }

  // Waits for `ev` without blocking in the driver, so that an abort is noticed.
  Status wait_event(cudaEvent_t ev) {
    for (;;) {
      const cudaError_t e = cudaEventQuery(ev);
      if (e == cudaSuccess) return {};
      if (e != cudaErrorNotReady) CPB_BENCH_CUDA(e);
      if (aborted()) return CPB_ERROR("communicators were aborted while waiting");
      std::this_thread::yield();
    }
  }

  Status wait_stream(Rank& rk) {
    CPB_BENCH_CUDA(cudaEventRecord(rk.sync, rk.stream.get()));
    return wait_event(rk.sync);
  }

  // Byte pattern check of the start and end of every received chunk.
  Status verify_rank(int r, Rank& rk) {
    const size_t chunk_b = coll_ == Coll::sendrecv ? counts_.recv * 2 : counts_.chunk * 2;
    const int chunks = coll_ == Coll::sendrecv ? 1 : n_;
    const size_t probe = std::min<size_t>(chunk_b, 4096);
    std::vector<unsigned char> h(probe);
    for (int j = 0; j < chunks; ++j) {
      unsigned char want = 0;
      switch (coll_) {
        case Coll::sendrecv:
          want = pattern((r - 1 + n_) % n_, 0);
          break;
        case Coll::alltoall:
          want = pattern(j, r);
          break;
        case Coll::all_gather:
          want = pattern(j, 0);
          break;
      }
      const auto* base = rk.recv.as<unsigned char>() + static_cast<size_t>(j) * chunk_b;
      for (const size_t at : {size_t{0}, chunk_b - probe}) {
        CPB_BENCH_CUDA(cudaMemcpy(h.data(), base + at, probe, cudaMemcpyDeviceToHost));
        const auto bad =
            std::find_if(h.begin(), h.end(), [&](unsigned char b) { return b != want; });
        if (bad != h.end())
          return CPB_ERROR("{}: received chunk {} has byte {} at offset {}, expected {}: not timed",
                           nccl_tests_name(coll_), j, static_cast<int>(*bad),
                           at + static_cast<size_t>(bad - h.begin()), static_cast<int>(want));
      }
    }
    return {};
  }

  Status warm_rank(int r, Rank& rk) {
    CPB_TRY(launch(r, rk));
    CPB_TRY(wait_stream(rk));
    CPB_TRY(verify_rank(r, rk));
    for (int i = 0; i < warmup_; ++i) CPB_TRY(launch(r, rk));
    return wait_stream(rk);
  }

  // All rank threads meet here before the start events, so that the ranks launch together.
  bool rank_barrier() {
    const uint64_t gen = bar_gen_.load(std::memory_order_acquire);
    if (bar_count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      bar_count_.store(0, std::memory_order_relaxed);
      bar_gen_.fetch_add(1, std::memory_order_release);
      return true;
    }
    while (bar_gen_.load(std::memory_order_acquire) == gen) {
      if (aborted()) return false;
      std::this_thread::yield();
    }
    return true;
  }

  Status iterate_rank(int r, Rank& rk) {
    if (!rank_barrier()) return CPB_ERROR("communicators were aborted");
    cudaStream_t s = rk.stream.get();
    CPB_TRY(rk.timer.start(s));
    CPB_TRY(launch(r, rk));
    CPB_TRY(rk.timer.stop(s));
    CPB_TRY(wait_event(rk.timer.stop_event()));
    CPB_ASSIGN_OR_RETURN(rk.seconds, rk.timer.elapsed_s());
    return {};
  }

  const int n_;
  const double timeout_s_;
  bool started_ = false;
  std::vector<ncclComm_t> comms_;
  std::vector<std::unique_ptr<Rank>> ranks_;
  std::vector<std::thread> threads_;

  // Command channel: written by the benchmark thread before seq_ is bumped.
  Cmd cmd_ = Cmd::init;
  Coll coll_ = Coll::sendrecv;
  Counts counts_;
  int warmup_ = 0;
  std::atomic<uint64_t> seq_{0};
  std::atomic<int> done_{0};
  std::atomic<int> bar_count_{0};
  std::atomic<uint64_t> bar_gen_{0};
  std::atomic<bool> aborted_{false};
  std::atomic<int> exited_{0};

  mutable std::mutex mu_;
  std::optional<Error> dead_;
};

struct Settings {
  Status status;  // why no benchmark can run, if one cannot
  int gpus = 0;   // ranks
  double timeout_s = 120.0;
  int warmup = 5;
};

Settings& settings() {
  static Settings s;
  return s;
}

Settings read_settings() {
  Settings s;
  Status st = [&]() -> Status {
    CPB_ASSIGN_OR_RETURN(const int visible, visible_gpu_count());
    CPB_ASSIGN_OR_RETURN(const int64_t want, env_positive("CPBENCH_BENCH_GPUS", visible));
    if (want > visible)
      return CPB_ERROR("CPBENCH_BENCH_GPUS={} but only {} GPU(s) are visible", want, visible);
    s.gpus = static_cast<int>(want);
    CPB_ASSIGN_OR_RETURN(const int64_t t, env_positive("CPBENCH_BENCH_TIMEOUT_S", 120));
    s.timeout_s = static_cast<double>(t);
    CPB_ASSIGN_OR_RETURN(const int64_t w, env_positive("CPBENCH_BENCH_WARMUP", 5));
    s.warmup = static_cast<int>(std::min<int64_t>(w, 1000));
    return {};
  }();
  s.status = std::move(st);
  return s;
}

// The world is made on first use, so that --benchmark_list_tests touches no GPU. It is never
// deleted: rank threads left behind by an abort may still refer to it.
NcclWorld* g_world = nullptr;

Expected<NcclWorld*> world() {
  const Settings& s = settings();
  if (!s.status.ok()) return s.status.error();
  static Status init_status = [&]() -> Status {
    g_world = new NcclWorld(s.gpus, s.timeout_s);
    return g_world->start();
  }();
  if (!init_status.ok()) return init_status.error();
  return g_world;
}

void bm_collective(benchmark::State& state, Coll coll) {
  const auto nominal = static_cast<size_t>(state.range(1));
  Expected<NcclWorld*> w = world();
  if (!w.ok()) return skip(state, w.error());
  NcclWorld& nw = **w;

  Expected<Counts> counts = nw.prepare(coll, nominal);
  if (!counts.ok()) return skip(state, counts.error());
  if (Status st = nw.warm(settings().warmup); !st.ok()) {
    nw.release();
    return skip(state, st.error());
  }

  const std::optional<double> timed = manual_time_loop(state, [&] { return nw.iterate(); });
  nw.release();
  if (!timed) return;
  const double total = *timed;

  const int n = nw.size();
  const auto bytes = static_cast<double>(counts->size_bytes);
  const double algbw =
      total > 0.0 ? bytes * static_cast<double>(state.iterations()) / total * 1e-9 : 0.0;
  state.counters["bytes"] = bytes;
  state.counters["gpus"] = n;
  state.counters["algbw_GBps"] = algbw;
  state.counters["busbw_GBps"] = algbw * bus_factor(coll, n);
  state.SetLabel(std::string("nccl-tests ") + nccl_tests_name(coll) + ", bf16, max over ranks");
}

void register_benchmarks(int gpus) {
  const std::vector<int64_t> sizes = {int64_t{1} << 20, int64_t{1} << 22, int64_t{1} << 24,
                                      int64_t{1} << 26, int64_t{1} << 28, int64_t{1} << 30};
  const struct {
    Coll coll;
    const char* name;
  } colls[] = {{Coll::sendrecv, "nccl/sendrecv"},
               {Coll::alltoall, "nccl/alltoall"},
               {Coll::all_gather, "nccl/all_gather"}};
  for (const auto& c : colls) {
    auto* b = benchmark::RegisterBenchmark(c.name, bm_collective, c.coll);
    b->ArgNames({"gpus", "bytes"});
    for (const int64_t sz : sizes) b->Args({gpus, sz});
    b->UseManualTime()->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace
}  // namespace cpb::bench

int main(int argc, char** argv) {
  try {
    // NVLink SHARP (multicast) is off unless the caller chose otherwise; it must be set before
    // any communicator exists.
    setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
    const char* nvls = std::getenv("NCCL_NVLS_ENABLE");
    if (nvls != nullptr && std::string(nvls) != "0")
      std::fprintf(stderr,
                   "cpbench_bench_nccl: warning: NCCL_NVLS_ENABLE=%s from the environment\n", nvls);

    auto& s = cpb::bench::settings();
    s = cpb::bench::read_settings();
    cpb::bench::add_context(argc, argv);
    benchmark::AddCustomContext("nccl_version", cpb::bench::nccl_version());
    benchmark::AddCustomContext("nccl_ranks", std::to_string(s.gpus));
    cpb::bench::register_benchmarks(s.gpus);

    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    if (cpb::bench::g_world != nullptr) cpb::bench::g_world->shutdown();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cpbench_bench_nccl: %s\n", e.what());
    return 1;
  }
}
