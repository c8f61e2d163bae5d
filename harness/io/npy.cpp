// .npy reading and writing, and the binary16 / bfloat16 conversions. The header of a .npy file
// is a Python dict literal, so it is parsed here with a small literal parser (strings, integers,
// True/False/None, tuples/lists, dicts) rather than by pattern matching: a hand-edited or foreign
// header either parses exactly or is reported, never half-understood. Every size taken from the
// file is checked against the file's real length before anything is allocated.
#include "harness/io/npy.hpp"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <string_view>
#include <system_error>
#include <utility>

#include "harness/io/results.hpp"

namespace cpb {

// The readers below take the file's little-endian bytes as they are.
static_assert(std::endian::native == std::endian::little,
              "npy.cpp assumes a little-endian host; add byte swapping before porting");

// ---------------------------------------------------------------------------------------------
// Half precision.

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float since mant < 2^10.
    const float mag = static_cast<float>(mant) * 0x1p-24f;
    return sign ? -mag : mag;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

namespace {
// value >> shift rounded to nearest, ties to even (shift in 1..31).
uint32_t shift_round_even(uint32_t value, uint32_t shift) {
  const uint32_t q = value >> shift;
  const uint32_t rem = value & ((uint32_t{1} << shift) - 1);
  const uint32_t halfway = uint32_t{1} << (shift - 1);
  return (rem > halfway || (rem == halfway && (q & 1u))) ? q + 1 : q;
}
}  // namespace

uint16_t float_to_half(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf stays inf; NaN keeps its top payload bits and stays quiet
    if (abs == 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u);
    return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  }
  // 65520 is halfway between 65504 (largest half, odd mantissa) and 65536: ties-to-even says inf.
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (abs < 0x38800000u) {
    // Below the smallest normal half (2^-14): the result is round(|f| * 2^24) subnormal units.
    // A carry into 0x400 correctly yields the smallest normal.
    const uint32_t e = abs >> 23;
    if (e < 101) return sign;  // |f| < 2^-26: below half of the smallest subnormal
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    return static_cast<uint16_t>(sign | shift_round_even(m, 126 - e));
  }
  // Normal: rebias the exponent, round away the 13 low mantissa bits; a carry out of the
  // mantissa bumps the exponent, which is what rounding up to the next binade means.
  const uint32_t h = ((abs >> 23) - 112u) << 10 | ((abs >> 13) & 0x3ffu);
  const uint32_t rem = abs & 0x1fffu;
  const uint32_t rounded = (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ? h + 1 : h;
  return static_cast<uint16_t>(sign | rounded);
}

float bf16_to_float(uint16_t b) {
  return std::bit_cast<float>(uint32_t{b} << 16);
}

uint16_t float_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN
  // Adding 0x7fff plus the lowest kept bit rounds to nearest with ties to even; overflow past
  // the largest bf16 correctly lands on inf.
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float round_to_bf16(float f) {
  return bf16_to_float(float_to_bf16(f));
}
float round_to_fp16(float f) {
  return half_to_float(float_to_half(f));
}

// ---------------------------------------------------------------------------------------------
// Header literal parser.

namespace {

struct PyValue {
  enum class Kind { str, integer, boolean, none, seq, dict };
  Kind kind = Kind::none;
  std::string str;
  int64_t integer = 0;
  bool boolean = false;
  std::vector<PyValue> items;     // tuple or list items; dict values
  std::vector<std::string> keys;  // dict keys, parallel to items, in file order
};

class LiteralParser {
 public:
  explicit LiteralParser(std::string_view text) : s_(text) {}

  // Parses the whole text as one value; `why` says what is wrong otherwise.
  bool parse_all(PyValue& out, std::string& why) {
    if (!value(out, 0)) {
      why = why_;
      return false;
    }
    skip_ws();
    if (pos_ != s_.size()) {
      why = fmt::format("unexpected '{}' after the dict at offset {}", s_[pos_], pos_);
      return false;
    }
    return true;
  }

 private:
  bool fail(std::string msg) {
    if (why_.empty()) why_ = fmt::format("{} at offset {}", msg, pos_);
    return false;
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' ||
                                s_[pos_] == '\r' || s_[pos_] == '\0'))
      ++pos_;
  }
  bool eat(char c) {
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool word(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) return false;
    const size_t end = pos_ + w.size();
    if (end < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[end])) || s_[end] == '_'))
      return false;
    pos_ = end;
    return true;
  }

  bool value(PyValue& out, int depth) {
    // Real headers nest two deep; the bound keeps a hostile header from exhausting the stack.
    if (depth > 32) return fail("nesting too deep");
    skip_ws();
    if (pos_ >= s_.size()) return fail("unexpected end of header");
    const char c = s_[pos_];
    if (c == '\'' || c == '"') {
      out.kind = PyValue::Kind::str;
      return string(out.str);
    }
    if (c == '{') return dict(out, depth);
    if (c == '(') return seq(out, ')', depth);
    if (c == '[') return seq(out, ']', depth);
    if (c == '-' || (c >= '0' && c <= '9')) return integer(out);
    if (word("True")) {
      out.kind = PyValue::Kind::boolean;
      out.boolean = true;
      return true;
    }
    if (word("False")) {
      out.kind = PyValue::Kind::boolean;
      out.boolean = false;
      return true;
    }
    if (word("None")) {
      out.kind = PyValue::Kind::none;
      return true;
    }
    return fail(fmt::format("unexpected '{}'", c));
  }

  bool string(std::string& out) {
    const char quote = s_[pos_++];
    while (pos_ < s_.size() && s_[pos_] != quote) {
      if (s_[pos_] == '\\') {
        if (pos_ + 1 >= s_.size()) break;
        ++pos_;  // dtype strings never need escapes; take the escaped character literally
      }
      out += s_[pos_++];
    }
    if (pos_ >= s_.size()) return fail("unterminated string");
    ++pos_;
    return true;
  }

  bool integer(PyValue& out) {
    out.kind = PyValue::Kind::integer;
    const bool negative = s_[pos_] == '-';
    if (negative) ++pos_;
    if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') return fail("malformed number");
    // Accumulate as unsigned with a cap so an absurd literal is reported instead of wrapping.
    uint64_t v = 0;
    bool huge = false;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      v = v * 10 + static_cast<uint64_t>(s_[pos_++] - '0');
      if (v > (uint64_t{1} << 62)) {
        huge = true;
        v = uint64_t{1} << 62;
      }
    }
    if (pos_ < s_.size() && (s_[pos_] == 'L' || s_[pos_] == 'l')) ++pos_;  // Python 2 long
    if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E'))
      return fail("expected an integer");
    out.integer = negative ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
    if (huge) out.integer = negative ? INT64_MIN : INT64_MAX;
    return true;
  }

  bool seq(PyValue& out, char close, int depth) {
    out.kind = PyValue::Kind::seq;
    ++pos_;
    while (true) {
      if (eat(close)) return true;
      PyValue item;
      if (!value(item, depth + 1)) return false;
      out.items.push_back(std::move(item));
      if (eat(',')) continue;
      if (eat(close)) return true;
      return fail(fmt::format("expected ',' or '{}'", close));
    }
  }

  bool dict(PyValue& out, int depth) {
    out.kind = PyValue::Kind::dict;
    ++pos_;
    while (true) {
      if (eat('}')) return true;
      skip_ws();
      if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"'))
        return fail("expected a quoted key");
      std::string key;
      if (!string(key)) return false;
      if (!eat(':')) return fail("expected ':'");
      PyValue v;
      if (!value(v, depth + 1)) return false;
      if (std::find(out.keys.begin(), out.keys.end(), key) != out.keys.end())
        return fail(fmt::format("duplicate key '{}'", key));
      out.keys.push_back(std::move(key));
      out.items.push_back(std::move(v));
      if (eat(',')) continue;
      if (eat('}')) return true;
      return fail("expected ',' or '}'");
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string why_;
};

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) s += ",";
  return s + ")";
}

// Element count of a shape, or an error when a dimension is negative or the count is absurd.
Expected<int64_t> element_count(const std::vector<int64_t>& shape, const std::string& path) {
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) return CPB_ERROR("{}: shape {} has a negative dimension", path, shape_str(shape));
    if (d > kNpyMaxElements)
      return CPB_ERROR("{}: shape {} is absurd (dimension above 2^34)", path, shape_str(shape));
  }
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return int64_t{0};
  for (int64_t d : shape) {
    // Division, not multiplication, decides: the product itself could overflow int64.
    if (count > kNpyMaxElements / d)
      return CPB_ERROR("{}: shape {} has more than 2^34 elements", path, shape_str(shape));
    count *= d;
  }
  return count;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

uint32_t le16(const unsigned char* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8;
}
uint32_t le32(const unsigned char* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

std::string header_excerpt(std::string_view header) {
  std::string s(header.substr(0, 120));
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  return header.size() > 120 ? s + "..." : s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reading.

Expected<NpyArray> read_npy(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (!fs::exists(st)) return CPB_ERROR("{}: no such file", path);
  if (fs::is_directory(st)) return CPB_ERROR("{}: is a directory, expected a .npy file", path);

  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (!file) return CPB_ERROR("{}: cannot open: {}", path, std::strerror(errno));
  if (std::fseek(file.get(), 0, SEEK_END) != 0)
    return CPB_ERROR("{}: cannot seek: {}", path, std::strerror(errno));
  const long end = std::ftell(file.get());
  if (end < 0) return CPB_ERROR("{}: cannot tell its size: {}", path, std::strerror(errno));
  std::rewind(file.get());
  const auto file_size = static_cast<uint64_t>(end);

  // Preamble: "\x93NUMPY", major, minor, then the header length (2 bytes in 1.0, 4 after).
  unsigned char pre[12] = {};
  const size_t got = std::fread(pre, 1, std::min<uint64_t>(file_size, 12), file.get());
  static constexpr unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (got < 6 || std::memcmp(pre, kMagic, 6) != 0)
    return CPB_ERROR("{}: not a .npy file (bad magic; expected \\x93NUMPY)", path);
  if (got < 8) return CPB_ERROR("{}: truncated header (file ends inside the preamble)", path);
  const int major = pre[6];
  const int minor = pre[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    return CPB_ERROR("{}: unsupported .npy format version {}.{} (supported: 1.0, 2.0, 3.0)", path,
                     major, minor);
  const uint64_t pre_len = major == 1 ? 10 : 12;
  if (got < pre_len) return CPB_ERROR("{}: truncated header (file ends inside the preamble)", path);
  const uint64_t header_len = major == 1 ? le16(pre + 8) : le32(pre + 8);
  if (pre_len + header_len > file_size)
    return CPB_ERROR("{}: truncated header: it claims {} bytes but only {} follow the preamble",
                     path, header_len, file_size - pre_len);
  if (header_len > (uint64_t{1} << 24))
    return CPB_ERROR("{}: header of {} bytes is implausibly large", path, header_len);

  std::string header(header_len, '\0');
  if (std::fseek(file.get(), static_cast<long>(pre_len), SEEK_SET) != 0 ||
      std::fread(header.data(), 1, header_len, file.get()) != header_len)
    return CPB_ERROR("{}: cannot read the header: {}", path, std::strerror(errno));

  PyValue dict;
  std::string why;
  if (!LiteralParser(header).parse_all(dict, why))
    return CPB_ERROR("{}: header is not a valid dict literal ({}): {}", path, why,
                     header_excerpt(header));
  if (dict.kind != PyValue::Kind::dict)
    return CPB_ERROR("{}: header is not a dict: {}", path, header_excerpt(header));

  const PyValue* fields[3] = {nullptr, nullptr, nullptr};
  static constexpr const char* kKeys[3] = {"descr", "fortran_order", "shape"};
  for (size_t i = 0; i < dict.keys.size(); ++i) {
    const auto k = std::find(std::begin(kKeys), std::end(kKeys), dict.keys[i]);
    if (k == std::end(kKeys)) {
      return CPB_ERROR("{}: header has an unexpected key '{}' (expected {})", path, dict.keys[i],
                       "descr, fortran_order, shape");
    }
    fields[k - std::begin(kKeys)] = &dict.items[i];
  }
  for (int i = 0; i < 3; ++i) {
    if (!fields[i]) {
      return CPB_ERROR("{}: header lacks '{}' (needs descr, fortran_order, shape): {}", path,
                       kKeys[i], header_excerpt(header));
    }
  }
  const PyValue* descr = fields[0];
  const PyValue* fortran = fields[1];
  const PyValue* shape_v = fields[2];

  // dtype.
  if (descr->kind != PyValue::Kind::str)
    return CPB_ERROR(
        "{}: unsupported dtype (a structured/record dtype); supported: float32 "
        "('<f4') and float16 ('<f2')",
        path);
  const std::string& d = descr->str;
  size_t item_size = 0;
  if (d == "<f4") {
    item_size = 4;
  } else if (d == "<f2") {
    item_size = 2;
  } else if (!d.empty() && d[0] == '>') {
    return CPB_ERROR(
        "{}: dtype '{}' is big-endian; only little-endian is supported (save "
        "arr.astype('<f4') instead)",
        path, d);
  } else {
    return CPB_ERROR(
        "{}: unsupported dtype '{}'; supported: float32 ('<f4') and float16 "
        "('<f2') (save arr.astype(np.float32) instead)",
        path, d);
  }

  if (fortran->kind != PyValue::Kind::boolean)
    return CPB_ERROR("{}: header's fortran_order is not True/False", path);
  if (fortran->boolean)
    return CPB_ERROR(
        "{}: array is stored in Fortran order; only C order is supported (save "
        "np.ascontiguousarray(arr) instead)",
        path);

  if (shape_v->kind != PyValue::Kind::seq)
    return CPB_ERROR("{}: header's shape is not a tuple: {}", path, header_excerpt(header));
  if (shape_v->items.size() > 64)
    return CPB_ERROR("{}: shape has {} dimensions; that is absurd", path, shape_v->items.size());
  NpyArray out;
  out.dtype = d;
  for (const PyValue& dim : shape_v->items) {
    if (dim.kind != PyValue::Kind::integer)
      return CPB_ERROR("{}: header's shape holds a non-integer: {}", path, header_excerpt(header));
    out.shape.push_back(dim.integer);
  }
  CPB_ASSIGN_OR_RETURN(const int64_t count, element_count(out.shape, path));

  const uint64_t need = static_cast<uint64_t>(count) * item_size;
  const uint64_t have = file_size - pre_len - header_len;
  if (have < need)
    return CPB_ERROR("{}: data truncated: shape {} of {} needs {} bytes but the file holds {}",
                     path, shape_str(out.shape), item_size == 4 ? "float32" : "float16", need,
                     have);
  if (have > need)
    return CPB_ERROR(
        "{}: size mismatch: shape {} of {} needs {} bytes but the file holds {} "
        "({} extra bytes after the data)",
        path, shape_str(out.shape), item_size == 4 ? "float32" : "float16", need, have,
        have - need);

  try {
    out.data.resize(static_cast<size_t>(count));
  } catch (const std::bad_alloc&) {
    return CPB_ERROR("{}: out of memory allocating {} floats", path, count);
  }
  if (item_size == 4) {
    if (std::fread(out.data.data(), 4, out.data.size(), file.get()) != out.data.size())
      return CPB_ERROR("{}: read failed: {}", path, std::strerror(errno));
  } else {
    // Widen in chunks so a large float16 file does not need a second full-size buffer.
    std::vector<uint16_t> chunk(std::min<size_t>(out.data.size(), size_t{1} << 20));
    for (size_t done = 0; done < out.data.size();) {
      const size_t n = std::min(chunk.size(), out.data.size() - done);
      if (std::fread(chunk.data(), 2, n, file.get()) != n)
        return CPB_ERROR("{}: read failed: {}", path, std::strerror(errno));
      for (size_t i = 0; i < n; ++i) out.data[done + i] = half_to_float(chunk[i]);
      done += n;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing.

Status write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  CPB_ASSIGN_OR_RETURN(const int64_t count, element_count(shape, path));
  CPB_REQUIRE(count == 0 || data != nullptr, "{}: write_npy given no data for shape {}", path,
              shape_str(shape));

  std::string dict =
      "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_str(shape) + ", }";
  // numpy pads with spaces and ends with '\n' so that the data starts 64-byte aligned, which
  // lets readers memory-map it; version 2.0 only when the header outgrows 1.0's 16-bit length.
  const auto padded = [&](size_t pre_len) {
    const size_t unpadded = pre_len + dict.size() + 1;
    return dict + std::string((64 - unpadded % 64) % 64, ' ') + '\n';
  };
  std::string header = padded(10);
  std::string pre = "\x93NUMPY";
  if (header.size() <= 0xffff) {
    pre += '\x01';
    pre += '\x00';
    pre += static_cast<char>(header.size() & 0xff);
    pre += static_cast<char>(header.size() >> 8);
  } else {
    header = padded(12);
    pre += '\x02';
    pre += '\x00';
    for (int i = 0; i < 4; ++i) pre += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  }
  const std::string_view bytes(reinterpret_cast<const char*>(data),
                               static_cast<size_t>(count) * sizeof(float));
  CPB_TRY(write_file_atomic_parts(path, {pre, header, bytes}));
  return ok_status();
}

}  // namespace cpb
