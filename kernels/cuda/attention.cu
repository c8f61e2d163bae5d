// Portable flash-attention forward, LSE merge, reset and strided copy kernels (sm_80+).
//
// attention: one warp per (batch, head, query row). The row's query sits in registers, spread
// over the lanes (dim/32 values each); keys are visited 32 at a time, lane j scoring key j
// against the whole query (read from shared memory), then the warp does an online softmax step
// and accumulates P·V with each lane owning its slice of the output dims. fp32 throughout,
// LSE in natural log. Correct first; the tensor-core kernel comes with Step D.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/kernels.hpp"
#include "kernels/random_inputs.hpp"
#ifdef CPBENCH_HAVE_SM90A
#include "kernels/cuda/flash_sm90.hpp"
#endif

namespace cpb::cuda {
namespace {

constexpr int kMaxPerLane = 8;  // head_dim <= 256
constexpr int kWarpsPerBlock = 4;
// Registers capped at 64 a thread (65536 / (128 x 8)), so that an SM holds 32 warps (rows).
constexpr int kMinBlocksPerSm = 8;

__device__ __forceinline__ float to_f(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
__device__ __forceinline__ float to_f(__half x) {
  return __half2float(x);
}
template <class T>
__device__ T from_f(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_f<__half>(float x) {
  return __float2half_rn(x);
}

template <class T>
__device__ __forceinline__ const T* at(const DevView& v, int64_t b, int64_t t, int64_t h) {
  const int64_t ts = v.token_stride ? v.token_stride : v.heads * v.dim;
  return static_cast<const T*>(v.data) + b * v.batch_stride + t * ts + h * v.dim;
}
template <class T>
__device__ __forceinline__ T* at_mut(const DevView& v, int64_t b, int64_t t, int64_t h) {
  const int64_t ts = v.token_stride ? v.token_stride : v.heads * v.dim;
  return static_cast<T*>(v.data) + b * v.batch_stride + t * ts + h * v.dim;
}

// kPer: head dims per lane (ceil(head_dim / 32): 1, 2, 4 or 8), so that the accumulator and the
// loads in flight live in registers sized for the head_dim. The kernel is bound by load latency
// (a warp's loads, not the arithmetic, set its time), so each chunk's loads are all issued before
// any is used: 16 elements of a lane's key row at a time for the scores, then V rows in groups of
// 16 / kPer keys. The arithmetic and its order are those of one key after another. kVec: K rows
// start on 16-byte boundaries and head_dim is a multiple of 8 (rows_16b), so they are read 16 bytes
// at a time.
template <class T, int kPer, bool kVec>
__global__ void __launch_bounds__(32 * kWarpsPerBlock, kMinBlocksPerSm)
    attention_kernel(DevView q, DevView k, DevView v, DevView o, DevView lse, int mask_kind,
                     int64_t diag, float scale, bool accumulate) {
  constexpr int kLoads = 16;             // loads in flight per lane
  constexpr int kGroup = kLoads / kPer;  // V rows loaded together (kPer <= 8: at least 2)
  __shared__ float qs[kWarpsPerBlock][kPer * 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  const int64_t rows = q.batch * q.tokens * q.heads;
  if (row >= rows) return;
  const int64_t h = row % q.heads, i = (row / q.heads) % q.tokens, b = row / (q.heads * q.tokens);
  const int64_t hk = h / (q.heads / k.heads);
  const int d = static_cast<int>(q.dim);
  const T* qrow = at<T>(q, b, i, h);
  for (int x = lane; x < d; x += 32) qs[warp][x] = to_f(qrow[x]) * scale;
  __syncwarp();

  int64_t visible = k.tokens;
  if (mask_kind == 0) visible = 0;
  if (mask_kind == 2) {
    visible = i + diag + 1;
    if (visible < 0) visible = 0;
    if (visible > k.tokens) visible = k.tokens;
  }

  // Key and value row j of this head: base + j * stride.
  const T* kbase = at<T>(k, b, 0, hk);
  const T* vbase = at<T>(v, b, 0, hk);
  const int64_t kstride = k.token_stride ? k.token_stride : k.heads * k.dim;
  const int64_t vstride = v.token_stride ? v.token_stride : v.heads * v.dim;
  float m = -INFINITY, l = 0.0f;
  float acc[kPer];
#pragma unroll
  for (int c = 0; c < kPer; ++c) acc[c] = 0.0f;
  for (int64_t j0 = 0; j0 < visible; j0 += 32) {
    const int64_t j = j0 + lane;
    float s = -INFINITY;
    if (j < visible) {
      const T* krow = kbase + j * kstride;
      float dot = 0.0f;
#pragma unroll
      for (int x0 = 0; x0 < kPer * 32; x0 += kLoads) {
        if (x0 >= d) break;
        float kx[kLoads];
        if constexpr (kVec) {
          // 16-byte loads: a lane's row is its own cache line, so each load instruction of
          // the warp touches 32 lines; 8 elements a load instead of one.
          constexpr int kPerLoad = 16 / sizeof(T);
#pragma unroll
          for (int u = 0; u < kLoads / kPerLoad; ++u) {
            uint4 raw = make_uint4(0, 0, 0, 0);
            if (x0 + u * kPerLoad < d)
              raw = *reinterpret_cast<const uint4*>(krow + x0 + u * kPerLoad);
            const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
            for (int x = 0; x < kPerLoad; ++x) kx[u * kPerLoad + x] = to_f(e[x]);
          }
        } else {
#pragma unroll
          for (int x = 0; x < kLoads; ++x) kx[x] = x0 + x < d ? to_f(krow[x0 + x]) : 0.0f;
        }
#pragma unroll
        for (int x = 0; x < kLoads; ++x)
          if (x0 + x < d) dot += qs[warp][x0 + x] * kx[x];
      }
      s = dot;
    }
    float mx = s;
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    const float m_new = fmaxf(m, mx);
    const float p = j < visible ? __expf(s - m_new) : 0.0f;
    float ps = p;
    for (int off = 16; off > 0; off >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, off);
    const float corr = __expf(m - m_new);  // m = -inf on the first chunk: corr = 0
    l = l * corr + ps;
#pragma unroll
    for (int c = 0; c < kPer; ++c) acc[c] *= corr;
    const int n = visible - j0 < 32 ? static_cast<int>(visible - j0) : 32;
#pragma unroll
    for (int g = 0; g < 32; g += kGroup) {
      if (g >= n) break;
      float vx[kGroup][kPer];
      const T* vg = vbase + (j0 + g) * vstride;
#pragma unroll
      for (int jj = 0; jj < kGroup; ++jj) {
#pragma unroll
        for (int c = 0; c < kPer; ++c) {
          const int x = lane + 32 * c;
          vx[jj][c] = g + jj < n && x < d ? to_f(vg[jj * vstride + x]) : 0.0f;
        }
      }
#pragma unroll
      for (int jj = 0; jj < kGroup; ++jj) {
        const float pj = __shfl_sync(0xffffffffu, p, g + jj);
        if (g + jj < n) {
#pragma unroll
          for (int c = 0; c < kPer; ++c)
            if (lane + 32 * c < d) acc[c] += pj * vx[jj][c];
        }
      }
    }
    m = m_new;
  }

  float* orow = at_mut<float>(o, b, i, h);
  float* lrow = at_mut<float>(lse, b, i, h);
  const float my_lse = visible > 0 ? m + logf(l) : -INFINITY;
  const float inv = visible > 0 ? 1.0f / l : 0.0f;
  if (!accumulate) {
#pragma unroll
    for (int c = 0; c < kPer; ++c) {
      const int x = lane + 32 * c;
      if (x < d) orow[x] = acc[c] * inv;
    }
    if (lane == 0) *lrow = my_lse;
    return;
  }
  // Merge into the existing partial: max-subtracted, -inf safe.
  const float old = *lrow;
  const float mm = fmaxf(old, my_lse);
  __syncwarp();
  if (mm == -INFINITY) {
#pragma unroll
    for (int c = 0; c < kPer; ++c) {
      const int x = lane + 32 * c;
      if (x < d) orow[x] = 0.0f;
    }
    if (lane == 0) *lrow = -INFINITY;
    return;
  }
  const float w0 = __expf(old - mm), w1 = __expf(my_lse - mm);
  const float winv = 1.0f / (w0 + w1);
#pragma unroll
  for (int c = 0; c < kPer; ++c) {
    const int x = lane + 32 * c;
    if (x < d) orow[x] = (w0 * orow[x] + w1 * acc[c] * inv) * winv;
  }
  __syncwarp();
  if (lane == 0) *lrow = mm + logf(w0 + w1);
}

// The elementwise kernels (merge, reset, copy) run one thread per chunk of a row: 16 bytes
// (uint4 / float4) where the views allow it, else one element. A row is (b, t, h): dim elements.
struct RowChunks {
  int64_t rows = 0, per_row = 0;  // chunks per row
  __device__ void locate(const DevView& v, int64_t idx, int64_t& b, int64_t& t, int64_t& h,
                         int64_t& c) const {
    c = idx % per_row;
    const int64_t row = idx / per_row;
    h = row % v.heads;
    t = (row / v.heads) % v.tokens;
    b = row / (v.heads * v.tokens);
  }
};

// Whether every row of the view starts on a 16-byte boundary and holds whole 16-byte chunks.
bool rows_16b(const DevView& v, int elem_bytes) {
  const int64_t ts = v.token_stride ? v.token_stride : v.heads * v.dim;
  return reinterpret_cast<uintptr_t>(v.data) % 16 == 0 && (v.dim * elem_bytes) % 16 == 0 &&
         (ts * elem_bytes) % 16 == 0 && (v.batch_stride * elem_bytes) % 16 == 0;
}

// O <- (w0 O + w1 O_part) / (w0 + w1) with w = exp(LSE - max): one chunk of kVec floats a
// thread. LSE is updated by merge_lse_kernel afterwards, so no thread reads a row's LSE after
// another has changed it.
template <int kVec>
__global__ void merge_o_kernel(DevView o, DevView lse, DevView po, DevView pl, RowChunks rc) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rc.rows * rc.per_row) return;
  int64_t b, t, h, c;
  rc.locate(o, idx, b, t, h, c);
  const float l0 = *at<float>(lse, b, t, h), l1 = *at<float>(pl, b, t, h);
  const float mm = fmaxf(l0, l1);
  float* out = at_mut<float>(o, b, t, h) + c * kVec;
  const float* part = at<float>(po, b, t, h) + c * kVec;
  if (mm == -INFINITY) {  // neither side saw a key: O = 0 whatever the buffers hold
    for (int x = 0; x < kVec; ++x) out[x] = 0.0f;
    return;
  }
  const float e0 = __expf(l0 - mm), e1 = __expf(l1 - mm), inv = 1.0f / (e0 + e1);
  const float w0 = e0 * inv, w1 = e1 * inv;
  if constexpr (kVec == 4) {
    float4 a = *reinterpret_cast<float4*>(out);
    const float4 p = *reinterpret_cast<const float4*>(part);
    a.x = w0 * a.x + w1 * p.x;
    a.y = w0 * a.y + w1 * p.y;
    a.z = w0 * a.z + w1 * p.z;
    a.w = w0 * a.w + w1 * p.w;
    *reinterpret_cast<float4*>(out) = a;
  } else {
    *out = w0 * *out + w1 * *part;
  }
}

__global__ void merge_lse_kernel(DevView lse, DevView pl, int64_t rows) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  const int64_t h = row % lse.heads, t = (row / lse.heads) % lse.tokens,
                b = row / (lse.heads * lse.tokens);
  float* l = at_mut<float>(lse, b, t, h);
  const float l1 = *at<float>(pl, b, t, h), mm = fmaxf(*l, l1);
  *l = mm == -INFINITY ? -INFINITY : mm + logf(__expf(*l - mm) + __expf(l1 - mm));
}

template <int kVec>
__global__ void reset_kernel(DevView o, DevView lse, RowChunks rc) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rc.rows * rc.per_row) return;
  int64_t b, t, h, c;
  rc.locate(o, idx, b, t, h, c);
  float* out = at_mut<float>(o, b, t, h) + c * kVec;
  if constexpr (kVec == 4)
    *reinterpret_cast<float4*>(out) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  else
    *out = 0.0f;
  if (c == 0) *at_mut<float>(lse, b, t, h) = -INFINITY;
}

// Copies one chunk of type C (uint4: 16 bytes; else one element) a thread; T is the element.
template <class T, class C>
__global__ void copy_kernel(DevView dst, DevView src, RowChunks rc) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rc.rows * rc.per_row) return;
  int64_t b, t, h, c;
  rc.locate(dst, idx, b, t, h, c);
  reinterpret_cast<C*>(at_mut<T>(dst, b, t, h))[c] =
      reinterpret_cast<const C*>(at<T>(src, b, t, h))[c];
}

template <class T>
__global__ void fill_random_kernel(DevView dst, uint64_t seed, uint32_t tensor, int64_t base,
                                   int64_t batch_step, int64_t token_step) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = dst.batch * dst.tokens * dst.heads * dst.dim;
  if (idx >= total) return;
  const int64_t x = idx % dst.dim;
  const int64_t row = idx / dst.dim;
  const int64_t h = row % dst.heads, t = (row / dst.heads) % dst.tokens,
                b = row / (dst.heads * dst.tokens);
  const auto global =
      static_cast<uint64_t>(base + b * batch_step + t * token_step + h * dst.dim + x);
  const float v = random_input_value(seed, static_cast<InputTensor>(tensor), global);
  at_mut<T>(dst, b, t, h)[x] = from_f<T>(v);
}

template <class T>
__global__ void reference_kernel(const T* q, const T* k, const T* v, float* o, float* lse,
                                 int64_t B, int64_t T_, int64_t P, int64_t H, int64_t Hkv,
                                 int64_t d, bool causal, float scale) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= B * T_ * H) return;
  const int64_t h = row % H, t = (row / H) % T_, b = row / (H * T_);
  const int64_t S = P + T_, hk = h / (H / Hkv);
  const int64_t last = causal ? P + t : S - 1;
  const T* qr = q + ((b * T_ + t) * H + h) * d;
  float m = -INFINITY;
  for (int64_t p = 0; p <= last; ++p) {
    const T* kr = k + ((b * S + p) * Hkv + hk) * d;
    float s = 0.0f;
    for (int64_t x = 0; x < d; ++x) s += to_f(qr[x]) * to_f(kr[x]);
    m = fmaxf(m, s * scale);
  }
  float* orow = o + ((b * T_ + t) * H + h) * d;
  for (int64_t x = 0; x < d; ++x) orow[x] = 0.0f;
  float sum = 0.0f;
  for (int64_t p = 0; p <= last; ++p) {
    const T* kr = k + ((b * S + p) * Hkv + hk) * d;
    const T* vr = v + ((b * S + p) * Hkv + hk) * d;
    float s = 0.0f;
    for (int64_t x = 0; x < d; ++x) s += to_f(qr[x]) * to_f(kr[x]);
    const float e = expf(s * scale - m);
    sum += e;
    for (int64_t x = 0; x < d; ++x) orow[x] += e * to_f(vr[x]);
  }
  for (int64_t x = 0; x < d; ++x) orow[x] /= sum;
  lse[(b * T_ + t) * H + h] = m + logf(sum);
}

unsigned blocks_for(int64_t n, int per) {
  return static_cast<unsigned>((n + per - 1) / per);
}

#ifdef CPBENCH_HAVE_SM90A
// Whether the current device has compute capability 9.0 (the sm_90a image runs on nothing else),
// asked of the runtime once per device: this is on the path of every launch.
bool current_device_is_sm90() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> known[kMaxDevices];  // 0 unknown, 1 yes, 2 no
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (dev >= 0 && dev < kMaxDevices && known[dev].load(std::memory_order_relaxed) != 0)
    return known[dev].load(std::memory_order_relaxed) == 1;
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
    return false;
  const bool yes = major == 9 && minor == 0;
  if (dev >= 0 && dev < kMaxDevices) known[dev].store(yes ? 1 : 2, std::memory_order_relaxed);
  return yes;
}
#endif

}  // namespace

const char* attention_kernel_name(AttentionKernel k) {
  switch (k) {
    case AttentionKernel::automatic:
      return "auto";
    case AttentionKernel::portable:
      return "portable";
    case AttentionKernel::hopper:
      return "hopper";
  }
  return "?";
}

bool hopper_attention_supported(const DevView& q, const DevView& k, const DevView& v,
                                const char** why) {
#ifdef CPBENCH_HAVE_SM90A
  if (!current_device_is_sm90()) {
    if (why != nullptr) *why = "the device is not compute capability 9.0";
    return false;
  }
  return sm90::supports(q, k, v, why);
#else
  (void)q, (void)k, (void)v;
  if (why != nullptr) *why = "this build has no sm_90a kernels (CPBENCH_HAVE_SM90A unset)";
  return false;
#endif
}

AttentionKernel resolve_attention_kernel(const DevView& q, const DevView& k, const DevView& v) {
  const char* env = std::getenv("CPBENCH_ATTENTION_KERNEL");
  if (env != nullptr && std::strcmp(env, "portable") == 0) return AttentionKernel::portable;
  return hopper_attention_supported(q, k, v) ? AttentionKernel::hopper : AttentionKernel::portable;
}

int attention_forward(ActType t, const DevView& q, const DevView& k, const DevView& v,
                      const DevView& o, const DevView& lse, int mask_kind, int64_t diag,
                      float scale, bool accumulate, void* stream, AttentionKernel which,
                      bool share_sms) {
  const int64_t rows = q.batch * q.tokens * q.heads;
  if (rows == 0) return 0;
  // `automatic` has checked the device and the views while resolving; only an explicit request
  // for the Hopper kernel still needs the device check (sm90 checks the views itself).
  [[maybe_unused]] const bool explicit_hopper = which == AttentionKernel::hopper;
  if (which == AttentionKernel::automatic) which = resolve_attention_kernel(q, k, v);
  if (which == AttentionKernel::hopper) {
#ifdef CPBENCH_HAVE_SM90A
    if (explicit_hopper && !current_device_is_sm90())
      return static_cast<int>(cudaErrorNotSupported);
    return sm90::attention_forward(t, q, k, v, o, lse, mask_kind, diag, scale, accumulate, stream,
                                   share_sms);
#else
    return static_cast<int>(cudaErrorNotSupported);
#endif
  }
  if (q.dim > kMaxPerLane * 32) return static_cast<int>(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned grid = blocks_for(rows, kWarpsPerBlock);
  const int per = q.dim <= 32 ? 1 : q.dim <= 64 ? 2 : q.dim <= 128 ? 4 : 8;
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    auto args = [&](auto kernel) {
      kernel<<<grid, 32 * kWarpsPerBlock, 0, s>>>(q, k, v, o, lse, mask_kind, diag, scale,
                                                  accumulate);
    };
    auto dims = [&](auto vec) {
      constexpr bool kVec = decltype(vec)::value;
      if (per == 1) args(attention_kernel<T, 1, kVec>);
      if (per == 2) args(attention_kernel<T, 2, kVec>);
      if (per == 4) args(attention_kernel<T, 4, kVec>);
      if (per == 8) args(attention_kernel<T, 8, kVec>);
    };
    if (rows_16b(k, 2))
      dims(std::true_type{});
    else
      dims(std::false_type{});
  };
  if (t == ActType::bf16)
    launch(__nv_bfloat16{});
  else
    launch(__half{});
  return static_cast<int>(cudaGetLastError());
}

int merge_partials(const DevView& o, const DevView& lse, const DevView& part_o,
                   const DevView& part_lse, void* stream) {
  const int64_t rows = o.batch * o.tokens * o.heads;
  if (rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (rows_16b(o, 4) && rows_16b(part_o, 4)) {
    const RowChunks rc{rows, o.dim / 4};
    merge_o_kernel<4>
        <<<blocks_for(rows * rc.per_row, 256), 256, 0, s>>>(o, lse, part_o, part_lse, rc);
  } else {
    const RowChunks rc{rows, o.dim};
    merge_o_kernel<1>
        <<<blocks_for(rows * rc.per_row, 256), 256, 0, s>>>(o, lse, part_o, part_lse, rc);
  }
  merge_lse_kernel<<<blocks_for(rows, 256), 256, 0, s>>>(lse, part_lse, rows);
  return static_cast<int>(cudaGetLastError());
}

int reset_partials(const DevView& o, const DevView& lse, void* stream) {
  const int64_t rows = o.batch * o.tokens * o.heads;
  if (rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (rows_16b(o, 4)) {
    const RowChunks rc{rows, o.dim / 4};
    reset_kernel<4><<<blocks_for(rows * rc.per_row, 256), 256, 0, s>>>(o, lse, rc);
  } else {
    const RowChunks rc{rows, o.dim};
    reset_kernel<1><<<blocks_for(rows * rc.per_row, 256), 256, 0, s>>>(o, lse, rc);
  }
  return static_cast<int>(cudaGetLastError());
}

int copy_view(int elem_bytes, const DevView& dst, const DevView& src, void* stream) {
  const int64_t rows = dst.batch * dst.tokens * dst.heads;
  if (rows == 0 || dst.dim == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (rows_16b(dst, elem_bytes) && rows_16b(src, elem_bytes)) {
    const RowChunks rc{rows, dst.dim * elem_bytes / 16};
    const unsigned grid = blocks_for(rows * rc.per_row, 256);
    if (elem_bytes == 4)
      copy_kernel<float, uint4><<<grid, 256, 0, s>>>(dst, src, rc);
    else
      copy_kernel<uint16_t, uint4><<<grid, 256, 0, s>>>(dst, src, rc);
  } else {
    const RowChunks rc{rows, dst.dim};
    if (elem_bytes == 4)
      copy_kernel<float, float><<<blocks_for(rows * rc.per_row, 256), 256, 0, s>>>(dst, src, rc);
    else
      copy_kernel<uint16_t, uint16_t>
          <<<blocks_for(rows * rc.per_row, 256), 256, 0, s>>>(dst, src, rc);
  }
  return static_cast<int>(cudaGetLastError());
}

int fill_random(ActType t, const DevView& dst, uint64_t seed, uint32_t tensor, int64_t base,
                int64_t batch_step, int64_t token_step, void* stream) {
  const int64_t n = dst.batch * dst.tokens * dst.heads * dst.dim;
  if (n == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (t == ActType::bf16)
    fill_random_kernel<__nv_bfloat16>
        <<<blocks_for(n, 256), 256, 0, s>>>(dst, seed, tensor, base, batch_step, token_step);
  else
    fill_random_kernel<__half>
        <<<blocks_for(n, 256), 256, 0, s>>>(dst, seed, tensor, base, batch_step, token_step);
  return static_cast<int>(cudaGetLastError());
}

int reference_attention(ActType t, const void* q, const void* k, const void* v, float* o,
                        float* lse, int64_t batch, int64_t new_tokens, int64_t cached_tokens,
                        int64_t heads, int64_t kv_heads, int64_t dim, bool causal, float scale,
                        void* stream) {
  const int64_t rows = batch * new_tokens * heads;
  if (rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned grid = blocks_for(rows, 128);
  if (t == ActType::bf16)
    reference_kernel<__nv_bfloat16><<<grid, 128, 0, s>>>(
        static_cast<const __nv_bfloat16*>(q), static_cast<const __nv_bfloat16*>(k),
        static_cast<const __nv_bfloat16*>(v), o, lse, batch, new_tokens, cached_tokens, heads,
        kv_heads, dim, causal, scale);
  else
    reference_kernel<__half><<<grid, 128, 0, s>>>(
        static_cast<const __half*>(q), static_cast<const __half*>(k), static_cast<const __half*>(v),
        o, lse, batch, new_tokens, cached_tokens, heads, kv_heads, dim, causal, scale);
  return static_cast<int>(cudaGetLastError());
}

void floats_to_act(ActType t, const float* in, void* out, int64_t n) {
  if (t == ActType::bf16) {
    auto* o = static_cast<__nv_bfloat16*>(out);
    for (int64_t i = 0; i < n; ++i) o[i] = __float2bfloat16_rn(in[i]);
  } else {
    auto* o = static_cast<__half*>(out);
    for (int64_t i = 0; i < n; ++i) o[i] = __float2half_rn(in[i]);
  }
}

void act_to_floats(ActType t, const void* in, float* out, int64_t n) {
  if (t == ActType::bf16) {
    const auto* p = static_cast<const __nv_bfloat16*>(in);
    for (int64_t i = 0; i < n; ++i) out[i] = __bfloat162float(p[i]);
  } else {
    const auto* p = static_cast<const __half*>(in);
    for (int64_t i = 0; i < n; ++i) out[i] = __half2float(p[i]);
  }
}

}  // namespace cpb::cuda
