// Reads hardware profiles (see hardware_profile.hpp for the schema). The parser is one table of
// fields, each with its key, whether it is required, what to write and how to read it, so adding
// a key is adding a row. Values are typed by hand, as in the experiment parser: a plain scalar
// is a number only if all of it is one, quoted text is never a number, and inf/nan are refused,
// because a profile feeds a decision and a silently wrong number gives a silently wrong choice.
// No exception leaves this file.
#include "harness/core/hardware_profile.hpp"
#include "harness/core/suggest.hpp"
#include "harness/core/text_file.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

namespace cpb {
namespace {

// A profile is a handful of lines; anything larger is the wrong file.
constexpr size_t kMaxProfileBytes = size_t{1} << 20;
// Upper bounds that catch unit mistakes (B/s written where GB/s was meant) without limiting any
// machine we can foresee: 1 EFLOP/s and 1 PB/s per rank.
constexpr double kMaxTflops = 1e6;
constexpr double kMaxGbps = 1e6;

// Text for a message: printable ASCII as is, other bytes as \xNN, long text cut short.
std::string shown(std::string_view s) {
  std::string out;
  for (char ch : s) {
    if (out.size() >= 60) return out + "...";
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f)
      out += ch;
    else
      out += fmt::format("\\x{:02x}", c);
  }
  return out;
}

std::string kind_of(const YAML::Node& n) {
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a map";
  if (n.IsNull()) return "nothing";
  return "a scalar";
}

// The value of a text field: any non-empty scalar.
Expected<std::string> read_text(const YAML::Node& n) {
  if (!n.IsScalar()) return CPB_ERROR("expected text, got {}", kind_of(n));
  if (n.Scalar().empty()) return CPB_ERROR("is empty: write some text or remove the key");
  return n.Scalar();
}

// The value of a positive number field in (0, max]; `unit` names it in messages.
Expected<double> read_positive(const YAML::Node& n, double max, const char* unit) {
  if (!n.IsScalar()) return CPB_ERROR("expected a number of {} > 0, got {}", unit, kind_of(n));
  const std::string& raw = n.Scalar();
  if (n.Tag() == "!")  // quoted: "800" is text in YAML, and we do not guess
    return CPB_ERROR("expected a number of {} > 0, got the string '{}': remove the quotes", unit,
                     shown(raw));
  std::string_view body = raw;
  if (!body.empty() && body[0] == '+') body.remove_prefix(1);
  // Digits, '.', exponent and signs only: refuses inf, nan and hex, which from_chars would take.
  const bool chars_ok = !body.empty() && std::all_of(body.begin(), body.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+';
  });
  double v = 0;
  if (chars_ok) {
    auto res = std::from_chars(body.data(), body.data() + body.size(), v);
    if (res.ptr != body.data() + body.size() || res.ec != std::errc()) v = NAN;
  }
  if (!chars_ok || std::isnan(v))
    return CPB_ERROR("expected a number of {} > 0, got '{}'", unit, shown(raw));
  if (!(v > 0))
    return CPB_ERROR("{} is not positive: give the {} as a number > 0", shown(raw), unit);
  if (v > max)
    return CPB_ERROR("{} is more than {:g} {}: check the unit (the key is in {})", shown(raw), max,
                     unit, unit);
  return v;
}

// One top-level key of the schema. `read` returns an error message without file, line and key
// (the caller adds them).
struct Field {
  const char* key;
  bool required;
  const char* want;  // what to write, for "missing" messages
  Status (*read)(const YAML::Node&, HardwareProfile&);
};

const std::vector<Field>& fields() {
  static const std::vector<Field> f = {
      {"name", true, "a name for records, e.g. `name: h100-rdma`",
       [](const YAML::Node& n, HardwareProfile& p) -> Status {
         CPB_ASSIGN_OR_RETURN(p.name, read_text(n));
         return {};
       }},
      {"peak_tflops", true, "the attention FLOP rate per rank, e.g. `peak_tflops: 800`",
       [](const YAML::Node& n, HardwareProfile& p) -> Status {
         CPB_ASSIGN_OR_RETURN(p.peak_tflops, read_positive(n, kMaxTflops, "TFLOP/s"));
         return {};
       }},
      {"bandwidth_gbps", true,
       "the bytes per second per rank on the CP ring link in GB/s (1e9 B/s), e.g. "
       "`bandwidth_gbps: 50` for 400 Gb/s RDMA",
       [](const YAML::Node& n, HardwareProfile& p) -> Status {
         CPB_ASSIGN_OR_RETURN(p.bandwidth_gbps, read_positive(n, kMaxGbps, "GB/s"));
         return {};
       }},
      {"description", false, "",
       [](const YAML::Node& n, HardwareProfile& p) -> Status {
         CPB_ASSIGN_OR_RETURN(p.description, read_text(n));
         return {};
       }},
      {"machine", false, "",
       [](const YAML::Node& n, HardwareProfile& p) -> Status {
         CPB_ASSIGN_OR_RETURN(p.machine, read_text(n));
         return {};
       }},
      {"source", false, "",
       [](const YAML::Node& n, HardwareProfile& p) -> Status {
         CPB_ASSIGN_OR_RETURN(p.source, read_text(n));
         return {};
       }},
      // Free-form: whatever is under it is never read, which is the point.
      {"extra", false, "",
       [](const YAML::Node& n, HardwareProfile&) -> Status {
         if (!n.IsMap() && !n.IsNull())
           return CPB_ERROR("expected a map of free-form keys, got {}", kind_of(n));
         return {};
       }},
  };
  return f;
}

std::string join_keys() {
  std::string out;
  for (const auto& k : hardware_profile_keys()) out += (out.empty() ? "" : ", ") + k;
  return out;
}

int line_of(const YAML::Node& n, int fallback) {
  if (!n.IsDefined() || n.IsNull() || n.Mark().line < 0) return fallback;
  return n.Mark().line + 1;
}

Expected<HardwareProfile> parse(const std::string& text, const std::string& path) {
  auto fail = [&](int line, std::string_view key, const std::string& msg) {
    return CPB_ERROR("{}:{}: {}: {}", path, line, key, msg);
  };
  if (text.size() > kMaxProfileBytes)
    return CPB_ERROR(
        "{}: the file is {} bytes, more than the {} a hardware profile may have: is "
        "it the right file?",
        path, text.size(), kMaxProfileBytes);
  std::vector<YAML::Node> docs = YAML::LoadAll(text);
  if (docs.size() > 1)
    return fail(line_of(docs[1], 1), "---",
                "the file holds more than one YAML document: keep one profile per file");
  if (docs.empty() || docs[0].IsNull())
    return fail(1, "name",
                fmt::format("the profile is empty: it needs name, peak_tflops and bandwidth_gbps "
                            "(keys: {})",
                            join_keys()));
  const YAML::Node& root = docs[0];
  if (!root.IsMap())
    return fail(line_of(root, 1), "profile",
                fmt::format("expected a map of keys ({}), got {}", join_keys(), kind_of(root)));

  HardwareProfile p;
  p.path = path;
  std::set<std::string> seen;
  for (const auto& kv : root) {
    const int line = line_of(kv.first, line_of(root, 1));
    if (!kv.first.IsScalar())
      return fail(line, "profile", "a key must be plain text, not a list or a map");
    const std::string key = kv.first.Scalar();
    const auto& all = fields();
    auto f = std::find_if(all.begin(), all.end(), [&](const Field& x) { return key == x.key; });
    if (f == all.end()) {
      const std::string hint = suggest(key, hardware_profile_keys());
      return fail(line, shown(key),
                  fmt::format("unknown key{}; a profile may have {}; put notes and other "
                              "tools' keys under `extra:`",
                              hint, join_keys()));
    }
    if (!seen.insert(key).second) return fail(line, key, "given twice: keep one");
    if (auto st = f->read(kv.second, p); !st)
      return fail(line_of(kv.second, line), key, st.error().message);
  }
  for (const auto& f : fields())
    if (f.required && !seen.count(f.key))
      return fail(line_of(root, 1), f.key, fmt::format("missing: add {}", f.want));
  return p;
}

}  // namespace

const std::vector<std::string>& hardware_profile_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const auto& f : fields()) k.emplace_back(f.key);
    std::sort(k.begin(), k.end());
    return k;
  }();
  return keys;
}

Expected<HardwareProfile> parse_hardware_profile(const std::string& text, const std::string& path) {
  // yaml-cpp reports bad input by throwing; so might the standard library (bad_alloc).
  try {
    return parse(text, path);
  } catch (const YAML::Exception& e) {
    return CPB_ERROR("{}:{}: YAML: {}: fix the syntax", path, e.mark.line + 1, e.msg);
  } catch (const std::exception& e) {
    return CPB_ERROR("{}: cannot parse the hardware profile: {}", path, e.what());
  }
}

Expected<HardwareProfile> load_hardware_profile(const std::string& path) {
  if (path.empty())
    return CPB_ERROR("hardware_profile is empty: give the path of a profile .yaml file");
  CPB_ASSIGN_OR_RETURN(std::string text,
                       read_text_file(path, "hardware profile", kMaxProfileBytes));
  return parse_hardware_profile(text, path);
}

}  // namespace cpb
