// CudaExecutor (device memory, kernels of kernels/cuda, NCCL calls on the comm stream) and the
// single-node CudaBackend.
#include "harness/backends/cuda/cuda_executor.hpp"

#include <cuda_runtime.h>
#include <nccl.h>
#include <nvtx3/nvToolsExt.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "harness/backends/cpu/cpu_executor.hpp"
#include "harness/core/mpi_world.hpp"
#include "kernels/cuda/kernels.hpp"

#define CPB_CUDA(call)                                                              \
  do {                                                                              \
    cudaError_t cpb_cuda_err_ = (call);                                             \
    if (cpb_cuda_err_ != cudaSuccess)                                               \
      return CPB_ERROR("CUDA error {} ({}) in {}", static_cast<int>(cpb_cuda_err_), \
                       cudaGetErrorString(cpb_cuda_err_), #call);                   \
  } while (0)

#define CPB_NCCL(call)                                                              \
  do {                                                                              \
    ncclResult_t cpb_nccl_err_ = (call);                                            \
    if (cpb_nccl_err_ != ncclSuccess)                                               \
      return CPB_ERROR("NCCL error {} ({}) in {}", static_cast<int>(cpb_nccl_err_), \
                       ncclGetErrorString(cpb_nccl_err_), #call);                   \
  } while (0)

namespace cpb {
namespace {

cuda::ActType act_type(DType d) {
  return d == DType::fp16 ? cuda::ActType::fp16 : cuda::ActType::bf16;
}

class CudaExecutor final : public Executor {
 public:
  // `device`: the GPU of this rank; `host_barrier`: waits for every rank on the host (threads
  // of one process, or MPI processes); `timeout_s`: how long the host waits for the GPU work of
  // an iteration before it gives the point up (0: forever); `wait_abort`: blocks until another
  // rank aborts the point (the injected hang; empty: returns at once).
  CudaExecutor(int rank, int world, DType dtype, ncclComm_t comm, int device,
               std::function<Status()> host_barrier, double timeout_s = 0,
               std::function<Status()> wait_abort = {})
      : Executor(rank, world, dtype),
        comm_(comm),
        device_(device),
        host_barrier_(std::move(host_barrier)),
        timeout_s_(timeout_s),
        wait_abort_(std::move(wait_abort)) {}
  ~CudaExecutor() override {
    for (void* p : owned_) cudaFree(p);
    if (flush_) cudaFree(flush_);
    for (auto e : events_) cudaEventDestroy(e);
    for (auto e : marks_) cudaEventDestroy(e);
    if (t0_) cudaEventDestroy(t0_);
    if (t1_) cudaEventDestroy(t1_);
    if (join_) cudaEventDestroy(join_);
    if (fork_) cudaEventDestroy(fork_);
    if (graph_) cudaGraphExecDestroy(graph_);
    for (auto s : streams_)
      if (s) cudaStreamDestroy(s);
  }

  Status init() {
    CPB_CUDA(cudaSetDevice(device_));
    // The comm stream gets the highest priority: when an attention kernel and an NCCL kernel
    // wait for multiprocessors, the NCCL kernel's blocks go first (it needs a few; a transfer
    // that waits for the attention kernel to end is a transfer that does not overlap).
    int least = 0, greatest = 0;
    CPB_CUDA(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    CPB_CUDA(cudaStreamCreateWithPriority(&streams_[0], cudaStreamNonBlocking, least));
    CPB_CUDA(cudaStreamCreateWithPriority(&streams_[1], cudaStreamNonBlocking, greatest));
    CPB_CUDA(cudaEventCreate(&t0_));
    CPB_CUDA(cudaEventCreate(&t1_));
    CPB_CUDA(cudaEventCreateWithFlags(&join_, cudaEventDisableTiming));
    CPB_CUDA(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
    // Twice the L2, rewritten before every timed iteration so that no iteration finds the
    // previous one's K/V in cache (small points would otherwise look faster than they are).
    int l2 = 0;
    CPB_CUDA(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device_));
    flush_bytes_ = 2 * static_cast<size_t>(std::max(l2, 1 << 20));
    CPB_CUDA(cudaMalloc(&flush_, flush_bytes_));
    return {};
  }

  std::string_view backend() const override { return "cuda"; }

  Status write(Buf b, int64_t offset, std::span<const float> data) override {
    CPB_TRY(check_range({b, offset, static_cast<int64_t>(data.size())}, "write"));
    const int64_t eb = elem_bytes(b);
    std::vector<unsigned char> host(data.size() * static_cast<size_t>(eb));
    if (kind_of(b) == ElemKind::f32)
      std::memcpy(host.data(), data.data(), host.size());
    else
      cuda::floats_to_act(act_type(dtype()), data.data(), host.data(),
                          static_cast<int64_t>(data.size()));
    CPB_CUDA(cudaMemcpy(ptr(b, offset), host.data(), host.size(), cudaMemcpyHostToDevice));
    // cudaMemcpy runs on the legacy stream, which does not order against the rank's
    // non-blocking streams: finish it before any op can read the buffer.
    CPB_CUDA(cudaDeviceSynchronize());
    return {};
  }

  Status read(Buf b, int64_t offset, std::span<float> out) override {
    CPB_TRY(check_range({b, offset, static_cast<int64_t>(out.size())}, "read"));
    CPB_TRY(synchronize());
    const int64_t eb = elem_bytes(b);
    std::vector<unsigned char> host(out.size() * static_cast<size_t>(eb));
    CPB_CUDA(cudaMemcpy(host.data(), ptr(b, offset), host.size(), cudaMemcpyDeviceToHost));
    if (kind_of(b) == ElemKind::f32)
      std::memcpy(out.data(), host.data(), host.size());
    else
      cuda::act_to_floats(act_type(dtype()), host.data(), out.data(),
                          static_cast<int64_t>(out.size()));
    return {};
  }

  Status fill_random(const View& dst, const RandomFill& f) override {
    CPB_TRY(check_view(dst, ElemKind::act, "fill_random"));
    CPB_TRY(launched(
        cuda::fill_random(act_type(dtype()), dev(dst), f.seed, static_cast<uint32_t>(f.tensor),
                          f.base, f.batch_step, f.token_step, raw(Stream::compute)),
        "fill_random"));
    return synchronize();
  }

  Status synchronize() override {
    for (auto s : streams_) {
      CPB_CUDA(cudaEventRecord(join_, s));
      CPB_TRY(wait_done(join_));
    }
    return {};
  }
  Status barrier() override {
    CPB_TRY(synchronize());
    return host_barrier_();
  }
  // The L2 flush every timed iteration starts with (a new value each time, so that no write is
  // skipped), queued on the compute stream.
  Status queue_flush() {
    CPB_CUDA(cudaMemsetAsync(flush_, ++flush_value_ & 0xff, flush_bytes_, stream(Stream::compute)));
    return {};
  }
  Status timer_start() override {
    comm_in_flight_ = false;
    CPB_TRY(queue_flush());
    // Both streams start after the start event, so nothing of the iteration runs before it.
    CPB_CUDA(cudaEventRecord(t0_, stream(Stream::compute)));
    CPB_CUDA(cudaStreamWaitEvent(stream(Stream::comm), t0_, 0));
    return {};
  }
  Expected<double> timer_lead_seconds() override {
    CPB_TRY(synchronize());
    auto s = stream(Stream::compute);
    CPB_CUDA(cudaEventRecord(t0_, s));
    CPB_TRY(queue_flush());
    CPB_CUDA(cudaEventRecord(t1_, s));
    CPB_TRY(wait_done(t1_));
    float ms = 0;
    CPB_CUDA(cudaEventElapsedTime(&ms, t0_, t1_));
    return static_cast<double>(ms) * 1e-3;
  }
  Expected<double> timer_stop() override {
    if (!sticky_.empty()) return CPB_ERROR("CUDA ordering error: {}", sticky_);
    CPB_CUDA(cudaEventRecord(join_, stream(Stream::comm)));
    CPB_CUDA(cudaStreamWaitEvent(stream(Stream::compute), join_, 0));
    CPB_CUDA(cudaEventRecord(t1_, stream(Stream::compute)));
    CPB_TRY(wait_done(t1_));
    float ms = 0;
    CPB_CUDA(cudaEventElapsedTime(&ms, t0_, t1_));
    return static_cast<double>(ms) * 1e-3;
  }
  std::string_view clock() const override { return "cuda_event"; }

  // The capture starts on the compute stream; the comm stream joins it through an event and
  // rejoins it at the end, so the graph holds both streams' ops with their event edges (and
  // their concurrency). ThreadLocal mode: the other ranks' threads capture at the same time.
  bool can_capture() const override { return true; }
  Status begin_capture() override {
    comm_in_flight_ = false;
    sticky_.clear();
    CPB_CUDA(cudaStreamBeginCapture(stream(Stream::compute), cudaStreamCaptureModeThreadLocal));
    capturing_ = true;
    CPB_CUDA(cudaEventRecord(fork_, stream(Stream::compute)));
    CPB_CUDA(cudaStreamWaitEvent(stream(Stream::comm), fork_, 0));
    return {};
  }
  Status end_capture() override {
    if (!capturing_) return CPB_ERROR("internal: end_capture without begin_capture");
    capturing_ = false;
    const cudaError_t joined = cudaEventRecord(join_, stream(Stream::comm));
    const cudaError_t waited = cudaStreamWaitEvent(stream(Stream::compute), join_, 0);
    cudaGraph_t g = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream(Stream::compute), &g);
    if (graph_) cudaGraphExecDestroy(graph_);
    graph_ = nullptr;
    if (joined != cudaSuccess || waited != cudaSuccess || ended != cudaSuccess ||
        !sticky_.empty()) {
      if (g) cudaGraphDestroy(g);
      cudaGetLastError();  // a failed capture leaves its error behind
      std::string why = !sticky_.empty() ? sticky_
                        : ended != cudaSuccess
                            ? cudaGetErrorString(ended)
                            : cudaGetErrorString(joined != cudaSuccess ? joined : waited);
      sticky_.clear();
      return CPB_ERROR("capturing the iteration into a CUDA graph failed: {}", why);
    }
    const cudaError_t made = cudaGraphInstantiate(&graph_, g, 0);
    cudaGraphDestroy(g);
    CPB_CUDA(made);
    return {};
  }
  Status replay() override {
    if (!graph_) return CPB_ERROR("internal: replay before a successful capture");
    CPB_CUDA(cudaGraphLaunch(graph_, stream(Stream::compute)));
    return {};
  }

 protected:
  Status do_alloc(Buf b, ElemKind kind, int64_t elems) override {
    return allocate(b, static_cast<size_t>(std::max<int64_t>(elems, 1)) * storage_bytes(kind));
  }
  Status do_alloc_workspace(Buf b, int64_t bytes) override {
    return allocate(b, static_cast<size_t>(std::max<int64_t>(bytes, 1)));
  }
  Status do_alias(Buf b, Buf workspace, int64_t offset) override {
    bind(b, static_cast<unsigned char*>(mem_[workspace.id]) + offset);
    return {};
  }

  Status do_attention(Stream s, const AttnArgs& a) override {
    int kind = a.mask.kind == BlockMask::Kind::none   ? 0
               : a.mask.kind == BlockMask::Kind::full ? 1
                                                      : 2;
    // A transfer issued on the comm stream that the compute stream has not waited for yet may
    // run beside this kernel: let it have multiprocessors (kernels.hpp, share_sms).
    const bool share = s == Stream::compute && comm_in_flight_;
    return launched(
        cuda::attention_forward(act_type(dtype()), dev(a.q), dev(a.k), dev(a.v), dev(a.o),
                                dev(a.lse), kind, a.mask.diag, static_cast<float>(a.scale),
                                a.accumulate, raw(s), cuda::AttentionKernel::automatic, share),
        "attention");
  }
  Status do_merge(Stream s, const MergeArgs& a) override {
    return launched(
        cuda::merge_partials(dev(a.o), dev(a.lse), dev(a.part_o), dev(a.part_lse), raw(s)),
        "merge");
  }
  Status do_reset(Stream s, View o, View lse) override {
    return launched(cuda::reset_partials(dev(o), dev(lse), raw(s)), "reset");
  }
  Status do_copy(Stream s, Range dst, Range src) override {
    CPB_CUDA(cudaMemcpyAsync(ptr(dst.buf, dst.offset), ptr(src.buf, src.offset),
                             static_cast<size_t>(src.count * elem_bytes(src.buf)),
                             cudaMemcpyDeviceToDevice, stream(s)));
    return {};
  }
  Status do_copy_view(Stream s, View dst, View src) override {
    return launched(
        cuda::copy_view(static_cast<int>(elem_bytes(dst.buf)), dev(dst), dev(src), raw(s)),
        "copy_view");
  }
  Status do_p2p(Stream s, std::span<const P2POp> ops) override {
    CPB_NCCL(ncclGroupStart());
    for (const auto& op : ops) {
      if (op.range.count == 0) continue;
      if (op.kind == P2POp::Kind::send)
        CPB_NCCL(ncclSend(ptr(op.range.buf, op.range.offset), static_cast<size_t>(op.range.count),
                          nccl_type(op.range.buf), op.peer, comm_, stream(s)));
      else
        CPB_NCCL(ncclRecv(ptr(op.range.buf, op.range.offset), static_cast<size_t>(op.range.count),
                          nccl_type(op.range.buf), op.peer, comm_, stream(s)));
    }
    CPB_NCCL(ncclGroupEnd());
    return {};
  }
  Status do_all_to_all(Stream s, std::span<const Range> send,
                       std::span<const Range> recv) override {
    // NCCL's all-to-all is grouped send/recv; empty entries (ranks outside a USP group) skip.
    const int r = rank();
    if (send[r].count > 0)
      CPB_CUDA(cudaMemcpyAsync(ptr(recv[r].buf, recv[r].offset), ptr(send[r].buf, send[r].offset),
                               static_cast<size_t>(send[r].count * elem_bytes(send[r].buf)),
                               cudaMemcpyDeviceToDevice, stream(s)));
    CPB_NCCL(ncclGroupStart());
    for (int j = 0; j < world(); ++j) {
      if (j == r) continue;
      if (send[j].count > 0)
        CPB_NCCL(ncclSend(ptr(send[j].buf, send[j].offset), static_cast<size_t>(send[j].count),
                          nccl_type(send[j].buf), j, comm_, stream(s)));
      if (recv[j].count > 0)
        CPB_NCCL(ncclRecv(ptr(recv[j].buf, recv[j].offset), static_cast<size_t>(recv[j].count),
                          nccl_type(recv[j].buf), j, comm_, stream(s)));
    }
    CPB_NCCL(ncclGroupEnd());
    return {};
  }
  Status do_all_gather(Stream s, Range send, Range recv) override {
    CPB_NCCL(ncclAllGather(ptr(send.buf, send.offset), ptr(recv.buf, recv.offset),
                           static_cast<size_t>(send.count), nccl_type(send.buf), comm_, stream(s)));
    return {};
  }
  // record/wait cannot return a Status (strategies call them between ops), so a failure is
  // kept and reported by the next timer_stop: a lost ordering edge must not pass silently.
  void do_record(Stream s, Event e) override {
    while (static_cast<int>(events_.size()) <= e.id) {
      cudaEvent_t ev{};
      note(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
      events_.push_back(ev);
    }
    note(cudaEventRecord(events_[e.id], stream(s)), "cudaEventRecord");
  }
  // Also in the compute-only variant (the transfer is left out there, but the attention kernels
  // must be launched as in the full run for its time to be the full run's compute).
  void comm_issued(Stream s) override { comm_in_flight_ = comm_in_flight_ || s == Stream::comm; }
  void do_wait(Stream s, Event e) override {
    // The compute stream now follows the comm stream up to an event: nothing issued so far is
    // assumed to run beside the next kernels (the strategies wait on their latest transfer).
    if (s == Stream::compute) comm_in_flight_ = false;
    if (e.id >= 0 && e.id < static_cast<int>(events_.size()))
      note(cudaStreamWaitEvent(stream(s), events_[e.id], 0), "cudaStreamWaitEvent");
    else
      note(cudaErrorInvalidResourceHandle, "wait on an event that was never recorded");
  }
  void note(cudaError_t err, const char* what) {
    if (err != cudaSuccess && sticky_.empty())
      sticky_ = fmt::format("{} failed: {}", what, cudaGetErrorString(err));
  }
  void do_mark(Stream s, int slot) override {
    while (static_cast<int>(marks_.size()) <= slot) {
      cudaEvent_t ev{};
      cudaEventCreate(&ev);
      marks_.push_back(ev);
    }
    cudaEventRecord(marks_[slot], stream(s));
  }
  Expected<double> do_mark_seconds(int slot) override {
    float ms = 0;
    CPB_CUDA(cudaEventSynchronize(marks_.at(slot)));
    CPB_CUDA(cudaEventElapsedTime(&ms, t0_, marks_.at(slot)));
    return static_cast<double>(ms) * 1e-3;
  }
  // NVTX3 ranges in domain "cpbench", named "<phase>:<op>", so nsys shows the same story.
  void range_push(const OpRecord& rec) override {
    static nvtxDomainHandle_t domain = nvtxDomainCreateA("cpbench");
    nvtxEventAttributes_t attr{};
    attr.version = NVTX_VERSION;
    attr.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    attr.messageType = NVTX_MESSAGE_TYPE_ASCII;
    std::string name = rec.phase + ":" + std::string(to_string(rec.kind));
    attr.message.ascii = name.c_str();
    nvtxDomainRangePushEx(domain, &attr);
    domain_ = domain;
  }
  void range_pop() override {
    if (domain_ != nullptr) nvtxDomainRangePop(domain_);
  }

 private:
  cudaStream_t stream(Stream s) const { return streams_[static_cast<int>(s)]; }
  void* raw(Stream s) const { return static_cast<void*>(stream(s)); }
  // Waits for an event on the host, at most timeout_s: a peer that never posts its side of a
  // transfer leaves NCCL's kernel waiting forever, and this is where the rank notices, so that
  // the backend can abort the communicators (ncclCommAbort) and the sweep go on. Polls (yield,
  // then short sleeps) instead of blocking, which cannot be given up.
  Status wait_done(cudaEvent_t e) {
    const auto begin = std::chrono::steady_clock::now();
    for (int polls = 0;; ++polls) {
      const cudaError_t q = cudaEventQuery(e);
      if (q == cudaSuccess) return {};
      if (q != cudaErrorNotReady) CPB_CUDA(q);
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
      if (timeout_s_ > 0 && waited > timeout_s_)
        return CPB_ERROR(
            "the GPU work of this iteration did not finish within {:.0f} s (timeout_s): a rank "
            "hung or a transfer was never matched; the point is aborted (raise timeout_s if it "
            "is just slow)",
            timeout_s_);
      if (polls < 2000)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  Status wait_for_abort() override {
    if (!wait_abort_) return Executor::wait_for_abort();
    return wait_abort_();
  }
  Status allocate(Buf b, size_t bytes) {
    void* p = nullptr;
    CPB_CUDA(cudaMalloc(&p, bytes));
    owned_.push_back(p);
    bind(b, p);
    // Zeroed, so that padding that travels is deterministic.
    CPB_CUDA(cudaMemset(p, 0, bytes));
    CPB_CUDA(cudaDeviceSynchronize());  // legacy-stream memset: done before any stream op
    return {};
  }
  void bind(Buf b, void* p) {
    if (static_cast<int>(mem_.size()) <= b.id) mem_.resize(b.id + 1, nullptr);
    mem_[b.id] = p;
  }
  void* ptr(Buf b, int64_t offset) const {
    return static_cast<unsigned char*>(mem_[b.id]) + offset * elem_bytes(b);
  }
  cuda::DevView dev(const View& v) const {
    return {ptr(v.buf, v.offset), v.batch, v.batch_stride, v.tokens, v.heads, v.dim,
            v.token_stride};
  }
  ncclDataType_t nccl_type(Buf b) const {
    if (kind_of(b) == ElemKind::f32) return ncclFloat32;
    return dtype() == DType::fp16 ? ncclFloat16 : ncclBfloat16;
  }
  Status launched(int err, const char* what) const {
    if (err != 0)
      return CPB_ERROR("CUDA error {} ({}) launching {}", err,
                       cudaGetErrorString(static_cast<cudaError_t>(err)), what);
    return {};
  }

  ncclComm_t comm_;
  int device_;
  std::function<Status()> host_barrier_;
  double timeout_s_ = 0;
  std::function<Status()> wait_abort_;
  cudaStream_t streams_[2] = {nullptr, nullptr};
  cudaEvent_t t0_ = nullptr, t1_ = nullptr, join_ = nullptr, fork_ = nullptr;
  cudaGraphExec_t graph_ = nullptr;  // the last captured iteration
  bool capturing_ = false;
  std::vector<void*> owned_;  // every cudaMalloc (buffers and workspaces)
  std::vector<void*> mem_;    // by buffer id: its first byte
  std::vector<cudaEvent_t> events_;
  std::vector<cudaEvent_t> marks_;
  nvtxDomainHandle_t domain_ = nullptr;
  std::string sticky_;           // first failed record/wait of the iteration
  bool comm_in_flight_ = false;  // a comm-stream op not yet waited for by the compute stream
  void* flush_ = nullptr;
  size_t flush_bytes_ = 0;
  int flush_value_ = 0;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int world, DType dtype, double timeout_s)
      : world_(world), dtype_(dtype), timeout_s_(timeout_s), host_(world, timeout_s) {}
  ~CudaBackend() override {
    for (auto c : comms_) {
      if (c == nullptr) continue;
      if (aborted_)
        ncclCommAbort(c);
      else
        ncclCommDestroy(c);
    }
  }
  std::string_view name() const override { return "cuda"; }
  int size() const override { return world_; }

  Status init() {
    comms_.assign(static_cast<size_t>(world_), nullptr);
    std::vector<int> devs(static_cast<size_t>(world_));
    for (int i = 0; i < world_; ++i) devs[i] = i;
    CPB_NCCL(ncclCommInitAll(comms_.data(), world_, devs.data()));
    return {};
  }

  Status run(const std::function<Status(Executor&)>& fn) override {
    return host_.run([&](int rank) -> Status {
      CudaExecutor ex(
          rank, world_, dtype_, comms_[rank], rank, [this, rank] { return host_.barrier(rank); },
          timeout_s_, [this, rank] { return host_.wait_for_abort(rank); });
      Status st = ex.init();
      try {
        if (st.ok()) st = fn(ex);
      } catch (const std::exception& e) {
        st = CPB_ERROR("unexpected exception: {}", e.what());
      }
      // Unblock the other ranks at once, whatever they wait for on their GPU.
      if (!st.ok()) abort_all();
      return st;
    });
  }

 private:
  // Unblocks ranks waiting in NCCL for a rank that failed.
  void abort_all() {
    std::lock_guard lock(mu_);
    if (aborted_) return;
    aborted_ = true;
    for (auto c : comms_)
      if (c != nullptr) ncclCommAbort(c);
    comms_.assign(comms_.size(), nullptr);
  }

  int world_;
  DType dtype_;
  double timeout_s_;
  CpuWorld host_;  // host-side barrier and abort shared by the rank threads
  std::vector<ncclComm_t> comms_;
  std::mutex mu_;
  bool aborted_ = false;
};

#ifdef CPBENCH_HAVE_MPI
// One rank per MPI process: the GPU is local_rank mod the visible GPUs, the communicator comes
// from a ncclUniqueId that rank 0 broadcasts over MPI.
class MpiCudaBackend final : public Backend {
 public:
  MpiCudaBackend(int world, DType dtype) : world_(world), dtype_(dtype) {}
  ~MpiCudaBackend() override {
    if (comm_ == nullptr) return;
    if (failed_)
      ncclCommAbort(comm_);
    else
      ncclCommDestroy(comm_);
  }
  std::string_view name() const override { return "cuda"; }
  int size() const override { return world_; }

  Status init() {
    int gpus = 0;
    CPB_CUDA(cudaGetDeviceCount(&gpus));
    CPB_REQUIRE(gpus > 0, "MPI rank {} sees no GPU", mpi::rank());
    device_ = mpi::local_rank() % gpus;
    CPB_CUDA(cudaSetDevice(device_));
    ncclUniqueId id{};
    if (mpi::rank() == 0) CPB_NCCL(ncclGetUniqueId(&id));
    std::string bytes(reinterpret_cast<const char*>(&id), sizeof id);
    CPB_TRY(mpi::broadcast(bytes));
    std::memcpy(&id, bytes.data(), sizeof id);
    CPB_NCCL(ncclCommInitRank(&comm_, world_, id, mpi::rank()));
    return {};
  }

  Status run(const std::function<Status(Executor&)>& fn) override {
    CudaExecutor ex(mpi::rank(), world_, dtype_, comm_, device_, [] { return mpi::barrier(); });
    Status st = ex.init();
    if (st.ok()) st = fn(ex);
    if (!st.ok()) failed_ = true;
    return st;
  }

 private:
  int world_;
  DType dtype_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  bool failed_ = false;
};
#endif

}  // namespace

Status cuda_reference_attention(const Workload& w, const std::vector<float>& q,
                                const std::vector<float>& k, const std::vector<float>& v,
                                std::vector<float>& o, std::vector<float>& lse) {
  CPB_CUDA(cudaSetDevice(0));
  const cuda::ActType t = act_type(w.dtype);
  struct Dev {
    void* p = nullptr;
    ~Dev() {
      if (p) cudaFree(p);
    }
  } dq, dk, dv, dout, dlse;
  auto upload = [&](Dev& d, const std::vector<float>& host) -> Status {
    std::vector<uint16_t> tmp(host.size());
    cuda::floats_to_act(t, host.data(), tmp.data(), static_cast<int64_t>(host.size()));
    CPB_CUDA(cudaMalloc(&d.p, tmp.size() * 2));
    CPB_CUDA(cudaMemcpy(d.p, tmp.data(), tmp.size() * 2, cudaMemcpyHostToDevice));
    return {};
  };
  CPB_TRY(upload(dq, q));
  CPB_TRY(upload(dk, k));
  CPB_TRY(upload(dv, v));
  o.assign(q.size(), 0.0f);
  lse.assign(q.size() / static_cast<size_t>(w.head_dim), 0.0f);
  CPB_CUDA(cudaMalloc(&dout.p, o.size() * 4));
  CPB_CUDA(cudaMalloc(&dlse.p, lse.size() * 4));
  CPB_CUDA(cudaDeviceSynchronize());
  const int err = cuda::reference_attention(
      t, dq.p, dk.p, dv.p, static_cast<float*>(dout.p), static_cast<float*>(dlse.p), w.batch,
      w.new_tokens, w.cached_tokens, w.heads, w.kv_heads, w.head_dim, w.mask == MaskKind::causal,
      static_cast<float>(w.scale()), nullptr);
  if (err != 0) return CPB_ERROR("CUDA error {} launching the reference kernel", err);
  CPB_CUDA(cudaDeviceSynchronize());
  CPB_CUDA(cudaMemcpy(o.data(), dout.p, o.size() * 4, cudaMemcpyDeviceToHost));
  CPB_CUDA(cudaMemcpy(lse.data(), dlse.p, lse.size() * 4, cudaMemcpyDeviceToHost));
  return {};
}

std::string nccl_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  return fmt::format("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100);
}

Expected<std::unique_ptr<Backend>> make_cuda_backend(int world, DType dtype, double timeout_s) {
#ifdef CPBENCH_HAVE_MPI
  if (mpi::active()) {
    auto m = std::make_unique<MpiCudaBackend>(world, dtype);
    CPB_TRY(m->init());
    return std::unique_ptr<Backend>(std::move(m));
  }
#endif
  auto b = std::make_unique<CudaBackend>(world, dtype, timeout_s);
  CPB_TRY(b->init());
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace cpb
