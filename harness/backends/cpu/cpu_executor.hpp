// The cpu reference backend. Ranks are threads of one process; a CpuWorld gives them in-process
// mailboxes with the semantics of the NCCL calls (a send is matched by the peer's receive of the
// same size, messages between two ranks arrive in order, a group of sends and receives cannot
// deadlock) and an abort that wakes every waiting rank when one fails or a wait times out, so a
// broken point is reported instead of hanging. Attention runs in fp32 on the host; every op is
// synchronous, so the two streams and their events only matter to the accounting log.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "harness/core/executor.hpp"

namespace cpb {

class CpuWorld {
 public:
  CpuWorld(int world, double timeout_s);
  int size() const { return world_; }

  // Runs fn(rank) on `world` threads and returns the first error (the root cause: ranks that
  // only saw the abort are not reported). An exception escaping fn becomes an error too.
  Status run(const std::function<Status(int rank)>& fn);

  Status send(int src, int dst, std::string_view tag, std::span<const float> data);
  Status recv(int src, int dst, std::string_view tag, std::span<float> out);
  Status barrier(int rank);
  void abort(const Error& e);
  // Blocks until another rank aborts the world (or 4x the timeout passes) and returns the
  // error that rank sees: what a rank hung in a collective experiences.
  Status wait_for_abort(int rank);

 private:
  struct Message {
    std::string tag;
    std::vector<float> data;
  };
  Status aborted_error(int rank) const;

  int world_;
  std::chrono::duration<double> timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::deque<Message>> channels_;  // [src * world + dst]
  std::optional<Error> abort_;
  int barrier_count_ = 0;
  int64_t barrier_generation_ = 0;
};

class CpuExecutor final : public Executor {
 public:
  CpuExecutor(CpuWorld& world, int rank, DType dtype)
      : Executor(rank, world.size(), dtype), world_(world) {}
  std::string_view backend() const override { return "cpu"; }

  Status write(Buf b, int64_t offset, std::span<const float> data) override;
  Status read(Buf b, int64_t offset, std::span<float> out) override;
  Status synchronize() override { return {}; }
  Status wait_for_abort() override { return world_.wait_for_abort(rank()); }
  Status barrier() override { return world_.barrier(rank()); }
  Status timer_start() override {
    t0_ = std::chrono::steady_clock::now();
    return {};
  }
  Expected<double> timer_stop() override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  std::string_view clock() const override { return "wall"; }

 protected:
  Status do_alloc(Buf b, ElemKind kind, int64_t elems) override;
  Status do_alloc_workspace(Buf b, int64_t bytes) override;
  Status do_alias(Buf b, Buf workspace, int64_t offset) override;
  // Every element is held as a float, whatever the dtype (rounded to it when written).
  int64_t storage_bytes(ElemKind) const override { return sizeof(float); }
  Status do_attention(Stream s, const AttnArgs& a) override;
  Status do_merge(Stream s, const MergeArgs& a) override;
  Status do_reset(Stream s, View o, View lse) override;
  Status do_copy(Stream s, Range dst, Range src) override;
  Status do_copy_view(Stream s, View dst, View src) override;
  Status do_p2p(Stream s, std::span<const P2POp> ops) override;
  Status do_all_to_all(Stream s, std::span<const Range> send, std::span<const Range> recv) override;
  Status do_all_gather(Stream s, Range send, Range recv) override;
  void do_record(Stream, Event) override {}
  void do_wait(Stream, Event) override {}
  void do_mark(Stream, int slot) override {
    if (static_cast<int>(marks_.size()) <= slot) marks_.resize(slot + 1);
    marks_[slot] = std::chrono::steady_clock::now();
  }
  Expected<double> do_mark_seconds(int slot) override {
    return std::chrono::duration<double>(marks_.at(slot) - t0_).count();
  }

 private:
  std::span<float> span(Range r) {
    return {mem_[r.buf.id] + r.offset, static_cast<size_t>(r.count)};
  }
  void bind(Buf b, float* p) {
    if (static_cast<int>(mem_.size()) <= b.id) mem_.resize(b.id + 1, nullptr);
    mem_[b.id] = p;
  }
  CpuWorld& world_;
  std::vector<std::vector<float>> storage_;  // one per allocation (buffer or workspace)
  std::vector<float*> mem_;                  // by buffer id: where its element 0 is
  std::chrono::steady_clock::time_point t0_;
  std::vector<std::chrono::steady_clock::time_point> marks_;
};

}  // namespace cpb
