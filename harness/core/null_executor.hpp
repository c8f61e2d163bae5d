// An executor whose ops do nothing and that holds no memory: the base of the executors that only
// count or log what a strategy issues (the sim backend, the memory probe). The Executor base
// still checks every op's arguments and accounts buffers, bytes and FLOPs; reads give zeros.
#pragma once

#include <algorithm>

#include "harness/core/executor.hpp"

namespace cpb {

class NullOpsExecutor : public Executor {
 public:
  using Executor::Executor;
  Status write(Buf, int64_t, std::span<const float>) override { return {}; }
  Status read(Buf, int64_t, std::span<float> out) override {
    std::fill(out.begin(), out.end(), 0.0f);
    return {};
  }
  Status fill_random(const View& dst, const RandomFill&) override {
    return check_view(dst, ElemKind::act, "fill_random");
  }
  Status synchronize() override { return {}; }
  Status barrier() override { return {}; }
  Status timer_start() override { return {}; }
  Expected<double> timer_stop() override { return 0.0; }

 protected:
  Status do_alloc(Buf, ElemKind, int64_t) override { return {}; }
  Status do_attention(Stream, const AttnArgs&) override { return {}; }
  Status do_merge(Stream, const MergeArgs&) override { return {}; }
  Status do_reset(Stream, View, View) override { return {}; }
  Status do_copy(Stream, Range, Range) override { return {}; }
  Status do_copy_view(Stream, View, View) override { return {}; }
  Status do_p2p(Stream, std::span<const P2POp>) override { return {}; }
  Status do_all_to_all(Stream, std::span<const Range>, std::span<const Range>) override {
    return {};
  }
  Status do_all_gather(Stream, Range, Range) override { return {}; }
  void do_record(Stream, Event) override {}
  void do_wait(Stream, Event) override {}
  void do_mark(Stream, int) override {}
  Expected<double> do_mark_seconds(int) override { return 0.0; }
};

}  // namespace cpb
