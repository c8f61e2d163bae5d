// The random inputs of a point as a function of (seed, tensor, global element index), so that
// every rank can generate its own shard where its buffers live (on the GPU for the cuda backend:
// a 512K-token point has billions of elements, too many to make on the host and upload) and the
// host can make the same values for its references. Host and device must agree bit for bit, so
// the value uses integer hashing and one float multiply only (no transcendental functions, whose
// last bit differs between libm and CUDA): the sum of four 16-bit uniforms, centred and scaled
// to unit variance (Irwin-Hall, |x| <= 2*sqrt(3)), then rounded to the dtype by the caller with
// round-to-nearest-even.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define CPB_HOST_DEVICE __host__ __device__
#else
#define CPB_HOST_DEVICE
#endif

namespace cpb {

enum class InputTensor : uint32_t { q = 1, k = 2, v = 3 };

CPB_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  // The splitmix64 finaliser.
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Element `index` of tensor `t` ([B, T, H, d] for q, [B, P+T, Hkv, d] for k and v, row-major)
// of the inputs drawn with `seed`: mean 0, variance 1, never all zeros.
CPB_HOST_DEVICE inline float random_input_value(uint64_t seed, InputTensor t, uint64_t index) {
  const uint64_t stream = mix64(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(t));
  const uint64_t h = mix64(stream ^ (index * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull));
  const int64_t sum = static_cast<int64_t>(h & 0xFFFF) + static_cast<int64_t>((h >> 16) & 0xFFFF) +
                      static_cast<int64_t>((h >> 32) & 0xFFFF) + static_cast<int64_t>(h >> 48);
  // Four uniforms (k + 1/2) / 65536 sum to (sum + 2) / 65536; minus their mean 2. Exact in
  // float (an integer below 2^24 times a power of two); the one rounding is the scale.
  const float centred = static_cast<float>(sum + 2 - 131072) * (1.0f / 65536.0f);
  return centred * 1.7320508075688772f;  // sqrt(3): the sum of four U(0,1) has variance 1/3
}

}  // namespace cpb
