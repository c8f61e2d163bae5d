// NumPy .npy files in and out, plus the half-precision conversions around them. `cpbench attend`
// reads Q/K/V captured from a real model and writes O and LSE back, so the reader must take
// whatever numpy.save produced for float32 and float16 arrays (format versions 1.0, 2.0 and 3.0,
// C order, little-endian) and must turn every malformed file into an error naming the path and
// the defect instead of a crash or a silently wrong tensor. The rounding helpers let the reference
// and the device path consume bit-identical bf16/fp16 inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "harness/core/status.hpp"

namespace cpb {

struct NpyArray {
  std::vector<int64_t> shape;  // empty for a 0-d (scalar) array
  std::vector<float> data;     // C order, product(shape) elements
  std::string dtype;           // descr as read: "<f4" or "<f2"
};

// Largest element count read_npy accepts (2^34): far above any tensor cpbench handles, small
// enough that a corrupt shape cannot make us try to allocate petabytes.
inline constexpr int64_t kNpyMaxElements = int64_t{1} << 34;

// Reads a float32 ('<f4') or float16 ('<f2', widened exactly) array in C order.
Expected<NpyArray> read_npy(const std::string& path);

// Writes a '<f4' C-order array (format 1.0, header padded so the data starts on a 64-byte
// boundary). The file appears atomically: it is written beside `path` and renamed over it.
// `data` holds product(shape) floats and may be null only when that product is 0.
Status write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data);

// IEEE binary16 <-> float. half_to_float is exact for every input (subnormals, inf, NaN
// payloads); float_to_half rounds to nearest, ties to even, overflowing to inf.
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);

// bfloat16 <-> float. float_to_bf16 rounds to nearest, ties to even; NaN stays a (quiet) NaN.
float bf16_to_float(uint16_t b);
uint16_t float_to_bf16(float f);

// The nearest bf16 / fp16 value to f, returned as a float (round to nearest, ties to even).
float round_to_bf16(float f);
float round_to_fp16(float f);

}  // namespace cpb
