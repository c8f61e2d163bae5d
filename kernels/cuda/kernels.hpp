// Host entry points of the cuda kernels, free of CUDA headers so that the harness can include
// them from plain C++. Views are token-major [batch][tokens][heads][dim] with element strides,
// like harness/core/executor.hpp's View. `stream` is a cudaStream_t. Every function returns the
// cudaError_t of its launch as an int (0 = success).
//
// This is the portable (sm_80+) path: correct for every shape the strategies produce (any
// head_dim up to 256, GQA by head index, full or causal-with-offset masks, fully masked rows
// giving O = 0 and LSE = -inf), written for clarity; the Hopper kernel of Step D replaces it on
// sm_90 where it is faster.
#pragma once

#include <cstdint>

namespace cpb::cuda {

enum class ActType { bf16, fp16 };

struct DevView {
  void* data = nullptr;  // element 0 of the view
  int64_t batch = 1, batch_stride = 0, tokens = 0, heads = 0, dim = 0, token_stride = 0;
};

// mask_kind: 0 none (nothing visible), 1 full, 2 causal (key j visible to row i iff j <= i+diag).
int attention_forward(ActType t, const DevView& q, const DevView& k, const DevView& v,
                      const DevView& o, const DevView& lse, int mask_kind, int64_t diag,
                      float scale, bool accumulate, void* stream);
int merge_partials(const DevView& o, const DevView& lse, const DevView& part_o,
                   const DevView& part_lse, void* stream);
int reset_partials(const DevView& o, const DevView& lse, void* stream);
int copy_view(int elem_bytes, const DevView& dst, const DevView& src, void* stream);
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
