// Host entry points of the cuda kernels, free of CUDA headers so that the harness can include
// them from plain C++. Views are token-major [batch][tokens][heads][dim] with element strides,
// like harness/core/executor.hpp's View. `stream` is a cudaStream_t. Every function returns the
// cudaError_t of its launch as an int (0 = success).
//
// attention_forward has two kernels behind it. The portable one (sm_80+, attention.cu) is correct
// for every shape the strategies produce (any head_dim up to 256, GQA by head index, full or
// causal-with-offset masks, fully masked rows giving O = 0 and LSE = -inf) and is fp32
// throughout. The Hopper one (flash_sm90.cu: wgmma, TMA, warp-specialised; built for sm_90a)
// computes the same function with bf16/fp16 operands on the tensor cores (P rounded to the input
// type before P·V, as FlashAttention does) for head_dim 64 and 128 on a compute capability 9.0
// device; `automatic` takes it wherever it applies, unless the environment variable
// CPBENCH_ATTENTION_KERNEL is `portable` (for comparisons; it is read on every call).
#pragma once

#include <cstdint>

namespace cpb::cuda {

enum class ActType { bf16, fp16 };

struct DevView {
  void* data = nullptr;  // element 0 of the view
  int64_t batch = 1, batch_stride = 0, tokens = 0, heads = 0, dim = 0, token_stride = 0;
};

enum class AttentionKernel { automatic = 0, portable = 1, hopper = 2 };

const char* attention_kernel_name(AttentionKernel k);

// Whether the Hopper kernel can run these views on the current device; when it cannot and
// `why` is given, the reason. Needs: the sm_90a build, a compute capability 9.0 device,
// head_dim 64 or 128, q/k/v base addresses 16-byte aligned and strides multiples of 16 bytes,
// fp32 o and lse.
bool hopper_attention_supported(const DevView& q, const DevView& k, const DevView& v,
                                const char** why = nullptr);

// The kernel `automatic` resolves to for these views (the environment override included).
AttentionKernel resolve_attention_kernel(const DevView& q, const DevView& k, const DevView& v);

// mask_kind: 0 none (nothing visible), 1 full, 2 causal (key j visible to row i iff j <= i+diag).
// o and lse are fp32; with `accumulate` the result is merged into them (LSE-weighted), else it
// overwrites them. Asking for `hopper` where it is not supported returns cudaErrorNotSupported.
// `share_sms`: another kernel (an NCCL transfer on the comm stream) runs beside this one, so the
// Hopper kernel launches one block per tile instead of its persistent grid: blocks retire as
// they finish and the hardware hands the freed multiprocessors to the other kernel, where a
// persistent grid would hold every multiprocessor to the end (and lose a static share of its
// tiles to whichever multiprocessors the other kernel took first).
int attention_forward(ActType t, const DevView& q, const DevView& k, const DevView& v,
                      const DevView& o, const DevView& lse, int mask_kind, int64_t diag,
                      float scale, bool accumulate, void* stream,
                      AttentionKernel which = AttentionKernel::automatic, bool share_sms = false);
int merge_partials(const DevView& o, const DevView& lse, const DevView& part_o,
                   const DevView& part_lse, void* stream);
int reset_partials(const DevView& o, const DevView& lse, void* stream);
int copy_view(int elem_bytes, const DevView& dst, const DevView& src, void* stream);
// Writes the point's random inputs (kernels/random_inputs.hpp) into an activation view: element
// (b, t, h, x) of `dst` gets the value of global index base + b * batch_step + t * token_step +
// h * dst.dim + x of tensor `tensor` (1 q, 2 k, 3 v) drawn with `seed`, rounded to the type.
int fill_random(ActType t, const DevView& dst, uint64_t seed, uint32_t tensor, int64_t base,
                int64_t batch_step, int64_t token_step, void* stream);
// The naive reference: one thread per (sequence, query, head), two passes over the keys in fp32,
// positions taken from the unsharded problem (query t at P + t sees keys p <= P + t when
// causal). For checks where the fp64 host reference is too slow; independent of
// attention_forward (no tiles, no online softmax). q: [B, T, H, d]; k, v: [B, P+T, Hkv, d];
// o: [B, T, H, d] fp32; lse: [B, T, H] fp32.
int reference_attention(ActType t, const void* q, const void* k, const void* v, float* o,
                        float* lse, int64_t batch, int64_t new_tokens, int64_t cached_tokens,
                        int64_t heads, int64_t kv_heads, int64_t dim, bool causal, float scale,
                        void* stream);
// Host-side conversions for uploads and downloads (round to nearest even).
void floats_to_act(ActType t, const float* in, void* out, int64_t n);
void act_to_floats(ActType t, const void* in, float* out, int64_t n);

}  // namespace cpb::cuda
