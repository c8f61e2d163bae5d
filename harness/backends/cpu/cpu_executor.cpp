// CpuWorld mailboxes, barrier and abort; CpuExecutor ops on host memory.
#include "harness/backends/cpu/cpu_executor.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <thread>

#include "kernels/cpu/attention.hpp"

namespace cpb {

CpuWorld::CpuWorld(int world, double timeout_s)
    : world_(world), timeout_(timeout_s), channels_(static_cast<size_t>(world) * world) {}

void CpuWorld::abort(const Error& e) {
  std::lock_guard lock(mu_);
  if (!abort_) abort_ = e;
  cv_.notify_all();
}

Status CpuWorld::aborted_error(int rank) const {
  Error e = CPB_ERROR("aborted because another rank failed: {}", abort_->str());
  return std::move(e).on_rank(rank);
}

Status CpuWorld::run(const std::function<Status(int rank)>& fn) {
  std::vector<std::thread> threads;
  threads.reserve(world_);
  for (int r = 0; r < world_; ++r) {
    threads.emplace_back([this, r, &fn] {
      Status st;
      try {
        st = fn(r);
      } catch (const std::exception& ex) {
        st = CPB_ERROR("unexpected exception: {}", ex.what());
      }
      if (!st.ok()) abort(std::move(st).error().on_rank(r));
    });
  }
  for (auto& t : threads) t.join();
  std::lock_guard lock(mu_);
  if (abort_) return *abort_;
  return {};
}

Status CpuWorld::wait_for_abort(int rank) {
  std::unique_lock lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(4 * timeout_);
  if (!cv_.wait_until(lock, deadline, [&] { return abort_.has_value(); })) {
    Error e = CPB_ERROR("injected hang (CPBENCH_FAULT): no rank aborted within {:.0f} s",
                        4 * timeout_.count());
    e.rank = rank;
    return e;
  }
  return aborted_error(rank);
}

Status CpuWorld::send(int src, int dst, std::string_view tag, std::span<const float> data) {
  std::lock_guard lock(mu_);
  if (abort_) return aborted_error(src);
  channels_[static_cast<size_t>(src) * world_ + dst].push_back(
      {std::string(tag), std::vector<float>(data.begin(), data.end())});
  cv_.notify_all();
  return {};
}

Status CpuWorld::recv(int src, int dst, std::string_view tag, std::span<float> out) {
  std::unique_lock lock(mu_);
  auto& ch = channels_[static_cast<size_t>(src) * world_ + dst];
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout_);
  if (!cv_.wait_until(lock, deadline, [&] { return abort_.has_value() || !ch.empty(); })) {
    Error e = CPB_ERROR(
        "waited {:.0f} s for a {} message from rank {}: a rank hung, or the strategy's sends and "
        "receives do not match (raise timeout_s if the point is just slow)",
        timeout_.count(), tag, src);
    e.rank = dst;
    if (!abort_) abort_ = e;
    cv_.notify_all();
    return e;
  }
  if (abort_) return aborted_error(dst);
  Message& m = ch.front();
  if (m.tag != tag || m.data.size() != out.size()) {
    Error e = CPB_ERROR(
        "mismatched communication: expected a {} of {} elements from rank {}, got a {} of {}", tag,
        out.size(), src, m.tag, m.data.size());
    e.rank = dst;
    if (!abort_) abort_ = e;
    cv_.notify_all();
    return e;
  }
  std::copy(m.data.begin(), m.data.end(), out.begin());
  ch.pop_front();
  return {};
}

Status CpuWorld::barrier(int rank) {
  std::unique_lock lock(mu_);
  if (abort_) return aborted_error(rank);
  int64_t gen = barrier_generation_;
  if (++barrier_count_ == world_) {
    barrier_count_ = 0;
    ++barrier_generation_;
    cv_.notify_all();
    return {};
  }
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout_);
  if (!cv_.wait_until(lock, deadline,
                      [&] { return abort_.has_value() || barrier_generation_ != gen; })) {
    Error e = CPB_ERROR(
        "waited {:.0f} s at a barrier for {} other rank(s): one hung, or its iteration takes "
        "longer than timeout_s (raise timeout_s for long points)",
        timeout_.count(), world_ - barrier_count_);
    e.rank = rank;
    if (!abort_) abort_ = e;
    cv_.notify_all();
    return e;
  }
  if (barrier_generation_ == gen) return aborted_error(rank);
  return {};
}

namespace {
template <class T>
cpu::HostView<T> host_view(const std::vector<float*>& mem, const View& v) {
  return {
      mem[v.buf.id] + v.offset, v.batch, v.batch_stride, v.tokens, v.heads, v.dim, v.token_stride};
}
}  // namespace

Status CpuExecutor::do_alloc(Buf b, ElemKind, int64_t elems) {
  // Zero-filled, so that padding that travels on the wire is deterministic.
  storage_.emplace_back(static_cast<size_t>(elems), 0.0f);
  bind(b, storage_.back().data());
  return {};
}

Status CpuExecutor::do_alloc_workspace(Buf b, int64_t bytes) {
  return do_alloc(b, ElemKind::f32, bytes / static_cast<int64_t>(sizeof(float)));
}

Status CpuExecutor::do_alias(Buf b, Buf workspace, int64_t offset) {
  bind(b, mem_[workspace.id] + offset / static_cast<int64_t>(sizeof(float)));
  return {};
}

Status CpuExecutor::write(Buf b, int64_t offset, std::span<const float> data) {
  CPB_TRY(check_range({b, offset, static_cast<int64_t>(data.size())}, "write"));
  std::copy(data.begin(), data.end(), mem_[b.id] + offset);
  return {};
}

Status CpuExecutor::read(Buf b, int64_t offset, std::span<float> out) {
  CPB_TRY(check_range({b, offset, static_cast<int64_t>(out.size())}, "read"));
  std::copy_n(mem_[b.id] + offset, out.size(), out.begin());
  return {};
}

Status CpuExecutor::do_attention(Stream, const AttnArgs& a) {
  auto q = host_view<const float>(mem_, a.q);
  auto k = host_view<const float>(mem_, a.k);
  auto v = host_view<const float>(mem_, a.v);
  if (!a.accumulate) {
    cpu::attention_block(q, k, v, a.mask, a.scale, host_view<float>(mem_, a.o),
                         host_view<float>(mem_, a.lse));
    return {};
  }
  // Block into scratch, then merge: the GPU kernel fuses this, the reference need not.
  std::vector<float> po(static_cast<size_t>(a.o.elems())), pl(static_cast<size_t>(a.lse.elems()));
  cpu::HostView<float> part_o{po.data(),  a.o.batch, a.o.tokens * a.o.heads * a.o.dim,
                              a.o.tokens, a.o.heads, a.o.dim};
  cpu::HostView<float> part_l{pl.data(),    a.lse.batch, a.lse.tokens * a.lse.heads,
                              a.lse.tokens, a.lse.heads, 1};
  cpu::attention_block(q, k, v, a.mask, a.scale, part_o, part_l);
  cpu::merge_partial(
      host_view<float>(mem_, a.o), host_view<float>(mem_, a.lse),
      {po.data(), part_o.batch, part_o.batch_stride, part_o.tokens, part_o.heads, part_o.dim},
      {pl.data(), part_l.batch, part_l.batch_stride, part_l.tokens, part_l.heads, 1});
  return {};
}

Status CpuExecutor::do_merge(Stream, const MergeArgs& a) {
  cpu::merge_partial(host_view<float>(mem_, a.o), host_view<float>(mem_, a.lse),
                     host_view<const float>(mem_, a.part_o),
                     host_view<const float>(mem_, a.part_lse));
  return {};
}

Status CpuExecutor::do_reset(Stream, View o, View lse) {
  auto ov = host_view<float>(mem_, o);
  auto lv = host_view<float>(mem_, lse);
  for (int64_t b = 0; b < o.batch; ++b)
    for (int64_t t = 0; t < o.tokens; ++t)
      for (int64_t h = 0; h < o.heads; ++h) {
        std::fill_n(ov.at(b, t, h), o.dim, 0.0f);
        *lv.at(b, t, h) = -std::numeric_limits<float>::infinity();
      }
  return {};
}

Status CpuExecutor::do_copy(Stream, Range dst, Range src) {
  auto s = span(src);
  std::copy(s.begin(), s.end(), span(dst).begin());
  return {};
}

Status CpuExecutor::do_copy_view(Stream, View dst, View src) {
  auto d = host_view<float>(mem_, dst);
  auto s = host_view<const float>(mem_, src);
  for (int64_t b = 0; b < dst.batch; ++b)
    for (int64_t t = 0; t < dst.tokens; ++t)
      for (int64_t h = 0; h < dst.heads; ++h) std::copy_n(s.at(b, t, h), dst.dim, d.at(b, t, h));
  return {};
}

Status CpuExecutor::do_p2p(Stream, std::span<const P2POp> ops) {
  // Sends are buffered, so posting every send before any receive makes the group deadlock-free,
  // as ncclGroupStart/End does.
  for (const auto& op : ops)
    if (op.kind == P2POp::Kind::send)
      CPB_TRY(world_.send(rank(), op.peer, "send/recv", span(op.range)));
  for (const auto& op : ops)
    if (op.kind == P2POp::Kind::recv)
      CPB_TRY(world_.recv(op.peer, rank(), "send/recv", span(op.range)));
  return {};
}

Status CpuExecutor::do_all_to_all(Stream, std::span<const Range> send,
                                  std::span<const Range> recv) {
  for (int j = 0; j < world(); ++j)
    if (j != rank()) CPB_TRY(world_.send(rank(), j, "all_to_all", span(send[j])));
  {
    auto s = span(send[rank()]);
    auto d = span(recv[rank()]);
    CPB_REQUIRE(s.size() == d.size(), "internal: all_to_all keeps {} elements into {}", s.size(),
                d.size());
    std::copy(s.begin(), s.end(), d.begin());
  }
  for (int j = 0; j < world(); ++j)
    if (j != rank()) CPB_TRY(world_.recv(j, rank(), "all_to_all", span(recv[j])));
  return {};
}

Status CpuExecutor::do_all_gather(Stream, Range send, Range recv) {
  for (int j = 0; j < world(); ++j)
    if (j != rank()) CPB_TRY(world_.send(rank(), j, "all_gather", span(send)));
  auto s = span(send);
  float* own = span(recv).data() + rank() * send.count;
  if (own != s.data()) std::copy(s.begin(), s.end(), own);  // in place: already there
  for (int j = 0; j < world(); ++j) {
    if (j == rank()) continue;
    Range block{recv.buf, recv.offset + j * send.count, send.count};
    CPB_TRY(world_.recv(j, rank(), "all_gather", span(block)));
  }
  return {};
}

}  // namespace cpb
