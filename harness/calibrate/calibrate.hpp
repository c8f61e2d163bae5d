// `cpbench calibrate`: measures a machine through the Executor interface and writes the hardware
// profile the sim backend's cost model reads (harness/core/hardware_profile.hpp), plus beside it
// FILE.json (the grid, the provenance, the summary) and FILE.series.jsonl (every measured series
// with its raw samples, one compact JSON object a line, in measurement order). Everything is
// measured the way the cost model (harness/backends/sim/cost_model.hpp) consumes it, on the op
// records the executor base makes (so bytes and FLOPs have the same definitions):
//   - launch_us: the time per op of many tiny copies run back to back by the GPU (behind a head
//     start: a long attention block, then the copies, less the block alone);
//   - every other op's table value is its measured time per op less launch_us (the model adds
//     launch_us back, so launch_us + table = what one op took here); compute ops (attention,
//     copy, merge) are timed as batches of back-to-back launches over rotating buffers (no L2
//     reuse between them), communication ops one per sample, as cpbench_bench_nccl times them,
//     but for small ones (Grid::link_batch_bytes), a batch per sample, whose table value is
//     then each op's time on the GPU with the queue full (a long transfer, then the batch, less
//     the long transfer alone, by the wall clock; the slowest rank's): back to back, the host's
//     issue rate, not the transfer, can set the wall time;
//   - issue_us (cuda only; the cpu backend runs an op inside the call that issues it): per op
//     kind, the host's seconds per issuing call (the executor's host_calls) over a few samples
//     of a burst of issue_burst ops issued while the GPU runs a head start (as a strategy's
//     host issues once it is ahead; not a long batch behind a full queue), for the small ops
//     (Grid::issue_max_flops, issue_max_bytes); the median over the series of that kind (each
//     series' value the median over ranks); `event` from the cross-stream chain's record and
//     wait calls; each series also keeps its issue time one op a sample (issue_isolated_us);
//   - wait_us (cuda only): the launch copies alternating between the streams, each waiting on an
//     event recorded after the one before, behind the head start, per copy, less launch_us;
//   - issue_lead_us (cuda only): the work timer_start queues ahead of its start mark (the L2
//     flush; Executor::timer_lead_seconds), timed alone: the host issues an iteration's first
//     ops while it runs;
//   - attention TF/s: mask-aware FLOPs (causal counts visible pairs only) over that time;
//   - links: sendrecv (ring: send to the next rank, receive from the previous), all_to_all and
//     all_gather against the bytes a rank sends to its peers (OpRecord::bytes_sent; p2p the
//     larger of sent and received), on the comm stream;
//   - copy, merge: GB/s of the bytes read + written (OpRecord::mem_bytes);
//   - share_factor: an attention block's time with the ring's sendrecv of its K,V issued first on
//     the comm stream over its time alone (both from per-op trace marks), at least 1;
//     comm_share_factor: that sendrecv's time beside the block over its time alone, at least 1;
//   - sustained: a block run back to back (and with idle between ops, for duties below 1) for a
//     few seconds after a cool-down, each op's time over the block's time in the grid, binned by
//     when the op began (a bin's median); a 16K block at duties 1, 0.75 and 0.5 and a 64K one
//     at 1 and 0.75 (on 4x H200 the larger block slowed less);
//   - full blocks of 1 to 2048 queries against 1K-64K keys (decode, and partial prefill's new
//     tokens against the cache);
//     small blocks (16 to 1K tokens, up to 128 heads) at head_dim 16 and 32 (the quickstart's):
//     full blocks of every Sq x Sk, causal ones of Sq <= Sk with the queries last (diag = Sk -
//     Sq), each also `warm` (op after op on the same buffers, inputs in L2: a strategy's block
//     reading K/V it has just received);
//   - the squares again in the kernel's mode beside a transfer (`shared` points: an empty
//     transfer issued first on the comm stream; the Hopper kernel then launches one block per
//     tile, which for causal blocks of few heads measured up to twice as fast as its persistent
//     grid alone);
//   - transfers move whole 256-byte units per peer (where a peer's chunk is at least that);
//   - peak_tflops: the best causal rate at the largest causal block; bandwidth_gbps: the
//     sendrecv's bytes over its time at the largest size.
// Every sample of every rank is kept; a sample's value is the maximum over ranks (an op ends when
// its slowest rank does), and the tables take the median over samples.
#pragma once

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness/core/status.hpp"

namespace cpb::calibrate {

struct Options {
  std::string out;      // the profile, FILE.yaml (FILE.json is written beside it)
  std::string name;     // "" : from the machine ("h200x2", "cpu-x2")
  std::string backend;  // cuda | cpu
  int gpus = 0;         // ranks; 0: every visible GPU (cuda), 2 (cpu)
  bool quick = false;   // a tiny grid (tests, smoke runs)
  std::string machine;  // "" : from the backend ("2x NVIDIA H200")
  std::vector<std::string> argv;
  double timeout_s = 300;
  std::FILE* progress = stdout;  // one line per measured group; nullptr: silent
};

struct AttentionShape {
  bool causal = false;
  int64_t head_dim = 0, gqa = 1, heads = 0, sq = 0, sk = 0;  // heads = B·H (B = 1)
  bool shared = false;  // issued after an (empty) transfer on the comm stream: the kernel's mode
                        // beside a transfer
  bool warm = false;    // every op of a sample on the same buffers (inputs in L2), not rotated
};

// What is measured and how often.
struct Grid {
  std::vector<AttentionShape> attention;
  std::vector<int64_t> link_bytes;  // bytes a rank sends per op
  std::vector<int64_t> mem_bytes;   // copy and merge: bytes read + written per op
  int64_t merge_heads = 0, merge_head_dim = 0;
  AttentionShape share;      // the attention block of the share factor (causal, square)
  int64_t launch_elems = 0;  // the tiny copy of launch_us
  int launch_ops = 0;        // how many back to back per sample
  int warmup = 0;            // untimed batches (compute) or ops (communication) per point
  int repeats = 0;           // timed samples per compute point
  int link_repeats = 0;      // timed samples per communication point
  // Transfers of at most link_batch_bytes are timed link_batch back to back per sample (the same
  // count on every rank), so that a sample is not one latency plus the ranks' skew at its start.
  int link_batch = 1;
  int64_t link_batch_bytes = 0;
  // The launch copies, small copies and merges and the batched transfers are also timed behind
  // one long op on the same stream (head_start_block; a sendrecv of head_start_bytes),
  // less that op alone, by the wall clock: the host has issued the batch before the GPU reaches
  // it, so the difference is the ops' own time on the GPU with the queue full, not the host's
  // issue gaps (issue_us covers those) and without trace marks (which cost the GPU 1-3 us an op).
  bool head_start = false;
  AttentionShape head_start_block;  // the compute stream's head start (the cuda grid: `share`)
  int64_t head_start_bytes = 0;
  // issue_us: issue_samples samples of one op each, for the series whose op is small (attention
  // of at most issue_max_flops, other ops of at most issue_max_bytes touched or sent): quick
  // to repeat, and where the host's issue time shows.
  int issue_samples = 0;
  // ... each also a burst of issue_burst ops behind the head start (the GPU busy, the host
  // issuing op after op, as a strategy's host once it is ahead), which the profile takes.
  int issue_burst = 0;
  double issue_max_flops = 0;
  int64_t issue_max_bytes = 0;
  // ... and a burst of issue_burst ops a rank in turn, the others waiting (issue_staggered_us in
  // the JSON: the same call without the other ranks' host threads issuing at the same time);
  // compute and memory ops only: the barrier between turns waits for the rank's streams, so a
  // collective would wait there for its peers' turns (on the GPU as on the cpu backend).
  bool issue_staggered = false;
  // The issue costs again in runs of 1 .. ranks-1 ranks (issue_us_ranks): a few small blocks,
  // the smallest copy and merge, the two smallest sizes of each link op, the cross-stream chain.
  bool issue_ranks = false;
  // The tables of cold attention blocks (neither shared nor warm) with issue samples, and of the
  // batched link sizes, take the time of one op a sample (the issue samples', each after the
  // timer's L2 flush, which the host's issue overtakes: the op alone on the GPU, its inputs out
  // of L2), as a strategy's first block of an iteration and each of its transfers run; the
  // batches' times stay in the JSON.
  bool lone_tables = false;
  double sample_s = 0;  // a compute sample's target duration (sets its batch)
  int max_batch = 0;
  int64_t rotate_bytes = 0;  // compute ops cycle through at least this much memory per buffer
  // After each timed sample every rank idles this many times the sample's duration (at most
  // 0.25 s): busy without a break for the whole grid, a GPU's clocks fall (power and heat; on 2x
  // H200 a 32K causal block's five samples went from 6.7 to 7.4 ms, and the grid's >= 8K blocks
  // measured 6.5% slower in the median, up to 24%, than with the gaps:
  // results/sim/validation-calibrated-h200x2/), which a sweep's points, with the host's work
  // between them, do not see; 1 runs the GPU at about half duty.
  double idle_ratio = 0;
  // The sustained-load curves (hardware_profile.hpp, `sustained`): each run's block (a causal
  // square of the attention grid) `ops` times at its duty, each run after cooldown_s of idle.
  struct SustainedRun {
    AttentionShape block;
    double duty = 1;
    int ops = 0;
  };
  std::vector<SustainedRun> sustained;
  double cooldown_s = 0;
};

// The default grid (quick: a few points), for the backend's speed.
Grid default_grid(bool quick, bool gpu);
nlohmann::json to_json(const Grid& g);

// The ranks a run uses, after the checks below.
struct Plan {
  std::string backend;
  int world = 0;
  std::string yaml_path, json_path, series_path;
  std::string name, machine;
};

// Checks the options before anything is measured or written (one-line errors: what to change):
// the backend, the ranks against the visible GPUs, the output path (FILE.yaml or .yml in a
// folder that exists and takes a new file), the name.
Expected<Plan> check(const Options& o);

struct Summary {
  std::string yaml_path, json_path, series_path;
  double peak_tflops = 0, bandwidth_gbps = 0, launch_us = 0, share_factor = 1;
  size_t attention_points = 0;
  double seconds = 0;
};

// Measures and writes both files (atomically; nothing is written when measuring fails).
Expected<Summary> run(const Options& o);

}  // namespace cpb::calibrate
