// Hopper (sm_90a) flash-attention forward: TMA loads, wgmma on the tensor cores, one producer
// warp and two consumer warpgroups per block (warp specialisation), fp32 online softmax.
//
// Block: 128 query rows of one (batch, head); 384 threads = 3 warpgroups.
//   warpgroup 0, producer: one thread issues the bulk tensor copies (TMA) of the Q tile once and
//     of each K and V tile into a ring of ST shared-memory stages, each completing on an
//     mbarrier ("full"); it waits for the consumers to release a stage ("empty") before reusing
//     it. Its registers are given to the consumers (setmaxnreg).
//   warpgroups 1 and 2, consumers: 64 query rows each. Per key tile of 128 keys:
//     S = Q·Kᵀ (wgmma m64n128k16, both operands from shared memory, K-major), the mask, the
//     online softmax in fp32 (exp2 with the scale folded in), P rounded to the input type and
//     kept in registers as the A operand of O += P·V (wgmma with V from shared memory read
//     N-major, i.e. transposed by the hardware), then the stage is released.
// Shared memory: Q, K and V tiles are 64-column (128-byte) slabs written by TMA with the 128-byte
// swizzle, which is the canonical layout wgmma reads (8-row groups 1024 bytes apart).
// Causal masks with any offset: key j is visible to row i iff j <= i + diag; blocks are visited
// longest first; a warpgroup whose rows see no key in a tile skips its arithmetic (but still
// takes part in the stage protocol). Rows that see no key give O = 0 and LSE = -inf.
// Output: O and LSE in fp32, written or merged (accumulate) as the portable kernel does.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/flash_sm90.hpp"
#include "kernels/cuda/wgmma.cuh"

namespace cpb::cuda::sm90 {
namespace {

constexpr int kBlockM = 128;  // query rows per block (two consumer warpgroups of 64)
// Keys per tile (BN): 128 with a causal mask (less work wasted on the diagonal), 176 without
// (fewer, longer tiles: FlashAttention-3's choice for head_dim 128).
constexpr int kThreads = 384;
constexpr int kSlabRow = 128;               // bytes of one swizzled row: 64 elements of 2 bytes
constexpr int kSwizzleAtom = 8 * kSlabRow;  // 8 rows: wgmma's stride between core groups
constexpr int kSerial = 0, kOverlap = 1, kPingpong = 2;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kLog2e = 1.4426950408889634f;

struct Params {
  float* o;
  int64_t o_bs, o_ts, o_hs;  // element strides of O: batch, token, head
  float* lse;
  int64_t l_bs, l_ts, l_hs;
  int sq, sk, group, m_blocks, heads, batch;  // group = heads / kv_heads
  int64_t diag;
  int mask_kind;  // 0 none, 1 full, 2 causal
  float scale_log2;
  int accumulate;
};

// ---- PTX helpers ---------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}

// Waits until the phase with the given parity has completed.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

// One box of a 4-D tensor map (dim, head, token, batch) into shared memory, completing on `bar`.
__device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0,
                                         int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5}], [%6];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
      : "memory");
}

// wgmma shared-memory matrix descriptor, 128-byte swizzle.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  uint64_t d = 0;
  d |= static_cast<uint64_t>((addr & 0x3FFFF) >> 4);
  d |= static_cast<uint64_t>((lbo >> 4) & 0x3FFF) << 16;
  d |= static_cast<uint64_t>((sbo >> 4) & 0x3FFF) << 32;
  d |= static_cast<uint64_t>(1) << 62;
  return d;
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// Keeps the compiler from moving reads of wgmma results above the wait (and writes below the
// issue): every register of the fragment is "changed" here.
template <int R>
__device__ __forceinline__ void fence_regs(float (&r)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

template <class T>
__device__ __forceinline__ uint32_t pack2(float a, float b);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float a, float b) {
  __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float a, float b) {
  __half2 v = __floats2half2_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Keys [0, end) are visible to at least one of the rows [.., rows_end).
__device__ __forceinline__ int keys_seen(const Params& p, int rows_end) {
  if (p.mask_kind == 0) return 0;
  if (p.mask_kind == 1) return p.sk;
  const int64_t e = static_cast<int64_t>(rows_end) + p.diag;
  return static_cast<int>(e < 0 ? 0 : (e > p.sk ? p.sk : e));
}

// ---- consumer building blocks ------------------------------------------------------------------

// Issues S = Q Kᵀ for one warpgroup (64 x 128), D/16 k-steps of 16 (32 bytes inside a swizzled
// row), both operands from shared memory (q_rows: the warpgroup's first Q row).
template <class T, int D, int BN>
__device__ __forceinline__ void issue_qk(float (&sc)[BN / 2], uint32_t q_rows, uint32_t k_stage) {
  constexpr uint32_t kQSlab = kBlockM * kSlabRow, kKVSlab = BN * kSlabRow;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const int slab = kk / 4, within = kk % 4;
    const uint64_t da = smem_desc(q_rows + slab * kQSlab + within * 32, 16, kSwizzleAtom);
    const uint64_t db = smem_desc(k_stage + slab * kKVSlab + within * 32, 16, kSwizzleAtom);
    wgmma_ss<BN, T>(sc, da, db, kk > 0 ? 1 : 0);
  }
}
// Issues O += P V: 16 keys (two 8-row swizzle atoms) per step; V is read N-major, its D/64 slabs
// BN rows apart.
template <class T, int D, int BN>
__device__ __forceinline__ void issue_pv(float (&o)[D / 2], const uint32_t (&pa)[BN / 16][4],
                                         uint32_t v_stage) {
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) {
    const uint64_t db = smem_desc(v_stage + kk * 2 * kSwizzleAtom, BN * kSlabRow, kSwizzleAtom);
    wgmma_rs<D, T, 1>(o, pa[kk], db, 1);
  }
}

// Sets the scores of invisible keys to -inf: keys past the end, and with a causal mask keys
// j > i + diag. `row_first` is the warpgroup's first query row (masking is skipped when no row of
// the warpgroup needs it); this thread's rows are row0 and row0 + 8.
template <int BN>
__device__ __forceinline__ void mask_tile(float (&sc)[BN / 2], const Params& p, int n0,
                                          int row_first, int row0, int quad) {
  const bool need = n0 + BN > p.sk ||
                    (p.mask_kind == 2 && static_cast<int64_t>(n0 + BN - 1) > row_first + p.diag);
  if (!need) return;
#pragma unroll
  for (int i = 0; i < BN / 8; ++i)
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int col = n0 + 8 * i + 2 * quad + e;
        const int64_t row = row0 + 8 * r;
        if (col >= p.sk || (p.mask_kind == 2 && col > row + p.diag))
          sc[4 * i + 2 * r + e] = -INFINITY;
      }
}

// Online softmax step for this thread's two rows (a row's BN scores sit in the 4 threads of a
// quad): turns the scores into probabilities in place, updates the running max and sum, and
// returns in corr the factor the output so far must be scaled by. The max and the sum are
// reduced over kLanes independent partials: one serial chain of BN/4 dependent operations per
// row stalled the warps on fixed-latency dependencies (ncu: twice cuDNN's "wait" stalls).
template <int BN>
__device__ __forceinline__ void softmax_tile(float (&sc)[BN / 2], float (&m_run)[2],
                                             float (&l_run)[2], float (&corr)[2],
                                             float scale_log2) {
  constexpr int kChunks = BN / 8;  // 8-key chunks; each thread holds 2 keys of each per row
  constexpr int kLanes = 4;        // independent partial results per row
  float mx[2][kLanes];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int j = 0; j < kLanes; ++j) mx[r][j] = -INFINITY;
#pragma unroll
  for (int i = 0; i < kChunks; ++i)
#pragma unroll
    for (int r = 0; r < 2; ++r)
      mx[r][i % kLanes] = fmaxf(mx[r][i % kLanes], fmaxf(sc[4 * i + 2 * r], sc[4 * i + 2 * r + 1]));
  float m_use[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float m = fmaxf(fmaxf(mx[r][0], mx[r][1]), fmaxf(mx[r][2], mx[r][3]));
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
    const float m_new = fmaxf(m_run[r], m * scale_log2);
    m_use[r] = m_new == -INFINITY ? 0.0f : m_new;  // a row with no key yet
    corr[r] = ex2(m_run[r] - m_use[r]);
    m_run[r] = m_new;
  }
  float sum[2][kLanes];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int j = 0; j < kLanes; ++j) sum[r][j] = 0.0f;
#pragma unroll
  for (int i = 0; i < kChunks; ++i)
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float pv = ex2(fmaf(sc[4 * i + 2 * r + e], scale_log2, -m_use[r]));
        sc[4 * i + 2 * r + e] = pv;
        sum[r][i % kLanes] += pv;
      }
#pragma unroll
  for (int r = 0; r < 2; ++r)
    l_run[r] = l_run[r] * corr[r] + ((sum[r][0] + sum[r][1]) + (sum[r][2] + sum[r][3]));
}

template <int D>
__device__ __forceinline__ void rescale(float (&o)[D / 2], const float (&corr)[2]) {
#pragma unroll
  for (int i = 0; i < D / 8; ++i)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      o[4 * i + 2 * r] *= corr[r];
      o[4 * i + 2 * r + 1] *= corr[r];
    }
}

// P as the A operand of P·V: the accumulator layout of S is the register-A layout of wgmma.
template <class T, int BN>
__device__ __forceinline__ void pack_p(const float (&sc)[BN / 2], uint32_t (&pa)[BN / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk)
#pragma unroll
    for (int j = 0; j < 4; ++j) pa[kk][j] = pack2<T>(sc[8 * kk + 2 * j], sc[8 * kk + 2 * j + 1]);
}

// Normalises this thread's two rows and writes them, or merges them into the fp32 partial.
template <int D>
__device__ __forceinline__ void write_rows(const Params& p, const float (&o_acc)[D / 2],
                                           const float (&m_run)[2], const float (&l_run)[2],
                                           int row0, int quad, int b, int h) {
  float lse_new[2], inv[2], lse_old[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const bool any = l > 0.0f;
    inv[r] = any ? 1.0f / l : 0.0f;
    lse_new[r] = any ? (m_run[r] + log2f(l)) * kLn2 : -INFINITY;
    const int row = row0 + 8 * r;
    if (p.accumulate && row < p.sq) lse_old[r] = p.lse[b * p.l_bs + row * p.l_ts + h * p.l_hs];
  }
  __syncwarp();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + 8 * r;
    if (row >= p.sq) continue;
    float* orow = p.o + b * p.o_bs + row * p.o_ts + h * p.o_hs;
    float* lrow = p.lse + b * p.l_bs + row * p.l_ts + h * p.l_hs;
    if (!p.accumulate) {
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        orow[8 * i + 2 * quad] = o_acc[4 * i + 2 * r] * inv[r];
        orow[8 * i + 2 * quad + 1] = o_acc[4 * i + 2 * r + 1] * inv[r];
      }
      if (quad == 0) *lrow = lse_new[r];
      continue;
    }
    const float mm = fmaxf(lse_old[r], lse_new[r]);
    if (mm == -INFINITY) {
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        orow[8 * i + 2 * quad] = 0.0f;
        orow[8 * i + 2 * quad + 1] = 0.0f;
      }
      if (quad == 0) *lrow = -INFINITY;
      continue;
    }
    const float w0 = ex2((lse_old[r] - mm) * kLog2e), w1 = ex2((lse_new[r] - mm) * kLog2e);
    const float wsum = w0 + w1, a = w1 * inv[r] / wsum, c = w0 / wsum;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      float* x = orow + 8 * i + 2 * quad;
      x[0] = c * x[0] + a * o_acc[4 * i + 2 * r];
      x[1] = c * x[1] + a * o_acc[4 * i + 2 * r + 1];
    }
    if (quad == 0) *lrow = mm + logf(wsum);
  }
}

// ---- the kernel ------------------------------------------------------------------------------

// Consumer loop variants (kVariant):
//   kSerial: per tile, S = QKᵀ, softmax, O += PV, one after the other in each warpgroup (the two
//     consumer warpgroups interleave on the multiprocessor by themselves).
//   kOverlap: the next tile's QKᵀ and this tile's PV are in flight while the softmax runs
//     (FlashAttention-3's intra-warpgroup pipelining).
//   kPingpong: kOverlap, and the two warpgroups take turns to issue their matrix products
//     (named barriers), so that one's softmax runs while the other's products use the tensor
//     cores.
// Work tiles are 128 query rows of one head. With a grid of one block per tile each block takes
// one; with a persistent grid (one block per multiprocessor) block c takes one tile from each
// round of `grid` consecutive tiles, position c in even rounds and grid - 1 - c in odd ones
// (a snake: with causal tiles in descending length, a long tile is paired with a short one),
// and the producer loads the next tile's Q as soon as the consumers are done with this one's,
// so the loads overlap the last P·V and the output writes.
template <class T, int D, int kVariant, int BN, int ST>
__global__ void __launch_bounds__(kThreads, 1)
    flash_fwd_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                     const __grid_constant__ CUtensorMap tv, const Params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kSlabs = D / 64;
  constexpr uint32_t kQSlab = kBlockM * kSlabRow, kKVSlab = BN * kSlabRow;
  constexpr uint32_t kQBytes = kSlabs * kQSlab, kKVBytes = kSlabs * kKVSlab;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;
  const uint32_t s_q = base;
  const uint32_t s_k = s_q + kQBytes;
  const uint32_t s_v = s_k + ST * kKVBytes;
  // mbarriers: Q loaded, Q released; per stage K loaded, V loaded, K released, V released. K and
  // V are released separately so that the next K can load while this tile's P·V still reads V.
  const uint32_t bars = s_v + ST * kKVBytes;
  const uint32_t full_q = bars, empty_q = bars + 8u;
  auto full_k = [&](int s) { return bars + 8u * (2 + s); };
  auto full_v = [&](int s) { return bars + 8u * (2 + ST + s); };
  auto empty_k = [&](int s) { return bars + 8u * (2 + 2 * ST + s); };
  auto empty_v = [&](int s) { return bars + 8u * (2 + 3 * ST + s); };

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wg = warp / 4;
  const int total = p.m_blocks * p.heads * p.batch;
  // Work tile -> (query block, head, sequence); query blocks vary fastest so that the blocks
  // running at once share their K/V head in L2; causal: longest blocks first.
  auto work = [&](int tile, int& m0, int& h, int& b) {
    const int mi = tile % p.m_blocks, bh = tile / p.m_blocks;
    m0 = (p.mask_kind == 2 ? p.m_blocks - 1 - mi : mi) * kBlockM;
    h = bh % p.heads;
    b = bh / p.heads;
  };
  auto tiles_for = [&](int rows_end) { return (keys_seen(p, min(rows_end, p.sq)) + BN - 1) / BN; };
  const int rounds = (total + static_cast<int>(gridDim.x) - 1) / static_cast<int>(gridDim.x);
  auto tile_of = [&](int round) {  // this block's tile in a round; >= total: none
    const int c = static_cast<int>(blockIdx.x), g = static_cast<int>(gridDim.x);
    return round * g + (round % 2 == 0 ? c : g - 1 - c);
  };

  if (threadIdx.x == 0) {
    mbar_init(full_q, 1);
    mbar_init(empty_q, 8);  // one arrival per consumer warp
    for (int s = 0; s < ST; ++s) {
      mbar_init(full_k(s), 1);
      mbar_init(full_v(s), 1);
      mbar_init(empty_k(s), 8);
      mbar_init(empty_v(s), 8);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {  // ---- producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
    if (warp == 0 && lane == 0) {
      int it = 0, q_uses = 0;  // K/V stage uses and Q loads so far: they give stage and phase
      for (int round = 0; round < rounds; ++round) {
        const int tile = tile_of(round);
        if (tile >= total) continue;
        int m0, h, b;
        work(tile, m0, h, b);
        const int n_tiles = tiles_for(m0 + kBlockM);
        if (n_tiles == 0) continue;
        const int hk = h / p.group;
        mbar_wait(empty_q, (q_uses & 1) ^ 1);
        ++q_uses;
        mbar_expect_tx(full_q, kQBytes);
        for (int c = 0; c < kSlabs; ++c) tma_load(s_q + c * kQSlab, &tq, full_q, 64 * c, h, m0, b);
        for (int t = 0; t < n_tiles; ++t, ++it) {
          const int s = it % ST;
          const uint32_t phase = (it / ST) & 1;
          mbar_wait(empty_k(s), phase ^ 1);
          mbar_expect_tx(full_k(s), kKVBytes);
          for (int c = 0; c < kSlabs; ++c)
            tma_load(s_k + s * kKVBytes + c * kKVSlab, &tk, full_k(s), 64 * c, hk, t * BN, b);
          mbar_wait(empty_v(s), phase ^ 1);
          mbar_expect_tx(full_v(s), kKVBytes);
          for (int c = 0; c < kSlabs; ++c)
            tma_load(s_v + s * kKVBytes + c * kKVSlab, &tv, full_v(s), 64 * c, hk, t * BN, b);
        }
      }
    }
    return;
  }

  // ---- consumers
  asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n" ::: "memory");
  const int g = wg - 1;  // which 64-row half of a query block
  const int quad = lane % 4;
  auto release = [&](uint32_t bar) {
    __syncwarp();
    if (lane == 0) mbar_arrive(bar);
  };
  // Pingpong turns: warpgroup g waits on named barrier 1 + g before issuing its products and
  // then lets the other go; warpgroup 1 hands the first turn to warpgroup 0, once.
  auto my_turn = [&] {
    if constexpr (kVariant == kPingpong) asm volatile("bar.sync %0, 256;" ::"r"(1 + g) : "memory");
  };
  auto your_turn = [&] {
    if constexpr (kVariant == kPingpong)
      asm volatile("bar.arrive %0, 256;" ::"r"(2 - g) : "memory");
  };
  if (g == 1) your_turn();

  float o_acc[D / 2];
  float sc[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) sc[i] = 0.0f;
  uint32_t pa[BN / 16][4];
  int it = 0, q_uses = 0;
  for (int round = 0; round < rounds; ++round) {
    const int tile = tile_of(round);
    if (tile >= total) continue;
    int m0, h, b;
    work(tile, m0, h, b);
    const int n_tiles = tiles_for(m0 + kBlockM);
    const int row_first = m0 + 64 * g;
    const int row0 = row_first + 16 * (warp % 4) + lane / 4;  // this thread's rows: row0, row0 + 8
    const int n_tiles_g = tiles_for(row_first + 64);
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f}, corr[2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o_acc[i] = 0.0f;
    if (n_tiles > 0) {
      mbar_wait(full_q, q_uses & 1);
      ++q_uses;
    }
    auto qk = [&](int s) { issue_qk<T, D, BN>(sc, s_q + g * 64 * kSlabRow, s_k + s * kKVBytes); };
    auto stage = [&](int t) { return (it + t) % ST; };
    auto phase = [&](int t) { return static_cast<uint32_t>(((it + t) / ST) & 1); };

    if constexpr (kVariant == kSerial) {
      for (int t = 0; t < n_tiles_g; ++t) {
        const int s = stage(t);
        mbar_wait(full_k(s), phase(t));
        wgmma_fence();
        qk(s);
        wgmma_commit();
        wgmma_wait<0>();
        fence_regs(sc);
        release(empty_k(s));
        if (t == n_tiles_g - 1) release(empty_q);
        mask_tile<BN>(sc, p, t * BN, row_first, row0, quad);
        softmax_tile<BN>(sc, m_run, l_run, corr, p.scale_log2);
        rescale<D>(o_acc, corr);
        pack_p<T, BN>(sc, pa);
        mbar_wait(full_v(s), phase(t));
        wgmma_fence();
        issue_pv<T, D, BN>(o_acc, pa, s_v + s * kKVBytes);
        wgmma_commit();
        wgmma_wait<0>();
        fence_regs(o_acc);
        release(empty_v(s));
      }
    } else if (n_tiles_g > 0) {
      mbar_wait(full_k(stage(0)), phase(0));
      my_turn();
      wgmma_fence();
      qk(stage(0));
      wgmma_commit();
      your_turn();
      wgmma_wait<0>();
      fence_regs(sc);
      release(empty_k(stage(0)));
      if (n_tiles_g == 1) release(empty_q);
      mask_tile<BN>(sc, p, 0, row_first, row0, quad);
      softmax_tile<BN>(sc, m_run, l_run, corr, p.scale_log2);
      pack_p<T, BN>(sc, pa);
      for (int t = 1; t < n_tiles_g; ++t) {
        const int s = stage(t), sp = stage(t - 1);
        mbar_wait(full_k(s), phase(t));
        mbar_wait(full_v(sp), phase(t - 1));
        my_turn();
        wgmma_fence();
        qk(s);  // S_t
        wgmma_commit();
        issue_pv<T, D, BN>(o_acc, pa, s_v + sp * kKVBytes);  // O += P_{t-1} V_{t-1}
        wgmma_commit();
        your_turn();
        wgmma_wait<1>();
        fence_regs(sc);
        release(empty_k(s));
        if (t == n_tiles_g - 1) release(empty_q);
        mask_tile<BN>(sc, p, t * BN, row_first, row0, quad);
        softmax_tile<BN>(sc, m_run, l_run, corr, p.scale_log2);
        wgmma_wait<0>();
        fence_regs(o_acc);
        release(empty_v(sp));
        rescale<D>(o_acc, corr);
        pack_p<T, BN>(sc, pa);
      }
      const int sl = stage(n_tiles_g - 1);
      mbar_wait(full_v(sl), phase(n_tiles_g - 1));
      wgmma_fence();
      issue_pv<T, D, BN>(o_acc, pa, s_v + sl * kKVBytes);
      wgmma_commit();
      wgmma_wait<0>();
      fence_regs(o_acc);
      release(empty_v(sl));
    }
    // Tiles only the other warpgroup's rows see: keep the stage protocol and the turns.
    if (n_tiles > 0 && n_tiles_g == 0) release(empty_q);
    for (int t = n_tiles_g; t < n_tiles; ++t) {
      const int s = stage(t);
      mbar_wait(full_k(s), phase(t));
      release(empty_k(s));
      mbar_wait(full_v(s), phase(t));
      release(empty_v(s));
      my_turn();
      your_turn();
    }
    it += n_tiles;
    write_rows<D>(p, o_acc, m_run, l_run, row0, quad, b, h);
  }
#endif
}

// ---- host side ---------------------------------------------------------------------------------

int64_t token_stride(const DevView& v) {
  return v.token_stride ? v.token_stride : v.heads * v.dim;
}

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      f = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// A 4-D map (dim, head, token, batch) of a token-major view, boxes of 64 x 1 x rows x 1.
bool make_map(CUtensorMap* map, ActType t, const DevView& v, int rows) {
  auto fn = encode_fn();
  if (fn == nullptr) return false;
  const int64_t ts = token_stride(v);
  const int64_t bs = v.batch > 1 ? v.batch_stride : ts * v.tokens;
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(v.dim), static_cast<cuuint64_t>(v.heads),
                              static_cast<cuuint64_t>(v.tokens), static_cast<cuuint64_t>(v.batch)};
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(v.dim * 2),
                                 static_cast<cuuint64_t>(ts * 2), static_cast<cuuint64_t>(bs * 2)};
  const cuuint32_t box[4] = {64, 1, static_cast<cuuint32_t>(rows), 1};
  const cuuint32_t elem[4] = {1, 1, 1, 1};
  return fn(map,
            t == ActType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
            4, v.data, dims, strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

constexpr int kMaxDevices = 64;

// The device's multiprocessor count, asked of the runtime once per device.
cudaError_t multiprocessors(int dev, int* sms) {
  static std::atomic<int> known[kMaxDevices];
  if (int n = known[dev].load(std::memory_order_relaxed); n > 0) {
    *sms = n;
    return cudaSuccess;
  }
  if (cudaError_t e = cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev);
      e != cudaSuccess)
    return e;
  known[dev].store(*sms, std::memory_order_relaxed);
  return cudaSuccess;
}

template <class T, int D, int kVariant, int BN, int ST>
int launch(ActType t, const DevView& q, const DevView& k, const DevView& v, const DevView& o,
           const DevView& lse, int mask_kind, int64_t diag, float scale, bool accumulate,
           cudaStream_t stream, bool share_sms) {
  CUtensorMap tq, tk, tv;
  if (!make_map(&tq, t, q, kBlockM) || !make_map(&tk, t, k, BN) || !make_map(&tv, t, v, BN))
    return static_cast<int>(cudaErrorInvalidValue);
  Params p{};
  p.o = static_cast<float*>(o.data);
  p.o_bs = o.batch_stride;
  p.o_ts = token_stride(o);
  p.o_hs = o.dim;
  p.lse = static_cast<float*>(lse.data);
  p.l_bs = lse.batch_stride;
  p.l_ts = token_stride(lse);
  p.l_hs = lse.dim;
  p.sq = static_cast<int>(q.tokens);
  p.sk = static_cast<int>(k.tokens);
  p.group = static_cast<int>(q.heads / k.heads);
  p.m_blocks = static_cast<int>((q.tokens + kBlockM - 1) / kBlockM);
  p.heads = static_cast<int>(q.heads);
  p.batch = static_cast<int>(q.batch);
  p.diag = diag;
  p.mask_kind = mask_kind;
  p.scale_log2 = scale * kLog2e;
  p.accumulate = accumulate ? 1 : 0;
  constexpr int kSmem = 1024 + (D / 64) * (kBlockM + 2 * ST * BN) * kSlabRow + 8 * (2 + 4 * ST);
  static_assert(kSmem <= 227 * 1024, "shared memory");
  auto kernel = flash_fwd_kernel<T, D, kVariant, BN, ST>;
  // Per device, once: the shared-memory opt-in of this instantiation and the multiprocessor
  // count (both on the path of every launch otherwise).
  static std::atomic<bool> opted_in[kMaxDevices];
  int dev = 0;
  if (cudaError_t e = cudaGetDevice(&dev); e != cudaSuccess) return static_cast<int>(e);
  if (dev < 0 || dev >= kMaxDevices) return static_cast<int>(cudaErrorInvalidDevice);
  if (!opted_in[dev].load(std::memory_order_acquire)) {
    if (cudaError_t e =
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
        e != cudaSuccess)
      return static_cast<int>(e);
    opted_in[dev].store(true, std::memory_order_release);
  }
  int sms = 0;
  if (cudaError_t e = multiprocessors(dev, &sms); e != cudaSuccess) return static_cast<int>(e);
  const int64_t total = int64_t{p.m_blocks} * p.heads * p.batch;
  if (total > INT32_MAX / 2)
    return static_cast<int>(cudaErrorInvalidValue);  // tile_of stays in int
  // Persistent (one block per multiprocessor, each looping over work tiles) overlaps a tile's
  // output writes with the next tile's loads; it measured as fast or faster for full masks at
  // every length. With a causal mask tiles differ in length and a static assignment leaves
  // the blocks unequal work when there are many tiles (one block per tile, scheduled by the
  // hardware as multiprocessors free up, measured faster from 32 tiles per multiprocessor, i.e.
  // 16K tokens with 32 heads), so there it is used below 16 tiles per multiprocessor
  // (kernels/README.md). Beside another kernel (share_sms) it is never used: see kernels.hpp.
  // CPBENCH_SM90_PERSISTENT overrides, for measurements and tests: 0 one block per tile, 1 one
  // per multiprocessor, n >= 2 at most n blocks.
  const char* penv = std::getenv("CPBENCH_SM90_PERSISTENT");
  int64_t blocks = !share_sms && (mask_kind != 2 || total < 16 * int64_t{sms}) ? sms : total;
  if (penv != nullptr && *penv != '\0') {
    const long n = std::strtol(penv, nullptr, 10);
    blocks = n == 0 ? total : n == 1 ? sms : n;
  }
  const dim3 grid(static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, total)));
  kernel<<<grid, kThreads, kSmem, stream>>>(tq, tk, tv, p);
  return static_cast<int>(cudaGetLastError());
}

bool aligned16(const DevView& v) {
  const auto addr = reinterpret_cast<uintptr_t>(v.data);
  if (addr % 16 != 0 || (token_stride(v) * 2) % 16 != 0) return false;
  return v.batch <= 1 || (v.batch_stride > 0 && (v.batch_stride * 2) % 16 == 0);
}

}  // namespace

bool supports(const DevView& q, const DevView& k, const DevView& v, const char** why) {
  auto no = [&](const char* reason) {
    if (why != nullptr) *why = reason;
    return false;
  };
  if (q.dim != k.dim || q.dim != v.dim || (q.dim != 64 && q.dim != 128))
    return no("head_dim is not 64 or 128");
  if (k.heads != v.heads || k.heads == 0 || q.heads % k.heads != 0)
    return no("heads are not a multiple of kv heads");
  if (k.tokens != v.tokens || q.batch != k.batch || q.batch != v.batch)
    return no("k and v shapes differ");
  if (q.tokens < 1 || k.tokens < 1) return no("empty q or k");
  if (q.tokens > (int64_t{1} << 30) || k.tokens > (int64_t{1} << 30))
    return no("more than 2^30 tokens");
  if (q.heads > 65535 || q.batch > 65535) return no("more than 65535 heads or sequences");
  if (!aligned16(q) || !aligned16(k) || !aligned16(v))
    return no("a base address or stride is not a multiple of 16 bytes");
  return true;
}

int attention_forward(ActType t, const DevView& q, const DevView& k, const DevView& v,
                      const DevView& o, const DevView& lse, int mask_kind, int64_t diag,
                      float scale, bool accumulate, void* stream, bool share_sms) {
  if (!supports(q, k, v, nullptr)) return static_cast<int>(cudaErrorNotSupported);
  auto s = static_cast<cudaStream_t>(stream);
  // CPBENCH_SM90_VARIANT (serial | overlap | pingpong) picks the consumer loop and
  // CPBENCH_SM90_BLOCK_N (128 | 176) the key tile of full masks; both for measurements.
  const char* env = std::getenv("CPBENCH_SM90_VARIANT");
  const int variant = env == nullptr                     ? kPingpong
                      : std::strcmp(env, "serial") == 0  ? kSerial
                      : std::strcmp(env, "overlap") == 0 ? kOverlap
                                                         : kPingpong;
  // Tiles: (key tile, stages) = (176, 2) for full masks at head_dim 128, else (128, 2);
  // CPBENCH_SM90_BLOCK_N=128 and CPBENCH_SM90_STAGES=3 select the others, for measurements.
  const char* nenv = std::getenv("CPBENCH_SM90_BLOCK_N");
  const char* senv = std::getenv("CPBENCH_SM90_STAGES");
  const bool three = senv != nullptr && std::strcmp(senv, "3") == 0;
  const bool wide = !three && mask_kind != 2 && q.dim == 128 &&
                    (nenv == nullptr || std::strcmp(nenv, "128") != 0);
  auto run = [&](auto tag_t, auto tag_d) {
    using T = decltype(tag_t);
    constexpr int kD = decltype(tag_d)::value;
    auto go = [&](auto tag_v) {
      constexpr int kV = decltype(tag_v)::value;
      if (wide)
        return launch<T, kD, kV, 176, 2>(t, q, k, v, o, lse, mask_kind, diag, scale, accumulate, s,
                                         share_sms);
      if (three)
        return launch<T, kD, kV, 128, 3>(t, q, k, v, o, lse, mask_kind, diag, scale, accumulate, s,
                                         share_sms);
      return launch<T, kD, kV, 128, 2>(t, q, k, v, o, lse, mask_kind, diag, scale, accumulate, s,
                                       share_sms);
    };
    switch (variant) {
      case kSerial:
        return go(std::integral_constant<int, kSerial>{});
      case kOverlap:
        return go(std::integral_constant<int, kOverlap>{});
      default:
        return go(std::integral_constant<int, kPingpong>{});
    }
  };
  using D64 = std::integral_constant<int, 64>;
  using D128 = std::integral_constant<int, 128>;
  if (t == ActType::bf16)
    return q.dim == 128 ? run(__nv_bfloat16{}, D128{}) : run(__nv_bfloat16{}, D64{});
  return q.dim == 128 ? run(__half{}, D128{}) : run(__half{}, D64{});
}

}  // namespace cpb::cuda::sm90
