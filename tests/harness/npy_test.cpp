// .npy reader/writer and half-precision rounding. Files are built byte by byte here rather than
// by numpy so the tests pin the format itself (versions 1.0-3.0, float16 bit patterns, header
// quirks) and every malformed-file case is shown to give an error that names the file.
#include "harness/io/npy.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "tests/support/temp_dir.hpp"

namespace fs = std::filesystem;

namespace {

using cpb::testing_support::TempDir;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A .npy file: magic, version, header length (2 or 4 bytes by version), header padded with
// spaces and '\n' to a 64-byte boundary, then the payload.
std::string npy_bytes(int major, const std::string& dict, const std::string& payload) {
  const size_t pre_len = major == 1 ? 10 : 12;
  std::string header = dict;
  const size_t unpadded = pre_len + header.size() + 1;
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const size_t n = header.size();
  for (size_t i = 0; i < (major == 1 ? 2u : 4u); ++i)
    out += static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + payload;
}

std::string f32_payload(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::string f16_payload(const std::vector<uint16_t>& v) {
  std::string s;
  for (uint16_t h : v) {
    s += static_cast<char>(h & 0xff);
    s += static_cast<char>(h >> 8);
  }
  return s;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Reads `bytes` from a file and expects an error mentioning the path and every one of `words`.
void expect_read_error(const TempDir& dir, const std::string& bytes,
                       const std::vector<std::string>& words) {
  const std::string path = dir.file("bad.npy");
  write_bytes(path, bytes);
  auto r = cpb::read_npy(path);
  ASSERT_FALSE(r.ok()) << "accepted a bad file";
  const std::string msg = r.error().str();
  EXPECT_TRUE(contains(msg, path)) << msg;
  for (const auto& w : words) EXPECT_TRUE(contains(msg, w)) << "missing '" << w << "' in: " << msg;
}

const std::string kDict23 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

}  // namespace

TEST(Npy, RoundTripShapes) {
  TempDir dir;
  const std::vector<std::vector<int64_t>> shapes = {{2, 3}, {5}, {}, {0, 4}, {2, 1, 3}, {7, 0}};
  for (const auto& shape : shapes) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> data(static_cast<size_t>(n));
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i) * 0.25f - 1.5f;
    const std::string path = dir.file("a.npy");
    ASSERT_TRUE(cpb::write_npy(path, shape, data.empty() ? nullptr : data.data()).ok());
    auto r = cpb::read_npy(path);
    ASSERT_TRUE(r.ok()) << r.error().detail();
    EXPECT_EQ(r->shape, shape);
    EXPECT_EQ(r->data, data);
    EXPECT_EQ(r->dtype, "<f4");
    // numpy's alignment rule: the data starts on a 64-byte boundary.
    EXPECT_EQ((fs::file_size(path) - data.size() * 4) % 64, 0u);
  }
}

TEST(Npy, WritesNumpyHeaderAndNoTempFile) {
  TempDir dir;
  const std::vector<float> data = {1, 2, 3, 4, 5, 6};
  const std::string path = dir.file("x.npy");
  ASSERT_TRUE(cpb::write_npy(path, {2, 3}, data.data()).ok());
  const std::string bytes = read_bytes(path);
  EXPECT_EQ(bytes, npy_bytes(1, kDict23, f32_payload(data)));
  // Overwrite in place, then check nothing but the file is left in the folder.
  ASSERT_TRUE(cpb::write_npy(path, {6}, data.data()).ok());
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "x.npy");
  }
  EXPECT_EQ(entries, 1);
  auto r = cpb::read_npy(path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->shape, std::vector<int64_t>{6});
}

TEST(Npy, WriteErrors) {
  TempDir dir;
  const float x = 1;
  EXPECT_FALSE(cpb::write_npy(dir.file("a.npy"), {-1}, &x).ok());
  EXPECT_FALSE(cpb::write_npy(dir.file("b.npy"), {3}, nullptr).ok());
  EXPECT_FALSE(cpb::write_npy(dir.file("no/such/folder/c.npy"), {1}, &x).ok());
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(Npy, ReadsHandBuiltV1WithQuirks) {
  TempDir dir;
  const std::vector<float> v = {1.5f, -2.f, 3.25f, 0.f, 1e-30f, 7.f};
  // Double quotes, keys in another order, no trailing comma, Python 2 long suffix.
  const std::string dict = R"({"shape": (2L, 3L), "fortran_order": False, "descr": "<f4"})";
  const std::string path = dir.file("q.npy");
  write_bytes(path, npy_bytes(1, dict, f32_payload(v)));
  auto r = cpb::read_npy(path);
  ASSERT_TRUE(r.ok()) << r.error().detail();
  EXPECT_EQ(r->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(r->data, v);
}

TEST(Npy, ReadsV2AndV3Headers) {
  TempDir dir;
  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  for (int major : {2, 3}) {
    const std::string path = dir.file("v.npy");
    write_bytes(path, npy_bytes(major, kDict23, f32_payload(v)));
    auto r = cpb::read_npy(path);
    ASSERT_TRUE(r.ok()) << r.error().detail();
    EXPECT_EQ(r->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(r->data, v);
  }
}

TEST(Npy, ReadsScalarAndEmpty) {
  TempDir dir;
  const std::string path = dir.file("s.npy");
  write_bytes(path, npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                              f32_payload({42.f})));
  auto r = cpb::read_npy(path);
  ASSERT_TRUE(r.ok()) << r.error().detail();
  EXPECT_TRUE(r->shape.empty());
  EXPECT_EQ(r->data, std::vector<float>{42.f});

  write_bytes(path,
              npy_bytes(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (3, 0), }", ""));
  r = cpb::read_npy(path);
  ASSERT_TRUE(r.ok()) << r.error().detail();
  EXPECT_EQ(r->shape, (std::vector<int64_t>{3, 0}));
  EXPECT_TRUE(r->data.empty());
}

TEST(Npy, ReadsFloat16Exactly) {
  TempDir dir;
  const std::vector<uint16_t> bits = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x0400, 0x7bff,
                                      0x7c00, 0xfc00, 0x8000, 0x3555, 0x7e00};
  const std::string path = dir.file("h.npy");
  write_bytes(path, npy_bytes(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (11,), }",
                              f16_payload(bits)));
  auto r = cpb::read_npy(path);
  ASSERT_TRUE(r.ok()) << r.error().detail();
  EXPECT_EQ(r->dtype, "<f2");
  ASSERT_EQ(r->data.size(), bits.size());
  const auto& d = r->data;
  EXPECT_EQ(d[0], 1.0f);
  EXPECT_EQ(d[1], -2.0f);
  EXPECT_EQ(d[2], std::ldexp(1.0f, -24));            // smallest subnormal
  EXPECT_EQ(d[3], 1023.0f * std::ldexp(1.0f, -24));  // largest subnormal
  EXPECT_EQ(d[4], std::ldexp(1.0f, -14));            // smallest normal
  EXPECT_EQ(d[5], 65504.0f);
  EXPECT_EQ(d[6], std::numeric_limits<float>::infinity());
  EXPECT_EQ(d[7], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(d[8], 0.0f);
  EXPECT_TRUE(std::signbit(d[8]));
  EXPECT_EQ(d[9], 0.333251953125f);
  EXPECT_TRUE(std::isnan(d[10]));
}

TEST(Npy, MissingAndUnreadableFiles) {
  TempDir dir;
  auto r = cpb::read_npy(dir.file("nope.npy"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().str(), "nope.npy"));
  EXPECT_TRUE(contains(r.error().str(), "no such file"));
  r = cpb::read_npy(dir.path().string());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().str(), "directory"));
}

TEST(Npy, BadMagicAndTruncation) {
  TempDir dir;
  const std::string good = npy_bytes(1, kDict23, f32_payload({1, 2, 3, 4, 5, 6}));
  expect_read_error(dir, "", {"bad magic"});
  expect_read_error(dir, "PK\x03\x04 this is a zip", {"bad magic"});
  expect_read_error(dir, "\x93NUMP", {"bad magic"});
  expect_read_error(dir, good.substr(0, 7), {"truncated header"});
  expect_read_error(dir, good.substr(0, 9), {"truncated header"});
  expect_read_error(dir, good.substr(0, 40), {"truncated header"});
  expect_read_error(dir, good.substr(0, good.size() - 1),
                    {"data truncated", "needs 24 bytes", "holds 23"});
  expect_read_error(dir, good + "junk", {"size mismatch", "4 extra"});
  std::string v4 = good;
  v4[6] = 4;
  expect_read_error(dir, v4, {"version 4.0"});
}

TEST(Npy, BadHeaders) {
  TempDir dir;
  const std::string p6 = f32_payload({1, 2, 3, 4, 5, 6});
  const auto bad = [&](const std::string& dict, const std::vector<std::string>& words) {
    SCOPED_TRACE(dict);
    expect_read_error(dir, npy_bytes(1, dict, p6), words);
  };
  bad("[1, 2, 3]", {"not a dict"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}", {"not a valid dict"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), ", {"not a valid dict"});
  bad("{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3)}", {"not a valid dict"});
  bad("descr=<f4 shape=2,3", {"not a valid dict"});
  bad("{'descr': '<f4', 'fortran_order': False}", {"lacks 'shape'"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", {"unexpected key"});
  bad("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}",
      {"duplicate key"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2.5, 3)}", {"not a valid dict"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': ('2', 3)}", {"non-integer"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': 6}", {"not a tuple"});
  bad("{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}", {"fortran_order"});
  bad("{'descr': '<f4', 'fortran_order': False, 'shape': (((((((((((((((((((((((((((((((((("
      "))))))))))))))))))))))))))))))))))}",
      {"nesting too deep"});
}

TEST(Npy, UnsupportedLayouts) {
  TempDir dir;
  const std::string p6 = f32_payload({1, 2, 3, 4, 5, 6});
  const auto bad = [&](const std::string& dict, const std::vector<std::string>& words) {
    SCOPED_TRACE(dict);
    expect_read_error(dir, npy_bytes(1, dict, p6), words);
  };
  bad("{'descr': '<f8', 'fortran_order': False, 'shape': (3,)}",
      {"unsupported dtype '<f8'", "float32", "float16"});
  bad("{'descr': '|u1', 'fortran_order': False, 'shape': (24,)}", {"unsupported dtype"});
  bad("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,)}", {"unsupported dtype"});
  bad("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3)}", {"big-endian"});
  bad("{'descr': '>f2', 'fortran_order': False, 'shape': (12,)}", {"big-endian"});
  bad("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}", {"Fortran order"});
}

TEST(Npy, AbsurdShapes) {
  TempDir dir;
  const std::string p6 = f32_payload({1, 2, 3, 4, 5, 6});
  const auto bad = [&](const std::string& shape, const std::vector<std::string>& words) {
    SCOPED_TRACE(shape);
    expect_read_error(
        dir, npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + "}", p6),
        words);
  };
  bad("(-2, -3)", {"negative"});
  bad("(2, -3)", {"negative"});
  bad("(1048576, 1048576)", {"2^34"});                    // 2^40 elements
  bad("(4294967296, 4294967296, 4294967296)", {"2^34"});  // would overflow int64
  bad("(99999999999999999999999999,)", {"2^34"});
  bad("(17179869185,)", {"2^34"});  // 2^34 + 1
  bad("(2, 4)", {"data truncated", "32 bytes", "holds 24"});
  bad("(5,)", {"size mismatch"});
  std::string many = "(";
  for (int i = 0; i < 100; ++i) many += "1, ";
  bad(many + ")", {"dimensions"});
}

// Every binary16 value survives half -> float -> half, and the float value is exact.
TEST(Npy, HalfRoundTripExhaustive) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = cpb::half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_EQ(h & 0x7c00u, 0x7c00u);
      EXPECT_TRUE(std::isnan(cpb::half_to_float(cpb::float_to_half(f))));
      continue;
    }
    ASSERT_EQ(cpb::float_to_half(f), h) << "h=" << h;
  }
}

TEST(Npy, FloatToHalfRoundsToNearestEven) {
  const float u = std::ldexp(1.0f, -24);  // smallest subnormal
  EXPECT_EQ(cpb::float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(cpb::float_to_half(-0.0f), 0x8000);
  EXPECT_EQ(cpb::float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(cpb::float_to_half(65519.0f), 0x7bff);
  EXPECT_EQ(cpb::float_to_half(65520.0f), 0x7c00);  // tie goes to even: inf
  EXPECT_EQ(cpb::float_to_half(1e10f), 0x7c00);
  EXPECT_EQ(cpb::float_to_half(-1e10f), 0xfc00);
  EXPECT_EQ(cpb::float_to_half(u), 0x0001);
  EXPECT_EQ(cpb::float_to_half(0.5f * u), 0x0000);  // tie between 0 and 1 unit: 0
  EXPECT_EQ(cpb::float_to_half(0.75f * u), 0x0001);
  EXPECT_EQ(cpb::float_to_half(1.5f * u), 0x0002);     // tie between 1 and 2 units: 2
  EXPECT_EQ(cpb::float_to_half(2.5f * u), 0x0002);     // tie between 2 and 3 units: 2
  EXPECT_EQ(cpb::float_to_half(1023.5f * u), 0x0400);  // rounds up into the normals
  EXPECT_EQ(cpb::float_to_half(1e-10f), 0x0000);
  EXPECT_EQ(cpb::float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie: even
  EXPECT_EQ(cpb::float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie: even
  EXPECT_EQ(cpb::float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(cpb::float_to_half(2047.5f), 0x6800);  // 2048: carry into the exponent
  EXPECT_EQ(cpb::float_to_half(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_TRUE(std::isnan(cpb::round_to_fp16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(cpb::round_to_fp16(0.1f), 0.0999755859375f);
  EXPECT_EQ(cpb::round_to_fp16(1.0f / 3), 0.333251953125f);
}

#ifdef __FLT16_MAX__
// The compiler's own float -> _Float16 conversion is IEEE round-to-nearest-even: compare against
// it over a sweep of float bit patterns that covers every exponent.
TEST(Npy, FloatToHalfMatchesCompiler) {
  for (uint64_t b = 0; b <= 0xffffffffu; b += 9973) {
    float f;
    const auto bits = static_cast<uint32_t>(b);
    std::memcpy(&f, &bits, 4);
    if (std::isnan(f)) continue;
    const _Float16 ref = static_cast<_Float16>(f);
    uint16_t ref_bits;
    std::memcpy(&ref_bits, &ref, 2);
    ASSERT_EQ(cpb::float_to_half(f), ref_bits) << "f=" << f << " bits=" << bits;
  }
}
#endif

TEST(Npy, Bf16Rounding) {
  const float e8 = std::ldexp(1.0f, -8);
  EXPECT_EQ(cpb::round_to_bf16(1.0f), 1.0f);
  EXPECT_EQ(cpb::round_to_bf16(1.0f + e8), 1.0f);               // tie: down to even
  EXPECT_EQ(cpb::round_to_bf16(1.0f + 3 * e8), 1.0f + 4 * e8);  // tie: up to even
  EXPECT_EQ(cpb::round_to_bf16(1.0f + e8 + std::ldexp(1.0f, -20)), 1.0f + 2 * e8);
  EXPECT_EQ(cpb::round_to_bf16(-1.0f - e8), -1.0f);
  EXPECT_EQ(cpb::round_to_bf16(0.1f), 0.10009765625f);
  EXPECT_EQ(cpb::float_to_bf16(0.1f), 0x3dcd);
  EXPECT_EQ(cpb::bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(cpb::round_to_bf16(std::numeric_limits<float>::max()),
            std::numeric_limits<float>::infinity());
  EXPECT_EQ(cpb::round_to_bf16(-std::numeric_limits<float>::infinity()),
            -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(cpb::round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  // A NaN whose payload lies only in the low 16 bits must not turn into inf.
  float low_nan;
  const uint32_t low_nan_bits = 0x7f800001u;
  std::memcpy(&low_nan, &low_nan_bits, 4);
  EXPECT_TRUE(std::isnan(cpb::round_to_bf16(low_nan)));
  // Idempotent: rounding a bf16 value again changes nothing.
  for (float x : {3.14159f, -2.71828f, 1e-38f, 6.5e4f}) {
    EXPECT_EQ(cpb::round_to_bf16(cpb::round_to_bf16(x)), cpb::round_to_bf16(x));
    EXPECT_EQ(cpb::round_to_fp16(cpb::round_to_fp16(x)), cpb::round_to_fp16(x));
  }
}
