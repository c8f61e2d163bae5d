// The cuda backend on real GPUs (label `gpu`: CI has none, the lent GPU machines run these):
// the kernels against the fp64 reference across shapes, offsets, GQA, dtypes and lengths that
// are not multiples of a tile; fully masked rows; and every strategy on 1, 2 and 4 GPUs in full
// prefill, partial prefill and decode, op by op and replayed from a CUDA graph.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

#include "harness/core/backend.hpp"
#include "harness/runner/runner.hpp"
#include "strategies/strategy.hpp"
#include "tests/support/scoped_env.hpp"

namespace cpb {
namespace {

ExecSpec cuda_spec(const std::string& strategy, int n, const Workload& w, LayoutKind layout) {
  ExecSpec s;
  s.backend = "cuda";
  s.strategy = strategy;
  s.cp = n;
  s.workload = w;
  s.layout = layout;
  s.seed = static_cast<uint64_t>(n * 7 + w.new_tokens);
  return s;
}

TEST(CudaKernel, SingleGpuMatchesReference) {
  if (usable_gpus() < 1) GTEST_SKIP() << "no GPU";
  for (DType dt : {DType::bf16, DType::fp16})
    for (int64_t d : {64, 128})
      for (auto [h, hkv] : {std::pair<int64_t, int64_t>{8, 8}, {8, 2}, {16, 1}})
        for (auto [T, P] : {std::pair<int64_t, int64_t>{77, 0}, {130, 333}, {1, 515}})
          for (MaskKind m : {MaskKind::causal, MaskKind::full}) {
            Workload w{.batch = 2,
                       .heads = h,
                       .kv_heads = hkv,
                       .head_dim = d,
                       .dtype = dt,
                       .mask = m,
                       .new_tokens = T,
                       .cached_tokens = P};
            auto res = execute_point(cuda_spec("ring_pass_kv", 1, w, LayoutKind::contiguous));
            ASSERT_TRUE(res.ok()) << res.error().detail();
            EXPECT_TRUE(res->verify.passed()) << w.str() << " rel=" << res->verify.max_rel_err
                                              << " finite=" << res->verify.finite;
            EXPECT_EQ(res->clock, "cuda_event");
          }
}

// Rows whose keys are all masked give O = 0 and LSE = -inf, never NaN, on the GPU too; a merge
// of two empty partials stays empty.
TEST(CudaKernel, FullyMaskedRowsGiveZeroAndMinusInf) {
  if (usable_gpus() < 1) GTEST_SKIP() << "no GPU";
  auto backend = make_backend("cuda", 1, DType::bf16, 30);
  ASSERT_TRUE(backend.ok()) << backend.error().str();
  Status st = (*backend)->run([](Executor& ex) -> Status {
    const int64_t T = 6, S = 5, H = 2, d = 64;
    CPB_ASSIGN_OR_RETURN(Buf q, ex.alloc("q", ElemKind::act, T * H * d));
    CPB_ASSIGN_OR_RETURN(Buf kv, ex.alloc("kv", ElemKind::act, 2 * S * d));
    CPB_ASSIGN_OR_RETURN(Buf o, ex.alloc("o", ElemKind::f32, T * H * d));
    CPB_ASSIGN_OR_RETURN(Buf l, ex.alloc("lse", ElemKind::f32, T * H));
    std::vector<float> ones(static_cast<size_t>(T * H * d), 0.5f);
    CPB_TRY(ex.write(q, 0, ones));
    CPB_TRY(ex.write(kv, 0, std::span<const float>(ones.data(), 2 * S * d)));
    std::vector<float> junk(static_cast<size_t>(T * H * d), 7.0f);
    CPB_TRY(ex.write(o, 0, junk));
    AttnArgs a;
    a.q = dense_view(q, 0, 1, T, H, d);
    a.k = dense_view(kv, 0, 1, S, 1, d);
    a.v = dense_view(kv, S * d, 1, S, 1, d);
    a.o = dense_view(o, 0, 1, T, H, d);
    a.lse = dense_view(l, 0, 1, T, H, 1);
    a.mask = {BlockMask::Kind::causal, -3};  // rows 0..2 see no key
    a.scale = 0.125;
    CPB_TRY(ex.attention(Stream::compute, a));
    std::vector<float> oh(static_cast<size_t>(T * H * d)), lh(static_cast<size_t>(T * H));
    CPB_TRY(ex.read(o, 0, oh));
    CPB_TRY(ex.read(l, 0, lh));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const float lse = lh[t * H + h];
        if (t < 3) {
          EXPECT_TRUE(std::isinf(lse) && lse < 0) << t;
          for (int64_t x = 0; x < d; ++x) EXPECT_EQ(oh[(t * H + h) * d + x], 0.0f);
        } else {
          EXPECT_TRUE(std::isfinite(lse));
          for (int64_t x = 0; x < d; ++x) EXPECT_NEAR(oh[(t * H + h) * d + x], 0.5f, 1e-6);
        }
      }
    return {};
  });
  ASSERT_TRUE(st.ok()) << st.error().detail();
}

// The naive GPU reference against fp64 at a small size, and the executor's attention against the
// naive reference at a size the fp64 host reference would take long over: the portable kernel
// (forced through CPBENCH_ATTENTION_KERNEL, which the dispatcher reads on each call) within its
// fp32 bound, then whatever `automatic` picks (the Hopper kernel at d=128 on compute capability
// 9.0, P rounded to bf16 before P·V) within the bf16 bound.
TEST(CudaReference, NaiveKernelAgreesWithFp64AndWithThePortableKernel) {
  if (usable_gpus() < 1) GTEST_SKIP() << "no GPU";
  Workload small{.batch = 2,
                 .heads = 8,
                 .kv_heads = 2,
                 .head_dim = 64,
                 .dtype = DType::bf16,
                 .mask = MaskKind::causal,
                 .new_tokens = 33,
                 .cached_tokens = 70};
  Inputs in = random_inputs(small, 11);
  std::vector<float> o, lse;
  Status st = gpu_reference_attention(small, in.q, in.k, in.v, o, lse);
  ASSERT_TRUE(st.ok()) << st.error().str();
  EXPECT_TRUE(verify_against_reference(small, in, o, lse, 1e-5).passed());

  Workload big{.batch = 1,
               .heads = 32,
               .kv_heads = 8,
               .head_dim = 128,
               .dtype = DType::bf16,
               .mask = MaskKind::causal,
               .new_tokens = 2048,
               .cached_tokens = 2048};
  ExecSpec spec = cuda_spec("ring_pass_kv", 1, big, LayoutKind::contiguous);
  spec.verify = false;
  Inputs bin = random_inputs(big, spec.seed);
  spec.inputs = &bin;
  st = gpu_reference_attention(big, bin.q, bin.k, bin.v, o, lse);
  ASSERT_TRUE(st.ok()) << st.error().str();
  // max |O - O_ref| / max |O_ref|, as the verifier measures it.
  auto rel_err = [&](const std::vector<float>& out) {
    double max_abs = 0, ref_max = 0;
    for (size_t i = 0; i < o.size(); ++i) {
      max_abs = std::max(max_abs, static_cast<double>(std::abs(o[i] - out[i])));
      ref_max = std::max(ref_max, static_cast<double>(std::abs(o[i])));
    }
    return max_abs / ref_max;
  };
  {
    testing_support::ScopedEnv portable("CPBENCH_ATTENTION_KERNEL", "portable");
    auto res = execute_point(spec);
    ASSERT_TRUE(res.ok()) << res.error().detail();
    ASSERT_EQ(res->o.size(), o.size());
    EXPECT_LE(rel_err(res->o), 1e-4) << "portable kernel vs naive reference";
  }
  testing_support::ScopedEnv automatic("CPBENCH_ATTENTION_KERNEL", nullptr);
  auto res = execute_point(spec);
  ASSERT_TRUE(res.ok()) << res.error().detail();
  ASSERT_EQ(res->o.size(), o.size());
  EXPECT_LE(rel_err(res->o), 1e-2) << "automatic kernel vs naive reference";
}

// Ranks generate their random inputs on the GPU (kernels/random_inputs.hpp); the host makes the
// same values for its references. A point run from generated inputs and the same point run from
// random_inputs() uploaded must give bit-identical outputs, on every layout (each maps local
// rows to global indices differently), in prefill with cached tokens and in decode.
TEST(CudaInputs, GeneratedOnTheGpuEqualTheHostInputs) {
  const int gpus = usable_gpus();
  if (gpus < 1) GTEST_SKIP() << "no GPU";
  const int cp = std::min(gpus, 3);
  struct Case {
    LayoutKind layout;
    int64_t batch, new_tokens, cached_tokens;
  };
  for (const Case& c :
       {Case{LayoutKind::zigzag, 2, 6 * 16, 50}, Case{LayoutKind::striped, 1, 96, 0},
        Case{LayoutKind::contiguous, 1, 96, 7}, Case{LayoutKind::zigzag, 5, 1, 41}}) {
    Workload w{.batch = c.batch,
               .heads = 4,
               .kv_heads = 2,
               .head_dim = 64,
               .dtype = DType::bf16,
               .mask = MaskKind::causal,
               .new_tokens = c.new_tokens,
               .cached_tokens = c.cached_tokens};
    ExecSpec spec = cuda_spec("ring_pass_kv", cp, w, c.layout);
    spec.verify = true;
    auto generated = execute_point(spec);
    ASSERT_TRUE(generated.ok()) << generated.error().detail();
    EXPECT_TRUE(generated->verify.passed()) << "layout " << to_string(c.layout);
    Inputs in = random_inputs(w, spec.seed);
    spec.inputs = &in;
    auto uploaded = execute_point(spec);
    ASSERT_TRUE(uploaded.ok()) << uploaded.error().detail();
    EXPECT_EQ(generated->o, uploaded->o) << "layout " << to_string(c.layout);
    EXPECT_EQ(generated->lse, uploaded->lse) << "layout " << to_string(c.layout);
  }
}

// Points too large for the fp64 host reference are checked against the same inputs on one GPU.
TEST(CudaVerify, LargePointsAreCheckedAgainstOneGpu) {
  if (usable_gpus() < 2) GTEST_SKIP() << "2 GPUs needed";
  Workload w{.batch = 1,
             .heads = 32,
             .kv_heads = 8,
             .head_dim = 128,
             .dtype = DType::bf16,
             .mask = MaskKind::causal,
             .new_tokens = 4096};
  ASSERT_GT(workload_flops(w), kCpuReferenceMaxFlops);
  for (const char* s : {"ring_pass_kv", "ring_pass_q", "ulysses"}) {
    auto res = execute_point(cuda_spec(s, 2, w, LayoutKind::zigzag));
    ASSERT_TRUE(res.ok()) << res.error().detail();
    EXPECT_TRUE(res->verify.passed()) << s << " rel=" << res->verify.max_rel_err;
    EXPECT_NE(res->verify.reference.find("one GPU"), std::string::npos) << res->verify.reference;
  }
}

// The NCCL abort path (CPBENCH_FAULT's injected faults): a rank that throws, or hangs so that
// its peer's transfer never completes on the GPU, fails the point within the timeout (the peer
// gives up waiting for its GPU work and the backend calls ncclCommAbort), and the next point, on
// fresh communicators, runs and verifies.
TEST(CudaFault, AFailedRankIsAbortedAndTheNextPointRuns) {
  if (usable_gpus() < 2) GTEST_SKIP() << "2 GPUs needed";
  Workload w{.batch = 1,
             .heads = 8,
             .kv_heads = 2,
             .head_dim = 128,
             .dtype = DType::bf16,
             .mask = MaskKind::causal,
             .new_tokens = 4096};
  for (auto kind : {FaultSpec::Kind::hang, FaultSpec::Kind::throw_exception}) {
    for (const char* s : {"ring_pass_kv", "ring_pass_q"}) {
      ExecSpec spec = cuda_spec(s, 2, w, LayoutKind::zigzag);
      spec.warmup = 1;
      spec.iterations = 2;
      spec.timeout_s = 5;
      spec.fault.kind = kind;
      spec.fault.rank = 1;
      const auto t0 = std::chrono::steady_clock::now();
      auto failed = execute_point(spec);
      const double took =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ASSERT_FALSE(failed.ok()) << s;
      EXPECT_LT(took, 30) << s << ": the abort took too long";
      const std::string why = failed.error().str();
      if (kind == FaultSpec::Kind::throw_exception)
        EXPECT_NE(why.find("injected fault"), std::string::npos) << why;
      else
        EXPECT_NE(why.find("timeout_s"), std::string::npos) << why;
      spec.fault = {};
      auto next = execute_point(spec);
      ASSERT_TRUE(next.ok()) << s << ": " << next.error().str();
      EXPECT_TRUE(next->verify.passed()) << s;
    }
  }
}

// The memory preflight on real GPUs: a point whose buffers exceed a GPU's free memory is
// refused by check_point, with the estimate and the free memory, before anything is allocated.
TEST(CudaMemory, APointThatCannotFitIsRefusedBeforeAllocating) {
  if (usable_gpus() < 1) GTEST_SKIP() << "no GPU";
  Workload w{.batch = 1,
             .heads = 32,
             .kv_heads = 32,
             .head_dim = 128,
             .dtype = DType::bf16,
             .mask = MaskKind::causal,
             .new_tokens = int64_t{1} << 22};  // 4M tokens: Q alone is 32 GiB, K/V 64 GiB
  ExecSpec spec = cuda_spec("allgather", 1, w, LayoutKind::contiguous);
  spec.verify = false;
  const auto t0 = std::chrono::steady_clock::now();
  Status st = check_point(spec);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("GiB free"), std::string::npos) << st.error().message;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10);
  auto res = execute_point(spec);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().message.find("GiB free"), std::string::npos) << res.error().message;
}

class CudaStrategies : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(CudaStrategies, EveryPhaseMatchesReference) {
  auto [strategy, n] = GetParam();
  if (usable_gpus() < n) GTEST_SKIP() << n << " GPUs needed, " << usable_gpus() << " visible";
  struct Case {
    int64_t b, T, P;
    LayoutKind layout;
  } cases[] = {{2, 16 * n, 0, LayoutKind::zigzag},
               {1, 8 * n, 40 * n + 3, LayoutKind::striped},
               {3, 1, 50 * n + 1, LayoutKind::contiguous}};
  for (const auto& c : cases) {
    Workload w{.batch = c.b,
               .heads = 8,
               .kv_heads = 2,
               .head_dim = 128,
               .dtype = DType::bf16,
               .mask = MaskKind::causal,
               .new_tokens = c.T,
               .cached_tokens = c.P};
    ExecSpec spec = cuda_spec(strategy, n, w, c.layout);
    if (Status st = check_point(spec); !st.ok()) {
      EXPECT_TRUE(strategy == "ulysses" || strategy == "usp") << st.error().str();
      continue;
    }
    spec.warmup = 1;
    spec.iterations = 3;
    // Op by op, then as replays of the captured CUDA graph (the output checked is the last
    // replay's; the variants are captured and replayed too).
    for (bool graph : {false, true}) {
      spec.cuda_graph = graph;
      spec.measure_overlap = graph;
      auto res = execute_point(spec);
      ASSERT_TRUE(res.ok()) << res.error().detail();
      EXPECT_TRUE(res->verify.passed()) << strategy << " n=" << n << " graph=" << graph << " "
                                        << w.str() << " rel=" << res->verify.max_rel_err;
      for (double t : res->iteration_times_s) EXPECT_GT(t, 0);
      for (const auto& rk : res->ranks) {
        EXPECT_EQ(rk.graph, graph);
        for (double t : rk.compute_only_s) EXPECT_GT(t, 0);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Gpus, CudaStrategies,
                         ::testing::Combine(::testing::ValuesIn(strategy_names()),
                                            ::testing::Values(1, 2, 3, 4, 5, 8)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_cp" +
                                  std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace cpb
