// The attention workload of one config point: shape, dtype, mask and the token counts of the
// three phases (full prefill P=0, partial prefill P>0, decode T=1). Names follow DESIGN.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "harness/core/status.hpp"

namespace cpb {

enum class DType { bf16, fp16, fp32 };
enum class MaskKind { causal, full };
enum class Phase { full_prefill, partial_prefill, decode };

std::string_view to_string(DType d);
std::string_view to_string(MaskKind m);
std::string_view to_string(Phase p);
Expected<DType> parse_dtype(std::string_view s);
Expected<MaskKind> parse_mask(std::string_view s);

// Bytes of one element of `d` on the wire and in memory.
int64_t dtype_bytes(DType d);

struct Workload {
  int64_t batch = 1;      // B sequences
  int64_t heads = 0;      // H query heads
  int64_t kv_heads = 0;   // Hkv key/value heads (GQA ratio g = H / Hkv; MQA: Hkv = 1)
  int64_t head_dim = 0;   // d
  DType dtype = DType::bf16;
  MaskKind mask = MaskKind::causal;
  int64_t new_tokens = 0;     // T per sequence: the queries
  int64_t cached_tokens = 0;  // P per sequence: keys/values already in the KV cache

  // Derived quantities.
  int64_t context() const { return new_tokens + cached_tokens; }
  double miss_rate() const { return static_cast<double>(new_tokens) / static_cast<double>(context()); }
  int64_t gqa_ratio() const { return heads / kv_heads; }
  // P = 0: full prefill; T = 1 with a cache: decode; otherwise partial prefill.
  Phase phase() const;
  // Softmax scale 1/sqrt(d).
  double scale() const;

  // Checks that the shape is meaningful on its own (positive sizes, H % Hkv == 0).
  Status validate() const;
  std::string str() const;
};

// Total mask-aware attention FLOPs of the whole (unsharded) workload:
// 4 * B * H * d * (number of unmasked query-key pairs).
double workload_flops(const Workload& w);

// Number of visible (query, key) pairs of a block of sq queries and sk keys under the causal
// rule "key j is visible to query i iff j <= i + diag" (diag = query position - key position of
// the first row and column). Used for mask-aware FLOPs.
int64_t causal_pairs(int64_t sq, int64_t sk, int64_t diag);

}  // namespace cpb
