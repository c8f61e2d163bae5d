// Workload names, validation and mask-aware FLOP counts.
#include "harness/core/workload.hpp"

#include <algorithm>
#include <cmath>

namespace cpb {

std::string_view to_string(DType d) {
  switch (d) {
    case DType::bf16: return "bf16";
    case DType::fp16: return "fp16";
    case DType::fp32: return "fp32";
  }
  return "?";
}

std::string_view to_string(MaskKind m) { return m == MaskKind::causal ? "causal" : "full"; }

std::string_view to_string(Phase p) {
  switch (p) {
    case Phase::full_prefill: return "full_prefill";
    case Phase::partial_prefill: return "partial_prefill";
    case Phase::decode: return "decode";
  }
  return "?";
}

Expected<DType> parse_dtype(std::string_view s) {
  if (s == "bf16") return DType::bf16;
  if (s == "fp16") return DType::fp16;
  return CPB_ERROR("unknown dtype '{}': use bf16 or fp16", s);
}

Expected<MaskKind> parse_mask(std::string_view s) {
  if (s == "causal") return MaskKind::causal;
  if (s == "full") return MaskKind::full;
  return CPB_ERROR("unknown mask '{}': use causal or full", s);
}

int64_t dtype_bytes(DType d) { return d == DType::fp32 ? 4 : 2; }

Phase Workload::phase() const {
  if (cached_tokens == 0) return Phase::full_prefill;
  if (new_tokens == 1) return Phase::decode;
  return Phase::partial_prefill;
}

double Workload::scale() const { return 1.0 / std::sqrt(static_cast<double>(head_dim)); }

Status Workload::validate() const {
  CPB_REQUIRE(batch >= 1, "batch must be >= 1 (got {})", batch);
  CPB_REQUIRE(heads >= 1, "heads must be >= 1 (got {})", heads);
  CPB_REQUIRE(kv_heads >= 1, "kv_heads must be >= 1 (got {})", kv_heads);
  CPB_REQUIRE(head_dim >= 1, "head_dim must be >= 1 (got {})", head_dim);
  CPB_REQUIRE(heads % kv_heads == 0,
              "heads ({}) must be a multiple of kv_heads ({}) for grouped-query attention", heads,
              kv_heads);
  CPB_REQUIRE(new_tokens >= 1, "new_tokens must be >= 1 (got {})", new_tokens);
  CPB_REQUIRE(cached_tokens >= 0, "cached_tokens must be >= 0 (got {})", cached_tokens);
  return {};
}

std::string Workload::str() const {
  return fmt::format("B={} H={} Hkv={} d={} {} {} T={} P={}", batch, heads, kv_heads, head_dim,
                     to_string(dtype), to_string(mask), new_tokens, cached_tokens);
}

int64_t causal_pairs(int64_t sq, int64_t sk, int64_t diag) {
  // Row i sees keys 0..min(sk-1, i+diag): clamp(i + diag + 1, 0, sk) of them. Sum in closed form
  // over the three regions (none visible, a growing prefix, all visible).
  if (sq <= 0 || sk <= 0) return 0;
  int64_t total = 0;
  // Rows with i + diag + 1 <= 0 see nothing: i <= -diag-1.
  int64_t first = std::max<int64_t>(0, -diag);         // first row that sees >= 1 key
  int64_t full_from = std::max<int64_t>(0, sk - 1 - diag);  // first row that sees all sk keys
  first = std::min(first, sq);
  full_from = std::min(std::max(full_from, first), sq);
  // Rows [first, full_from): count = i + diag + 1, an arithmetic series.
  int64_t n = full_from - first;
  if (n > 0) {
    int64_t a = first + diag + 1;
    int64_t b = full_from - 1 + diag + 1;
    total += (a + b) * n / 2;
  }
  total += (sq - full_from) * sk;
  return total;
}

double workload_flops(const Workload& w) {
  int64_t pairs = w.mask == MaskKind::full
                      ? w.new_tokens * w.context()
                      : causal_pairs(w.new_tokens, w.context(), w.cached_tokens);
  return 4.0 * static_cast<double>(w.batch * w.heads * w.head_dim) * static_cast<double>(pairs);
}

}  // namespace cpb
