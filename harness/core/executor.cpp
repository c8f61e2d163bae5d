// The executor base: argument checks shared by every backend, and the accounting of bytes and
// mask-aware FLOPs per phase that every run records.
#include "harness/core/executor.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <vector>

#include "harness/core/workspace.hpp"
#include "harness/io/npy.hpp"

namespace cpb {
namespace {
OpRecord op_record(OpKind kind, Stream s, std::string_view phase) {
  OpRecord r;
  r.kind = kind;
  r.stream = s;
  r.phase = std::string(phase);
  return r;
}
}  // namespace

std::string_view to_string(Stream s) {
  return s == Stream::compute ? "compute" : "comm";
}

std::string_view to_string(OpKind k) {
  switch (k) {
    case OpKind::attention:
      return "attention";
    case OpKind::merge:
      return "merge";
    case OpKind::reset:
      return "reset";
    case OpKind::copy:
      return "copy";
    case OpKind::p2p:
      return "p2p";
    case OpKind::all_to_all:
      return "all_to_all";
    case OpKind::all_gather:
      return "all_gather";
  }
  return "?";
}

View View::slice(int64_t begin, int64_t count) const {
  View v = *this;
  v.offset = offset + begin * row_stride();
  v.tokens = count;
  return v;
}

View View::batches(int64_t begin, int64_t count) const {
  View v = *this;
  v.offset = offset + begin * batch_stride;
  v.batch = count;
  return v;
}

View View::head_slice(int64_t begin, int64_t count) const {
  View v = *this;
  v.token_stride = row_stride();
  v.offset = offset + begin * dim;
  v.heads = count;
  return v;
}

View dense_view(Buf buf, int64_t offset, int64_t batch, int64_t tokens, int64_t heads,
                int64_t dim) {
  View v;
  v.buf = buf;
  v.offset = offset;
  v.batch = batch;
  v.batch_stride = tokens * heads * dim;
  v.tokens = tokens;
  v.heads = heads;
  v.dim = dim;
  return v;
}

PhaseCounters Accounting::total() const {
  PhaseCounters t;
  for (const auto& [name, c] : phases) {
    t.bytes_sent += c.bytes_sent;
    t.bytes_recv += c.bytes_recv;
    t.flops += c.flops;
    t.ops += c.ops;
  }
  return t;
}

double Accounting::step_flops(int step) const {
  double f = 0;
  for (const auto& r : log)
    if (r.step == step) f += r.flops;
  return f;
}

Expected<Buf> Executor::alloc(std::string_view name, ElemKind kind, int64_t elems) {
  CPB_REQUIRE(elems >= 0, "internal: negative allocation of {} elements for '{}'", elems, name);
  Buf b{static_cast<int>(bufs_.size())};
  bufs_.push_back({std::string(name), kind, elems});
  CPB_TRY(do_alloc(b, kind, elems));
  mem_current_ += elems * elem_bytes(b);
  mem_minimum_ += elems * elem_bytes(b);
  mem_peak_ = std::max(mem_peak_, mem_current_);
  return b;
}

Status Executor::begin_capture() {
  return CPB_ERROR("the {} backend cannot capture an iteration into a graph", backend());
}
Status Executor::end_capture() {
  return begin_capture();
}
Status Executor::replay() {
  return begin_capture();
}

int64_t Executor::storage_bytes(ElemKind kind) const {
  return kind == ElemKind::f32 ? 4 : dtype_bytes(dtype_);
}

Expected<std::vector<Buf>> Executor::alloc_staged(std::string_view workspace,
                                                  std::span<const Staged> bufs) {
  // Offsets aligned for the widest vector loads and TMA (16 B) with room to spare.
  constexpr int64_t kAlign = 256;
  std::vector<Lifetime> logical, stored;
  for (const auto& b : bufs) {
    CPB_REQUIRE(b.elems >= 0 && b.first <= b.last,
                "internal: staged buffer '{}' of {} elements over stages {}..{}", b.name, b.elems,
                b.first, b.last);
    const int64_t logical_bytes = b.kind == ElemKind::f32 ? 4 : dtype_bytes(dtype_);
    logical.push_back({b.elems * logical_bytes, b.first, b.last});
    stored.push_back({b.elems * storage_bytes(b.kind), b.first, b.last});
  }
  // The backend's layout (its own bytes per element) and what the same plan costs in the
  // workload's element sizes, which the memory figures count.
  const WorkspacePlan where = plan_workspace(stored, kAlign);
  const WorkspacePlan counted = plan_workspace(logical, kAlign);
  Buf ws{static_cast<int>(bufs_.size())};
  bufs_.push_back({std::string(workspace), ElemKind::f32, where.bytes / 4});
  CPB_TRY(do_alloc_workspace(ws, where.bytes));
  std::vector<Buf> out;
  for (size_t i = 0; i < bufs.size(); ++i) {
    Buf b{static_cast<int>(bufs_.size())};
    bufs_.push_back(
        {std::string(bufs[i].name), bufs[i].kind, bufs[i].elems, bufs[i].first, bufs[i].last});
    CPB_TRY(do_alias(b, ws, where.offsets[i]));
    out.push_back(b);
  }
  mem_current_ += counted.bytes;
  mem_minimum_ += counted.busiest_stage_bytes;
  mem_peak_ = std::max(mem_peak_, mem_current_);
  return out;
}

Status Executor::check_stage(Buf b, std::string_view what) const {
  const auto& info = bufs_[b.id];
  CPB_REQUIRE(!info.staged() || (info.first_stage <= stage_ && stage_ <= info.last_stage),
              "internal: {} uses '{}' at stage {}, outside its stages {}..{}", what, info.name,
              stage_, info.first_stage, info.last_stage);
  return {};
}

int64_t Executor::elem_bytes(Buf b) const {
  return bufs_[b.id].kind == ElemKind::f32 ? 4 : dtype_bytes(dtype_);
}

int64_t Executor::buffer_elems(Buf b) const {
  return bufs_[b.id].elems;
}

Status Executor::check_view(const View& v, ElemKind kind, std::string_view what) const {
  CPB_REQUIRE(v.buf.valid() && v.buf.id < static_cast<int>(bufs_.size()),
              "internal: {} uses an unknown buffer", what);
  const auto& info = bufs_[v.buf.id];
  CPB_REQUIRE(info.kind == kind, "internal: {} expects a {} buffer, '{}' is not", what,
              kind == ElemKind::act ? "activation" : "fp32", info.name);
  CPB_REQUIRE(v.batch >= 0 && v.tokens >= 0 && v.heads >= 1 && v.dim >= 1 && v.offset >= 0,
              "internal: {} has a malformed view of '{}'", what, info.name);
  CPB_REQUIRE(v.token_stride == 0 || v.token_stride >= v.heads * v.dim,
              "internal: {} has overlapping rows in '{}'", what, info.name);
  if (v.tokens == 0 || v.batch == 0) return {};
  int64_t last =
      v.offset + (v.batch - 1) * v.batch_stride + (v.tokens - 1) * v.row_stride() + v.heads * v.dim;
  CPB_REQUIRE(last <= info.elems, "internal: {} reads past the end of '{}' ({} > {} elements)",
              what, info.name, last, info.elems);
  return check_stage(v.buf, what);
}

Status Executor::fill_random(const View& dst, const RandomFill& f) {
  CPB_TRY(check_view(dst, ElemKind::act, "fill_random"));
  const int64_t row = dst.heads * dst.dim;
  std::vector<float> values(static_cast<size_t>(row));
  for (int64_t b = 0; b < dst.batch; ++b)
    for (int64_t t = 0; t < dst.tokens; ++t) {
      const int64_t first = f.base + b * f.batch_step + t * f.token_step;
      for (int64_t i = 0; i < row; ++i) {
        const float x = random_input_value(f.seed, f.tensor, static_cast<uint64_t>(first + i));
        values[static_cast<size_t>(i)] = dtype_ == DType::bf16   ? round_to_bf16(x)
                                         : dtype_ == DType::fp16 ? round_to_fp16(x)
                                                                 : x;
      }
      CPB_TRY(write(dst.buf, dst.offset + b * dst.batch_stride + t * dst.row_stride(), values));
    }
  return {};
}

Status Executor::check_range(const Range& r, std::string_view what) const {
  CPB_REQUIRE(r.buf.valid() && r.buf.id < static_cast<int>(bufs_.size()),
              "internal: {} uses an unknown buffer", what);
  CPB_REQUIRE(r.offset >= 0 && r.count >= 0 && r.offset + r.count <= bufs_[r.buf.id].elems,
              "internal: {} range [{}, {}) is outside '{}' ({} elements)", what, r.offset,
              r.offset + r.count, bufs_[r.buf.id].name, bufs_[r.buf.id].elems);
  if (r.count == 0) return {};  // empty all-to-all entries name any buffer
  return check_stage(r.buf, what);
}

void Executor::account(OpRecord rec) {
  auto& c = acct_.phases[rec.phase];
  c.bytes_sent += rec.bytes_sent;
  c.bytes_recv += rec.bytes_recv;
  c.flops += rec.flops;
  c.ops += 1;
  c.participants = std::max(c.participants, rec.participants);
  if (logging_) {
    rec.step = step_;
    auto& w = pending_waits_[static_cast<int>(rec.stream)];
    rec.waits = std::move(w);
    w.clear();
    last_logged_[static_cast<int>(rec.stream)] = static_cast<int>(acct_.log.size());
    acct_.log.push_back(std::move(rec));
  }
}

bool Executor::is_comm(OpKind k) {
  return k == OpKind::p2p || k == OpKind::all_to_all || k == OpKind::all_gather;
}

std::map<std::string, HostCalls> Executor::host_calls() const {
  std::map<std::string, HostCalls> out;
  for (int k = 0; k <= kOpKinds; ++k)
    if (host_calls_[static_cast<size_t>(k)].calls > 0)
      out[k == kOpKinds ? "event" : std::string(to_string(static_cast<OpKind>(k)))] =
          host_calls_[static_cast<size_t>(k)];
  return out;
}

Status Executor::wait_for_abort() {
  return CPB_ERROR("injected hang (CPBENCH_FAULT) on rank {}, which has no peers", rank_);
}

Status Executor::issue(OpRecord rec, const std::function<Status()>& launch) {
  if (fault_ != FaultSpec::Kind::none && fault_countdown_-- <= 0) {
    const FaultSpec::Kind kind = fault_;
    fault_ = FaultSpec::Kind::none;
    if (kind == FaultSpec::Kind::throw_exception)
      throw std::runtime_error(
          fmt::format("injected fault (CPBENCH_FAULT): rank {} threw at its {} op", rank_,
                      to_string(rec.kind)));
    return wait_for_abort();
  }
  const bool skipped = is_comm(rec.kind) ? skip_comm_ : skip_compute_;
  if (is_comm(rec.kind)) comm_issued(rec.stream);
  if (is_comm(rec.kind) && rec.stream == Stream::comm) comm_in_flight_ = true;
  rec.comm_in_flight = comm_in_flight_;
  int first_mark = -1;
  if (tracing_) {
    first_mark = next_mark_++;
    do_mark(rec.stream, first_mark);
  }
  if (!skipped) {
    range_push(rec);
    const auto begin = std::chrono::steady_clock::now();
    Status st = launch();
    auto& hc = host_calls_[static_cast<size_t>(rec.kind)];
    hc.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    hc.calls += 1;
    range_pop();
    if (!st.ok()) return st;
  }
  if (tracing_) {
    const int second = next_mark_++;
    do_mark(rec.stream, second);
    TraceSlice t;
    t.kind = rec.kind;
    t.stream = rec.stream;
    t.phase = rec.phase;
    t.step = step_;
    t.bytes = rec.bytes_sent + rec.bytes_recv;
    t.flops = rec.flops;
    t.sq = rec.sq;
    t.sk = rec.sk;
    t.mask = rec.mask;
    t.comm_in_flight = rec.comm_in_flight;
    t.kv_fresh = rec.kv_fresh;
    t.mem_bytes = rec.mem_bytes;
    t.begin_mark = first_mark;
    t.end_mark = second;
    trace_.push_back(std::move(t));
  }
  account(std::move(rec));
  return {};
}

void Executor::set_tracing(bool on) {
  tracing_ = on;
  if (on) {
    trace_.clear();
    next_mark_ = 0;
  }
}

Status Executor::resolve_trace() {
  for (auto& t : trace_) {
    CPB_ASSIGN_OR_RETURN(t.begin_s, do_mark_seconds(t.begin_mark));
    CPB_ASSIGN_OR_RETURN(t.end_s, do_mark_seconds(t.end_mark));
  }
  return {};
}

namespace {

// The element span a view covers, [first, last + 1) (its rows may leave gaps inside it).
std::pair<int64_t, int64_t> view_span(const View& v) {
  if (v.elems() == 0) return {v.offset, v.offset};
  const int64_t last =
      v.offset + (v.batch - 1) * v.batch_stride + (v.tokens - 1) * v.row_stride() + v.heads * v.dim;
  return {v.offset, last};
}

}  // namespace

void Executor::note_written(Buf b, int64_t begin, int64_t end) {
  // Only the logged or traced iterations use OpRecord::kv_fresh (and every iteration of a
  // backend that prices ops from their records): the others skip the work.
  if ((logging_ || tracing_ || keeps_every_record_) && end > begin)
    written_.push_back({b.id, begin, end});
}

void Executor::note_written(const View& v) {
  const auto [b, e] = view_span(v);
  note_written(v.buf, b, e);
}

bool Executor::was_written(const View& v) const {
  if (written_.empty()) return false;  // nothing kept (or written), nothing to work out
  const auto [b, e] = view_span(v);
  return std::any_of(written_.begin(), written_.end(),
                     [&](const Span& w) { return w.buf == v.buf.id && w.begin < e && b < w.end; });
}

Status Executor::attention(Stream s, const AttnArgs& a, std::string_view phase) {
  CPB_TRY(check_view(a.q, ElemKind::act, "attention q"));
  CPB_TRY(check_view(a.k, ElemKind::act, "attention k"));
  CPB_TRY(check_view(a.v, ElemKind::act, "attention v"));
  CPB_TRY(check_view(a.o, ElemKind::f32, "attention o"));
  CPB_TRY(check_view(a.lse, ElemKind::f32, "attention lse"));
  CPB_REQUIRE(a.q.dim == a.k.dim && a.k.dim == a.v.dim && a.o.dim == a.q.dim && a.lse.dim == 1,
              "internal: attention head_dim mismatch");
  CPB_REQUIRE(a.k.tokens == a.v.tokens && a.q.tokens == a.o.tokens && a.q.tokens == a.lse.tokens,
              "internal: attention token count mismatch");
  CPB_REQUIRE(a.k.heads == a.v.heads && a.q.heads % a.k.heads == 0 && a.o.heads == a.q.heads &&
                  a.lse.heads == a.q.heads,
              "internal: attention head count mismatch");
  OpRecord rec = op_record(OpKind::attention, s, phase);
  rec.sq = a.q.tokens;
  rec.sk = a.k.tokens;
  rec.batch = a.q.batch;
  rec.heads = a.q.heads;
  rec.kv_heads = a.k.heads;
  rec.head_dim = a.q.dim;
  rec.mask = a.mask;
  rec.flops = 4.0 * static_cast<double>(a.q.batch * a.q.heads * a.q.dim) *
              static_cast<double>(block_pairs(a.mask, a.q.tokens, a.k.tokens));
  rec.kv_fresh = was_written(a.k) || was_written(a.v);
  return issue(std::move(rec), [&] { return do_attention(s, a); });
}

Status Executor::merge(Stream s, const MergeArgs& a, std::string_view phase) {
  CPB_TRY(check_view(a.o, ElemKind::f32, "merge o"));
  CPB_TRY(check_view(a.lse, ElemKind::f32, "merge lse"));
  CPB_TRY(check_view(a.part_o, ElemKind::f32, "merge partial o"));
  CPB_TRY(check_view(a.part_lse, ElemKind::f32, "merge partial lse"));
  CPB_REQUIRE(a.o.tokens == a.part_o.tokens && a.o.heads == a.part_o.heads &&
                  a.lse.tokens == a.o.tokens && a.part_lse.tokens == a.o.tokens,
              "internal: merge shape mismatch");
  OpRecord rec = op_record(OpKind::merge, s, phase);
  // Reads both (O, LSE) pairs, writes the accumulator's.
  rec.mem_bytes = 4 * 3 * (a.o.elems() + a.lse.elems());
  return issue(std::move(rec), [&] { return do_merge(s, a); });
}

Status Executor::reset(Stream s, View o, View lse, std::string_view phase) {
  CPB_TRY(check_view(o, ElemKind::f32, "reset o"));
  CPB_TRY(check_view(lse, ElemKind::f32, "reset lse"));
  OpRecord rec = op_record(OpKind::reset, s, phase);
  rec.mem_bytes = 4 * (o.elems() + lse.elems());  // written only
  return issue(std::move(rec), [&] { return do_reset(s, o, lse); });
}

Status Executor::copy(Stream s, Range dst, Range src, std::string_view phase) {
  CPB_TRY(check_range(dst, "copy destination"));
  CPB_TRY(check_range(src, "copy source"));
  CPB_REQUIRE(dst.count == src.count && elem_bytes(dst.buf) == elem_bytes(src.buf),
              "internal: copy of {} elements into {}", src.count, dst.count);
  OpRecord rec = op_record(OpKind::copy, s, phase);
  rec.mem_bytes = 2 * src.count * elem_bytes(src.buf);
  note_written(dst.buf, dst.offset, dst.offset + dst.count);
  return issue(std::move(rec), [&] { return do_copy(s, dst, src); });
}

Status Executor::copy_view(Stream s, View dst, View src, std::string_view phase) {
  CPB_REQUIRE(dst.buf.valid() && src.buf.valid(), "internal: copy_view of an unknown buffer");
  CPB_TRY(check_view(dst, kind_of(dst.buf), "copy_view destination"));
  CPB_TRY(check_view(src, kind_of(dst.buf), "copy_view source"));
  CPB_REQUIRE(dst.batch == src.batch && dst.tokens == src.tokens && dst.heads == src.heads &&
                  dst.dim == src.dim,
              "internal: copy_view shape mismatch");
  OpRecord rec = op_record(OpKind::copy, s, phase);
  rec.mem_bytes = 2 * src.elems() * elem_bytes(src.buf);
  note_written(dst);
  return issue(std::move(rec), [&] { return do_copy_view(s, dst, src); });
}

Status Executor::p2p(Stream s, std::span<const P2POp> ops, std::string_view phase) {
  OpRecord rec = op_record(OpKind::p2p, s, phase);
  for (const auto& op : ops) {
    CPB_TRY(check_range(op.range, "p2p"));
    CPB_REQUIRE(op.peer >= 0 && op.peer < world_, "internal: p2p peer {} outside 0..{}", op.peer,
                world_ - 1);
    int64_t bytes = op.range.count * elem_bytes(op.range.buf);
    (op.kind == P2POp::Kind::send ? rec.bytes_sent : rec.bytes_recv) += bytes;
    rec.peers.push_back(op.peer);
    if (bytes > 0) rec.transfers.push_back({op.peer, op.kind == P2POp::Kind::send, bytes});
    if (op.kind == P2POp::Kind::recv)
      note_written(op.range.buf, op.range.offset, op.range.offset + op.range.count);
  }
  return issue(std::move(rec), [&] { return do_p2p(s, ops); });
}

Status Executor::all_to_all(Stream s, std::span<const Range> send, std::span<const Range> recv,
                            std::string_view phase) {
  CPB_REQUIRE(static_cast<int>(send.size()) == world_ && static_cast<int>(recv.size()) == world_,
              "internal: all_to_all needs one send and one recv range per rank");
  OpRecord rec = op_record(OpKind::all_to_all, s, phase);
  rec.participants = 1;  // this rank, plus every peer it exchanges with below
  for (int j = 0; j < world_; ++j) {
    CPB_TRY(check_range(send[j], "all_to_all send"));
    CPB_TRY(check_range(recv[j], "all_to_all recv"));
    note_written(recv[j].buf, recv[j].offset, recv[j].offset + recv[j].count);
    // What a rank keeps for itself never crosses a link.
    if (j == rank_) continue;
    if (send[j].count > 0 || recv[j].count > 0) ++rec.participants;
    const int64_t out = send[j].count * elem_bytes(send[j].buf);
    const int64_t in = recv[j].count * elem_bytes(recv[j].buf);
    rec.bytes_sent += out;
    rec.bytes_recv += in;
    if (out > 0) rec.transfers.push_back({j, true, out});
    if (in > 0) rec.transfers.push_back({j, false, in});
  }
  return issue(std::move(rec), [&] { return do_all_to_all(s, send, recv); });
}

Status Executor::all_gather(Stream s, Range send, Range recv, std::string_view phase) {
  CPB_TRY(check_range(send, "all_gather send"));
  CPB_TRY(check_range(recv, "all_gather recv"));
  CPB_REQUIRE(recv.count == send.count * world_,
              "internal: all_gather receives {} elements, expected world * {}", recv.count,
              send.count);
  OpRecord rec = op_record(OpKind::all_gather, s, phase);
  rec.participants = world_;
  // Per rank, (N-1) blocks arrive and its own block leaves towards N-1 peers (nccl-tests counts
  // the same bytes for algbw).
  int64_t block = send.count * elem_bytes(send.buf);
  rec.bytes_sent = block * (world_ - 1);
  rec.bytes_recv = block * (world_ - 1);
  note_written(recv.buf, recv.offset, recv.offset + recv.count);
  return issue(std::move(rec), [&] { return do_all_gather(s, send, recv); });
}

Event Executor::record(Stream s) {
  Event e{next_event_++};
  if (logging_) {
    if (static_cast<int>(acct_.events.size()) <= e.id) acct_.events.resize(e.id + 1);
    acct_.events[static_cast<size_t>(e.id)] = {s, last_logged_[static_cast<int>(s)]};
  }
  timed_event_call([&] { do_record(s, e); });
  return e;
}

void Executor::wait(Stream s, Event e) {
  timed_event_call([&] { do_wait(s, e); });
  // The compute stream now follows the comm stream up to an event (the cuda backend's rule).
  if (s == Stream::compute) comm_in_flight_ = false;
  if (logging_) pending_waits_[static_cast<int>(s)].push_back(e.id);
}

template <class F>
void Executor::timed_event_call(F&& call) {
  const auto begin = std::chrono::steady_clock::now();
  call();
  auto& hc = host_calls_[kOpKinds];
  hc.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  hc.calls += 1;
}

}  // namespace cpb
