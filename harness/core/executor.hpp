// The executor interface: the only thing a strategy talks to. A strategy is SPMD code run once
// per rank against an Executor that owns that rank's buffers and offers attention on a block
// (queries x keys with a BlockMask), merge of partial (O, LSE), copies, NCCL-style
// communication (grouped send/recv, all-to-all, all-gather) on a compute and a comm stream, and
// events to order the two. The cuda backend runs these on GPUs over NCCL, the cpu backend on
// threads, the sim backend only records and times them; the code of a strategy is the same.
//
// Every op goes through this base class (non-virtual public API, virtual do_* hooks), which
// records per rank and per phase the bytes sent and received and the mask-aware FLOPs, and, when
// op logging is on, one OpRecord per op with its stream, step and event dependencies (what the
// sim backend replays and the tests check closed forms against).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "harness/core/fault.hpp"
#include "harness/core/layout.hpp"
#include "harness/core/status.hpp"
#include "harness/core/workload.hpp"
#include "kernels/random_inputs.hpp"

namespace cpb {

enum class Stream { compute = 0, comm = 1 };
std::string_view to_string(Stream s);

// What a buffer holds: activations (Q, K, V in the workload dtype) or fp32 (O accumulators, LSE).
enum class ElemKind { act, f32 };

struct Buf {
  int id = -1;
  bool valid() const { return id >= 0; }
};

// A token-major 4-d slice [batch][tokens][heads][dim] of a buffer: element (b, t, h, x) is at
// offset + b * batch_stride + t * token_stride + h * dim + x, where token_stride = heads * dim
// unless set (a view of some of the heads of a wider tensor).
struct View {
  Buf buf;
  int64_t offset = 0;
  int64_t batch = 1;
  int64_t batch_stride = 0;
  int64_t tokens = 0;
  int64_t heads = 0;
  int64_t dim = 0;
  int64_t token_stride = 0;  // 0: heads * dim (dense rows)

  int64_t elems() const { return batch * tokens * heads * dim; }
  int64_t row_stride() const { return token_stride ? token_stride : heads * dim; }
  // Tokens [begin, begin + count) of every batch.
  View slice(int64_t begin, int64_t count) const;
  // Batches [begin, begin + count).
  View batches(int64_t begin, int64_t count) const;
  // Heads [begin, begin + count) of every token.
  View head_slice(int64_t begin, int64_t count) const;
};

// A dense [batch][tokens][heads][dim] view starting at `offset` of `buf`.
View dense_view(Buf buf, int64_t offset, int64_t batch, int64_t tokens, int64_t heads, int64_t dim);

// A contiguous range of elements of one buffer (what a send, recv or collective moves).
struct Range {
  Buf buf;
  int64_t offset = 0;
  int64_t count = 0;
};

// Where a view's random inputs come from (kernels/random_inputs.hpp): element (b, t, h, x) of the
// view is element base + b * batch_step + t * token_step + h * dim + x of the global tensor.
struct RandomFill {
  uint64_t seed = 0;
  InputTensor tensor = InputTensor::q;
  int64_t base = 0;
  int64_t batch_step = 0;
  int64_t token_step = 0;
};

struct AttnArgs {
  View q;  // [B, Sq, H, d] activations
  View k;  // [B, Sk, Hkv, d] activations; head h reads KV head h / (H / Hkv)
  View v;
  View o;    // [B, Sq, H, d] fp32
  View lse;  // [B, Sq, H, 1] fp32, natural log; -inf for a row with no visible key
  BlockMask mask;
  double scale = 1.0;
  bool accumulate = false;  // merge the block's result into (o, lse) instead of overwriting
};

struct MergeArgs {
  View o, lse;            // accumulator, updated in place
  View part_o, part_lse;  // partial result merged into it
};

struct P2POp {
  enum class Kind { send, recv } kind = Kind::send;
  int peer = 0;
  Range range;
};

struct Event {
  int id = -1;
};

enum class OpKind { attention, merge, reset, copy, p2p, all_to_all, all_gather };
inline constexpr int kOpKinds = 7;
static_assert(static_cast<int>(OpKind::all_gather) + 1 == kOpKinds, "kOpKinds counts OpKind");
std::string_view to_string(OpKind k);

// What one op moves to or from one peer (p2p and all-to-all; the rank itself never appears).
struct PeerTransfer {
  int peer = 0;
  bool send = true;  // false: received from `peer`
  int64_t bytes = 0;
};

// One recorded op (op logging on).
struct OpRecord {
  OpKind kind = OpKind::attention;
  Stream stream = Stream::compute;
  std::string phase;
  int step = -1;
  int64_t bytes_sent = 0;
  int64_t bytes_recv = 0;
  double flops = 0;        // attention: 4 * B * H * d * visible pairs
  int64_t sq = 0, sk = 0;  // attention block shape
  int64_t batch = 0, heads = 0, kv_heads = 0, head_dim = 0;  // attention: B, H, Hkv, d
  BlockMask mask;         // attention: which (query, key) pairs are visible
  int64_t mem_bytes = 0;  // merge, reset, copy: bytes read + written
  // A comm-stream op was issued since the compute stream last waited on an event: a transfer
  // may run beside this op (the cuda backend's share_sms rule; the sim's share factor).
  bool comm_in_flight = false;
  // Attention: an earlier op of the same iteration wrote some of its K or V (a receive, an
  // all-gather, a copy), so a small block may find them in L2; otherwise they come from before
  // the iteration, which the cuda backend starts with a flushed L2.
  bool kv_fresh = false;
  std::vector<int> peers;               // p2p peers
  std::vector<PeerTransfer> transfers;  // p2p and all-to-all, per peer and direction
  int participants = 0;    // ranks taking part in a collective (a USP group may be < N)
  std::vector<int> waits;  // events this op's stream waited on since its previous op
};

// One op of a traced iteration, with its times on the rank's clock (seconds since the
// iteration's timer_start), for Chrome traces and per-phase bandwidths.
struct TraceSlice {
  OpKind kind = OpKind::attention;
  Stream stream = Stream::compute;
  std::string phase;
  int step = -1;
  int64_t bytes = 0;  // sent + received
  double flops = 0;
  int64_t sq = 0, sk = 0;       // attention block shape
  BlockMask mask;               // attention
  bool comm_in_flight = false;  // OpRecord::comm_in_flight
  bool kv_fresh = false;        // OpRecord::kv_fresh
  int64_t mem_bytes = 0;        // OpRecord::mem_bytes
  double begin_s = 0, end_s = 0;
  int begin_mark = -1, end_mark = -1;
};

struct PhaseCounters {
  int64_t bytes_sent = 0;
  int64_t bytes_recv = 0;
  double flops = 0;
  int64_t ops = 0;
  int participants = 0;  // largest collective group of the phase (0: no collective)
};

// Where a recorded event stands in the log: after log entry `after_op` (-1: before any op) of
// its stream.
struct EventRecord {
  Stream stream = Stream::compute;
  int after_op = -1;
};

// Host seconds spent in the backend's calls for one kind of op (or event record/wait), and how
// many calls, since the last reset_host_calls(): where the issue time of an iteration goes.
struct HostCalls {
  double seconds = 0;
  int64_t calls = 0;
};

struct Accounting {
  std::map<std::string, PhaseCounters> phases;
  std::vector<OpRecord> log;
  std::vector<EventRecord> events;  // by event id, for the iteration that was logged
  PhaseCounters total() const;
  // Attention FLOPs of the ops logged with this step number.
  double step_flops(int step) const;
};

class Executor {
 public:
  Executor(int rank, int world, DType dtype) : rank_(rank), world_(world), dtype_(dtype) {}
  virtual ~Executor() = default;
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  int rank() const { return rank_; }
  int world() const { return world_; }
  DType dtype() const { return dtype_; }
  virtual std::string_view backend() const = 0;

  // --- memory ---------------------------------------------------------------------------------
  Expected<Buf> alloc(std::string_view name, ElemKind kind, int64_t elems);
  // A buffer that lives only over stages [first, last] of the strategy's run (see set_stage).
  struct Staged {
    std::string_view name;
    ElemKind kind = ElemKind::act;
    int64_t elems = 0;
    int first = 0, last = 0;
  };
  // Allocates `bufs` inside one workspace where buffers with no stage in common share memory
  // (harness/core/workspace.hpp), one Buf per entry in order. An op that touches a staged
  // buffer while the current stage is outside its range is an error. The strategy orders, by
  // stream order or events, the last use of a buffer before the first use of any buffer that
  // follows it in the same memory.
  Expected<std::vector<Buf>> alloc_staged(std::string_view workspace, std::span<const Staged> bufs);
  // The stage the ops issued from now on belong to (a strategy sets it; staged buffers check it).
  void set_stage(int stage) { stage_ = stage; }
  int64_t elem_bytes(Buf b) const;
  int64_t buffer_elems(Buf b) const;
  int64_t memory_bytes() const { return mem_current_; }
  int64_t peak_memory_bytes() const { return mem_peak_; }
  // What the allocated buffers need at the least: plain buffers in full, and of each staged
  // workspace its busiest stage (no placement of those buffers uses less).
  int64_t minimum_memory_bytes() const { return mem_minimum_; }
  // Host <-> buffer transfers for the harness (inputs, outputs); not counted as ops.
  virtual Status write(Buf b, int64_t offset, std::span<const float> data) = 0;
  virtual Status read(Buf b, int64_t offset, std::span<float> out) = 0;
  // Writes a point's random inputs into an activation view (not an op). The default makes them
  // on the host and writes them a row at a time; the cuda backend generates them on the GPU.
  virtual Status fill_random(const View& dst, const RandomFill& f);

  // --- compute --------------------------------------------------------------------------------
  Status attention(Stream s, const AttnArgs& a, std::string_view phase = "attention");
  Status merge(Stream s, const MergeArgs& a, std::string_view phase = "merge");
  // Sets O = 0 and LSE = -inf (an accumulator that has seen no key yet).
  Status reset(Stream s, View o, View lse, std::string_view phase = "merge");
  Status copy(Stream s, Range dst, Range src, std::string_view phase = "copy");
  // Copies a (possibly strided) view into another of the same shape and element kind: packing
  // heads for an all-to-all, unpacking them after.
  Status copy_view(Stream s, View dst, View src, std::string_view phase = "pack");

  // --- communication (NCCL semantics) ---------------------------------------------------------
  // A group of sends and receives issued together (ncclGroupStart/End): deadlock-free whatever
  // the order; every send must match a receive of the same size on the peer.
  Status p2p(Stream s, std::span<const P2POp> ops, std::string_view phase = "p2p");
  // send[j] goes to rank j, recv[j] comes from rank j; send[j].count on this rank must equal
  // recv[this rank].count on rank j.
  Status all_to_all(Stream s, std::span<const Range> send, std::span<const Range> recv,
                    std::string_view phase = "all_to_all");
  // recv.count == world * send.count; rank j's block lands at recv.offset + j * send.count.
  Status all_gather(Stream s, Range send, Range recv, std::string_view phase = "all_gather");

  // --- ordering -------------------------------------------------------------------------------
  Event record(Stream s);
  void wait(Stream s, Event e);
  // Host waits until every stream of this rank is idle.
  virtual Status synchronize() = 0;

  // --- measurement (used by the harness, not by strategies) -----------------------------------
  // Every rank waits for every other (host side, with the backend's timeout).
  virtual Status barrier() = 0;
  // Brackets one iteration: timer_stop returns its seconds on this rank's clock (cpu: host wall
  // clock; cuda: events on the compute stream after joining the comm stream).
  virtual Status timer_start() = 0;
  virtual Expected<double> timer_stop() = 0;
  // The GPU time of the work timer_start queues ahead of its start mark (the cuda backend's L2
  // flush), timed once: the head start the host has on a timed iteration, issuing its first ops
  // while that work runs. 0 where timer_start queues none (cpu).
  virtual Expected<double> timer_lead_seconds() { return 0.0; }
  virtual std::string_view clock() const = 0;
  // CUDA graphs: between begin_capture and end_capture the ops are recorded into a graph, not
  // run; replay runs the captured iteration again, issued by one host call (what removes the
  // per-op launch cost). end_capture also ends a capture whose ops failed (nothing is kept).
  // Backends without graphs (cpu) say so and the harness runs their iterations op by op.
  virtual bool can_capture() const { return false; }
  virtual Status begin_capture();
  virtual Status end_capture();
  virtual Status replay();
  // Event ids restart every iteration, so a backend can reuse its event objects.
  void begin_iteration() {
    next_event_ = 0;
    comm_in_flight_ = false;
    written_.clear();
  }
  // Variants that leave out one kind of op (still accounted): compute only (no communication)
  // and communication only, whose times give the exposed communication and the overlap.
  void set_skip(bool compute, bool comm) {
    skip_compute_ = compute;
    skip_comm_ = comm;
  }
  // Tracing: every op of the next iterations is bracketed by clock marks; after timer_stop,
  // resolve_trace() turns them into times.
  void set_tracing(bool on);
  Status resolve_trace();
  const std::vector<TraceSlice>& trace() const { return trace_; }
  static bool is_comm(OpKind k);

  // Fault injection (harness/core/fault.hpp): the `after_ops`-th op from now on throws, or
  // hangs until the backend aborts the point.
  void arm_fault(FaultSpec::Kind kind, int after_ops) {
    fault_ = kind;
    fault_countdown_ = after_ops;
  }

  // --- bookkeeping ----------------------------------------------------------------------------
  void set_step(int step) { step_ = step; }
  void set_logging(bool on) { logging_ = on; }
  void reset_accounting() {
    acct_ = {};
    last_logged_[0] = last_logged_[1] = -1;
  }
  const Accounting& accounting() const { return acct_; }
  // Keyed by op kind name, plus "event" (record and wait).
  std::map<std::string, HostCalls> host_calls() const;
  void reset_host_calls() { host_calls_ = {}; }

 protected:
  virtual Status do_alloc(Buf b, ElemKind kind, int64_t elems) = 0;
  // A workspace of `bytes` of storage, and buffer b (kind and elements as bufs_ says) at byte
  // `offset` of it. Storage bytes per element are the backend's own (storage_bytes); the
  // defaults suit a backend that holds no memory.
  virtual Status do_alloc_workspace(Buf, int64_t /*bytes*/) { return {}; }
  virtual Status do_alias(Buf, Buf /*workspace*/, int64_t /*offset*/) { return {}; }
  virtual int64_t storage_bytes(ElemKind kind) const;
  virtual Status do_attention(Stream s, const AttnArgs& a) = 0;
  virtual Status do_merge(Stream s, const MergeArgs& a) = 0;
  virtual Status do_reset(Stream s, View o, View lse) = 0;
  virtual Status do_copy(Stream s, Range dst, Range src) = 0;
  virtual Status do_copy_view(Stream s, View dst, View src) = 0;
  virtual Status do_p2p(Stream s, std::span<const P2POp> ops) = 0;
  virtual Status do_all_to_all(Stream s, std::span<const Range> send,
                               std::span<const Range> recv) = 0;
  virtual Status do_all_gather(Stream s, Range send, Range recv) = 0;
  virtual void do_record(Stream s, Event e) = 0;
  virtual void do_wait(Stream s, Event e) = 0;
  // Clock mark `slot` on stream s, and its time in seconds since timer_start (after timer_stop).
  virtual void do_mark(Stream s, int slot) = 0;
  virtual Expected<double> do_mark_seconds(int slot) = 0;
  // Profiler ranges around each op (NVTX on cuda); no-ops by default.
  virtual void range_push(const OpRecord&) {}
  virtual void range_pop() {}
  // Called for every communication op as it is issued, also when the comm-skipping variant
  // leaves it out, so that the compute ops of that variant run as they do beside it.
  virtual void comm_issued(Stream) {}
  // An injected hang: blocks until the point is aborted because a peer timed out, and returns
  // that error. The default (no peers to wait for) returns at once.
  virtual Status wait_for_abort();

  Status check_view(const View& v, ElemKind kind, std::string_view what) const;
  ElemKind kind_of(Buf b) const { return bufs_[b.id].kind; }
  Status check_range(const Range& r, std::string_view what) const;

  // A backend that prices every iteration from its ops' records (the sim) calls this: the records
  // then carry kv_fresh in timed iterations too, not only in logged or traced ones.
  void keep_every_record() { keeps_every_record_ = true; }

 private:
  struct BufInfo {
    std::string name;
    ElemKind kind;
    int64_t elems;
    int first_stage = 0, last_stage = -1;  // staged buffers only (first <= last)
    bool staged() const { return first_stage <= last_stage; }
  };
  Status check_stage(Buf b, std::string_view what) const;
  void account(OpRecord rec);
  template <class F>
  void timed_event_call(F&& call);
  // Runs one op: skip flags, trace marks, profiler range, accounting.
  Status issue(OpRecord rec, const std::function<Status()>& launch);

  int rank_;
  int world_;
  DType dtype_;
  std::vector<BufInfo> bufs_;
  int64_t mem_current_ = 0;
  int64_t mem_peak_ = 0;
  int64_t mem_minimum_ = 0;
  int stage_ = 0;
  int step_ = -1;
  bool logging_ = false;
  int next_event_ = 0;
  int last_logged_[2] = {-1, -1};  // log index of each stream's latest op
  bool comm_in_flight_ = false;    // OpRecord::comm_in_flight of the next op
  // The element spans [begin, end) of each buffer that ops of this iteration wrote as their
  // output (copies and receives: OpRecord::kv_fresh), kept while logging or tracing, and in
  // every iteration where the backend reads every op's record (keeps_every_record).
  struct Span {
    int buf;
    int64_t begin, end;
  };
  std::vector<Span> written_;
  bool keeps_every_record_ = false;  // keep_every_record()
  void note_written(Buf b, int64_t begin, int64_t end);
  void note_written(const View& v);
  bool was_written(const View& v) const;
  std::vector<int> pending_waits_[2];
  Accounting acct_;
  // By OpKind, then event record/wait: counted on every op, so an array, not a map.
  std::array<HostCalls, kOpKinds + 1> host_calls_{};
  FaultSpec::Kind fault_ = FaultSpec::Kind::none;
  int fault_countdown_ = 0;
  bool skip_compute_ = false, skip_comm_ = false;
  bool tracing_ = false;
  int next_mark_ = 0;
  std::vector<TraceSlice> trace_;
};

}  // namespace cpb
