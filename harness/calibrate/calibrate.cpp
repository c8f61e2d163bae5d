// `cpbench calibrate` (calibrate.hpp): the grid, the per-rank measurement through the Executor
// interface, the reduction over ranks and samples, and the two files it writes.
#include "harness/calibrate/calibrate.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <thread>
#include <tuple>
#include <utility>

#include "harness/core/backend.hpp"
#include "harness/core/executor.hpp"
#include "harness/core/hardware_profile.hpp"
#include "harness/core/mpi_world.hpp"
#include "harness/io/provenance.hpp"
#include "harness/io/results.hpp"
#include "harness/runner/stats.hpp"

namespace cpb::calibrate {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int64_t kKiB = 1024, kMiB = kKiB * kKiB, kGiB = kMiB * kKiB;
// A table value is a measured time less launch_us; below this share of the measured time (an op
// about as short as a launch) it is floored here and flagged, so that no rate becomes infinite.
constexpr double kMinTableShare = 0.1;
// Transfers move whole 256-byte units per peer (chunks of at least that), as the strategies'
// tensors do: a chunk of
// bytes / 3 per peer (4 ranks) is only 4-byte aligned, and NCCL copied such buffers at about half
// the speed (4x H200: an all-to-all of 256 MiB per rank at 158 GB/s against 285 GB/s in the
// strategies' traces).
constexpr int64_t kLinkAlignElems = 128;
// Start times (seconds since the load began) that bound the bins of the sustained-load curves.
constexpr double kSustainedBins[] = {0,    0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5,
                                     0.75, 1,    1.5,  2,    3,   4.5, 6,    1e9};

std::vector<int64_t> powers(int64_t from, int64_t to, int64_t step) {
  std::vector<int64_t> v;
  for (int64_t x = from; x <= to; x *= step) v.push_back(x);
  return v;
}

// Causal squares; full squares and the 1:2 / 2:1 blocks of the zigzag ring; full blocks of few
// queries (`decode_sq`: decode, and partial prefill's new tokens) against `decode_sk` keys; for
// every head_dim, GQA ratio and B·H that divides.
std::vector<AttentionShape> attention_grid(const std::vector<int64_t>& sizes,
                                           const std::vector<int64_t>& dims,
                                           const std::vector<int64_t>& gqas,
                                           const std::vector<int64_t>& heads,
                                           const std::vector<int64_t>& decode_sq,
                                           const std::vector<int64_t>& decode_sk) {
  std::vector<AttentionShape> out;
  const int64_t largest = sizes.back();
  for (int64_t d : dims)
    for (int64_t g : gqas)
      for (int64_t h : heads) {
        if (h % g != 0) continue;
        for (int64_t s : sizes) out.push_back({true, d, g, h, s, s});
        for (int64_t s : sizes) out.push_back({false, d, g, h, s, s});
        for (int64_t s : sizes)
          if (2 * s <= largest) {
            out.push_back({false, d, g, h, s, 2 * s});
            out.push_back({false, d, g, h, 2 * s, s});
          }
        for (int64_t q : decode_sq)
          for (int64_t k : decode_sk) out.push_back({false, d, g, h, q, k});
      }
  // The few-query rows can repeat a 1:2 or 2:1 block: measure each shape once.
  std::vector<AttentionShape> unique;
  for (const auto& s : out)
    if (std::none_of(unique.begin(), unique.end(), [&](const AttentionShape& u) {
          return u.causal == s.causal && u.head_dim == s.head_dim && u.gqa == s.gqa &&
                 u.heads == s.heads && u.sq == s.sq && u.sk == s.sk;
        }))
      unique.push_back(s);
  return unique;
}

// Full blocks of every (Sq, Sk) pair and causal ones of every Sq <= Sk (queries last; Sq > 1,
// where some key is hidden), for every head_dim, GQA ratio and B·H that divides: the rectangle
// the cost model interpolates bilinearly (small blocks, whose time follows their longest row
// rather than their FLOPs).
std::vector<AttentionShape> rect_grid(const std::vector<int64_t>& sqs,
                                      const std::vector<int64_t>& sks,
                                      const std::vector<int64_t>& dims,
                                      const std::vector<int64_t>& gqas,
                                      const std::vector<int64_t>& heads) {
  std::vector<AttentionShape> out;
  for (int64_t d : dims)
    for (int64_t g : gqas)
      for (int64_t h : heads) {
        if (h % g != 0) continue;
        for (int64_t q : sqs)
          for (int64_t k : sks)
            if (q > 1 && q <= k) out.push_back({true, d, g, h, q, k});
        for (int64_t q : sqs)
          for (int64_t k : sks) out.push_back({false, d, g, h, q, k});
      }
  return out;
}

// The shapes again, to be measured warm (inputs in L2).
std::vector<AttentionShape> warm_copies(std::vector<AttentionShape> shapes) {
  for (auto& s : shapes) s.warm = true;
  return shapes;
}

// The squares of head_dim >= 64 again, to be measured beside a transfer.
void add_shared_squares(std::vector<AttentionShape>& grid) {
  std::vector<AttentionShape> shared;
  for (AttentionShape s : grid)
    if (s.sq == s.sk && s.head_dim >= 64) {
      s.shared = true;
      shared.push_back(s);
    }
  grid.insert(grid.end(), shared.begin(), shared.end());
}

std::string mask_name(bool causal) {
  return causal ? "causal" : "full";
}

std::string size_text(double bytes) {
  if (bytes >= kGiB) return fmt::format("{:.3g} GiB", bytes / kGiB);
  if (bytes >= kMiB) return fmt::format("{:.3g} MiB", bytes / kMiB);
  if (bytes >= kKiB) return fmt::format("{:.3g} KiB", bytes / kKiB);
  return fmt::format("{:.3g} B", bytes);
}

std::string tokens_text(int64_t t) {
  return t >= 1024 && t % 1024 == 0 ? fmt::format("{}K", t / 1024) : std::to_string(t);
}

// ---------------------------------------------------------------------------------------------
// What one rank measures: series of per-op times, each with the record of its op.

enum class Kind {
  launch,
  wait,
  copy,
  merge,
  attention,
  sendrecv,
  all_to_all,
  all_gather,
  share,
  sustained,
  lead
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::launch:
      return "launch";
    case Kind::wait:
      return "wait";
    case Kind::copy:
      return "copy";
    case Kind::merge:
      return "merge";
    case Kind::attention:
      return "attention";
    case Kind::sendrecv:
      return "sendrecv";
    case Kind::all_to_all:
      return "all_to_all";
    case Kind::all_gather:
      return "all_gather";
    case Kind::share:
      return "share";
    case Kind::sustained:
      return "sustained";
    case Kind::lead:
      return "timer_lead";
  }
  return "?";
}

struct Series {
  Kind kind = Kind::launch;
  int index = 0;  // into the grid's list of its kind
  int batch = 1;  // ops per timed sample
  OpRecord rec;   // the op as the cost model sees it
  // Seconds per op of each timed sample; the share factor's series hold four lists: attention
  // alone, attention beside the transfer, the transfer beside attention, the transfer alone; a
  // sustained-load series two: each op's time and when it began (seconds since the load began).
  std::vector<std::vector<double>> samples;
  // The host's seconds per issuing call of the op's kind over the timed samples (the executor's
  // host_calls; 0: not measured), and the per-op time on the GPU with the queue full, behind a
  // head start (headed_op_times; the launch copies, small copies and merges, batched link sizes:
  // their samples[0] is the wall time of back-to-back ops, which the host's issue rate can set
  // instead of the op; empty where the head's noise exceeded the batch).
  double issue_s = 0;
  double event_issue_s = 0;  // the same for the event calls (record, wait) of its samples
  // The same issued one op a sample (issue_s and event_issue_s are these without a head start).
  double issue_isolated_s = 0, event_issue_isolated_s = 0;
  double issue_staggered_s = 0;  // issued a rank at a time (Grid::issue_staggered)
  // The time of those samples of one op each (Grid::lone_tables).
  std::vector<double> lone_s;
  std::vector<double> gpu_s;
  bool head_noisy = false;  // timed behind a head start, but the head's noise exceeded the batch
};

// The buffers of one rank, sized for the largest op of the grid (executors cannot free, so every
// phase gets its own and they live for the whole run). Compute ops rotate through `rotate` bytes
// at least, so that back-to-back launches never find their inputs in L2.
struct Buffers {
  Buf q, k, v, o, lse;  // attention
  int64_t q_cap = 0, kv_cap = 0, o_cap = 0, lse_cap = 0;
  Buf a, b;  // activations: copies and transfers
  int64_t ab_cap = 0;
  Buf mo, ml, po, pl;  // merge: accumulator and partial (O, LSE)
  int64_t mo_cap = 0, ml_cap = 0;
};

int64_t round_up(int64_t x, int64_t m) {
  return (x + m - 1) / m * m;
}

class RankRun {
 public:
  RankRun(Executor& ex, const Grid& g, std::function<void(const std::string&)> say)
      : ex_(ex), g_(g), say_(std::move(say)), t0_(Clock::now()) {}

  Status run(std::vector<Series>& out) {
    CPB_TRY(allocate());
    CPB_TRY(measure_launch(out));
    CPB_TRY(measure_wait(out));
    CPB_TRY(measure_lead(out));
    CPB_TRY(measure_memory(out, Kind::copy));
    CPB_TRY(measure_memory(out, Kind::merge));
    CPB_TRY(measure_attention(out));
    if (ex_.world() > 1) {
      for (Kind k : {Kind::sendrecv, Kind::all_to_all, Kind::all_gather})
        CPB_TRY(measure_link(out, k));
      CPB_TRY(measure_share(out));
    }
    CPB_TRY(measure_sustained(out));
    return {};
  }

  // Grid::issue_ranks: the issue costs alone, in a run of fewer ranks than the main one: the
  // cross-stream chain (events), up to four of the smallest cold blocks, the smallest copy and
  // merge, the two smallest sizes of each link op; one timed sample each (the tables are the
  // main run's).
  Status run_issue(std::vector<Series>& out) {
    CPB_TRY(allocate());
    CPB_TRY(measure_wait(out));
    std::vector<size_t> small;
    for (size_t i = 0; i < g_.attention.size(); ++i) {
      const AttentionShape& a = g_.attention[i];
      if (!a.shared && !a.warm) small.push_back(i);
    }
    const auto flops = [&](size_t i) {
      const AttentionShape& a = g_.attention[i];
      return static_cast<double>(a.sq * a.sk * a.heads * a.head_dim);
    };
    std::stable_sort(small.begin(), small.end(),
                     [&](size_t a, size_t b) { return flops(a) < flops(b); });
    small.resize(std::min<size_t>(small.size(), 4));
    for (size_t i : small) {
      CPB_ASSIGN_OR_RETURN(Series ser,
                           time_op(Kind::attention, static_cast<int>(i), 1, 1,
                                   attention_op(g_.attention[i]), compute_head_start()));
      out.push_back(std::move(ser));
    }
    for (Kind k : {Kind::copy, Kind::merge}) {
      CPB_ASSIGN_OR_RETURN(
          Series ser, time_op(k, 0, 1, 1, memory_op(k, g_.mem_bytes[0]), compute_head_start()));
      out.push_back(std::move(ser));
    }
    if (ex_.world() > 1)
      for (Kind k : {Kind::sendrecv, Kind::all_to_all, Kind::all_gather})
        for (size_t i = 0; i < std::min<size_t>(2, g_.link_bytes.size()); ++i) {
          const int64_t c = chunk(k, g_.link_bytes[i]);
          if (c < 1) continue;
          CPB_ASSIGN_OR_RETURN(
              Series ser, time_op(k, static_cast<int>(i), 1, 1, link_op(k, c), comm_head_start()));
          out.push_back(std::move(ser));
        }
    return {};
  }

 private:
  double elapsed() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
  void say(const std::string& s) { say_(fmt::format("[{:6.1f} s] {}", elapsed(), s)); }

  int64_t merge_tokens(int64_t bytes) const {
    return std::max<int64_t>(1, bytes / (12 * g_.merge_heads * (g_.merge_head_dim + 1)));
  }
  // Elements a rank sends to each peer for `bytes` sent in all (activations of 2 bytes).
  int64_t chunk(Kind k, int64_t bytes) const {
    const int64_t n = ex_.world();
    const int64_t c = k == Kind::sendrecv ? bytes / 2 : bytes / (n - 1) / 2;
    return c >= kLinkAlignElems ? c / kLinkAlignElems * kLinkAlignElems : c;
  }
  int64_t kv_bytes(const AttentionShape& s) const {
    return 2 * s.sk * (s.heads / s.gqa) * s.head_dim * 2;
  }

  Status allocate() {
    const int64_t act_rot = g_.rotate_bytes / 2, f32_rot = g_.rotate_bytes / 4;
    std::vector<AttentionShape> shapes = g_.attention;
    shapes.push_back(g_.share);
    shapes.push_back(g_.head_start_block);
    for (const auto& s : shapes) {
      b_.q_cap = std::max(b_.q_cap, s.sq * s.heads * s.head_dim);
      b_.kv_cap = std::max(b_.kv_cap, s.sk * (s.heads / s.gqa) * s.head_dim);
      b_.lse_cap = std::max(b_.lse_cap, s.sq * s.heads);
    }
    b_.o_cap = std::max(b_.q_cap, f32_rot);
    b_.q_cap = round_up(std::max(b_.q_cap, act_rot), 1024);
    b_.kv_cap = round_up(std::max(b_.kv_cap, act_rot), 1024);
    b_.lse_cap = std::max(b_.lse_cap, f32_rot / 64);
    const int64_t n = ex_.world();
    int64_t ab = std::max<int64_t>(g_.launch_elems, act_rot);
    for (int64_t x : g_.mem_bytes) ab = std::max(ab, x / 4);
    if (n > 1) {
      for (int64_t x : g_.link_bytes) ab = std::max(ab, n * chunk(Kind::all_gather, x));
      ab = std::max(ab, kv_bytes(g_.share) / 2);
      if (g_.head_start) ab = std::max(ab, chunk(Kind::sendrecv, g_.head_start_bytes));
    }
    b_.ab_cap = ab;
    int64_t mt = 1;
    for (int64_t x : g_.mem_bytes) mt = std::max(mt, merge_tokens(x));
    const int64_t row = g_.merge_heads * g_.merge_head_dim;
    b_.mo_cap = std::max(mt * row, f32_rot);
    b_.ml_cap = b_.mo_cap / g_.merge_head_dim;
    CPB_ASSIGN_OR_RETURN(b_.q, ex_.alloc("q", ElemKind::act, b_.q_cap));
    CPB_ASSIGN_OR_RETURN(b_.k, ex_.alloc("k", ElemKind::act, b_.kv_cap));
    CPB_ASSIGN_OR_RETURN(b_.v, ex_.alloc("v", ElemKind::act, b_.kv_cap));
    CPB_ASSIGN_OR_RETURN(b_.o, ex_.alloc("o", ElemKind::f32, b_.o_cap));
    CPB_ASSIGN_OR_RETURN(b_.lse, ex_.alloc("lse", ElemKind::f32, b_.lse_cap));
    CPB_ASSIGN_OR_RETURN(b_.a, ex_.alloc("a", ElemKind::act, b_.ab_cap));
    CPB_ASSIGN_OR_RETURN(b_.b, ex_.alloc("b", ElemKind::act, b_.ab_cap));
    CPB_ASSIGN_OR_RETURN(b_.mo, ex_.alloc("merge_o", ElemKind::f32, b_.mo_cap));
    CPB_ASSIGN_OR_RETURN(b_.ml, ex_.alloc("merge_lse", ElemKind::f32, b_.ml_cap));
    CPB_ASSIGN_OR_RETURN(b_.po, ex_.alloc("part_o", ElemKind::f32, b_.mo_cap));
    CPB_ASSIGN_OR_RETURN(b_.pl, ex_.alloc("part_lse", ElemKind::f32, b_.ml_cap));
    // Random inputs (mean 0, variance 1), so that the softmax does real work.
    uint64_t seed = 1000 + static_cast<uint64_t>(ex_.rank());
    for (auto [buf, cap, t] :
         {std::tuple{b_.q, b_.q_cap, InputTensor::q}, std::tuple{b_.k, b_.kv_cap, InputTensor::k},
          std::tuple{b_.v, b_.kv_cap, InputTensor::v}})
      CPB_TRY(ex_.fill_random(dense_view(buf, 0, 1, cap / 1024, 1, 1024),
                              RandomFill{seed, t, 0, 0, 1024}));
    return {};
  }

  // One timed sample: `k` ops back to back between the timer marks, then (idle) the idle time.
  Expected<double> sample(int k, const std::function<Status(int)>& op, bool idle = true) {
    CPB_TRY(ex_.barrier());
    ex_.begin_iteration();
    CPB_TRY(ex_.timer_start());
    for (int i = 0; i < k; ++i) CPB_TRY(op(i));
    CPB_ASSIGN_OR_RETURN(double t, ex_.timer_stop());
    if (idle && g_.idle_ratio > 0)
      std::this_thread::sleep_for(std::chrono::duration<double>(std::min(t * g_.idle_ratio, 0.25)));
    return t;
  }

  // The op once with logging on (its record; also the first, untimed run), a single-op pilot,
  // then batches of `batch` ops, or with batch 0 as many as last about g_.sample_s (compute
  // ops; collectives take a batch fixed by the grid: every rank must issue the same ops).
  Expected<Series> time_op(Kind kind, int index, int batch, int repeats,
                           const std::function<Status(int)>& op,
                           const std::function<Status()>& head = {}) {
    Series s;
    s.kind = kind;
    s.index = index;
    ex_.reset_accounting();
    ex_.set_logging(true);
    auto first = sample(1, op);
    ex_.set_logging(false);
    if (!first.ok()) return std::move(first).error();
    CPB_REQUIRE(!ex_.accounting().log.empty(), "internal: calibrate logged no op");
    s.rec = ex_.accounting().log.back();
    ex_.reset_accounting();
    CPB_ASSIGN_OR_RETURN(double pilot, sample(1, op));
    s.batch = batch;
    if (batch == 0)
      s.batch = static_cast<int>(std::clamp(pilot > 0 ? std::ceil(g_.sample_s / pilot) : 1.0, 1.0,
                                            static_cast<double>(g_.max_batch)));
    for (int w = 0; w < g_.warmup; ++w) CPB_TRY(sample(s.batch, op));
    s.samples.emplace_back();
    for (int r = 0; r < repeats; ++r) {
      CPB_ASSIGN_OR_RETURN(double t, sample(s.batch, op));
      s.samples[0].push_back(t / s.batch);
    }
    // The host's issue time, two ways: ops issued one at a time (one a sample; kept as
    // issue_isolated_s) and, where the caller gives a head start, issue_burst ops in a row
    // while the GPU runs the head, as a strategy issues its ops once the host is ahead (not a
    // long batch behind a full queue: back to back, each issue measured 1.4-1.8x the
    // strategies' own, results/sim/validation-h200x4-calibrated-17d1d10; issued alone,
    // 1.2-1.7x, results/sim/validation-h200x4-calibrated-4b55a67). The profile takes the burst
    // where there is one. Every rank runs the same samples (the op's record decides, the same
    // on every rank: each sample begins with a barrier).
    const bool small =
        s.rec.kind == OpKind::attention
            ? s.rec.flops <= g_.issue_max_flops
            : std::max({s.rec.mem_bytes, s.rec.bytes_sent, s.rec.bytes_recv}) <= g_.issue_max_bytes;
    if (g_.issue_samples > 0 && small) {
      const std::string kind_key(to_string(s.rec.kind));
      std::map<std::string, HostCalls> sum;
      auto add_calls = [&] {
        for (const auto& [k, c] : ex_.host_calls()) {
          sum[k].seconds += c.seconds;
          sum[k].calls += c.calls;
        }
      };
      auto per_call = [&](const std::string& k) {
        const auto it = sum.find(k);
        return it == sum.end() || it->second.calls == 0
                   ? 0.0
                   : it->second.seconds / static_cast<double>(it->second.calls);
      };
      ex_.reset_host_calls();
      for (int r = 0; r < g_.issue_samples; ++r) {
        CPB_ASSIGN_OR_RETURN(double t, sample(1, op, false));
        s.lone_s.push_back(t);
      }
      add_calls();
      s.issue_isolated_s = s.issue_s = per_call(kind_key);
      s.event_issue_isolated_s = s.event_issue_s = per_call("event");
      if (head && g_.issue_burst > 0) {
        sum.clear();
        for (int r = 0; r < g_.issue_samples; ++r) {
          CPB_TRY(sample(
              1 + g_.issue_burst,
              [&](int i) -> Status {
                if (i > 0) return op(i - 1);
                CPB_TRY(head());
                ex_.reset_host_calls();  // the head's own call is not the op's
                return {};
              },
              false));
          add_calls();
        }
        s.issue_s = per_call(kind_key);
        s.event_issue_s = per_call("event");
      }
      // A rank at a time: each rank's burst while the others wait at the barrier (Grid::
      // issue_staggered: not collectives, whose turn would wait for its peers').
      const bool collective = s.rec.kind == OpKind::p2p || s.rec.kind == OpKind::all_to_all ||
                              s.rec.kind == OpKind::all_gather;
      if (g_.issue_staggered && g_.issue_burst > 0 && ex_.world() > 1 && !collective) {
        sum.clear();
        for (int r = 0; r < g_.issue_samples; ++r)
          CPB_TRY(sample(
              1,
              [&](int) -> Status {
                for (int turn = 0; turn < ex_.world(); ++turn) {
                  CPB_TRY(ex_.barrier());
                  if (turn != ex_.rank()) continue;
                  ex_.reset_host_calls();
                  for (int i = 0; i < g_.issue_burst; ++i) CPB_TRY(op(i));
                  add_calls();
                }
                return {};
              },
              false));
        s.issue_staggered_s = per_call(kind_key);
      }
    }
    return s;
  }

  // Each op's time on the GPU with the queue kept full, by the wall clock, into s.gpu_s: `head`
  // (one long op on the op's stream) then s.batch ops, less `head` alone, over the batch, one
  // value per pair of samples (`pairs` of them, alternated). The host issues the batch while the
  // GPU runs the head, so the GPU runs the ops back to back, as it does a strategy's once the
  // host is ahead; the host's issue gaps are issue_us's. Not by trace marks: on 4x H200 the
  // marks cost the GPU 1-3 us an op (results/sim/validation-h200x4-calibrated-4b55a67). Where
  // the head's noise exceeds the batch (the median difference is not positive: the cpu backend,
  // which runs each op inside its call), s.gpu_s stays empty and s.head_noisy says so: the wall
  // time per op of the batch alone stands.
  Status headed_op_times(Series& s, int pairs, const std::function<Status(int)>& op,
                         const std::function<Status()>& head) {
    std::vector<double> out;
    for (int p = 0; p < pairs; ++p) {
      CPB_ASSIGN_OR_RETURN(double t0, sample(1, [&](int) { return head(); }));
      CPB_ASSIGN_OR_RETURN(double tn,
                           sample(s.batch + 1, [&](int i) { return i == 0 ? head() : op(i - 1); }));
      out.push_back((tn - t0) / s.batch);
    }
    s.head_noisy = summarize(out).median <= 0;
    if (s.head_noisy) return {};
    for (double& x : out) x = std::max(x, 0.0);  // a pair whose head ran long says only "tiny"
    s.gpu_s = std::move(out);
    return {};
  }

  // The head starts of headed_op_times (empty without g_.head_start).
  std::function<Status()> compute_head_start() {
    if (!g_.head_start) return {};
    return [this] {
      return ex_.attention(Stream::compute, attention_args(g_.head_start_block, 0), "head_start");
    };
  }
  std::function<Status()> comm_head_start() {
    if (!g_.head_start) return {};
    const int64_t c = chunk(Kind::sendrecv, g_.head_start_bytes);
    const int n = ex_.world(), r = ex_.rank();
    return [this, c, n, r] {
      const P2POp ops[2] = {{P2POp::Kind::send, (r + 1) % n, {b_.a, 0, c}},
                            {P2POp::Kind::recv, (r + n - 1) % n, {b_.b, 0, c}}};
      return ex_.p2p(Stream::comm, ops, "head_start");
    };
  }

  // The i-th tiny copy of a launch batch on stream `st` (rotating through the activations).
  Status launch_copy(Stream st, int i, std::string_view phase) {
    const int64_t n = g_.launch_elems, at = (i % (b_.ab_cap / n)) * n;
    return ex_.copy(st, {b_.b, at, n}, {b_.a, at, n}, phase);
  }

  Status measure_launch(std::vector<Series>& out) {
    auto op = [&](int i) { return launch_copy(Stream::compute, i, "launch"); };
    CPB_ASSIGN_OR_RETURN(
        Series s, time_op(Kind::launch, 0, g_.launch_ops, g_.repeats, op, compute_head_start()));
    std::string on_gpu;
    if (g_.head_start) {
      CPB_TRY(headed_op_times(s, g_.repeats, op, compute_head_start()));
      if (!s.gpu_s.empty())
        on_gpu =
            fmt::format(", {:.2f} us each behind a head start", summarize(s.gpu_s).median * 1e6);
    }
    say(fmt::format("launch: {:.2f} us per op on rank {} ({} copies of {} back to back{})",
                    summarize(s.samples[0]).median * 1e6, ex_.rank(), s.batch,
                    size_text(static_cast<double>(s.rec.mem_bytes / 2)), on_gpu));
    out.push_back(std::move(s));
    return {};
  }

  // wait_us: the launch copies again, alternating between the streams, each waiting on an event
  // recorded after the one before (a chain across the streams, as a strategy's transfer and the
  // block that reads it), behind the same head start: each link costs a launch and a
  // cross-stream wait, and wait_us is its time less launch_us.
  Status measure_wait(std::vector<Series>& out) {
    if (!g_.head_start) return {};
    auto op = [&](int i) {
      const Stream s = i % 2 ? Stream::comm : Stream::compute;
      ex_.wait(s, ex_.record(i % 2 ? Stream::compute : Stream::comm));
      return launch_copy(s, i, "wait");
    };
    CPB_ASSIGN_OR_RETURN(
        Series s, time_op(Kind::wait, 0, g_.launch_ops, g_.repeats, op, compute_head_start()));
    CPB_TRY(headed_op_times(s, g_.repeats, op, compute_head_start()));
    if (!s.gpu_s.empty())
      say(fmt::format("cross-stream chain: {:.2f} us per copy on rank {} behind a head start",
                      summarize(s.gpu_s).median * 1e6, ex_.rank()));
    out.push_back(std::move(s));
    return {};
  }

  // The backend's work ahead of each timed iteration's start (issue_lead_us), timed alone.
  Status measure_lead(std::vector<Series>& out) {
    Series s;
    s.kind = Kind::lead;
    s.samples.emplace_back();
    for (int r = 0; r < g_.repeats; ++r) {
      CPB_ASSIGN_OR_RETURN(double t, ex_.timer_lead_seconds());
      s.samples[0].push_back(t);
    }
    // (A backend that queues nothing ahead, the cpu one, has no such series.)
    if (summarize(s.samples[0]).median <= 0) return {};
    say(fmt::format("timer lead: {:.1f} us ahead of each timed iteration's start on rank {}",
                    summarize(s.samples[0]).median * 1e6, ex_.rank()));
    out.push_back(std::move(s));
    return {};
  }

  // The op of a copy or merge series of `bytes` touched; op j rotates through the buffers.
  std::function<Status(int)> memory_op(Kind kind, int64_t bytes) {
    if (kind == Kind::copy) {
      const int64_t n = bytes / 4, slots = std::max<int64_t>(1, b_.ab_cap / n);
      return [this, n, slots](int j) {
        const int64_t at = (j % slots) * n;
        return ex_.copy(Stream::compute, {b_.b, at, n}, {b_.a, at, n}, "copy");
      };
    }
    const int64_t t = merge_tokens(bytes), h = g_.merge_heads, d = g_.merge_head_dim;
    const int64_t slots = std::max<int64_t>(1, b_.mo_cap / (t * h * d));
    return [this, t, h, d, slots](int j) {
      const int64_t slot = j % slots;
      MergeArgs m;
      m.o = dense_view(b_.mo, slot * t * h * d, 1, t, h, d);
      m.lse = dense_view(b_.ml, slot * t * h, 1, t, h, 1);
      m.part_o = dense_view(b_.po, slot * t * h * d, 1, t, h, d);
      m.part_lse = dense_view(b_.pl, slot * t * h, 1, t, h, 1);
      return ex_.merge(Stream::compute, m, "merge");
    };
  }

  Status measure_memory(std::vector<Series>& out, Kind kind) {
    std::string line;
    for (size_t i = 0; i < g_.mem_bytes.size(); ++i) {
      const int64_t bytes = g_.mem_bytes[i];
      const std::function<Status(int)> op = memory_op(kind, bytes);
      CPB_ASSIGN_OR_RETURN(
          Series s, time_op(kind, static_cast<int>(i), 0, g_.repeats, op, compute_head_start()));
      // Small ones, like the launch copies, behind a head start.
      if (g_.head_start && bytes <= g_.link_batch_bytes) {
        CPB_TRY(headed_op_times(s, g_.repeats, op, compute_head_start()));
      }
      const double med = summarize(s.gpu_s.empty() ? s.samples[0] : s.gpu_s).median;
      line += fmt::format("{}{} {:.0f} GB/s", line.empty() ? "" : ", ",
                          size_text(static_cast<double>(s.rec.mem_bytes)),
                          static_cast<double>(s.rec.mem_bytes) / med / 1e9);
      out.push_back(std::move(s));
    }
    say(fmt::format("{} (bytes touched, launch included): {}", kind_name(kind), line));
    return {};
  }

  AttnArgs attention_args(const AttentionShape& s, int64_t slot) const {
    const int64_t hkv = s.heads / s.gqa, d = s.head_dim;
    AttnArgs a;
    a.q = dense_view(b_.q, slot * s.sq * s.heads * d, 1, s.sq, s.heads, d);
    a.k = dense_view(b_.k, slot * s.sk * hkv * d, 1, s.sk, hkv, d);
    a.v = dense_view(b_.v, slot * s.sk * hkv * d, 1, s.sk, hkv, d);
    a.o = dense_view(b_.o, slot * s.sq * s.heads * d, 1, s.sq, s.heads, d);
    a.lse = dense_view(b_.lse, slot * s.sq * s.heads, 1, s.sq, s.heads, 1);
    a.mask.kind = s.causal ? BlockMask::Kind::causal : BlockMask::Kind::full;
    a.mask.diag = s.causal ? s.sk - s.sq : 0;  // queries last
    a.scale = 1.0 / std::sqrt(static_cast<double>(d));
    return a;
  }
  int64_t attention_slots(const AttentionShape& s) const {
    const int64_t hkv = s.heads / s.gqa, d = s.head_dim;
    return std::max<int64_t>(
        1, std::min({b_.q_cap / (s.sq * s.heads * d), b_.kv_cap / (s.sk * hkv * d),
                     b_.o_cap / (s.sq * s.heads * d), b_.lse_cap / (s.sq * s.heads)}));
  }

  // The op of an attention series: op j on the j-th slot of the buffers (warm: always the first).
  std::function<Status(int)> attention_op(const AttentionShape& s) {
    const int64_t slots = attention_slots(s);
    return [this, s, slots](int j) -> Status {
      // Shared blocks: an empty transfer first, so that every op of the sample is issued with a
      // transfer in flight (timer_start clears that state).
      if (s.shared && j == 0) CPB_TRY(ex_.p2p(Stream::comm, {}, "beside"));
      // Warm blocks: the same buffers every op, so that the inputs stay in L2.
      return ex_.attention(Stream::compute, attention_args(s, s.warm ? 0 : j % slots), "attention");
    };
  }

  Status measure_attention(std::vector<Series>& out) {
    const auto& shapes = g_.attention;
    // Progress once per (head_dim, gqa, heads) group.
    size_t group_begin = 0;
    int groups = 0, group = 0;
    auto same_group = [&](size_t a, size_t b) {
      return shapes[a].head_dim == shapes[b].head_dim && shapes[a].gqa == shapes[b].gqa &&
             shapes[a].heads == shapes[b].heads && shapes[a].shared == shapes[b].shared &&
             shapes[a].warm == shapes[b].warm;
    };
    for (size_t i = 0; i < shapes.size(); ++i)
      if (i == 0 || !same_group(i, i - 1)) ++groups;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const AttentionShape& s = shapes[i];
      CPB_ASSIGN_OR_RETURN(Series ser, time_op(Kind::attention, static_cast<int>(i), 0, g_.repeats,
                                               attention_op(s), compute_head_start()));
      out.push_back(std::move(ser));
      const bool last = i + 1 == shapes.size() || !same_group(i + 1, i);
      if (!last) continue;
      ++group;
      // The largest causal block of the group, as a sample of what was measured.
      std::string best;
      for (size_t j = out.size() - (i + 1 - group_begin); j < out.size(); ++j) {
        const Series& x = out[j];
        const AttentionShape& sh = shapes[static_cast<size_t>(x.index)];
        if (sh.causal)
          best = fmt::format("causal {}x{}: {:.4g} TF/s", tokens_text(sh.sq), tokens_text(sh.sk),
                             x.rec.flops / summarize(x.samples[0]).median / 1e12);
      }
      say(fmt::format("attention {}/{}: head_dim {} gqa {} heads {}{}: {} blocks, {}", group,
                      groups, s.head_dim, s.gqa, s.heads,
                      s.shared ? " (beside a transfer)"
                      : s.warm ? " (warm)"
                               : "",
                      i + 1 - group_begin, best));
      group_begin = i + 1;
    }
    return {};
  }

  // The op of a link series: `c` elements to each peer (sendrecv: to the next rank).
  std::function<Status(int)> link_op(Kind kind, int64_t c) {
    const int n = ex_.world(), r = ex_.rank();
    if (kind == Kind::sendrecv)
      return [this, c, n, r](int) {
        const P2POp ops[2] = {{P2POp::Kind::send, (r + 1) % n, {b_.a, 0, c}},
                              {P2POp::Kind::recv, (r + n - 1) % n, {b_.b, 0, c}}};
        return ex_.p2p(Stream::comm, ops, "sendrecv");
      };
    if (kind == Kind::all_to_all)
      return [this, c, n](int) {
        std::vector<Range> send, recv;
        for (int j = 0; j < n; ++j) {
          send.push_back({b_.a, j * c, c});
          recv.push_back({b_.b, j * c, c});
        }
        return ex_.all_to_all(Stream::comm, send, recv, "all_to_all");
      };
    return [this, c, n](int) {
      return ex_.all_gather(Stream::comm, {b_.a, 0, c}, {b_.b, 0, n * c}, "all_gather");
    };
  }

  Status measure_link(std::vector<Series>& out, Kind kind) {
    const int n = ex_.world();
    std::string line;
    for (size_t i = 0; i < g_.link_bytes.size(); ++i) {
      const int64_t c = chunk(kind, g_.link_bytes[i]);
      if (c < 1) continue;
      const std::function<Status(int)> op = link_op(kind, c);
      const int batch = g_.link_bytes[i] <= g_.link_batch_bytes ? g_.link_batch : 1;
      CPB_ASSIGN_OR_RETURN(Series s, time_op(kind, static_cast<int>(i), batch, g_.link_repeats, op,
                                             comm_head_start()));
      if (batch > 1 && g_.head_start) {
        CPB_TRY(headed_op_times(s, g_.link_repeats, op, comm_head_start()));
      }
      const double x = static_cast<double>(std::max(s.rec.bytes_sent, s.rec.bytes_recv));
      if (i == 0 || i + 1 == g_.link_bytes.size())
        line += fmt::format("{}{} {:.1f} us", line.empty() ? "" : " ... ", size_text(x),
                            summarize(s.samples[0]).median * 1e6);
      out.push_back(std::move(s));
    }
    say(fmt::format("{} on {} ranks (bytes sent per rank): {}", kind_name(kind), n, line));
    return {};
  }

  // Attention alone and with the ring's sendrecv of its K,V issued first on the comm stream,
  // alternated; both timed by the per-op trace marks.
  Status measure_share(std::vector<Series>& out) {
    const AttentionShape& s = g_.share;
    const int n = ex_.world(), r = ex_.rank();
    const int64_t c = kv_bytes(s) / 2;
    Series ser;
    ser.kind = Kind::share;
    ser.samples.resize(4);
    // 0: attention alone, 1: attention beside the sendrecv, 2: the transfer alone.
    auto one = [&](int mode) -> Status {
      const bool shared = mode == 1, attend = mode != 2;
      CPB_TRY(ex_.barrier());
      ex_.begin_iteration();
      ex_.set_tracing(true);
      CPB_TRY(ex_.timer_start());
      if (!attend || shared) {
        const P2POp ops[2] = {{P2POp::Kind::send, (r + 1) % n, {b_.a, 0, c}},
                              {P2POp::Kind::recv, (r + n - 1) % n, {b_.b, 0, c}}};
        CPB_TRY(ex_.p2p(Stream::comm, ops, "sendrecv"));
      }
      if (attend) {
        ex_.reset_accounting();
        ex_.set_logging(true);
        Status att = ex_.attention(Stream::compute, attention_args(s, 0), "attention");
        ex_.set_logging(false);
        CPB_TRY(att);
        ser.rec = ex_.accounting().log.back();
      }
      CPB_TRY(ex_.timer_stop());
      CPB_TRY(ex_.resolve_trace());
      ex_.set_tracing(false);
      for (const auto& t : ex_.trace()) {
        if (t.kind == OpKind::attention) ser.samples[shared ? 1 : 0].push_back(t.end_s - t.begin_s);
        if (t.kind == OpKind::p2p) ser.samples[shared ? 2 : 3].push_back(t.end_s - t.begin_s);
      }
      return {};
    };
    for (int w = 0; w < g_.warmup; ++w) {
      for (int mode : {0, 1, 2}) CPB_TRY(one(mode));
      for (auto& v : ser.samples) v.clear();
    }
    for (int i = 0; i < g_.link_repeats; ++i)
      for (int mode : {0, 1, 2}) CPB_TRY(one(mode));
    const double alone = summarize(ser.samples[0]).median,
                 beside = summarize(ser.samples[1]).median;
    say(fmt::format(
        "share: causal {}x{} heads {} d{} on rank {}: {:.3f} ms alone, {:.3f} ms "
        "beside a {} sendrecv ({:.3f}); the sendrecv {:.3f} ms beside it, {:.3f} ms "
        "alone",
        tokens_text(s.sq), tokens_text(s.sk), s.heads, s.head_dim, r, alone * 1e3, beside * 1e3,
        size_text(static_cast<double>(2 * c)), beside / alone,
        summarize(ser.samples[2]).median * 1e3, summarize(ser.samples[3]).median * 1e3));
    out.push_back(std::move(ser));
    return {};
  }

  // Each sustained run: after g_.cooldown_s of idle, its block `ops` times one by one, each
  // followed by idle so that the GPU is busy `duty` of the time; each op's time and its start
  // (seconds since the load began).
  Status measure_sustained(std::vector<Series>& out) {
    for (size_t i = 0; i < g_.sustained.size(); ++i) {
      const AttentionShape& s = g_.sustained[i].block;
      const double duty = g_.sustained[i].duty;
      auto op = [&](int) {
        return ex_.attention(Stream::compute, attention_args(s, 0), "attention");
      };
      Series ser;
      ser.kind = Kind::sustained;
      ser.index = static_cast<int>(i);
      ser.samples.resize(2);
      CPB_TRY(ex_.barrier());
      std::this_thread::sleep_for(std::chrono::duration<double>(g_.cooldown_s));
      const auto start = Clock::now();
      for (int k = 0; k < g_.sustained[i].ops; ++k) {
        const double at = std::chrono::duration<double>(Clock::now() - start).count();
        CPB_ASSIGN_OR_RETURN(double t, sample(1, op, /*idle=*/false));
        ser.samples[0].push_back(t);
        ser.samples[1].push_back(at);
        if (duty < 1)
          std::this_thread::sleep_for(std::chrono::duration<double>(t * (1 / duty - 1)));
      }
      const std::vector<double>& v = ser.samples[0];
      const size_t q = std::max<size_t>(1, v.size() / 4);
      say(fmt::format(
          "sustained: causal {}x{} heads {} d{} at duty {:.2f}: {} ops, the first "
          "quarter {:.3f} ms, the last {:.3f} ms (median) on rank {}",
          tokens_text(s.sq), tokens_text(s.sk), s.heads, s.head_dim, duty, v.size(),
          summarize({v.begin(), v.begin() + static_cast<std::ptrdiff_t>(q)}).median * 1e3,
          summarize({v.end() - static_cast<std::ptrdiff_t>(q), v.end()}).median * 1e3, ex_.rank()));
      out.push_back(std::move(ser));
    }
    return {};
  }

  Executor& ex_;
  const Grid& g_;
  std::function<void(const std::string&)> say_;
  Clock::time_point t0_;
  Buffers b_;
};

// ---------------------------------------------------------------------------------------------
// From the ranks' series to the profile.

// One series over ranks: sample i is the largest of the ranks' sample i.
std::vector<double> max_over_ranks(const std::vector<std::vector<Series>>& ranks, size_t at,
                                   size_t list) {
  std::vector<double> out = ranks[0][at].samples[list];
  for (const auto& r : ranks)
    for (size_t i = 0; i < out.size() && i < r[at].samples[list].size(); ++i)
      out[i] = std::max(out[i], r[at].samples[list][i]);
  return out;
}

// The same for a per-rank list of a series' other than its samples (empty if a rank has none).
std::vector<double> max_over_ranks_of(const std::vector<std::vector<Series>>& ranks, size_t at,
                                      std::vector<double> Series::*list) {
  std::vector<double> out = ranks[0][at].*list;
  for (const auto& r : ranks) {
    if ((r[at].*list).empty()) return {};
    for (size_t i = 0; i < out.size() && i < (r[at].*list).size(); ++i)
      out[i] = std::max(out[i], (r[at].*list)[i]);
  }
  return out;
}

nlohmann::json record_json(const OpRecord& rec) {
  return {{"bytes_sent", rec.bytes_sent},
          {"bytes_recv", rec.bytes_recv},
          {"flops", rec.flops},
          {"mem_bytes", rec.mem_bytes}};
}

// A series' issue costs into its JSON and, by the kind of call, into `by_kind` (series timed by
// time_op only: share and sustained have none). The median over ranks: each rank's host issues
// its own ops (the maximum overstated the strategies' per-call costs). The cross-stream chain
// gives the event calls' (its copies are the launch copies again).
void add_issue_costs(nlohmann::json& j, const std::vector<std::vector<Series>>& ranks, size_t at,
                     std::map<std::string, std::vector<double>>& by_kind) {
  auto issue_median = [&](double Series::*field) {
    std::vector<double> per_rank;
    for (const auto& r : ranks)
      if (r[at].*field > 0) per_rank.push_back(r[at].*field);
    return per_rank.empty() ? 0.0 : summarize(per_rank).median;
  };
  const Series& s = ranks[0][at];
  const bool events = s.kind == Kind::wait;
  const double issue = issue_median(events ? &Series::event_issue_s : &Series::issue_s);
  if (issue <= 0) return;
  j[events ? "event_issue_us" : "issue_us"] = issue * 1e6;
  j[events ? "event_issue_isolated_us" : "issue_isolated_us"] =
      issue_median(events ? &Series::event_issue_isolated_s : &Series::issue_isolated_s) * 1e6;
  if (const double st = issue_median(&Series::issue_staggered_s); st > 0 && !events)
    j["issue_staggered_us"] = st * 1e6;
  by_kind[events ? "event" : std::string(to_string(s.rec.kind))].push_back(issue);
}

std::string num(double x) {
  return fmt::format("{:.5g}", x);
}

std::string flow_list(const std::vector<double>& v, bool whole) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i)
    s += (i ? ", " : "") + (whole ? fmt::format("{}", static_cast<int64_t>(v[i])) : num(v[i]));
  return s + "]";
}

std::string yaml_quoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The machine in words and a profile name from it.
std::pair<std::string, std::string> describe_machine(const std::string& backend, int world,
                                                     const nlohmann::json& prov) {
  if (backend == "cuda") {
    const nlohmann::json info = backend_info("cuda");
    std::string gpu = "GPU";
    if (info.contains("gpus") && !info["gpus"].empty())
      gpu = info["gpus"][0].value("name", std::string("GPU"));
    // "NVIDIA H100 80GB HBM3" -> "h100": the first word with a digit.
    std::string slug = "gpu";
    size_t pos = 0;
    while (pos < gpu.size()) {
      const size_t end = std::min(gpu.find(' ', pos), gpu.size());
      const std::string word = gpu.substr(pos, end - pos);
      if (std::any_of(word.begin(), word.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
        slug.clear();
        for (char ch : word)
          slug += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        break;
      }
      pos = end + 1;
    }
    return {fmt::format("{}x {}", world, gpu), fmt::format("{}x{}", slug, world)};
  }
  const std::string cpu = prov["cpu"].value("model", std::string("unknown CPU"));
  return {fmt::format("cpu backend, {} rank threads on {}", world, cpu),
          fmt::format("cpu-x{}", world)};
}

}  // namespace

Grid default_grid(bool quick, bool gpu) {
  Grid g;
  if (gpu) {
    const bool all = !quick;
    g.attention =
        all ? attention_grid(powers(1024, 64 * 1024, 2), {64, 128}, {1, 4, 8, 16}, {8, 16, 32},
                             {1, 16, 128, 512, 2048}, powers(1024, 64 * 1024, 4))
            : attention_grid({1024, 2048}, {64, 128}, {1, 4}, {8}, {1}, {2048});
    if (all) {
      // The generic kernel's blocks (head_dim < 64): a warp per query row walks its keys, so
      // a block that fills one wave takes the time of its longest row whatever its Sq; the
      // full rectangle of Sq x Sk lets the model interpolate that (squares and 1:2 blocks
      // alone mispriced the quickstart's 15-120 query blocks by 0.77-1.75x).
      std::vector<int64_t> sq = powers(16, 1024, 2), sk = powers(16, 1024, 2);
      sq.insert(sq.begin(), 1);
      sk.push_back(4096);
      const auto small = rect_grid(sq, sk, {16, 32}, {1, 2}, {8, 32, 128});
      const auto warm = warm_copies(small);
      g.attention.insert(g.attention.end(), small.begin(), small.end());
      g.attention.insert(g.attention.end(), warm.begin(), warm.end());
    }
    add_shared_squares(g.attention);
    g.link_bytes = powers(all ? kKiB : 64 * kKiB, all ? kGiB : 4 * kMiB, 4);
    g.mem_bytes = powers(all ? 16 * kKiB : kMiB, all ? 4 * kGiB : 16 * kMiB, 4);
    const int64_t share_tokens = all ? 16384 : 2048;
    g.share = {true, 128, 1, all ? 32 : 8, share_tokens, share_tokens};
    g.merge_heads = 8;
    g.merge_head_dim = 128;
    g.launch_elems = 256;
    g.launch_ops = all ? 200 : 50;
    g.warmup = 1;
    g.repeats = all ? 5 : 3;
    g.link_repeats = all ? 20 : 5;
    g.link_batch = 20;
    g.link_batch_bytes = kMiB;
    g.head_start = true;
    g.head_start_block = g.share;  // 16K causal: ~3 ms, ahead of 256 launches' issue
    g.head_start_bytes = all ? 256 * kMiB : 4 * kMiB;
    g.issue_samples = 5;
    g.issue_burst = 8;
    g.issue_max_flops = 4e9;  // the generic kernel's blocks up to ~1 ms
    g.issue_max_bytes = 64 * kMiB;
    g.issue_staggered = true;
    g.issue_ranks = true;
    g.lone_tables = true;
    g.sample_s = all ? 2e-3 : 0.5e-3;
    g.idle_ratio = all ? 1.0 : 0.0;
    if (all) {
      const AttentionShape big = {true, 128, 1, 32, 64 * 1024, 64 * 1024};
      g.sustained = {{g.share, 1.0, 800},
                     {g.share, 0.75, 400},
                     {g.share, 0.5, 400},
                     {big, 1.0, 60},
                     {big, 0.75, 30}};
    } else {
      g.sustained = {{g.share, 1.0, 20}};
    }
    g.cooldown_s = all ? 2.0 : 0.2;
    g.max_batch = all ? 256 : 64;
    g.rotate_bytes = (all ? 256 : 64) * kMiB;
  } else {
    // The cpu backend: fp32 attention on host threads, so small blocks.
    g.attention = quick ? attention_grid({64, 128}, {64}, {1, 2}, {2}, {1}, {128})
                        : attention_grid({64, 128, 256}, {64}, {1, 2}, {2, 4}, {1, 4}, {64, 256});
    const auto small = rect_grid({1, 16, 32}, {16, 32, 64}, {16}, {1}, {2});
    const auto warm = warm_copies(small);
    g.attention.insert(g.attention.end(), small.begin(), small.end());
    g.attention.insert(g.attention.end(), warm.begin(), warm.end());
    add_shared_squares(g.attention);
    g.link_bytes = quick ? powers(4 * kKiB, 64 * kKiB, 4) : powers(4 * kKiB, kMiB, 4);
    g.link_batch = 8;  // the smallest sizes batched: the head-start path runs here too
    g.link_batch_bytes = 16 * kKiB;
    // Pointless where ops run inside the call, but the path is tested here; the head is tiny, so
    // that its noise stays below a batch's time.
    g.head_start = true;
    g.head_start_bytes = kKiB;
    g.issue_samples = 2;  // measured here too (the path is tested), never written: see issue_us
    g.issue_burst = 2;
    g.issue_max_flops = 1e8;
    g.issue_max_bytes = kMiB;
    g.issue_staggered = true;
    g.issue_ranks = true;
    g.lone_tables = true;
    g.mem_bytes = quick ? powers(64 * kKiB, kMiB, 4) : powers(64 * kKiB, 4 * kMiB, 4);
    g.share = {true, 64, 1, 2, quick ? 128 : 256, quick ? 128 : 256};
    g.head_start_block = {true, 64, 1, 1, 16, 16};
    g.merge_heads = 2;
    g.merge_head_dim = 64;
    g.launch_elems = 64;
    g.launch_ops = quick ? 20 : 50;
    g.warmup = 1;
    g.repeats = 3;
    g.link_repeats = quick ? 3 : 5;
    g.sample_s = 1e-3;
    g.max_batch = 8;
    g.rotate_bytes = 0;
    g.sustained = quick ? std::vector<Grid::SustainedRun>{{g.share, 1.0, 3}}
                        : std::vector<Grid::SustainedRun>{{g.share, 1.0, 4}, {g.share, 0.5, 4}};
  }
  return g;
}

nlohmann::json to_json(const Grid& g) {
  nlohmann::json sustained = nlohmann::json::array();
  for (const auto& r : g.sustained)
    sustained.push_back({{"block",
                          {mask_name(r.block.causal), r.block.head_dim, r.block.gqa, r.block.heads,
                           r.block.sq, r.block.sk}},
                         {"duty", r.duty},
                         {"ops", r.ops}});
  const auto shape_json = [](const AttentionShape& a) -> nlohmann::json {
    return {{"mask", mask_name(a.causal)},
            {"head_dim", a.head_dim},
            {"gqa", a.gqa},
            {"heads", a.heads},
            {"sq", a.sq},
            {"sk", a.sk}};
  };
  nlohmann::json att = nlohmann::json::array();
  for (const auto& s : g.attention)
    att.push_back({mask_name(s.causal), s.head_dim, s.gqa, s.heads, s.sq, s.sk, s.shared, s.warm});
  return {{"attention_columns", {"mask", "head_dim", "gqa", "heads", "sq", "sk", "shared", "warm"}},
          {"attention", att},
          {"link_bytes", g.link_bytes},
          {"mem_bytes", g.mem_bytes},
          {"merge_shape", {{"heads", g.merge_heads}, {"head_dim", g.merge_head_dim}}},
          {"share", shape_json(g.share)},
          {"launch", {{"elems", g.launch_elems}, {"ops", g.launch_ops}}},
          {"warmup", g.warmup},
          {"repeats", g.repeats},
          {"link_repeats", g.link_repeats},
          {"link_batch", g.link_batch},
          {"link_batch_bytes", g.link_batch_bytes},
          {"head_start", g.head_start},
          {"head_start_block", shape_json(g.head_start_block)},
          {"head_start_bytes", g.head_start_bytes},
          {"issue_samples", g.issue_samples},
          {"issue_burst", g.issue_burst},
          {"issue_max_flops", g.issue_max_flops},
          {"issue_max_bytes", g.issue_max_bytes},
          {"issue_staggered", g.issue_staggered},
          {"issue_ranks", g.issue_ranks},
          {"lone_tables", g.lone_tables},
          {"sample_s", g.sample_s},
          {"idle_ratio", g.idle_ratio},
          {"sustained", sustained},
          {"cooldown_s", g.cooldown_s},
          {"max_batch", g.max_batch},
          {"rotate_bytes", g.rotate_bytes}};
}

Expected<Plan> check(const Options& o) {
  Plan p;
  CPB_REQUIRE(o.backend == "cuda" || o.backend == "cpu",
              "--backend '{}': calibrate measures cuda (GPUs) or cpu (the reference, for tests)",
              o.backend);
  CPB_REQUIRE(!mpi::active(),
              "calibrate runs every rank in one process (a thread per GPU): drop mpirun");
  CPB_REQUIRE(o.gpus >= 0, "--gpus must be >= 1 (got {})", o.gpus);
  p.backend = o.backend;
  if (o.backend == "cuda") {
    const int visible = usable_gpus();
    if (visible == 0) {
      CPB_TRY(check_backend("cuda", 0));  // says when the build has no cuda backend
      return CPB_ERROR("--backend cuda: no GPU visible: use --backend cpu");
    }
    CPB_REQUIRE(o.gpus <= visible, "--gpus {}: only {} GPU(s) visible: use --gpus {} or fewer",
                o.gpus, visible, visible);
    p.world = o.gpus > 0 ? o.gpus : visible;
  } else {
    p.world = o.gpus > 0 ? o.gpus : 2;
  }
  CPB_REQUIRE(!o.out.empty(), "--out: give the profile's path, e.g. --out results/profiles/x.yaml");
  const fs::path out(o.out);
  const std::string ext = out.extension().string();
  CPB_REQUIRE(ext == ".yaml" || ext == ".yml",
              "--out {}: a profile is a .yaml file (its raw samples go beside it as .json and "
              ".series.jsonl)",
              o.out);
  std::error_code ec;
  CPB_REQUIRE(!fs::is_directory(out, ec), "--out {}: is a folder: give a .yaml file path", o.out);
  const fs::path dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
  CPB_REQUIRE(fs::is_directory(dir, ec), "--out {}: the folder {} does not exist: create it first",
              o.out, dir.string());
  // Can a new file be made there? (A read-only file system or folder fails here, not after the
  // measurements.)
  const fs::path probe = dir / fmt::format(".cpbench-calibrate-probe-{}", ::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  CPB_REQUIRE(fd >= 0, "--out {}: cannot write in {}: {}", o.out, dir.string(),
              std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
  for (const fs::path& f : {out, fs::path(out).replace_extension(".json"),
                            fs::path(out).replace_extension(".series.jsonl")})
    if (fs::exists(f, ec))
      CPB_REQUIRE(::access(f.c_str(), W_OK) == 0, "--out: {} exists and cannot be replaced: {}",
                  f.string(), std::strerror(errno));
  p.yaml_path = out.string();
  p.json_path = fs::path(out).replace_extension(".json").string();
  p.series_path = fs::path(out).replace_extension(".series.jsonl").string();
  const nlohmann::json prov = collect_provenance(0, nullptr);
  auto [machine, name] = describe_machine(p.backend, p.world, prov);
  p.machine = o.machine.empty() ? machine : o.machine;
  p.name = o.name.empty() ? name : o.name;
  CPB_REQUIRE(
      std::none_of(p.name.begin(), p.name.end(), [](char ch) { return ch == '\n' || ch == '\r'; }),
      "--name: one line of text");
  return p;
}

Expected<Summary> run(const Options& o) {
  CPB_ASSIGN_OR_RETURN(Plan plan, check(o));
  const auto start = Clock::now();
  const bool gpu = plan.backend == "cuda";
  const Grid grid = default_grid(o.quick, gpu);
  auto say = [&](const std::string& s) {
    if (o.progress == nullptr) return;
    std::fprintf(o.progress, "%s\n", s.c_str());
    std::fflush(o.progress);
  };
  say(
      fmt::format("calibrate: {} ({}), {} grid: {} attention blocks, {} link sizes x 3, {} "
                  "copy/merge sizes",
                  plan.machine, plan.backend, o.quick ? "quick" : "default", grid.attention.size(),
                  plan.world > 1 ? grid.link_bytes.size() : 0, grid.mem_bytes.size()));
  CPB_ASSIGN_OR_RETURN(auto backend,
                       make_backend(plan.backend, plan.world, DType::bf16, o.timeout_s));
  std::vector<std::vector<Series>> ranks(static_cast<size_t>(plan.world));
  CPB_TRY(backend->run([&](Executor& ex) -> Status {
    RankRun rr(ex, grid, [&, rank = ex.rank()](const std::string& s) {
      if (rank == 0) say(s);
    });
    return rr.run(ranks[static_cast<size_t>(ex.rank())]);
  }));
  for (const auto& r : ranks)
    CPB_REQUIRE(r.size() == ranks[0].size(), "internal: the ranks measured different series");
  // Grid::issue_ranks: the issue costs in runs of 1 .. world-1 ranks, each its own backend, as a
  // sweep's point of that many ranks runs (its own communicators and host threads).
  std::map<int, std::vector<std::vector<Series>>> fewer;
  if (grid.issue_ranks && plan.world > 1) {
    backend.reset();  // the main run's communicators first
    for (int m = 1; m < plan.world; ++m) {
      CPB_ASSIGN_OR_RETURN(auto sub, make_backend(plan.backend, m, DType::bf16, o.timeout_s));
      auto& rs = fewer[m];
      rs.resize(static_cast<size_t>(m));
      CPB_TRY(sub->run([&](Executor& ex) -> Status {
        RankRun rr(ex, grid, [](const std::string&) {});
        return rr.run_issue(rs[static_cast<size_t>(ex.rank())]);
      }));
      for (const auto& r : rs)
        CPB_REQUIRE(r.size() == rs[0].size(), "internal: the ranks measured different series");
      say(fmt::format("issue costs on {} rank(s): {} series", m, rs[0].size()));
    }
  }

  // --- reduce ---
  std::vector<std::string> notes;
  nlohmann::json raw = nlohmann::json::array();
  auto samples_json = [&](size_t at, size_t list) {
    nlohmann::json per_rank = nlohmann::json::array();
    for (const auto& r : ranks) per_rank.push_back(r[at].samples[list]);
    return per_rank;
  };
  double launch_s = 0, lead_s = 0, wait_s = 0;
  struct Point {
    double x, y;
  };
  std::map<Kind, std::vector<Point>> curves;  // links: (bytes, us); memory: (bytes, GB/s)
  std::vector<AttentionPoint> points;
  int floored = 0, head_noisy = 0;
  double share_alone = 0, share_beside = 0, transfer_beside = 0, transfer_alone = 0;
  // Each grid block's median time (the sustained curves' reference) and those curves.
  std::map<std::tuple<bool, int64_t, int64_t, int64_t, int64_t, int64_t, bool, bool>, double>
      grid_s;
  auto shape_key = [](const AttentionShape& a) {
    return std::tuple{a.causal, a.head_dim, a.gqa, a.heads, a.sq, a.sk, a.shared, a.warm};
  };
  std::vector<SustainedCurve> sustained;
  // The host's issue time per call of each op kind, one value per series (the median rank's).
  std::map<std::string, std::vector<double>> issue_by_kind;
  double sendrecv_bw = 0, copy_read_bw = 0;
  for (size_t at = 0; at < ranks[0].size(); ++at) {
    const Series& s = ranks[0][at];
    // Series timed behind a head start (launch, small copies and merges, batched link sizes): the
    // per-op times on the GPU with the queue full (the slowest rank's, pair by pair) where the
    // back-to-back wall time can be the host's issue rate. Where any rank's head start was
    // noisier than the batch (no values), the wall time stands for every rank.
    const bool noisy =
        std::any_of(ranks.begin(), ranks.end(), [&](const auto& r) { return r[at].head_noisy; });
    std::vector<double> on_gpu = noisy ? std::vector<double>{} : s.gpu_s;
    for (const auto& r : ranks)
      for (size_t i = 0; i < on_gpu.size() && i < r[at].gpu_s.size(); ++i)
        on_gpu[i] = std::max(on_gpu[i], r[at].gpu_s[i]);
    std::vector<double> v = on_gpu.empty() ? max_over_ranks(ranks, at, 0) : on_gpu;
    // Grid::lone_tables: a cold block's or a batched transfer's table from its samples of one op.
    const std::vector<double> lone = max_over_ranks_of(ranks, at, &Series::lone_s);
    const bool link =
        s.kind == Kind::sendrecv || s.kind == Kind::all_to_all || s.kind == Kind::all_gather;
    const bool by_lone =
        grid.lone_tables && !lone.empty() &&
        ((s.kind == Kind::attention && !grid.attention[static_cast<size_t>(s.index)].shared &&
          !grid.attention[static_cast<size_t>(s.index)].warm) ||
         (link && s.batch > 1));
    std::vector<double> batch_v;
    if (by_lone) batch_v = std::exchange(v, lone);
    const TimeStats st = summarize(v);
    nlohmann::json j = {{"kind", kind_name(s.kind)},    {"batch", s.batch},
                        {"record", record_json(s.rec)}, {"seconds_per_op", v},
                        {"stats", to_json(st)},         {"per_rank", samples_json(at, 0)}};
    if (!on_gpu.empty()) {
      const std::vector<double> wall = max_over_ranks(ranks, at, 0);
      j["seconds_per_op_from"] =
          "head start: (head + batch - head alone) / batch by the wall clock, a value per pair of "
          "samples, the slowest rank's";
      j["wall_seconds_per_op"] = wall;
      j["wall_stats"] = to_json(summarize(wall));
    }
    if (noisy) {
      j["head_start_noisy"] = true;
      ++head_noisy;
    }
    if (!lone.empty()) {
      j["lone_seconds_per_op"] = lone;
      j["lone_stats"] = to_json(summarize(lone));
    }
    if (by_lone) {
      j["seconds_per_op_from"] =
          "lone: one op a sample after the timer's L2 flush (the issue samples), the slowest "
          "rank's";
      j["batch_seconds_per_op"] = batch_v;
      j["batch_stats"] = to_json(summarize(batch_v));
    }
    add_issue_costs(j, ranks, at, issue_by_kind);
    CPB_REQUIRE(st.median > 0 || s.kind == Kind::lead,
                "the {} clock gave no time to {} (sample {}): it is too coarse", plan.backend,
                kind_name(s.kind), at);
    // The table's time: the measured one less the launch cost the model adds back.
    double table_s = st.median - launch_s;
    if (s.kind != Kind::launch && s.kind != Kind::share && s.kind != Kind::sustained &&
        s.kind != Kind::lead && s.kind != Kind::wait && table_s < kMinTableShare * st.median) {
      table_s = kMinTableShare * st.median;
      j["floored"] = true;
      ++floored;
    }
    switch (s.kind) {
      case Kind::launch:
        launch_s = st.median;
        j["launch_us"] = launch_s * 1e6;
        break;
      case Kind::lead:
        lead_s = st.median;
        j["issue_lead_us"] = lead_s * 1e6;
        break;
      case Kind::wait:
        // A copy that waited on the other stream's: its time over a copy's (0 where less).
        wait_s = std::max(0.0, st.median - launch_s);
        j["wait_us"] = wait_s * 1e6;
        break;
      case Kind::copy:
      case Kind::merge: {
        const double x = static_cast<double>(s.rec.mem_bytes);
        curves[s.kind].push_back({x, x / table_s / 1e9});
        j["bytes"] = x;
        j["gbps"] = x / table_s / 1e9;
        if (s.kind == Kind::copy) copy_read_bw = x / 2 / st.median / 1e9;
        break;
      }
      case Kind::attention: {
        const AttentionShape& sh = grid.attention[static_cast<size_t>(s.index)];
        AttentionPoint p;
        p.causal = sh.causal && block_pairs(s.rec.mask, sh.sq, sh.sk) < sh.sq * sh.sk;
        p.head_dim = sh.head_dim;
        p.gqa = static_cast<double>(sh.gqa);
        p.heads = sh.heads;
        p.sq = sh.sq;
        p.sk = sh.sk;
        p.shared = sh.shared;
        p.warm = sh.warm;
        p.tflops = s.rec.flops / table_s / 1e12;
        points.push_back(p);
        grid_s[shape_key(sh)] = st.median;
        j["shape"] = {{"mask", mask_name(p.causal)},
                      {"head_dim", sh.head_dim},
                      {"gqa", sh.gqa},
                      {"heads", sh.heads},
                      {"sq", sh.sq},
                      {"sk", sh.sk},
                      {"shared", sh.shared},
                      {"warm", sh.warm}};
        j["tflops"] = p.tflops;
        break;
      }
      case Kind::sendrecv:
      case Kind::all_to_all:
      case Kind::all_gather: {
        const double x = static_cast<double>(s.kind == Kind::sendrecv
                                                 ? std::max(s.rec.bytes_sent, s.rec.bytes_recv)
                                                 : s.rec.bytes_sent);
        curves[s.kind].push_back({x, table_s * 1e6});
        j["bytes"] = x;
        j["us"] = table_s * 1e6;
        if (s.kind == Kind::sendrecv) sendrecv_bw = x / st.median / 1e9;
        break;
      }
      case Kind::share: {
        const std::vector<double> beside = max_over_ranks(ranks, at, 1),
                                  transfer = max_over_ranks(ranks, at, 2),
                                  transfer_solo = max_over_ranks(ranks, at, 3);
        share_alone = st.median;
        share_beside = summarize(beside).median;
        transfer_beside = summarize(transfer).median;
        transfer_alone = summarize(transfer_solo).median;
        j.erase("seconds_per_op");
        j.erase("stats");
        j.erase("per_rank");
        j["attention_alone_s"] = {
            {"samples", v}, {"stats", to_json(st)}, {"per_rank", samples_json(at, 0)}};
        j["attention_beside_sendrecv_s"] = {{"samples", beside},
                                            {"stats", to_json(summarize(beside))},
                                            {"per_rank", samples_json(at, 1)}};
        j["sendrecv_beside_attention_s"] = {{"samples", transfer},
                                            {"stats", to_json(summarize(transfer))},
                                            {"per_rank", samples_json(at, 2)}};
        j["sendrecv_alone_s"] = {{"samples", transfer_solo},
                                 {"stats", to_json(summarize(transfer_solo))},
                                 {"per_rank", samples_json(at, 3)}};
        const AttentionShape& g = grid.share;
        j["sendrecv_bytes"] = 2 * g.sk * (g.heads / g.gqa) * g.head_dim * 2;
        break;
      }
      case Kind::sustained: {
        // Op times: the slowest rank's; start times: rank 0's (the ranks run in step).
        const Grid::SustainedRun& run = grid.sustained[static_cast<size_t>(s.index)];
        const double duty = run.duty;
        const std::vector<double>& began = s.samples[1];
        const auto ref = grid_s.find(shape_key(run.block));
        CPB_REQUIRE(ref != grid_s.end(),
                    "internal: a sustained block is not in the attention grid");
        const double share_grid_s = ref->second;
        SustainedCurve c;
        c.duty = duty;
        c.tokens = run.block.sq;
        for (size_t b = 0; b + 1 < std::size(kSustainedBins); ++b) {
          std::vector<double> t, x;
          for (size_t i = 0; i < v.size() && i < began.size(); ++i)
            if (began[i] >= kSustainedBins[b] && began[i] < kSustainedBins[b + 1]) {
              t.push_back(v[i]);
              x.push_back(began[i]);
            }
          if (t.empty()) continue;
          c.slowdown.x.push_back(summarize(x).median);
          // Within the schema's bounds (a wild sample must not void the whole calibration).
          c.slowdown.y.push_back(std::clamp(summarize(t).median / share_grid_s, 0.01, 10.0));
        }
        j["duty"] = duty;
        j["start_s"] = began;
        j["grid_block_s"] = share_grid_s;
        j["seconds"] = c.slowdown.x;
        j["slowdown"] = c.slowdown.y;
        sustained.push_back(std::move(c));
        break;
      }
    }
    raw.push_back(std::move(j));
  }
  // The runs of fewer ranks: their issue costs only (a series a line, with its rank count).
  std::map<int, std::map<std::string, double>> issue_ranks_us;
  for (const auto& [m, rs] : fewer) {
    std::map<std::string, std::vector<double>> by_kind;
    for (size_t at = 0; at < rs[0].size(); ++at) {
      const Series& s = rs[0][at];
      nlohmann::json j = {{"kind", kind_name(s.kind)},
                          {"ranks", m},
                          {"batch", s.batch},
                          {"record", record_json(s.rec)}};
      add_issue_costs(j, rs, at, by_kind);
      raw.push_back(std::move(j));
    }
    for (const auto& [k, v] : by_kind) issue_ranks_us[m][k] = summarize(v).median * 1e6;
  }
  if (head_noisy > 0)
    notes.push_back(fmt::format(
        "{} series timed behind a head start kept their back-to-back wall time: the head's "
        "noise exceeded the batch (flagged `head_start_noisy` in the JSON)",
        head_noisy));
  if (floored > 0)
    notes.push_back(fmt::format(
        "{} op(s) took hardly more than launch_us: their table time is floored at {:.0f}% of "
        "the measured time (flagged `floored` in the JSON)",
        floored, 100 * kMinTableShare));

  double share = 1;
  if (plan.world > 1 && share_alone > 0) {
    share = share_beside / share_alone;
    if (share < 1) {
      notes.push_back(
          fmt::format("share_factor measured {:.4f} < 1 (attention ran no slower beside the "
                      "transfer); written as 1, the schema's minimum",
                      share));
      share = 1;
    } else if (share > 10) {
      notes.push_back(
          fmt::format("share_factor measured {:.3f}; written as the schema's 10", share));
      share = 10;
    }
  } else {
    notes.push_back("1 rank: no link measured (no links: section) and share_factor 1");
  }
  double comm_share = 1;
  if (plan.world > 1 && transfer_alone > 0) {
    comm_share = std::clamp(transfer_beside / transfer_alone, 1.0, 10.0);
    if (comm_share != transfer_beside / transfer_alone)
      notes.push_back(
          fmt::format("comm_share_factor measured {:.4f}; written as {:g}, the schema's "
                      "bound",
                      transfer_beside / transfer_alone, comm_share));
  }
  // auto's C: the best causal rate at the largest causal block.
  int64_t largest = 0;
  for (const auto& p : points)
    if (p.causal && !p.shared && !p.warm && p.sq == p.sk) largest = std::max(largest, p.sq);
  double peak = 0;
  for (const auto& p : points)
    if (p.causal && !p.shared && !p.warm && p.sq == p.sk && p.sq == largest)
      peak = std::max(peak, p.tflops);
  if (peak <= 0)
    for (const auto& p : points) peak = std::max(peak, p.tflops);
  double bw = sendrecv_bw;
  if (plan.world == 1) {
    bw = copy_read_bw;
    notes.push_back(
        "1 rank: bandwidth_gbps is the device-local copy rate (bytes read per second at the "
        "largest copy), a placeholder: calibrate on >= 2 GPUs for the ring link");
  }

  // --- render ---
  const nlohmann::json prov = collect_provenance(0, nullptr);
  nlohmann::json prov_full = prov;
  {
    std::vector<std::string> args = o.argv;
    prov_full["argv"] = args;
    prov_full["repro"] = shell_join(args);
  }
  const std::string sha = prov["git"].value("sha", std::string("unknown"));
  const auto dirty = prov["git"]["dirty"];
  const std::string when = utc_iso8601();
  const std::string json_name = fs::path(plan.json_path).filename().string() + " and " +
                                fs::path(plan.series_path).filename().string();
  const std::string source =
      fmt::format("measured by `cpbench calibrate{}` on {} on {}, git {}{}; raw samples: {}",
                  o.quick ? " --quick" : "", when, plan.machine, sha,
                  dirty.is_boolean() && dirty.get<bool>() ? " (dirty)" : "", json_name);
  std::vector<std::string> lines = {
      "# Generated by `cpbench calibrate` (do not edit: rerun it). Schema:",
      "# harness/core/hardware_profile.hpp; every sample behind these numbers: " + json_name,
      "name: " + yaml_quoted(plan.name),
      "description: " + yaml_quoted(fmt::format("{}, measured by cpbench calibrate", plan.machine)),
      "machine: " + yaml_quoted(plan.machine),
      "source: " + yaml_quoted(source),
      "peak_tflops: " + num(peak),
      "bandwidth_gbps: " + num(bw),
      "launch_us: " + num(launch_s * 1e6),
      "share_factor: " + num(share),
      "comm_share_factor: " + num(comm_share),
  };
  // The cpu backend runs each op inside the call that issues it: its issue time is the op's, and
  // its streams are one (no cross-stream latency).
  if (gpu) lines.push_back("wait_us: " + num(wait_s * 1e6));
  if (gpu && !issue_by_kind.empty()) {
    std::vector<std::string> parts;
    for (const auto& [k, v] : issue_by_kind)
      parts.push_back(k + ": " + num(summarize(v).median * 1e6));
    lines.push_back(fmt::format("issue_us: {{{}}}", fmt::join(parts, ", ")));
    if (!issue_ranks_us.empty()) {
      lines.push_back("issue_us_ranks:");
      for (const auto& [m, costs] : issue_ranks_us) {
        parts.clear();
        for (const auto& [k, us] : costs) parts.push_back(k + ": " + num(us));
        lines.push_back(fmt::format("  {}: {{{}}}", m, fmt::join(parts, ", ")));
      }
    }
    if (lead_s > 0) lines.push_back("issue_lead_us: " + num(lead_s * 1e6));
  }
  if (!sustained.empty()) {
    lines.push_back("sustained:");
    for (const auto& c : sustained)
      lines.push_back(fmt::format("  - {{duty: {}, tokens: {}, seconds: {}, slowdown: {}}}",
                                  num(c.duty), c.tokens, flow_list(c.slowdown.x, false),
                                  flow_list(c.slowdown.y, false)));
  }
  lines.push_back("attention:");
  for (const auto& p : points)
    lines.push_back(fmt::format(
        "  - {{mask: {}, head_dim: {}, gqa: {}, heads: {}, sq: {}, sk: {}, tflops: {}{}{}}}",
        mask_name(p.causal), p.head_dim, num(p.gqa), p.heads, p.sq, p.sk, num(p.tflops),
        p.shared ? ", shared: true" : "", p.warm ? ", warm: true" : ""));
  auto curve_line = [&](const std::string& key, Kind k, const char* ykey) {
    std::vector<double> xs, ys;
    for (const auto& pt : curves[k]) {
      if (!xs.empty() && pt.x <= xs.back()) continue;  // sizes must increase
      xs.push_back(pt.x);
      ys.push_back(pt.y);
    }
    return fmt::format("{}: {{bytes: {}, {}: {}}}", key, flow_list(xs, true), ykey,
                       flow_list(ys, false));
  };
  if (plan.world > 1) {
    lines.push_back("links:");
    lines.push_back("  nvlink:");
    lines.push_back(fmt::format("    ranks: {}", plan.world));
    for (Kind k : {Kind::sendrecv, Kind::all_to_all, Kind::all_gather})
      if (!curves[k].empty()) lines.push_back("    " + curve_line(kind_name(k), k, "us"));
  }
  lines.push_back(curve_line("copy", Kind::copy, "gbps"));
  lines.push_back(curve_line("merge", Kind::merge, "gbps"));
  lines.push_back("extra:");
  lines.push_back("  calibrate:");
  lines.push_back(fmt::format("    backend: {}", plan.backend));
  lines.push_back(fmt::format("    ranks: {}", plan.world));
  lines.push_back(fmt::format("    grid: {}", o.quick ? "quick" : "default"));
  lines.push_back("    date: " + yaml_quoted(when));
  lines.push_back("    git: " + yaml_quoted(sha));
  lines.push_back("    samples: " + yaml_quoted(json_name));
  if (!notes.empty()) {
    lines.push_back("    notes:");
    for (const auto& n : notes) lines.push_back("      - " + yaml_quoted(n));
  }
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  // What we write must be what load_hardware_profile accepts.
  auto parsed = parse_hardware_profile(text, plan.yaml_path);
  CPB_REQUIRE(parsed.ok(), "internal: the measured profile does not parse: {}",
              parsed.ok() ? "" : parsed.error().str());

  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  nlohmann::json issue_ranks_json = nlohmann::json::object();  // keyed by the rank count's text
  for (const auto& [m, costs] : issue_ranks_us) issue_ranks_json[std::to_string(m)] = costs;
  nlohmann::json doc = {
      {"schema", "cpbench.calibration/2"},
      {"profile", plan.yaml_path},
      {"name", plan.name},
      {"machine", plan.machine},
      {"backend", plan.backend},
      {"backend_info", backend_info(plan.backend)},
      {"ranks", plan.world},
      {"quick", o.quick},
      {"date", when},
      {"seconds", seconds},
      {"provenance", prov_full},
      {"grid", to_json(grid)},
      {"conventions",
       {{"sample",
         "seconds per op of one timed sample (a batch of ops / its size), the maximum "
         "over ranks of the same sample"},
        {"table_time", "median sample less launch_us (at least 10% of the median)"},
        {"tflops", "4 * B * H * d * visible (query, key) pairs / table_time"},
        {"link_bytes", "bytes a rank sends to its peers per op (sendrecv: the message)"},
        {"mem_bytes", "bytes read + written per op"}}},
      {"summary",
       {{"peak_tflops", peak},
        {"bandwidth_gbps", bw},
        {"launch_us", launch_s * 1e6},
        {"share_factor", share},
        {"comm_share_factor", comm_share},
        {"sendrecv_alone_s", transfer_alone},
        {"share_measured",
         share_alone > 0 ? nlohmann::json(share_beside / share_alone) : nlohmann::json(nullptr)},
        {"sendrecv_beside_attention_s", transfer_beside},
        {"attention_points", points.size()},
        {"issue_us_ranks", issue_ranks_json}}},
      {"notes", notes},
      {"series_file", fs::path(plan.series_path).filename().string()},
      {"series_count", raw.size()}};
  const std::string json_text =
      doc.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  // The samples (most of the bytes), one compact line a series.
  std::string series_text;
  for (const auto& s : raw)
    series_text += s.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  CPB_TRY(write_file_atomic(plan.series_path, series_text));
  CPB_TRY(write_file_atomic(plan.json_path, json_text));
  CPB_TRY(write_file_atomic(plan.yaml_path, text));
  Summary sum;
  sum.yaml_path = plan.yaml_path;
  sum.json_path = plan.json_path;
  sum.series_path = plan.series_path;
  sum.peak_tflops = peak;
  sum.bandwidth_gbps = bw;
  sum.launch_us = launch_s * 1e6;
  sum.share_factor = share;
  sum.attention_points = points.size();
  sum.seconds = seconds;
  for (const auto& n : notes) say("note: " + n);
  return sum;
}

}  // namespace cpb::calibrate
