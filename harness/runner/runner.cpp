// Point execution on every backend: inputs, prepare, timed iterations, gather, verify.
#include "harness/runner/runner.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>

#include "harness/core/backend.hpp"
#include "harness/core/mpi_world.hpp"
#include "harness/io/npy.hpp"
#include "harness/runner/memory_probe.hpp"
#include "kernels/cpu/attention.hpp"
#include "strategies/common.hpp"
#include "strategies/strategy.hpp"

namespace cpb {
namespace {

double tolerance_for(std::string_view backend, DType dt) {
  // cpu computes in fp32 on inputs already rounded to the dtype: only fp32 rounding remains.
  // The GPU kernels may keep P in the dtype before P·V (FlashAttention does): bf16 has 8 bits
  // of mantissa, fp16 11.
  if (backend == "cpu") return 1e-5;
  return dt == DType::fp16 ? 5e-3 : 1e-2;
}

struct Shard {
  std::vector<float> q, kv;
};

// Copies the rank's tokens out of the global arrays into its local q and packed kv layouts.
Shard scatter(const Workload& w, const Placement& pl, int rank, int64_t cap, const Inputs& in) {
  const int64_t H = w.heads, Hkv = w.kv_heads, d = w.head_dim, T = w.new_tokens, S = w.context();
  const int64_t qc = pl.q_count(rank);
  const auto& qb = pl.q_batches(rank);
  const int64_t nqb = static_cast<int64_t>(qb.size());
  Shard sh;
  sh.q.assign(static_cast<size_t>(nqb * qc * H * d), 0.0f);
  sh.kv.assign(static_cast<size_t>(packed_kv_elems(w, cap)), 0.0f);
  const int64_t vhalf = w.batch * cap * Hkv * d;
  for (int64_t lb = 0; lb < nqb; ++lb) {
    const int64_t b = qb[lb];
    for (const auto& s : pl.q_segments(rank))
      for (int64_t i = 0; i < s.count; ++i) {
        int64_t t = s.global_begin + i * s.stride - w.cached_tokens;
        std::copy_n(in.q.begin() + ((b * T + t) * H) * d, H * d,
                    sh.q.begin() + ((lb * qc + s.local_begin + i) * H) * d);
      }
  }
  for (int64_t b = 0; b < w.batch; ++b) {
    for (const auto& s : pl.kv_segments(rank))
      for (int64_t i = 0; i < s.count; ++i) {
        int64_t p = s.global_begin + i * s.stride;
        int64_t dst = ((b * cap + s.local_begin + i) * Hkv) * d;
        std::copy_n(in.k.begin() + ((b * S + p) * Hkv) * d, Hkv * d, sh.kv.begin() + dst);
        std::copy_n(in.v.begin() + ((b * S + p) * Hkv) * d, Hkv * d, sh.kv.begin() + vhalf + dst);
      }
  }
  return sh;
}

// Places a rank's [Bq, qc, heads, dim] rows into the global [B, T, heads, dim] array.
void gather_rows(const Workload& w, const Placement& pl, int rank, int64_t row,
                 const std::vector<float>& local, std::vector<float>& global) {
  const int64_t qc = pl.q_count(rank), T = w.new_tokens;
  const auto& qb = pl.q_batches(rank);
  for (size_t lb = 0; lb < qb.size(); ++lb)
    for (const auto& s : pl.q_segments(rank))
      for (int64_t i = 0; i < s.count; ++i) {
        int64_t t = s.global_begin + i * s.stride - w.cached_tokens;
        std::copy_n(local.begin() + (static_cast<int64_t>(lb) * qc + s.local_begin + i) * row, row,
                    global.begin() + (qb[lb] * T + t) * row);
      }
}

void fill_tensor(std::vector<float>& out, uint64_t seed, InputTensor t, DType dt) {
  for (size_t i = 0; i < out.size(); ++i) {
    const float x = random_input_value(seed, t, i);
    out[i] = dt == DType::bf16 ? round_to_bf16(x) : dt == DType::fp16 ? round_to_fp16(x) : x;
  }
}
}  // namespace

Inputs random_inputs(const Workload& w, uint64_t seed) {
  Inputs in;
  in.q.resize(static_cast<size_t>(w.batch * w.new_tokens * w.heads * w.head_dim));
  in.k.resize(static_cast<size_t>(w.batch * w.context() * w.kv_heads * w.head_dim));
  in.v.resize(in.k.size());
  fill_tensor(in.q, seed, InputTensor::q, w.dtype);
  fill_tensor(in.k, seed, InputTensor::k, w.dtype);
  fill_tensor(in.v, seed, InputTensor::v, w.dtype);
  return in;
}

namespace {
// Each rank generates its own shard where its buffers live: the same values scatter() would copy
// out of random_inputs(w, seed), without making the global arrays on the host.
Status fill_rank_inputs(Executor& ex, const Workload& w, const Placement& pl, int rank,
                        const RankTensors& io, uint64_t seed) {
  const int64_t H = w.heads, Hkv = w.kv_heads, d = w.head_dim, T = w.new_tokens, S = w.context();
  const auto& qb = pl.q_batches(rank);
  for (size_t lb = 0; lb < qb.size(); ++lb) {
    const View rows = io.q.batches(static_cast<int64_t>(lb), 1);
    for (const auto& s : pl.q_segments(rank)) {
      const int64_t t0 = s.global_begin - w.cached_tokens;
      CPB_TRY(
          ex.fill_random(rows.slice(s.local_begin, s.count),
                         {seed, InputTensor::q, (qb[lb] * T + t0) * H * d, 0, s.stride * H * d}));
    }
  }
  for (int which = 0; which < 2; ++which) {
    const View kv = packed_kv_view(w, io.kv, 0, io.kv_capacity, io.kv_capacity, which);
    const InputTensor t = which == 0 ? InputTensor::k : InputTensor::v;
    for (const auto& s : pl.kv_segments(rank))
      CPB_TRY(ex.fill_random(kv.slice(s.local_begin, s.count),
                             {seed, t, s.global_begin * Hkv * d, S * Hkv * d, s.stride * Hkv * d}));
  }
  return {};
}

// Errors of (o, lse) against a reference (ro, rl) of any floating type.
template <class R>
VerifyReport compare_outputs(const std::vector<float>& o, const std::vector<float>& lse,
                             const std::vector<R>& ro, const std::vector<R>& rl, double tolerance,
                             std::string reference) {
  VerifyReport rep;
  rep.ran = true;
  rep.tolerance = tolerance;
  rep.reference = std::move(reference);
  double ref_max = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    if (!std::isfinite(o[i])) rep.finite = false;
    ref_max = std::max(ref_max, static_cast<double>(std::abs(ro[i])));
    rep.max_abs_err = std::max(rep.max_abs_err, static_cast<double>(std::abs(o[i] - ro[i])));
  }
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(rl[i])) {
      if (!(std::isinf(lse[i]) && lse[i] < 0)) rep.finite = false;
      continue;
    }
    if (!std::isfinite(lse[i])) {
      rep.finite = false;
      continue;
    }
    rep.lse_max_abs_err =
        std::max(rep.lse_max_abs_err, static_cast<double>(std::abs(lse[i] - rl[i])));
  }
  rep.max_rel_err = ref_max > 0 ? rep.max_abs_err / ref_max : rep.max_abs_err;
  if (!std::isfinite(rep.max_abs_err)) rep.finite = false;
  return rep;
}
}  // namespace

VerifyReport verify_against_reference(const Workload& w, const Inputs& in,
                                      const std::vector<float>& o, const std::vector<float>& lse,
                                      double tolerance) {
  std::vector<double> ro(o.size()), rl(lse.size());
  cpu::reference_attention(w, in.q.data(), in.k.data(), in.v.data(), ro.data(), rl.data());
  return compare_outputs(o, lse, ro, rl, tolerance, "fp64 on the unsharded problem (cpu)");
}

int64_t cpu_host_bytes_estimate(const ExecSpec& spec, const Placement& pl) {
  if (!backend_computes(spec.backend)) return 0;  // sim: op logs only
  const Workload& w = spec.workload;
  const int64_t n = spec.cp;
  const int64_t q = w.batch * w.new_tokens * w.heads * w.head_dim;
  const int64_t kv = w.batch * w.context() * w.kv_heads * w.head_dim;
  int64_t bytes = 4 * (q + q / w.head_dim);  // gathered O and LSE
  // The fp64 host reference and the global inputs it reads (GPU points above
  // kCpuReferenceMaxFlops compare with a GPU run instead, whose output is kept for the next
  // point of the same workload; ranks generate their own inputs).
  const bool host_reference =
      spec.verify && (spec.backend == "cpu" || workload_flops(w) <= kCpuReferenceMaxFlops);
  if (host_reference || spec.inputs != nullptr || (spec.verify && mpi::active()))
    bytes += 4 * (q + 2 * kv);  // under MPI the GPU reference reads them
  if (host_reference)
    bytes += 8 * (q + q / w.head_dim) + 8 * w.context();
  else if (spec.verify)
    bytes += 4 * (q + q / w.head_dim);  // the single-GPU run's O, LSE
  if (spec.backend != "cpu") {
    // The ranks' buffers live on the GPUs; their read-back copies and each read's staging
    // buffer do not (twice over while the single-GPU reference reads its own).
    bytes += (spec.verify && !host_reference ? 16 : 8) * (q + q / w.head_dim);
    return bytes;
  }
  // Per rank: q, o, lse shards; its K/V block, up to N gathered blocks and scratch.
  const int64_t block = packed_kv_elems(w, pl.max_kv_count());
  const int64_t qr = w.batch * pl.max_q_count() * w.heads * w.head_dim;
  bytes += n * 4 * (3 * qr + (n + 3) * block);
  return bytes;
}

int64_t host_available_bytes() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (f == nullptr) return -1;
  char line[256];
  int64_t kb = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    long long v = 0;
    if (std::sscanf(line, "MemAvailable: %lld kB", &v) == 1) {
      kb = v;
      break;
    }
  }
  std::fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

Expected<int64_t> host_memory_budget() {
  const char* v = std::getenv("CPBENCH_HOST_MEMORY_GIB");
  if (v == nullptr || *v == '\0') return host_available_bytes();
  char* end = nullptr;
  const double gib = std::strtod(v, &end);
  CPB_REQUIRE(end != v && *end == '\0' && std::isfinite(gib) && gib > 0 && gib < (1 << 24),
              "CPBENCH_HOST_MEMORY_GIB='{}': give the host memory to plan for in GiB, a number "
              "> 0 (or unset it to use MemAvailable)",
              v);
  return static_cast<int64_t>(gib * (1 << 30));
}

namespace {
// Under MPI every process measured one rank: rank 0 collects the others' reports (times,
// variants, accounting per phase, peak memory, trace) and the rows of O and LSE they own.
Status gather_to_root(ExecResult& res, std::vector<std::string>& clocks) {
  const int me = mpi::rank();
  const RankReport& mine = res.ranks[me];
  nlohmann::json j;
  j["times"] = mine.times_s;
  j["issue"] = mine.issue_s;
  j["steps"] = mine.steps;
  j["graph"] = mine.graph;
  nlohmann::json calls = nlohmann::json::object();
  for (const auto& [kind, c] : mine.host_calls) calls[kind] = {c.seconds, c.calls};
  j["host_calls"] = calls;
  j["compute_only"] = mine.compute_only_s;
  j["comm_only"] = mine.comm_only_s;
  j["peak"] = mine.peak_memory_bytes;
  j["minimum"] = mine.minimum_memory_bytes;
  j["clock"] = clocks[me];
  nlohmann::json phases = nlohmann::json::object();
  for (const auto& [name, c] : mine.accounting.phases)
    phases[name] = {c.bytes_sent, c.bytes_recv, c.flops, c.ops, c.participants};
  j["phases"] = phases;
  nlohmann::json trace = nlohmann::json::array();
  for (const auto& t : mine.trace)
    trace.push_back({static_cast<int>(t.kind), static_cast<int>(t.stream), t.phase, t.step, t.bytes,
                     t.flops, t.begin_s, t.end_s});
  j["trace"] = trace;
  CPB_ASSIGN_OR_RETURN(auto all, mpi::gather(j.dump()));
  CPB_TRY(mpi::sum_to_root(res.o));
  CPB_TRY(mpi::sum_to_root(res.lse));
  if (!mpi::is_root()) return {};
  for (size_t r = 0; r < all.size(); ++r) {
    auto o = nlohmann::json::parse(all[r], nullptr, /*allow_exceptions=*/false);
    CPB_REQUIRE(o.is_object(), "internal: rank {} sent an unreadable report", r);
    RankReport& rep = res.ranks[r];
    rep.times_s = o["times"].get<std::vector<double>>();
    rep.issue_s = o["issue"].get<std::vector<double>>();
    rep.steps = o["steps"].get<int>();
    rep.graph = o["graph"].get<bool>();
    rep.host_calls.clear();
    for (const auto& [kind, v] : o["host_calls"].items())
      rep.host_calls[kind] = {v[0].get<double>(), v[1].get<int64_t>()};
    rep.compute_only_s = o["compute_only"].get<std::vector<double>>();
    rep.comm_only_s = o["comm_only"].get<std::vector<double>>();
    rep.peak_memory_bytes = o["peak"].get<int64_t>();
    rep.minimum_memory_bytes = o["minimum"].get<int64_t>();
    clocks[r] = o["clock"].get<std::string>();
    rep.accounting = {};
    for (const auto& [name, v] : o["phases"].items())
      rep.accounting.phases[name] = {v[0].get<int64_t>(), v[1].get<int64_t>(), v[2].get<double>(),
                                     v[3].get<int64_t>(), v[4].get<int>()};
    rep.trace.clear();
    for (const auto& t : o["trace"]) {
      TraceSlice s;
      s.kind = static_cast<OpKind>(t[0].get<int>());
      s.stream = static_cast<Stream>(t[1].get<int>());
      s.phase = t[2].get<std::string>();
      s.step = t[3].get<int>();
      s.bytes = t[4].get<int64_t>();
      s.flops = t[5].get<double>();
      s.begin_s = t[6].get<double>();
      s.end_s = t[7].get<double>();
      rep.trace.push_back(std::move(s));
    }
  }
  return {};
}
}  // namespace

namespace {
// The whole problem run on one GPU (cp 1, no communication), the reference of GPU points too
// large for the fp64 host reference. The strategies of a sweep usually share a workload, so the
// last one is kept and reused: it only depends on the workload, the inputs and the backend.
struct SingleGpuReference {
  std::string key;
  std::vector<float> o, lse;
  std::string error;  // why the run failed; empty when o and lse hold its result
};

const SingleGpuReference* single_gpu_reference(const ExecSpec& spec) {
  static SingleGpuReference cached;
  const Workload& w = spec.workload;
  const std::string key =
      spec.inputs != nullptr
          ? std::string()  // explicit inputs: never reused
          : fmt::format("{} {} {} {} {} {} {} {} {} {} {}", spec.backend, spec.seed, w.batch,
                        w.heads, w.kv_heads, w.head_dim, to_string(w.dtype), to_string(w.mask),
                        w.new_tokens, w.cached_tokens, w.scale());
  if (!key.empty() && key == cached.key) return &cached;
  cached = {};
  ExecSpec one;
  one.backend = spec.backend;
  one.strategy = "ring_pass_kv";
  one.layout = LayoutKind::contiguous;
  one.cp = 1;
  one.workload = w;
  one.seed = spec.seed;
  one.iterations = 1;
  one.verify = false;
  one.timeout_s = spec.timeout_s;
  one.inputs = spec.inputs;
  auto run = execute_point(one);
  if (run.ok()) {
    cached.o = std::move(run->o);
    cached.lse = std::move(run->lse);
    cached.key = key;
  } else {
    cached.error = run.error().str();
  }
  return &cached;
}
}  // namespace

Expected<RankTensors> allocate_rank_io(Executor& ex, const Workload& w, const Placement& pl,
                                       int rank) {
  const int64_t qc = pl.q_count(rank), cap = pl.max_kv_count();
  const auto nqb = static_cast<int64_t>(pl.q_batches(rank).size());
  RankTensors io;
  io.kv_capacity = cap;
  CPB_ASSIGN_OR_RETURN(Buf qb, ex.alloc("q", ElemKind::act, nqb * qc * w.heads * w.head_dim));
  CPB_ASSIGN_OR_RETURN(io.kv, ex.alloc("kv", ElemKind::act, packed_kv_elems(w, cap)));
  CPB_ASSIGN_OR_RETURN(Buf ob, ex.alloc("o", ElemKind::f32, nqb * qc * w.heads * w.head_dim));
  CPB_ASSIGN_OR_RETURN(Buf lb, ex.alloc("lse", ElemKind::f32, nqb * qc * w.heads));
  io.q = dense_view(qb, 0, nqb, qc, w.heads, w.head_dim);
  io.o = dense_view(ob, 0, nqb, qc, w.heads, w.head_dim);
  io.lse = dense_view(lb, 0, nqb, qc, w.heads, 1);
  return io;
}

Status check_point(const ExecSpec& spec) {
  const StrategyInfo* info = find_strategy(spec.strategy);
  CPB_REQUIRE(info != nullptr, "unknown strategy '{}': `cpbench list` shows the registered ones",
              spec.strategy);
  CPB_ASSIGN_OR_RETURN(Placement pl, Placement::make(spec.workload, spec.layout, spec.cp));
  CPB_TRY(info->check(StrategyContext{spec.workload, pl, spec.options}));
  CPB_TRY(check_backend(spec.backend, spec.cp));
  if (spec.backend == "cuda")
    CPB_REQUIRE(spec.workload.head_dim <= 256,
                "head_dim {} is above the 256 the cuda kernels support: use head_dim <= 256 (the "
                "cpu backend takes any)",
                spec.workload.head_dim);
  if (spec.backend == "cuda") {
    // Before anything is allocated: each rank's buffers against its GPU's free memory.
    const std::vector<int64_t> free = gpu_free_bytes();
    if (mpi::active() && !free.empty())
      CPB_TRY(check_gpu_memory(spec, free, mpi::rank(),
                               mpi::local_rank() % static_cast<int>(free.size())));
    else
      CPB_TRY(check_gpu_memory(spec, free));
  }
  const int64_t need = cpu_host_bytes_estimate(spec, pl);
  CPB_ASSIGN_OR_RETURN(const int64_t avail, host_memory_budget());
  CPB_REQUIRE(avail < 0 || need <= avail * 8 / 10,
              "this point needs about {:.1f} GiB of host memory, {:.1f} GiB is available{}: use "
              "fewer tokens, heads or batch (or a GPU backend)",
              static_cast<double>(need) / (1 << 30), static_cast<double>(avail) / (1 << 30),
              std::getenv("CPBENCH_HOST_MEMORY_GIB") != nullptr
                  ? " (CPBENCH_HOST_MEMORY_GIB)"
                  : " (MemAvailable; where the machine may use more, as a VM whose memory grows "
                    "when touched, say so with CPBENCH_HOST_MEMORY_GIB)");
  return {};
}

Expected<ExecResult> execute_point(const ExecSpec& spec) {
  CPB_TRY(check_point(spec));
  const StrategyInfo* info = find_strategy(spec.strategy);
  const Workload& w = spec.workload;
  CPB_ASSIGN_OR_RETURN(Placement pl, Placement::make(w, spec.layout, spec.cp));
  const StrategyContext ctx{w, pl, spec.options};
  const int n = spec.cp;
  const int64_t cap = pl.max_kv_count();

  // Random inputs are generated by each rank where its buffers live; the global arrays are made
  // on the host only for a reference that reads them (random_inputs gives the same values).
  Inputs generated;
  const Inputs* in = spec.inputs;
  auto host_inputs = [&]() -> const Inputs& {
    if (in == nullptr) {
      generated = random_inputs(w, spec.seed);
      in = &generated;
    }
    return *in;
  };
  const bool explicit_inputs = spec.inputs != nullptr;

  ExecResult res;
  res.backend = spec.backend;
  if (info->describe) res.strategy_detail = info->describe(ctx);
  res.ranks.resize(n);
  const bool computes = backend_computes(spec.backend);
  if (computes) {
    res.o.assign(static_cast<size_t>(w.batch * w.new_tokens * w.heads * w.head_dim), 0.0f);
    res.lse.assign(static_cast<size_t>(w.batch * w.new_tokens * w.heads), 0.0f);
  }
  const int total_iters = std::max(1, spec.warmup + spec.iterations);

  CPB_ASSIGN_OR_RETURN(auto backend, make_backend(spec.backend, n, w.dtype, spec.timeout_s,
                                                  spec.options.hardware_profile));
  res.backend_detail = backend->describe();
  std::vector<std::string> clocks(static_cast<size_t>(n));
  Status run_status = backend->run([&](Executor& ex) -> Status {
    const int rank = ex.rank();
    clocks[rank] = std::string(ex.clock());
    CPB_ASSIGN_OR_RETURN(RankTensors io, allocate_rank_io(ex, w, pl, rank));
    const Buf qb = io.q.buf, ob = io.o.buf, lb = io.lse.buf;
    if (explicit_inputs) {
      Shard sh = scatter(w, pl, rank, cap, *spec.inputs);
      CPB_TRY(ex.write(qb, 0, sh.q));
      CPB_TRY(ex.write(io.kv, 0, sh.kv));
    } else {
      CPB_TRY(fill_rank_inputs(ex, w, pl, rank, io, spec.seed));
    }
    CPB_ASSIGN_OR_RETURN(auto strat, info->prepare(ex, ctx, io));

    RankReport& rep = res.ranks[rank];
    rep.graph = spec.cuda_graph && ex.can_capture();
    double last_issue_s = 0;
    // One iteration, op by op (eager) or as a replay of the captured graph.
    auto one = [&](bool eager = true) -> Expected<double> {
      CPB_TRY(ex.barrier());
      ex.begin_iteration();
      CPB_TRY(ex.timer_start());
      // Host time to issue the iteration's ops (the GPU runs them asynchronously): the harness
      // overhead a fast kernel would expose.
      const auto issue_begin = std::chrono::steady_clock::now();
      CPB_TRY(eager ? strat->run(ex, io) : ex.replay());
      last_issue_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - issue_begin).count();
      return ex.timer_stop();
    };
    // Captures the iteration as the current skip flags make it (every rank at once: NCCL's
    // calls are captured on all of them).
    auto capture = [&]() -> Status {
      CPB_TRY(ex.barrier());
      ex.begin_iteration();
      CPB_TRY(ex.begin_capture());
      Status ran = strat->run(ex, io);
      Status ended = ex.end_capture();
      CPB_TRY(ran);
      return ended;
    };
    for (int it = 0; it < total_iters; ++it) {
      const bool first = it == 0;
      if (first) {
        ex.reset_accounting();
        ex.set_logging(true);
      }
      // The first iteration runs op by op: it logs the ops and sets up NCCL's connections,
      // which cannot happen inside a capture.
      if (it == 1 && rep.graph) CPB_TRY(capture());
      // An injected fault strikes at the first op of the second iteration (of the first when
      // there is one): mid-point, with NCCL's connections already made, so that what the peers
      // wait for is a transfer (the rank's own first send) and not a connection.
      if ((spec.fault.kind == FaultSpec::Kind::throw_exception ||
           spec.fault.kind == FaultSpec::Kind::hang) &&
          spec.fault.rank == rank && it == std::min(1, total_iters - 1))
        ex.arm_fault(spec.fault.kind, 0);
      if (it == total_iters - spec.iterations) ex.reset_host_calls();
      CPB_ASSIGN_OR_RETURN(double seconds, one(/*eager=*/first || !rep.graph));
      if (first) {
        rep.accounting = ex.accounting();
        for (const auto& op : rep.accounting.log) rep.steps = std::max(rep.steps, op.step + 1);
        ex.set_logging(false);
      }
      if (it >= total_iters - spec.iterations) {
        rep.times_s.push_back(seconds);
        rep.issue_s.push_back(last_issue_s);
      }
    }
    rep.host_calls = ex.host_calls();
    rep.peak_memory_bytes = ex.peak_memory_bytes();
    rep.minimum_memory_bytes = ex.minimum_memory_bytes();

    if (spec.fault.kind == FaultSpec::Kind::nan_output && spec.fault.rank == rank) {
      const float nan[] = {std::numeric_limits<float>::quiet_NaN()};
      CPB_TRY(ex.write(ob, 0, nan));
    }
    // Outputs first: the variants below leave wrong values behind.
    if (computes) {
      std::vector<float> o(static_cast<size_t>(io.o.elems())),
          l(static_cast<size_t>(io.lse.elems()));
      CPB_TRY(ex.read(ob, 0, o));
      CPB_TRY(ex.read(lb, 0, l));
      // Ranks own disjoint rows of the global arrays, so they can write them concurrently.
      gather_rows(w, pl, rank, w.heads * w.head_dim, o, res.o);
      gather_rows(w, pl, rank, w.heads, l, res.lse);
    }

    if (spec.trace) {
      ex.set_tracing(true);
      auto t = one();
      ex.set_tracing(false);
      if (!t.ok()) return std::move(t).error();
      CPB_TRY(ex.resolve_trace());
      rep.trace = ex.trace();
    }
    if (spec.measure_overlap) {
      for (int variant = 0; variant < 2; ++variant) {
        ex.set_skip(/*compute=*/variant == 1, /*comm=*/variant == 0);
        auto& out = variant == 0 ? rep.compute_only_s : rep.comm_only_s;
        if (rep.graph) CPB_TRY(capture());
        for (int it = 0; it < spec.iterations; ++it) {
          CPB_ASSIGN_OR_RETURN(double s, one(/*eager=*/!rep.graph));
          out.push_back(s);
        }
      }
      ex.set_skip(false, false);
    }
    return {};
  });
  if (mpi::active()) {
    // Every process must agree that the point ran before any of them enters the gathers.
    const bool everyone = mpi::all(run_status.ok());
    if (!run_status.ok()) return std::move(run_status).error();
    if (!everyone) return CPB_ERROR("another MPI rank failed this point (its error is on its log)");
  } else {
    CPB_TRY(run_status);
  }

  if (mpi::active()) {
    CPB_TRY(gather_to_root(res, clocks));
    if (!mpi::is_root()) return res;  // rank 0 verifies and records
  }
  res.clock = clocks[0];
  // Max over ranks per iteration: an iteration ends when its slowest rank does.
  auto max_over_ranks = [&](std::vector<double> RankReport::*field) {
    std::vector<double> out;
    const size_t iters = (res.ranks[0].*field).size();
    for (size_t i = 0; i < iters; ++i) {
      double m = 0;
      for (const auto& r : res.ranks) m = std::max(m, (r.*field)[i]);
      out.push_back(m);
    }
    return out;
  };
  res.iteration_times_s = max_over_ranks(&RankReport::times_s);
  res.issue_s = max_over_ranks(&RankReport::issue_s);
  res.compute_only_s = max_over_ranks(&RankReport::compute_only_s);
  res.comm_only_s = max_over_ranks(&RankReport::comm_only_s);
  if (spec.verify && !computes) {
    res.verify.reference = fmt::format(
        "not verified: the {} backend computes no values (its times are predicted)", spec.backend);
  } else if (spec.verify) {
    const double tol = tolerance_for(spec.backend, w.dtype);
    if (spec.backend == "cpu" || workload_flops(w) <= kCpuReferenceMaxFlops) {
      res.verify = verify_against_reference(w, host_inputs(), res.o, res.lse, tol);
    } else if (mpi::active()) {
      // Under MPI a cp-1 run is not possible: the naive GPU reference on this process's GPU.
      std::vector<float> ro, rl;
      const Inputs& hin = host_inputs();
      Status st = gpu_reference_attention(w, hin.q, hin.k, hin.v, ro, rl);
      if (st.ok()) {
        res.verify =
            compare_outputs(res.o, res.lse, ro, rl, tol, "naive fp32 reference on one GPU");
      } else {
        res.verify.ran = false;
        res.verify.reference = "not verified: the GPU reference failed: " + st.error().str();
      }
    } else {
      // Too large for the fp64 host reference: compare with the whole problem on one GPU
      // (cp 1, no communication), the check DESIGN.md asks of GPU runs.
      const SingleGpuReference* single = single_gpu_reference(spec);
      if (single->error.empty()) {
        res.verify = compare_outputs(res.o, res.lse, single->o, single->lse, tol,
                                     "the same inputs on one GPU (cp 1, no communication)");
      } else {
        // Keep the measured point; say why it is unverified (e.g. it does not fit one GPU).
        res.verify.ran = false;
        res.verify.reference =
            "not verified: the single-GPU reference run failed: " + single->error;
      }
    }
  }
  return res;
}

}  // namespace cpb
