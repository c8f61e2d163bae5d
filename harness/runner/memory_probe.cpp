// The memory probe (memory_probe.hpp): an executor that allocates and runs nothing.
#include "harness/runner/memory_probe.hpp"

#include "strategies/strategy.hpp"

namespace cpb {
namespace {

class MemoryProbe final : public Executor {
 public:
  MemoryProbe(int rank, int world, DType dtype) : Executor(rank, world, dtype) {}
  std::string_view backend() const override { return "probe"; }
  Status write(Buf, int64_t, std::span<const float>) override { return {}; }
  Status read(Buf, int64_t, std::span<float>) override { return {}; }
  Status fill_random(const View&, const RandomFill&) override { return {}; }
  Status synchronize() override { return {}; }
  Status barrier() override { return {}; }
  Status timer_start() override { return {}; }
  Expected<double> timer_stop() override { return 0.0; }
  std::string_view clock() const override { return "none"; }

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

}  // namespace

Expected<int64_t> rank_memory_bytes(const ExecSpec& spec, int rank) {
  const StrategyInfo* info = find_strategy(spec.strategy);
  CPB_REQUIRE(info != nullptr, "unknown strategy '{}'", spec.strategy);
  CPB_ASSIGN_OR_RETURN(Placement pl, Placement::make(spec.workload, spec.layout, spec.cp));
  MemoryProbe probe(rank, spec.cp, spec.workload.dtype);
  CPB_ASSIGN_OR_RETURN(RankTensors io, allocate_rank_io(probe, spec.workload, pl, rank));
  CPB_TRY(info->prepare(probe, StrategyContext{spec.workload, pl, spec.options}, io));
  return probe.peak_memory_bytes();
}

Status check_gpu_memory(const ExecSpec& spec, const std::vector<int64_t>& free_bytes, int only_rank,
                        int device) {
  auto gib = [](int64_t b) {
    return static_cast<double>(b) / static_cast<double>(int64_t{1} << 30);
  };
  for (int r = 0; r < spec.cp; ++r) {
    if (only_rank >= 0 && r != only_rank) continue;
    const int gpu = only_rank >= 0 ? device : r;
    if (gpu < 0 || gpu >= static_cast<int>(free_bytes.size())) continue;
    CPB_ASSIGN_OR_RETURN(int64_t mine, rank_memory_bytes(spec, r));
    const int64_t need = mine + kGpuOverheadBytes;
    CPB_REQUIRE(need <= free_bytes[static_cast<size_t>(gpu)],
                "this point needs about {:.1f} GiB on rank {}'s GPU {} ({:.1f} GiB of buffers + "
                "about {:.1f} GiB for the CUDA context, NCCL and the timing flush) and it has "
                "{:.1f} GiB free: use fewer tokens, heads or batch, or more GPUs",
                gib(need), r, gpu, gib(mine), gib(kGpuOverheadBytes),
                gib(free_bytes[static_cast<size_t>(gpu)]));
  }
  return {};
}

}  // namespace cpb
