// A hardware profile: the numbers about a machine that a strategy decision or a cost model
// needs, read from a small YAML file so that they are measured once and committed rather than
// typed into every experiment. `auto`'s pass-KV / pass-Q heuristic needs two (Yang et al. 2024:
// C, the attention FLOP rate, and BW, the per-rank bandwidth of the CP ring link); the sim
// backend's cost model (harness/backends/sim/cost_model.hpp) reads the optional tables below and
// falls back to C and BW where a profile has none. The parser is a table of fields that grows by
// one entry per key.
//
// Schema (top-level map):
//   name:           required text   what the profile is called in records
//   peak_tflops:    required number > 0, TFLOP/s (1e12 FLOP/s) of attention on one rank
//   bandwidth_gbps: required number > 0, GB/s (1e9 B/s) per rank on the CP ring link
//   description, machine, source: optional text
//   extra:          optional map, ignored: free-form notes and keys of tools that are not ours
//   launch_us:      optional number >= 0: fixed cost of every op on a stream, in us (launch and
//                   the gap to the previous op), added to what the tables below give
//   wait_us:        optional number >= 0: the GPU's latency from the end of an op to the start of
//                   an op of the other stream that waited for it (an event recorded after the
//                   first, waited on before the second), in us; default 0
//   issue_us:       optional map of op kind (attention, merge, reset, copy, p2p, all_to_all,
//                   all_gather) or `event` to a number >= 0: the host's time in us to issue one
//                   such call (an event: one record or wait). The sim's ranks then issue their
//                   ops one after the other on a host clock, and an op starts no earlier than
//                   its issue has ended (a host that cannot keep up leaves the GPU idle). A kind
//                   left out costs nothing; without the map the host is never the bottleneck.
//   issue_us_ranks: optional map of a rank count R >= 1 to a map like issue_us: the issue costs
//                   measured in a run of R ranks (the cuda backend runs a rank a host thread in
//                   one process: calls cost more with more threads and peers); a run of R ranks
//                   takes its kinds from here and the others from issue_us
//   issue_lead_us:  optional number >= 0: how long before the timer's start the host begins to
//                   issue an iteration's ops (the cuda backend queues its L2 flush ahead of the
//                   start event, and the host issues on while the GPU flushes): the sim's host
//                   clock starts this much before the GPU's (with issue_us only; default 0)
//   share_factor:   optional number >= 1: an attention op issued while a transfer may run beside
//                   it (OpRecord::comm_in_flight, the cuda backend's share_sms rule) takes this
//                   many times its table time
//   comm_share_factor: optional number >= 1: a transfer takes this many times its link curve's
//                   time for the share of it that runs beside an attention op of its rank (the
//                   NCCL kernel and attention share the SMs and memory)
//   sustained:      optional list of {duty: D, tokens: N, seconds: [...], slowdown: [...]}, each
//                   measured under a steady load of attention blocks of N query x N key tokens
//                   (tokens optional: any block; then on every curve) for a share D in (0, 1]
//                   of the time: an
//                   attention op that starts `seconds` after the load began takes `slowdown`
//                   times its table time (the GPU lowers its clocks at its power limit); seconds
//                   >= 0 strictly increasing, one slowdown > 0 per time; (duty, tokens) distinct
//   attention:      optional list of measured points, each a map
//                     {mask: full|causal, head_dim: d, gqa: H/Hkv (default 1), heads: B·H of
//                      the block (default: any), sq: Sq, sk: Sk, tflops: TF/s, shared: true|false
//                      (default false; true: measured with a transfer issued beside it, where the
//                      Hopper kernel gives up its persistent grid; such points price attention
//                      issued beside a transfer, the others attention alone), warm: true|false
//                      (default false; true: measured op after op on the same buffers, so with
//                      its inputs in L2; such points price a block whose K or V an earlier op of
//                      the iteration wrote (OpRecord::kv_fresh), the others a block read cold)}
//                   A causal point with Sq < Sk has its queries last (diag = Sk - Sq: partial
//                   prefill's new tokens against the cache and themselves); Sq = Sk is the
//                   square on the diagonal.
//                   TF/s count only visible (query, key) pairs (DESIGN.md: 4·B·H·d per pair; a
//                   causal block counts its visible pairs). A block's rate comes from the points
//                   of its mask and the nearest head_dim, interpolated in log space (see the
//                   cost model); it never leaves the range of those points.
//   links:          optional map of link class (nvlink, pcie, rdma, tcp) to
//                     {ranks: R, sendrecv: CURVE, all_to_all: CURVE, all_gather: CURVE}
//                   CURVE = {bytes: [...], us: [...]}: the time of one operation against the bytes
//                   one rank sends to its peers (sendrecv: the message; all_to_all: its whole
//                   send buffer less the block it keeps; all_gather: its block times R-1, as
//                   nccl-tests' busbw counts them), bytes strictly increasing; R = the ranks it
//                   was measured on. Each collective is optional; a missing one is an error only
//                   when an op needs it.
//   topology:       optional map {gpus_per_node: G, tensor_parallel: TP (default 1),
//                   intra_node: CLASS, inter_node: CLASS}. The sim's ranks are one CP group;
//                   with tensor parallelism inside a node each of a node's TP ranks belongs to
//                   its own CP group (one ring per KV head, Yang et al. 2024), each on its own
//                   GPU and link, so a node holds G / TP ranks of the group (TP divides G): CP
//                   ranks r and p share a node when r / (G / TP) == p / (G / TP). With TP = G
//                   every rank is on its own node and every hop of a ring crosses nodes. An op
//                   whose peers all share its node uses intra_node (default nvlink), else
//                   inter_node (default rdma). Without it every rank is on one node.
//   copy, merge:    optional {bytes: [...], gbps: [...]}: throughput (GB/s of bytes read +
//                   written) of copies and of LSE merges against the bytes they touch
// Any other key is an error, so that a typo ("bandwith_gbps") never silently falls back to a
// default; so is any unknown key inside the maps above.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "harness/core/status.hpp"

namespace cpb {

// A measured curve: y at strictly increasing x > 0.
struct ProfileCurve {
  std::vector<double> x, y;
  bool empty() const { return x.empty(); }
};

// Attention's slowdown against time under a steady load of duty `duty` of blocks of `tokens`
// query and key tokens (0: any block) (x: seconds since the load began, y: time multiplier).
struct SustainedCurve {
  double duty = 1;
  int64_t tokens = 0;
  ProfileCurve slowdown;
};

struct AttentionPoint {
  bool causal = false;
  int64_t head_dim = 0;
  double gqa = 1;
  int64_t heads = 0;  // batch x query heads of the block; 0: not given (matches any)
  int64_t sq = 0, sk = 0;
  double tflops = 0;
  bool shared = false;  // measured in the kernel's mode beside a transfer (one block per tile)
  bool warm = false;    // measured with its inputs in L2 (the same buffers op after op)
};

// One link class: seconds (y) against bytes sent per rank (x) for each collective.
struct LinkProfile {
  int ranks = 0;
  ProfileCurve sendrecv, all_to_all, all_gather;
};

struct HardwareProfile {
  std::string path;  // file it was read from ("<string>" for text)
  std::string name;
  double peak_tflops = 0;     // C in TFLOP/s
  double bandwidth_gbps = 0;  // BW in GB/s (1e9 B/s) per rank
  std::string description;
  std::string machine;
  std::string source;  // where the numbers come from (a run folder, a paper)

  // The cost model's tables (all optional; see the schema above).
  double launch_us = 0;
  double wait_us = 0;  // a cross-stream event's latency on the GPU
  std::map<std::string, double, std::less<>>
      issue_us;  // by op kind name or "event"; empty: no host clock
  std::map<int, std::map<std::string, double, std::less<>>>
      issue_us_ranks;        // by the run's rank count: its own issue costs, where measured
  double issue_lead_us = 0;  // the host's head start on the GPU's timer
  double share_factor = 1;
  double comm_share_factor = 1;
  std::vector<SustainedCurve> sustained;  // by increasing tokens, then duty
  std::vector<AttentionPoint> attention;
  std::map<std::string, LinkProfile> links;  // by link class
  int gpus_per_node = 0;                     // 0: every rank on one node
  int tensor_parallel = 1;                   // TP ranks per node, each in its own CP group
  std::string intra_node_link = "nvlink";
  std::string inter_node_link = "rdma";
  ProfileCurve copy_gbps, merge_gbps;  // x: bytes read + written, y: GB/s

  // The same numbers in SI units, the form the formulas take.
  double peak_flops() const { return peak_tflops * 1e12; }
  double bandwidth_bytes_per_s() const { return bandwidth_gbps * 1e9; }
  // The node CP rank `rank` runs on (topology above); 0 for every rank without a topology.
  int node_of(int rank) const {
    return gpus_per_node > 0 ? rank / (gpus_per_node / tensor_parallel) : 0;
  }
};

// Reads a profile file. Errors read "file:line: key: what to change"; a missing or unreadable
// file is an error naming the path.
Expected<HardwareProfile> load_hardware_profile(const std::string& path);
// Same from text (tests); `path` names it in messages.
Expected<HardwareProfile> parse_hardware_profile(const std::string& text, const std::string& path);
// The top-level keys a profile may have (sorted), for messages and documentation.
const std::vector<std::string>& hardware_profile_keys();
// The link classes a profile may describe.
const std::vector<std::string>& link_classes();

}  // namespace cpb
