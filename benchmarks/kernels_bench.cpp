// Google Benchmark microbenchmarks of the cuda kernels (kernels/cuda/kernels.hpp) on GPU 0:
// attention_forward throughput in TF/s by sequence length, mask and head_dim (bf16, batch 1,
// 32 query heads, 8 KV heads, self-attention Sq = Sk), and the memory-bound helpers
// merge_partials and copy_view in GB/s. Each timed iteration is one launch between two CUDA
// events on a private stream, with the L2 cache overwritten before it; the event time is handed
// to Google Benchmark as manual time. FLOPs count only visible (query, key) pairs, following
// FlashAttention: 4·B·H·d per pair, S² pairs for a full mask and S·(S+1)/2 for a causal one.
// Inputs are random bf16 values generated once on the host. Any CUDA failure, and a GPU-less
// machine, mark the benchmark skipped with the reason; nothing here aborts the process.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "benchmarks/bench_common.hpp"
#include "kernels/cuda/kernels.hpp"

namespace cpb::bench {
namespace {

constexpr int64_t kBatch = 1;
constexpr int64_t kHeads = 32;
constexpr int64_t kKvHeads = 8;
constexpr int kWarmup = 2;  // untimed launches after the checked first one

// Selects GPU 0 (CUDA_VISIBLE_DEVICES picks which physical GPU that is).
Status use_first_gpu() {
  CPB_ASSIGN_OR_RETURN(const int n, visible_gpu_count());
  (void)n;
  CPB_BENCH_CUDA(cudaSetDevice(0));
  return {};
}

// A token-major [batch][tokens][heads][dim] view of a dense buffer; `token_stride` in elements
// (0: heads * dim).
cuda::DevView view(const DeviceBuffer& b, int64_t tokens, int64_t heads, int64_t dim,
                   int64_t token_stride = 0, int64_t elem_offset = 0, int elem_bytes = 2) {
  cuda::DevView v;
  v.data = static_cast<unsigned char*>(b.get()) + elem_offset * elem_bytes;
  v.batch = kBatch;
  v.tokens = tokens;
  v.heads = heads;
  v.dim = dim;
  v.token_stride = token_stride != 0 ? token_stride : heads * dim;
  v.batch_stride = tokens * v.token_stride;
  return v;
}

size_t bytes_of(int64_t elems, int elem_bytes) {
  return static_cast<size_t>(elems) * static_cast<size_t>(elem_bytes);
}

// One launch of `launch` timed by CUDA events on `s`, after an L2 flush.
template <class Launch>
Expected<double> timed_once(cudaStream_t s, L2Flush& flush, EventTimer& timer, Launch& launch) {
  CPB_TRY(flush.run(s));
  CPB_TRY(timer.start(s));
  CPB_TRY(launch());
  CPB_TRY(timer.stop(s));
  return timer.elapsed_s();
}

// Warms up, then runs Google Benchmark's iteration loop with one event-timed launch per
// iteration. Returns the summed seconds of the timed launches; on any failure it marks the
// benchmark skipped with the reason and returns nothing.
template <class Launch>
std::optional<double> time_loop(benchmark::State& state, cudaStream_t s, Launch&& launch) {
  L2Flush flush;
  EventTimer timer;
  Status setup = [&]() -> Status {
    CPB_TRY(flush.init());
    CPB_TRY(timer.create());
    for (int i = 0; i < kWarmup; ++i) CPB_TRY(launch());
    CPB_BENCH_CUDA(cudaStreamSynchronize(s));
    return {};
  }();
  if (!setup.ok()) {
    skip(state, setup.error());
    return std::nullopt;
  }
  return manual_time_loop(state, [&] { return timed_once(s, flush, timer, launch); });
}

// Checked first launch: runs `launch` once, waits, and runs `check` on the result, so a kernel
// that fails or returns garbage is reported instead of timed.
template <class Launch, class Check>
Status first_run(cudaStream_t s, Launch& launch, Check&& check) {
  // Setup ran on the legacy default stream (cudaMemset is asynchronous there), which does not
  // order against our non-blocking stream: wait for it before the first launch.
  CPB_BENCH_CUDA(cudaDeviceSynchronize());
  CPB_TRY(launch());
  CPB_BENCH_CUDA(cudaStreamSynchronize(s));
  return check();
}

// Copies `n` floats at element `offset` of `b` to the host and requires them to be finite.
Status require_finite(const DeviceBuffer& b, int64_t offset, int64_t n, const char* what) {
  std::vector<float> h(static_cast<size_t>(n));
  CPB_BENCH_CUDA(
      cudaMemcpy(h.data(), b.as<float>() + offset, bytes_of(n, 4), cudaMemcpyDeviceToHost));
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(h[static_cast<size_t>(i)]))
      return CPB_ERROR("{} has a non-finite value ({}) at element {}: not timed", what,
                       h[static_cast<size_t>(i)], offset + i);
  }
  return {};
}

// ---- attention_forward ------------------------------------------------------------------------

// Visible (query, key) pairs of one head: S² for a full mask, S·(S+1)/2 for a causal one.
double visible_pairs(int64_t seq, bool causal) {
  const auto s = static_cast<double>(seq);
  return causal ? s * (s + 1.0) / 2.0 : s * s;
}

void bm_attention_forward(benchmark::State& state, bool causal) {
  const int64_t d = state.range(0), seq = state.range(1);
  if (Status st = use_first_gpu(); !st.ok()) return skip(state, st.error());

  Stream stream;
  DeviceBuffer q, k, v, o, lse;
  Status st = [&]() -> Status {
    CPB_TRY(stream.create());
    CPB_TRY(q.alloc(bytes_of(kBatch * seq * kHeads * d, 2), "Q"));
    CPB_TRY(k.alloc(bytes_of(kBatch * seq * kKvHeads * d, 2), "K"));
    CPB_TRY(v.alloc(bytes_of(kBatch * seq * kKvHeads * d, 2), "V"));
    CPB_TRY(o.alloc(bytes_of(kBatch * seq * kHeads * d, 4), "O (fp32)"));
    CPB_TRY(lse.alloc(bytes_of(kBatch * seq * kHeads, 4), "LSE (fp32)"));
    // Different offsets into the random pool so Q, K and V do not start with the same values.
    CPB_TRY(upload_random_bf16(q, 0));
    CPB_TRY(upload_random_bf16(k, 5'000'011));
    CPB_TRY(upload_random_bf16(v, 11'000'027));
    return {};
  }();
  if (!st.ok()) return skip(state, st.error());

  const cuda::DevView qv = view(q, seq, kHeads, d), kv = view(k, seq, kKvHeads, d),
                      vv = view(v, seq, kKvHeads, d), ov = view(o, seq, kHeads, d),
                      lv = view(lse, seq, kHeads, 1);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int mask_kind = causal ? 2 : 1;
  auto launch = [&]() -> Status {
    return launched(cuda::attention_forward(cuda::ActType::bf16, qv, kv, vv, ov, lv, mask_kind,
                                            /*diag=*/0, scale, /*accumulate=*/false, stream.get()),
                    "attention_forward");
  };
  // Every row sees at least key 0 under both masks, so every LSE and output must be finite.
  st = first_run(stream.get(), launch, [&]() -> Status {
    CPB_TRY(require_finite(lse, 0, seq * kHeads, "LSE"));
    CPB_TRY(require_finite(o, 0, kHeads * d, "O (first token)"));
    return require_finite(o, (seq - 1) * kHeads * d, kHeads * d, "O (last token)");
  });
  if (!st.ok()) return skip(state, st.error());

  const std::optional<double> total = time_loop(state, stream.get(), launch);
  if (!total) return;
  const double flops = 4.0 * static_cast<double>(kBatch * kHeads * d) * visible_pairs(seq, causal);
  const auto iters = static_cast<double>(state.iterations());
  state.counters["flops_per_iter"] = flops;
  state.counters["TFLOPs"] = *total > 0.0 ? flops * iters / *total * 1e-12 : 0.0;
  state.SetLabel(std::string("bf16 B=1 H=32 Hkv=8 ") + (causal ? "causal" : "full") +
                 ", masked pairs not counted");
}

// ---- merge_partials ---------------------------------------------------------------------------

void bm_merge_partials(benchmark::State& state) {
  const int64_t d = state.range(0), tokens = state.range(1);
  if (Status st = use_first_gpu(); !st.ok()) return skip(state, st.error());

  Stream stream;
  DeviceBuffer o, lse, po, pl;
  const int64_t rows = kBatch * tokens * kHeads;
  Status st = [&]() -> Status {
    CPB_TRY(stream.create());
    CPB_TRY(o.alloc(bytes_of(rows * d, 4), "O"));
    CPB_TRY(lse.alloc(bytes_of(rows, 4), "LSE"));
    CPB_TRY(po.alloc(bytes_of(rows * d, 4), "partial O"));
    CPB_TRY(pl.alloc(bytes_of(rows, 4), "partial LSE"));
    CPB_TRY(upload_random_f32(o, 0));
    CPB_TRY(upload_random_f32(lse, 1'000'003));
    CPB_TRY(upload_random_f32(po, 3'000'017));
    CPB_TRY(upload_random_f32(pl, 7'000'003));
    return {};
  }();
  if (!st.ok()) return skip(state, st.error());

  const cuda::DevView ov = view(o, tokens, kHeads, d, 0, 0, 4),
                      lv = view(lse, tokens, kHeads, 1, 0, 0, 4),
                      pov = view(po, tokens, kHeads, d, 0, 0, 4),
                      plv = view(pl, tokens, kHeads, 1, 0, 0, 4);
  auto launch = [&]() -> Status {
    return launched(cuda::merge_partials(ov, lv, pov, plv, stream.get()), "merge_partials");
  };
  // Merging finite partials in place keeps them finite however often it runs.
  st = first_run(stream.get(), launch, [&]() -> Status {
    CPB_TRY(require_finite(lse, 0, rows, "merged LSE"));
    return require_finite(o, 0, kHeads * d, "merged O (first token)");
  });
  if (!st.ok()) return skip(state, st.error());

  const std::optional<double> total = time_loop(state, stream.get(), launch);
  if (!total) return;
  // Reads O, LSE, partial O, partial LSE; writes O and LSE (all fp32).
  const double bytes = static_cast<double>(rows) * static_cast<double>(3 * d + 3) * 4.0;
  const auto iters = static_cast<double>(state.iterations());
  state.counters["bytes_per_iter"] = bytes;
  state.counters["GBps"] = *total > 0.0 ? bytes * iters / *total * 1e-9 : 0.0;
  state.SetLabel("fp32 O+LSE, H=32, bytes read + written");
}

// ---- copy_view --------------------------------------------------------------------------------

// pack_kv: copies K [T][8][d] into the K half of a packed KV buffer [T][2][8][d] (strided
// destination), the copy ring_pass_kv does before each send; otherwise a dense copy.
void bm_copy_view(benchmark::State& state, bool pack_kv) {
  const int64_t d = state.range(0), tokens = state.range(1);
  if (Status st = use_first_gpu(); !st.ok()) return skip(state, st.error());

  Stream stream;
  DeviceBuffer src, dst;
  const int64_t elems = kBatch * tokens * kKvHeads * d;
  Status st = [&]() -> Status {
    CPB_TRY(stream.create());
    CPB_TRY(src.alloc(bytes_of(elems, 2), "source"));
    CPB_TRY(dst.alloc(bytes_of(pack_kv ? 2 * elems : elems, 2), "destination"));
    CPB_TRY(upload_random_bf16(src, 0));
    CPB_BENCH_CUDA(cudaMemset(dst.get(), 0, dst.bytes()));
    return {};
  }();
  if (!st.ok()) return skip(state, st.error());

  const cuda::DevView sv = view(src, tokens, kKvHeads, d);
  const cuda::DevView dv = view(dst, tokens, kKvHeads, d, pack_kv ? 2 * kKvHeads * d : 0);
  auto launch = [&]() -> Status {
    return launched(cuda::copy_view(2, dv, sv, stream.get()), "copy_view");
  };
  st = first_run(stream.get(), launch, [&]() -> Status {
    // The last token's row must have landed where the view says.
    std::vector<uint16_t> want(static_cast<size_t>(kKvHeads * d)), got(want.size());
    const size_t row_bytes = want.size() * 2;
    CPB_BENCH_CUDA(cudaMemcpy(want.data(), src.as<uint16_t>() + (tokens - 1) * kKvHeads * d,
                              row_bytes, cudaMemcpyDeviceToHost));
    CPB_BENCH_CUDA(cudaMemcpy(got.data(), dst.as<uint16_t>() + (tokens - 1) * dv.token_stride,
                              row_bytes, cudaMemcpyDeviceToHost));
    if (want != got) return CPB_ERROR("copy_view wrote the wrong values: not timed");
    return {};
  });
  if (!st.ok()) return skip(state, st.error());

  const std::optional<double> total = time_loop(state, stream.get(), launch);
  if (!total) return;
  const double bytes = 2.0 * static_cast<double>(bytes_of(elems, 2));  // read + written
  const auto iters = static_cast<double>(state.iterations());
  state.counters["bytes_per_iter"] = bytes;
  state.counters["GBps"] = *total > 0.0 ? bytes * iters / *total * 1e-9 : 0.0;
  state.SetLabel(pack_kv ? "bf16 K into packed KV (strided dst), bytes read + written"
                         : "bf16 dense, bytes read + written");
}

void register_benchmarks() {
  const std::vector<int64_t> seqs = {1024, 2048, 4096, 8192, 16384};
  for (const bool causal : {true, false}) {
    const std::string name = std::string("attention_forward/bf16/") + (causal ? "causal" : "full");
    auto* b = benchmark::RegisterBenchmark(name.c_str(), bm_attention_forward, causal);
    b->ArgNames({"head_dim", "seq"});
    for (const int64_t d : {64, 128})
      for (const int64_t seq : seqs) b->Args({d, seq});
    b->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("merge_partials/fp32", bm_merge_partials)
      ->ArgNames({"head_dim", "tokens"})
      ->ArgsProduct({{128}, {1024, 4096, 16384, 65536}})
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  for (const bool pack : {false, true}) {
    const std::string name = std::string("copy_view/bf16/") + (pack ? "pack_kv" : "dense");
    benchmark::RegisterBenchmark(name.c_str(), bm_copy_view, pack)
        ->ArgNames({"head_dim", "tokens"})
        ->ArgsProduct({{128}, {4096, 16384, 65536, 262144}})
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace cpb::bench

int main(int argc, char** argv) {
  try {
    cpb::bench::add_context(argc, argv);
    cpb::bench::register_benchmarks();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cpbench_bench_kernels: %s\n", e.what());
    return 1;
  }
}
