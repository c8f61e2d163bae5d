// The sim backend's cost model: how long one logged op (OpRecord) takes on its own, on a hardware
// profile (harness/core/hardware_profile.hpp), once the timing engine (engine.hpp) has started
// it. Every op pays the profile's launch_us, then:
//   - attention: its mask-aware FLOPs (DESIGN.md's convention) at the rate interpolated from the
//     profile's attention points, times share_factor when a transfer may run beside it
//     (OpRecord::comm_in_flight on the compute stream). A causal block whose every pair is
//     visible counts as full. The rate at (Sq, Sk, gqa, heads = B·H) comes from the points of
//     the block's mask, of the nearest head_dim (then the `shared` ones for a block beside a
//     transfer, and the `warm` ones for a block whose K or V an earlier op of the iteration
//     wrote (OpRecord::kv_fresh), each where that head_dim has any whose Sq and Sk span the
//     block's, else the others; a causal block with more visible pairs than the measured
//     causal block of its shape (the square on the diagonal, or where the profile has causal
//     points with Sq < Sk the block with its queries last) moves from the causal rate to the
//     full one, on a log scale, as its visible pairs go from that block's to all),
//     then of the nearest GQA ratio
//     (log2 distances);
//     within one head count, the block's (log2 Sq, log2 Sk) is clamped to the points' range;
//     then on the diagonal (Sq = Sk) the rate is linear in log2 of the size between the two
//     squares around it, elsewhere bilinear in (log2 Sq, log2 Sk) between the four corners of
//     the smallest measured rectangle around it (both on a log scale), and where those points
//     are not all there the weighted geometric mean of its 3 nearest points (weights
//     1 / distance^2); an exact match is always that point's rate; between the two measured head
//     counts around the block's, the rate is linear in log2(heads) on a log scale (a small kernel's
//     time barely changes with its heads, so its rate grows with them), the nearest count's beyond
//     them (points without heads stand for any). So it lies within the points' range, and beyond
//     the grid the edge's rate holds. Without points (or none of the block's mask): the profile's
//     peak_tflops.
//   - p2p, all-to-all, all-gather: the curve of the op's collective on its link class, at the
//     bytes the rank sends to its peers (p2p: the larger of sent and received), interpolated
//     linearly between measured sizes; below the smallest size the smallest size's time
//     (latency-bound), above the largest the last segment's slope (its marginal bandwidth).
//     The link class: topology's intra_node link when every peer shares the rank's node
//     (HardwareProfile::node_of: gpus_per_node / tensor_parallel CP ranks per node), else its
//     inter_node link; an op with peers on both pays the inter-node curve for all its bytes.
//     Without `links`: bytes / bandwidth_gbps.
//   - merge, reset, copy: bytes read + written at the merge (merge) or copy (reset, copy)
//     throughput, interpolated linearly in log2(bytes), clamped at both ends; a merge without a
//     merge curve uses the copy curve; with neither, launch_us alone.
// Pure and deterministic; errors name the profile key to add.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "harness/core/executor.hpp"
#include "harness/core/hardware_profile.hpp"
#include "harness/core/status.hpp"

namespace cpb::sim {

// Time curve: piecewise linear through the points, the first point's y below it, the last
// segment's slope above it (y(x) = y_last * x / x_last with a single point).
double interpolate_time(const ProfileCurve& c, double x);
// Throughput curve: linear in log2(x) between points, clamped to the end points outside.
double interpolate_throughput(const ProfileCurve& c, double x);

class CostModel {
 public:
  explicit CostModel(HardwareProfile profile);
  const HardwareProfile& profile() const { return p_; }

  // Seconds op `rec` of rank `rank` in a world of `world` ranks takes once started.
  Expected<double> seconds(const OpRecord& rec, int rank, int world) const;
  // The host's seconds to issue `rec` in a run of `world` ranks (the profile's issue_us of its
  // kind, from issue_us_ranks where that gives the kind for `world`, plus an event record and
  // wait for each event its stream waited on before it); 0 without issue costs.
  double issue_seconds(const OpRecord& rec, int world) const;

  // TF/s of an attention block (visible pairs only) before the share factor; `shared`: issued
  // beside a transfer (the profile's shared points where its head_dim has any).
  double attention_tflops(bool causal, int64_t head_dim, double gqa, int64_t heads, int64_t sq,
                          int64_t sk, bool shared = false, bool warm = false) const;
  // The link class an op of `rank` with these peers uses.
  const std::string& link_class(int rank, const std::vector<int>& peers) const;

 private:
  Expected<double> transfer_seconds(const OpRecord& rec, int rank, int world) const;
  // The attention points of this mask and of the head_dim nearest to `head_dim` (log2).
  std::vector<const AttentionPoint*> nearest_dim_points(bool causal, int64_t head_dim) const;
  // Whether the causal points of the head_dim(s) nearest to `head_dim` include blocks with their
  // queries last (Sq < Sk), from causal_dims_ (no scan of the points per op).
  bool causal_rectangles(int64_t head_dim) const;
  HardwareProfile p_;
  std::map<int64_t, bool> causal_dims_;  // head_dim of causal points -> any with Sq < Sk
};

}  // namespace cpb::sim
