// A small C ABI over kernels/cuda/kernels.hpp's attention entry points, built as the shared
// library cpbench_attention_capi, so that a Python script (benchmarks/attention_vs_sdpa.py,
// through ctypes) can run our kernels on PyTorch tensors on PyTorch's stream and time them side
// by side with PyTorch's SDPA in one process on one GPU. It only turns dense token-major
// pointers into DevViews and forwards; no allocation, no synchronisation, no state. Every
// function that launches or queries returns the cudaError_t as an int (0 = success), and
// invalid arguments give cudaErrorInvalidValue without touching the GPU.
//
// Layouts (dense, row-major): q [B][sq][H][d], k and v [B][sk][Hkv][d] in bf16 or fp16; o fp32
// [B][sq][H][d]; lse fp32 [B][sq][H] (natural log).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/kernels.hpp"

#define CPB_CAPI extern "C" __attribute__((visibility("default")))

namespace {

namespace cc = cpb::cuda;

cc::DevView dense(const void* data, int64_t batch, int64_t tokens, int64_t heads, int64_t dim) {
  cc::DevView v;
  v.data = const_cast<void*>(data);  // DevView has one pointer type for inputs and outputs
  v.batch = batch;
  v.tokens = tokens;
  v.heads = heads;
  v.dim = dim;
  v.token_stride = heads * dim;
  v.batch_stride = tokens * heads * dim;
  return v;
}

bool valid_heads(int64_t heads, int64_t kv_heads, int64_t dim) {
  return heads > 0 && kv_heads > 0 && heads % kv_heads == 0 && dim > 0;
}

constexpr int kInvalid = static_cast<int>(cudaErrorInvalidValue);

}  // namespace

// One forward launch on `stream` (a cudaStream_t; null = the legacy default stream).
// dtype: 0 bf16, 1 fp16. kernel: 0 automatic, 1 portable, 2 hopper. mask_kind: 0 none, 1 full,
// 2 causal (key j visible to row i iff j <= i + diag). accumulate != 0 merges into o/lse.
CPB_CAPI int cpb_attention(int dtype, int kernel, const void* q, const void* k, const void* v,
                           float* o, float* lse, int64_t batch, int64_t sq, int64_t sk,
                           int64_t heads, int64_t kv_heads, int64_t dim, int mask_kind,
                           int64_t diag, float scale, int accumulate, void* stream) {
  if (dtype < 0 || dtype > 1 || kernel < 0 || kernel > 2 || mask_kind < 0 || mask_kind > 2)
    return kInvalid;
  if (batch <= 0 || sq < 0 || sk < 0 || !valid_heads(heads, kv_heads, dim)) return kInvalid;
  if (q == nullptr || k == nullptr || v == nullptr || o == nullptr || lse == nullptr)
    return kInvalid;
  const cc::DevView qv = dense(q, batch, sq, heads, dim), kv = dense(k, batch, sk, kv_heads, dim),
                    vv = dense(v, batch, sk, kv_heads, dim), ov = dense(o, batch, sq, heads, dim),
                    lv = dense(lse, batch, sq, heads, 1);
  return cc::attention_forward(dtype == 0 ? cc::ActType::bf16 : cc::ActType::fp16, qv, kv, vv, ov,
                               lv, mask_kind, diag, scale, accumulate != 0, stream,
                               static_cast<cc::AttentionKernel>(kernel));
}

// The kernel `automatic` takes (1 portable, 2 hopper) for dense views of this shape at these
// addresses on the current device, the CPBENCH_ATTENTION_KERNEL override included; -1 for
// invalid arguments. Sequence lengths do not enter the choice, so the views are built with one
// token.
CPB_CAPI int cpb_resolve_kernel(int64_t heads, int64_t kv_heads, int64_t dim, const void* q,
                                const void* k, const void* v) {
  if (!valid_heads(heads, kv_heads, dim)) return -1;
  const cc::AttentionKernel which = cc::resolve_attention_kernel(
      dense(q, 1, 1, heads, dim), dense(k, 1, 1, kv_heads, dim), dense(v, 1, 1, kv_heads, dim));
  return static_cast<int>(which);
}

// Why the Hopper kernel cannot run dense views of this shape at these addresses on the current
// device, or null when it can. The string is static.
CPB_CAPI const char* cpb_hopper_unsupported_reason(int64_t heads, int64_t kv_heads, int64_t dim,
                                                   const void* q, const void* k, const void* v) {
  if (!valid_heads(heads, kv_heads, dim)) return "invalid heads, kv_heads or head_dim";
  const char* why = nullptr;
  if (cc::hopper_attention_supported(dense(q, 1, 1, heads, dim), dense(k, 1, 1, kv_heads, dim),
                                     dense(v, 1, 1, kv_heads, dim), &why))
    return nullptr;
  return why != nullptr ? why : "not supported (no reason given)";
}

// "auto", "portable" or "hopper" (whatever kernels.hpp calls them); "invalid" otherwise.
CPB_CAPI const char* cpb_kernel_name(int kernel) {
  if (kernel < 0 || kernel > 2) return "invalid";
  return cc::attention_kernel_name(static_cast<cc::AttentionKernel>(kernel));
}

CPB_CAPI const char* cpb_error_string(int err) {
  return cudaGetErrorString(static_cast<cudaError_t>(err));
}
