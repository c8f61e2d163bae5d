// The strategy interface and registry. A strategy computes, on every rank, the exact O and LSE of
// that rank's own queries. It is one file in strategies/ holding one registered StrategyInfo:
// `check` says whether it can run a point (and why not), `prepare` allocates a rank's working
// buffers once (outside the timed region) and returns the per-rank object whose `run` is one
// iteration. It talks only to the Executor, so the same code runs on cuda, cpu and sim.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness/core/executor.hpp"
#include "harness/core/layout.hpp"
#include "harness/core/strategy_options.hpp"
#include "harness/core/workload.hpp"

namespace cpb {

struct StrategyContext {
  const Workload& workload;
  const Placement& placement;
  StrategyOptions options;
};

// A rank's inputs and outputs, allocated and filled by the harness.
//  q    [Bq, q_count, H, d] activations, the rank's queries in its segment order, for the
//       Bq = q_batches(rank).size() sequences it holds queries of (all B in prefill);
//  kv   packed activations [2][B][kv_capacity][Hkv][d]: K then V; every rank's buffer has the
//       same size (kv_capacity = the largest kv_count), the first kv_count(rank) tokens of each
//       batch are valid, so a KV block moves as one contiguous message;
//  o    [Bq, q_count, H, d] fp32; lse [Bq, q_count, H, 1] fp32.
struct RankTensors {
  View q;
  Buf kv;
  int64_t kv_capacity = 0;
  View o;
  View lse;
};

class RankStrategy {
 public:
  virtual ~RankStrategy() = default;
  // One iteration: leaves the rank's O and LSE in io.o and io.lse.
  virtual Status run(Executor& ex, const RankTensors& io) = 0;
};

struct StrategyInfo {
  std::string name;
  std::string summary;  // one line: what moves
  std::function<Status(const StrategyContext&)> check;
  std::function<Expected<std::unique_ptr<RankStrategy>>(Executor&, const StrategyContext&,
                                                        const RankTensors&)>
      prepare;
  // Optional: what the strategy decided for a point and why (auto's choice, USP's u x r); goes
  // into the point's record as `strategy_detail`.
  std::function<nlohmann::json(const StrategyContext&)> describe = nullptr;
};

// Registers a strategy at static-initialisation time; returns true so it can seed a constant.
bool register_strategy(StrategyInfo info);
const StrategyInfo* find_strategy(std::string_view name);
// Sorted by name.
std::vector<const StrategyInfo*> all_strategies();
std::vector<std::string> strategy_names();

}  // namespace cpb

#define CPB_REGISTER_STRATEGY(info) \
  static const bool CPB_CONCAT(cpb_strategy_registered_, __LINE__) = ::cpb::register_strategy(info)
