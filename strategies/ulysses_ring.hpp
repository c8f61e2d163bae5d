// Ulysses x ring, written once for two registered strategies: `usp` (Fang & Zhao 2024, USP, in
// yunchang's layout: u x r = N, Ulysses inside groups of u consecutive ranks, a K/V ring across
// the r groups) and `ulysses` (DeepSpeed Ulysses, which is usp with u = N and r = 1).
//
// Per rank x (group G = x / u, index i = x % u), one iteration:
//  (a) three all-to-alls inside the group ("a2a_q", "a2a_k", "a2a_v"): x sends member j the head
//      slice j of its Q, K and V and receives head slice i of every member's tokens (H/u query
//      heads; KV heads sharded, Hkv/u each, when Hkv % u == 0, or replicated, the one KV head
//      of slice i, when u % Hkv == 0);
//  (b) the group's K/V block (every member's tokens, head slice i) rotates r-1 times over the
//      ring of ranks with equal x % u ("ring_kv"), double-buffered, each send/recv overlapped
//      with the attention of every member's queries to the block in hand;
//  (c) one all-to-all inside the group ("a2a_o") returns each member its O and LSE (fp32, packed
//      per destination) of head slice i; owners unpack the u slices into their output.
// Bytes sent per rank, s = dtype bytes, h = KV heads per rank (Hkv/u or 1), q = B*q_count*H*d:
//   (u-1)/u * q * s  +  2 (u-1) B kv_count h d s  +  (u-1)/u * q * (d+1)/d * 4
//   + (r-1) * 2 B (sum of kv_count over the source group) h d s.
// Every size comes from the Placement (ranks may hold different numbers of cached tokens), so
// both sides of every message agree for any layout and any cache split.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>

#include "strategies/strategy.hpp"

namespace cpb {

// How a Ulysses degree u splits one point.
struct UlyssesRingPlan {
  int ulysses = 1;         // u: ranks per group (consecutive ranks) over which heads are split
  int ring = 1;            // r = N / u: groups, joined by a ring of ranks with equal rank % u
  bool kv_sharded = true;  // KV heads split u ways (Hkv % u == 0) or replicated (u % Hkv == 0)
  int64_t q_heads = 0;     // query heads per rank after the all-to-all: H / u
  int64_t kv_heads = 0;    // KV heads per rank: Hkv / u when sharded, 1 when replicated

  // First KV head of the slice that group index i works on.
  int64_t kv_head_begin(const Workload& w, int i) const;
  // {"ulysses": u, "ring": r, "kv_heads": "sharded" | "replicated"}
  nlohmann::json describe() const;
};

// True when u query heads slices and the KV heads rule allow Ulysses degree u.
bool ulysses_heads_allow(const Workload& w, int64_t u);

// usp's automatic degree: the largest divisor u of cp that the heads allow (u = 1 always does).
int auto_ulysses_degree(const Workload& w, int cp);

// The plan for Ulysses degree u on ctx's point, or an error that names the limit and what to
// change. `strategy` names the caller in messages, `degree` what u is called there ("cp" for
// ulysses, whose u is the whole CP group; "ulysses" for usp) and `fix` is the advice appended.
Expected<UlyssesRingPlan> plan_ulysses_ring(const StrategyContext& ctx, int u,
                                            std::string_view strategy, std::string_view degree,
                                            std::string_view fix);

// Allocates the rank's working buffers (all of them, sized from the placement) and returns the
// per-rank object that runs the plan.
Expected<std::unique_ptr<RankStrategy>> prepare_ulysses_ring(Executor& ex,
                                                             const StrategyContext& ctx,
                                                             const RankTensors& io,
                                                             const UlyssesRingPlan& plan);

}  // namespace cpb
