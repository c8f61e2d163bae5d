// The memory probe (memory_probe.hpp): an executor that allocates and runs nothing.
#include "harness/runner/memory_probe.hpp"

#include "harness/core/null_executor.hpp"
#include "strategies/strategy.hpp"

namespace cpb {
namespace {

class MemoryProbe final : public NullOpsExecutor {
 public:
  using NullOpsExecutor::NullOpsExecutor;
  std::string_view backend() const override { return "probe"; }
  std::string_view clock() const override { return "none"; }
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
