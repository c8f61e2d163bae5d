// Parses a YAML experiment file into its fully resolved config points. The text is first scanned
// event by event (yaml-cpp's Parser) to refuse what the schema never needs and an attacker could
// abuse: aliases (a "billion laughs" file expands exponentially when walked) and extra documents.
// Then every key is checked against the schema with its own line, values are typed by hand (a
// plain YAML scalar is only text; quoted text is never a number), the axes are expanded in file
// order with the last varying fastest, each combination is resolved (built-in defaults, then
// `defaults`, then its axis values; presets; the two ways of giving token counts) and the `where`
// constraints and --filter are applied. Every failure is an Error "file:line: key: what to change"
// and no exception leaves this file.
#include "harness/config/config.hpp"
#include "harness/core/suggest.hpp"
#include "harness/core/text_file.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>

#include "harness/config/expr.hpp"

namespace cpb {

std::string to_string(const ParamValue& v) {
  switch (v.index()) {
    case 0:
      return fmt::format("{}", std::get<int64_t>(v));
    case 1: {
      // Shortest text that reads back to the same double; keep a '.' so a real never looks
      // like an int (miss_rate=1.0, not miss_rate=1).
      std::string s = fmt::format("{}", std::get<double>(v));
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
      return s;
    }
    case 2:
      return std::get<std::string>(v);
    default:
      return std::get<bool>(v) ? "true" : "false";
  }
}

const std::map<std::string, Preset>& builtin_presets() {
  static const std::map<std::string, Preset> presets = {
      {"llama3-405b-tp8", {16, 1, 128, "Llama 3 405B attention per GPU under TP8"}},
      {"llama3-70b-tp8", {8, 1, 128, "Llama 3 70B attention per GPU under TP8"}},
      {"llama3-8b", {32, 8, 128, "Llama 3 8B attention on one GPU"}},
      {"mha-32x128", {32, 32, 128, "multi-head attention, 32 heads of dimension 128"}},
  };
  return presets;
}

namespace {

// Limits that keep a hostile or mistyped file from costing unbounded time or memory.
constexpr size_t kMaxFileBytes = size_t{4} << 20;
constexpr int64_t kMaxPoints = 100'000;  // a GPU sweep of this many points runs for days
constexpr int64_t kMaxTokens = int64_t{1} << 40;

const std::vector<std::string> kLayouts = {"contiguous", "striped", "zigzag"};
const std::vector<std::string> kDtypes = {"bf16", "fp16"};
const std::vector<std::string> kMasks = {"causal", "full"};
const std::vector<std::string> kPhases = {"decode", "prefill"};
const std::vector<std::string> kBackends = {"auto", "cpu", "cuda", "sim"};
const std::vector<std::string> kTopKeys = {"name",       "description", "backend",   "warmup",
                                           "iterations", "verify",      "timeout_s", "presets",
                                           "defaults",   "axes",        "zip",       "where",
                                           "cuda_graph"};

// Point keys, indexed for speed: a sweep may resolve up to kMaxPoints combinations.
enum Key : int {
  kStrategy,
  kLayout,
  kCp,
  kBatch,
  kPreset,
  kHeads,
  kKvHeads,
  kHeadDim,
  kDtype,
  kMask,
  kNewTokens,
  kCachedTokens,
  kContext,
  kMissRate,
  kPhase,
  kSeed,
  kUlysses,
  kAutoAlgorithm,
  kPeakTflops,
  kBandwidthGbps,
  kHardwareProfile,
  kNumKeys
};
constexpr std::array<const char*, kNumKeys> kKeyNames = {
    "strategy", "layout",    "cp",    "batch", "preset",     "heads",
    "kv_heads", "head_dim",  "dtype", "mask",  "new_tokens", "cached_tokens",
    "context",  "miss_rate", "phase", "seed",  "ulysses", "auto_algorithm", "peak_tflops",
    "bandwidth_gbps", "hardware_profile"};

int key_index(std::string_view k) {
  for (int i = 0; i < kNumKeys; ++i)
    if (k == kKeyNames[i]) return i;
  return -1;
}

std::string join(const std::vector<std::string>& v, std::string_view sep = ", ") {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

// Text for a message: printable ASCII as is, other bytes as \xNN, long text cut short (a 1 MB
// scalar must not end up in a message).
std::string shown(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= 60) return out + "...";
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f)
      out += static_cast<char>(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  return out;
}

bool is_name(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

// ---- scalars -----------------------------------------------------------------------------------

// A YAML scalar typed by the rules of this schema: quoted text is always text; a plain scalar
// is an integer, a real, a bool (true/false), null or text.
struct Scalar {
  enum class T { null, integer, big, real, boolean, text } t = T::null;
  int64_t i = 0;
  double d = 0;
  bool b = false;
  bool negative = false;  // for `big`
  bool quoted = false;
  std::string raw;
};

Scalar classify(const YAML::Node& n) {
  Scalar s;
  if (!n.IsDefined() || n.IsNull()) return s;
  s.raw = n.Scalar();
  const std::string& tag = n.Tag();
  if (tag == "!" || tag == "tag:yaml.org,2002:str") {
    s.t = Scalar::T::text;
    s.quoted = true;
    return s;
  }
  const std::string& r = s.raw;
  if (r.empty() || r == "~" || r == "null" || r == "Null" || r == "NULL") return s;
  if (r == "true" || r == "True" || r == "TRUE" || r == "false" || r == "False" || r == "FALSE") {
    s.t = Scalar::T::boolean;
    s.b = r[0] == 't' || r[0] == 'T';
    return s;
  }
  std::string_view body = r;
  if (body[0] == '+') body.remove_prefix(1);
  bool digits_only = !body.empty() && std::all_of(body.begin() + (body[0] == '-'), body.end(),
                                                  [](char c) { return c >= '0' && c <= '9'; });
  if (digits_only && body.size() > static_cast<size_t>(body[0] == '-')) {
    auto res = std::from_chars(body.data(), body.data() + body.size(), s.i);
    if (res.ec == std::errc::result_out_of_range) {
      s.t = Scalar::T::big;
      s.negative = body[0] == '-';
    } else {
      s.t = Scalar::T::integer;
    }
    return s;
  }
  // A real: only digits, one '.', an exponent and signs, with at least one digit; from_chars
  // must take all of it (it would also take "inf" and "nan", which the character check refuses).
  bool real_chars = std::all_of(body.begin(), body.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+';
  });
  bool has_digit =
      std::any_of(body.begin(), body.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (real_chars && has_digit) {
    double d = 0;
    auto res = std::from_chars(body.data(), body.data() + body.size(), d);
    if (res.ptr == body.data() + body.size()) {
      if (res.ec == std::errc::result_out_of_range) {
        // Overflow (1e999) or underflow (1e-999): which one is told by the exponent's sign.
        auto e = body.find_first_of("eE");
        bool tiny = e != std::string_view::npos && e + 1 < body.size() && body[e + 1] == '-';
        d = tiny ? 0.0 : (body[0] == '-' ? -HUGE_VAL : HUGE_VAL);
      } else if (res.ec != std::errc()) {
        s.t = Scalar::T::text;
        return s;
      }
      s.t = Scalar::T::real;
      s.d = d;
      return s;
    }
  }
  s.t = Scalar::T::text;
  return s;
}

// What a key accepts.
struct Spec {
  enum class Kind { integer, real, text, boolean } kind = Kind::integer;
  int64_t imin = 0, imax = 0;                         // integer: inclusive bounds
  double rmax = 0;                                    // real: in (0, rmax]
  const std::vector<std::string>* choices = nullptr;  // text: allowed values (null: any name)
  const char* noun = "";                              // text: "layout" in "unknown layout 'x'"
  bool any_text = false;                              // text: free text (description), not a name

  std::string expect() const {
    switch (kind) {
      case Kind::integer:
        if (imax == INT64_MAX) return fmt::format("an integer >= {}", imin);
        return fmt::format("an integer from {} to {}", imin, imax);
      case Kind::real:
        return fmt::format("a number greater than 0 and at most {}", rmax);
      case Kind::boolean:
        return "true or false";
      case Kind::text:
        if (any_text) return "text";
        if (choices) return fmt::format("one of {}", join(*choices));
        return "a name of letters, digits, '_', '.' and '-'";
    }
    return "";
  }
};

Spec int_spec(int64_t lo, int64_t hi) {
  Spec s;
  s.kind = Spec::Kind::integer;
  s.imin = lo;
  s.imax = hi;
  return s;
}

Spec text_spec(const std::vector<std::string>* choices, const char* noun) {
  Spec s;
  s.kind = Spec::Kind::text;
  s.choices = choices;
  s.noun = noun;
  return s;
}

std::string node_kind(const YAML::Node& n) {
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a map";
  return "a scalar";
}

// Converts a scalar node to the value `spec` accepts; the error message says what was expected
// and what was found (the caller adds file, line and key).
Expected<ParamValue> convert(const YAML::Node& n, const Spec& spec) {
  if (n.IsSequence() || n.IsMap())
    return CPB_ERROR("expected {}, got {}", spec.expect(), node_kind(n));
  Scalar s = classify(n);
  if (s.t == Scalar::T::null) return CPB_ERROR("no value: expected {}", spec.expect());
  switch (spec.kind) {
    case Spec::Kind::integer: {
      int64_t v = 0;
      if (s.t == Scalar::T::integer) {
        v = s.i;
      } else if (s.t == Scalar::T::big) {
        return CPB_ERROR("{} is too {}: expected {}", shown(s.raw), s.negative ? "small" : "large",
                         spec.expect());
      } else if (s.t == Scalar::T::real) {
        // 1e6 is a fine way to write a token count; 2.5 is not an integer.
        if (std::isinf(s.d) || std::fabs(s.d) >= 9.2e18)
          return CPB_ERROR("{} is too {}: expected {}", shown(s.raw), s.d < 0 ? "small" : "large",
                           spec.expect());
        if (s.d != std::trunc(s.d))
          return CPB_ERROR("{} is not a whole number: expected {}", shown(s.raw), spec.expect());
        v = static_cast<int64_t>(s.d);
      } else {
        return CPB_ERROR("expected {}, got {}'{}'{}", spec.expect(), s.quoted ? "the string " : "",
                         shown(s.raw), s.quoted ? ": remove the quotes" : "");
      }
      if (v < spec.imin)
        return CPB_ERROR("{} is too small: expected {}", shown(s.raw), spec.expect());
      if (v > spec.imax)
        return CPB_ERROR("{} is too large: expected {}", shown(s.raw), spec.expect());
      return ParamValue(v);
    }
    case Spec::Kind::real: {
      double v = 0;
      if (s.t == Scalar::T::integer)
        v = static_cast<double>(s.i);
      else if (s.t == Scalar::T::real)
        v = s.d;
      else if (s.t == Scalar::T::big)
        v = s.negative ? -HUGE_VAL : HUGE_VAL;
      else
        return CPB_ERROR("expected {}, got {}'{}'{}", spec.expect(), s.quoted ? "the string " : "",
                         shown(s.raw), s.quoted ? ": remove the quotes" : "");
      if (!(v > 0) || !(v <= spec.rmax))
        return CPB_ERROR("{} is out of range: expected {}", shown(s.raw), spec.expect());
      return ParamValue(v);
    }
    case Spec::Kind::boolean:
      if (s.t != Scalar::T::boolean)
        return CPB_ERROR("expected true or false, got {}'{}'{}", s.quoted ? "the string " : "",
                         shown(s.raw), s.quoted ? ": remove the quotes" : "");
      return ParamValue(s.b);
    case Spec::Kind::text:
      if (spec.any_text) return ParamValue(s.raw);
      if (spec.choices && !spec.choices->empty()) {
        if (std::find(spec.choices->begin(), spec.choices->end(), s.raw) == spec.choices->end())
          return CPB_ERROR("unknown {} '{}': use one of {}{}", spec.noun, shown(s.raw),
                           join(*spec.choices), suggest(s.raw, *spec.choices));
        return ParamValue(s.raw);
      }
      if (!is_name(s.raw))
        return CPB_ERROR("'{}' is not a valid {}: use up to 128 letters, digits, '_', '.' and '-'",
                         shown(s.raw), spec.noun);
      return ParamValue(s.raw);
  }
  return CPB_ERROR("internal: unhandled spec kind");
}

// ---- the event pre-scan
// --------------------------------------------------------------------------

// Counts documents and finds the first alias without building or expanding anything.
class Prescan : public YAML::EventHandler {
 public:
  int documents = 0;
  int second_document_line = 0;
  std::optional<YAML::Mark> alias;

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents == 2) second_document_line = mark.line + 1;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
    if (!alias) alias = mark;
  }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// ---- the parser
// ----------------------------------------------------------------------------------

struct Entry {
  std::string key;
  YAML::Node value;
  int line = 0;  // of the key
};

// One axis of the product: a single `axes` key, or a `zip` group whose keys move together.
struct Axis {
  std::string label;  // "axes.cp", "zip", "zip[1]"
  int line = 0;
  std::vector<int> keys;                      // Key indices
  std::vector<std::string> key_labels;        // "axes.cp", "zip[1].context"
  std::vector<std::vector<ParamValue>> rows;  // rows[i][j]: i-th value of keys[j]
  std::vector<std::vector<int>> lines;        // their lines
};

// Where a point's value of one key came from.
struct Given {
  const ParamValue* v = nullptr;
  int line = 0;
  const std::string* label = nullptr;
  int elem = -1;  // index in the axis, -1 for `defaults`
};

struct Where {
  Expr expr;
  int line = 0;       // 0: not from the file (--filter)
  std::string label;  // "where", "where[1]", "--filter"
};

class ExperimentParser {
 public:
  ExperimentParser(const std::string& text, const std::string& path, const ParseOptions& opts)
      : text_(text), path_(path), opts_(opts) {}

  Expected<Experiment> run() {
    exp_.path = path_;
    exp_.text = text_;
    CPB_TRY(load_yaml());
    CPB_TRY(read_top());
    CPB_TRY(expand());
    return std::move(exp_);
  }

 private:
  Error fail(int line, std::string_view key, const std::string& msg) const {
    return CPB_ERROR("{}:{}: {}: {}", path_, line, key, msg);
  }
  static int line_of(const YAML::Node& n, int fallback) {
    if (n.IsNull() || n.Mark().line < 0) return fallback;
    return n.Mark().line + 1;
  }

  Status load_yaml() {
    if (text_.size() > kMaxFileBytes)
      return CPB_ERROR(
          "{}: the file is {} bytes, more than the {} an experiment may have: is it "
          "the right file?",
          path_, text_.size(), kMaxFileBytes);
    try {
      Prescan scan;
      {
        std::istringstream in(text_);
        YAML::Parser parser(in);
        while (parser.HandleNextDocument(scan)) {
          if (scan.alias || scan.documents > 1) break;
        }
      }
      if (scan.alias)
        return fail(scan.alias->line + 1, "alias",
                    "YAML aliases (*name) are not supported: write the values out (anchors and "
                    "aliases could expand a small file into a huge sweep)");
      if (scan.documents > 1)
        return fail(scan.second_document_line, "---",
                    "the file holds more than one YAML document: keep one experiment per file");
      if (scan.documents == 0)
        return fail(1, "name", "the file is empty: an experiment is a map with at least `name`");
      root_ = YAML::Load(text_);
    } catch (const YAML::ParserException& e) {
      return fail(e.mark.line + 1, "YAML",
                  fmt::format("syntax error at column {}: {}", e.mark.column + 1, e.msg));
    }
    if (!root_.IsMap()) {
      int line = line_of(root_, 1);
      if (root_.IsNull())
        return fail(line, "name",
                    "the file has no content: an experiment is a map with at least "
                    "`name`");
      return fail(line, "top level",
                  fmt::format("expected a map of experiment keys ({}), got {}", join(kTopKeys),
                              node_kind(root_)));
    }
    return {};
  }

  // The entries of a map node in file order; keys must be plain text and appear once.
  Expected<std::vector<Entry>> entries(const YAML::Node& map, const std::string& label,
                                       int line) const {
    if (!map.IsMap())
      return fail(line_of(map, line), label, fmt::format("expected a map, got {}", node_kind(map)));
    std::vector<Entry> out;
    for (auto it = map.begin(); it != map.end(); ++it) {
      Entry e;
      e.line = line_of(it->first, line);
      if (!it->first.IsScalar())
        return fail(e.line, label,
                    fmt::format("keys must be plain words, got {} as a key", node_kind(it->first)));
      e.key = it->first.Scalar();
      e.value = it->second;
      for (const auto& prev : out)
        if (prev.key == e.key)
          return fail(e.line, sub(label, e.key),
                      fmt::format("duplicate key (first at line {}): keep one", prev.line));
      out.push_back(std::move(e));
    }
    return out;
  }

  std::string sub(const std::string& label, const std::string& key) const {
    return label.empty() ? shown(key) : label + "." + shown(key);
  }

  // Point key of an entry, or an error naming the valid keys.
  Expected<int> point_key(const Entry& e, const std::string& label) const {
    int k = key_index(e.key);
    if (k >= 0) return k;
    std::vector<std::string> names(kKeyNames.begin(), kKeyNames.end());
    std::sort(names.begin(), names.end());
    return fail(e.line, sub(label, e.key),
                fmt::format("unknown key '{}'{}; a point may set {}", shown(e.key),
                            suggest(e.key, names), join(names)));
  }

  Spec spec_of(int k) const {
    switch (k) {
      case kStrategy:  // any well-formed name when no registry is given (tests, tools)
        return text_spec(strategies_.empty() ? nullptr : &strategies_, "strategy");
      case kLayout:
        return text_spec(&kLayouts, "layout");
      case kCp:
        return int_spec(1, 4096);
      case kBatch:
        return int_spec(1, int64_t{1} << 20);
      case kPreset:
        return text_spec(&preset_names_, "preset");
      case kHeads:
      case kKvHeads:
        return int_spec(1, 4096);
      case kHeadDim:
        return int_spec(1, 1024);
      case kDtype:
        return text_spec(&kDtypes, "dtype");
      case kMask:
        return text_spec(&kMasks, "mask");
      case kNewTokens:
      case kContext:
        return int_spec(1, kMaxTokens);
      case kCachedTokens:
        return int_spec(0, kMaxTokens);
      case kMissRate: {
        Spec s;
        s.kind = Spec::Kind::real;
        s.rmax = 1.0;
        return s;
      }
      case kPhase:
        return text_spec(&kPhases, "phase");
      case kSeed:
        return int_spec(0, INT64_MAX);
      case kAutoAlgorithm:
        return int_spec(1, 5);
      case kPeakTflops:
      case kBandwidthGbps: {
        Spec s;
        s.kind = Spec::Kind::real;
        s.rmax = 1e6;
        return s;
      }
      case kHardwareProfile: {
        Spec s = text_spec(nullptr, "hardware_profile");
        s.any_text = true;
        return s;
      }
      default:
        return int_spec(0, 4096);  // ulysses
    }
  }

  Expected<ParamValue> value(const YAML::Node& n, const Spec& spec, int line,
                             const std::string& label, const char* hint = "") const {
    auto v = convert(n, spec);
    if (!v) return fail(line, label, v.error().message + hint);
    return v;
  }

  Status read_top() {
    CPB_ASSIGN_OR_RETURN(auto top, entries(root_, "", 1));
    std::map<std::string, const Entry*> by_key;
    for (const auto& e : top) {
      if (std::find(kTopKeys.begin(), kTopKeys.end(), e.key) == kTopKeys.end())
        return fail(e.line, shown(e.key),
                    fmt::format("unknown top-level key{}; valid keys: {} (point keys such as cp "
                                "go under defaults, axes or zip)",
                                suggest(e.key, kTopKeys), join(kTopKeys)));
      by_key[e.key] = &e;
    }
    auto get = [&](const char* k) -> const Entry* {
      auto it = by_key.find(k);
      return it == by_key.end() ? nullptr : it->second;
    };

    const Entry* name = get("name");
    if (!name)
      return fail(1, "name",
                  "missing: every experiment needs `name: <letters, digits, _ . ->` (it names the "
                  "run folder)");
    CPB_ASSIGN_OR_RETURN(ParamValue nv, value(name->value, text_spec(nullptr, "name"),
                                              line_of(name->value, name->line), "name"));
    exp_.name = std::get<std::string>(nv);
    if (const Entry* e = get("description")) {
      Spec s = text_spec(nullptr, "description");
      s.any_text = true;
      CPB_ASSIGN_OR_RETURN(ParamValue v,
                           value(e->value, s, line_of(e->value, e->line), "description"));
      exp_.description = std::get<std::string>(v);
    }
    if (const Entry* e = get("backend")) {
      CPB_ASSIGN_OR_RETURN(ParamValue v, value(e->value, text_spec(&kBackends, "backend"),
                                               line_of(e->value, e->line), "backend"));
      exp_.backend = std::get<std::string>(v);
    }
    if (const Entry* e = get("warmup")) {
      CPB_ASSIGN_OR_RETURN(ParamValue v, value(e->value, int_spec(0, 1'000'000),
                                               line_of(e->value, e->line), "warmup"));
      exp_.warmup = static_cast<int>(std::get<int64_t>(v));
    }
    if (const Entry* e = get("iterations")) {
      CPB_ASSIGN_OR_RETURN(ParamValue v, value(e->value, int_spec(1, 1'000'000),
                                               line_of(e->value, e->line), "iterations"));
      exp_.iterations = static_cast<int>(std::get<int64_t>(v));
    }
    if (const Entry* e = get("verify")) {
      Spec s;
      s.kind = Spec::Kind::boolean;
      CPB_ASSIGN_OR_RETURN(ParamValue v, value(e->value, s, line_of(e->value, e->line), "verify"));
      exp_.verify = std::get<bool>(v);
    }
    if (const Entry* e = get("cuda_graph")) {
      Spec s;
      s.kind = Spec::Kind::boolean;
      CPB_ASSIGN_OR_RETURN(ParamValue v,
                           value(e->value, s, line_of(e->value, e->line), "cuda_graph"));
      exp_.cuda_graph = std::get<bool>(v);
    }
    if (const Entry* e = get("timeout_s")) {
      Spec s;
      s.kind = Spec::Kind::real;
      s.rmax = 1e6;
      CPB_ASSIGN_OR_RETURN(ParamValue v,
                           value(e->value, s, line_of(e->value, e->line), "timeout_s"));
      exp_.timeout_s = std::get<double>(v);
    }

    // Presets first: `preset` values elsewhere are checked against them.
    exp_.presets = builtin_presets();
    if (const Entry* e = get("presets")) CPB_TRY(read_presets(*e));
    for (const auto& [k, p] : exp_.presets) preset_names_.push_back(k);
    strategies_ = opts_.strategies;
    std::sort(strategies_.begin(), strategies_.end());

    anchor_line_ = 1;
    anchor_label_ = "defaults";
    for (const char* k : {"defaults", "axes", "zip"}) {
      if (const Entry* e = get(k)) {
        anchor_line_ = e->line;
        anchor_label_ = k;
        break;
      }
    }
    if (const Entry* e = get("defaults")) CPB_TRY(read_defaults(*e));
    if (const Entry* e = get("axes")) CPB_TRY(read_axes(*e));
    if (const Entry* e = get("zip")) CPB_TRY(read_zip(*e));

    // Names `where` may use as bare words: the fixed vocabularies, presets, registered
    // strategies and every strategy the file itself names.
    symbols_ = expr_symbols(opts_.strategies, exp_.presets);
    symbols_.insert("ring_pass_kv");
    for (const auto& s : seen_strategies_) symbols_.insert(s);
    if (const Entry* e = get("where")) CPB_TRY(read_where(*e));
    if (!opts_.filter.empty()) {
      auto f = parse_expr(opts_.filter, symbols_);
      if (!f) return CPB_ERROR("--filter: {}", f.error().message);
      auto names = check_expr_names(*f, point_keys(), symbols_);
      if (!names) return CPB_ERROR("--filter: {}", names.error().message);
      filter_ = Where{std::move(f).value(), 0, "--filter"};
    }
    return {};
  }

  Status read_presets(const Entry& top) {
    if (top.value.IsNull()) return {};
    CPB_ASSIGN_OR_RETURN(auto list, entries(top.value, "presets", top.line));
    for (const auto& e : list) {
      std::string label = sub("presets", e.key);
      if (!is_name(e.key))
        return fail(e.line, label,
                    "a preset name may use up to 128 letters, digits, '_', '.' "
                    "and '-'");
      if (builtin_presets().count(e.key))
        return fail(e.line, label, "redefines a built-in preset: choose another name");
      CPB_ASSIGN_OR_RETURN(auto fields, entries(e.value, label, e.line));
      Preset p;
      for (const auto& f : fields) {
        std::string fl = sub(label, f.key);
        int fline = line_of(f.value, f.line);
        if (f.key == "description") {
          Spec s = text_spec(nullptr, "description");
          s.any_text = true;
          CPB_ASSIGN_OR_RETURN(ParamValue v, value(f.value, s, fline, fl));
          p.description = std::get<std::string>(v);
          continue;
        }
        int k = f.key == "heads"      ? kHeads
                : f.key == "kv_heads" ? kKvHeads
                : f.key == "head_dim" ? kHeadDim
                                      : -1;
        if (k < 0)
          return fail(
              f.line, fl,
              fmt::format("unknown preset field '{}'{}; a preset has heads, kv_heads, "
                          "head_dim and description",
                          shown(f.key),
                          suggest(f.key, {"heads", "kv_heads", "head_dim", "description"})));
        CPB_ASSIGN_OR_RETURN(ParamValue v, value(f.value, spec_of(k), fline, fl));
        (k == kHeads ? p.heads : k == kKvHeads ? p.kv_heads : p.head_dim) = std::get<int64_t>(v);
      }
      std::vector<std::string> missing;
      if (p.heads == 0) missing.push_back("heads");
      if (p.kv_heads == 0) missing.push_back("kv_heads");
      if (p.head_dim == 0) missing.push_back("head_dim");
      if (!missing.empty())
        return fail(e.line, label,
                    fmt::format("missing {}: a preset needs heads, kv_heads and head_dim",
                                join(missing, " and ")));
      if (p.heads % p.kv_heads != 0)
        return fail(
            e.line, label,
            fmt::format("heads ({}) must be a multiple of kv_heads ({})", p.heads, p.kv_heads));
      exp_.presets[e.key] = std::move(p);
    }
    return {};
  }

  // Remembers strategy names written in the file: they may appear bare in `where`.
  void note(int k, const ParamValue& v) {
    if (k == kStrategy) seen_strategies_.insert(std::get<std::string>(v));
  }

  Status read_defaults(const Entry& top) {
    if (top.value.IsNull()) return {};
    CPB_ASSIGN_OR_RETURN(auto list, entries(top.value, "defaults", top.line));
    for (const auto& e : list) {
      CPB_ASSIGN_OR_RETURN(int k, point_key(e, "defaults"));
      default_labels_[k] = "defaults." + e.key;
      default_lines_[k] = line_of(e.value, e.line);
      CPB_ASSIGN_OR_RETURN(
          ParamValue v, value(e.value, spec_of(k), default_lines_[k], default_labels_[k],
                              e.value.IsSequence() ? ": put a list of values under `axes`" : ""));
      note(k, v);
      defaults_[k] = std::move(v);
    }
    return {};
  }

  // The values of one axis key: a non-empty list of scalars, each valid for the key.
  Status read_list(const Entry& e, int k, const std::string& label, std::vector<ParamValue>& out,
                   std::vector<int>& lines) {
    Spec spec = spec_of(k);
    // `strategy: all` is every registered strategy, so that a sweep (the quickstart) covers a
    // new strategy without being edited.
    if (k == kStrategy && e.value.IsScalar() && e.value.Scalar() == "all" &&
        e.value.Tag() != "!") {
      if (strategies_.empty())
        return fail(line_of(e.value, e.line), label,
                    "`all` needs the list of registered strategies, which was not given");
      for (const auto& name : strategies_) {
        note(k, name);
        out.push_back(name);
        lines.push_back(line_of(e.value, e.line));
      }
      return {};
    }
    if (!e.value.IsSequence()) {
      std::string got = e.value.IsNull() ? "nothing"
                        : e.value.IsMap()
                            ? "a map"
                            : fmt::format("the single value '{}'", shown(e.value.Scalar()));
      return fail(line_of(e.value, e.line), label,
                  fmt::format("expected a list of values, each {}, got {}{}", spec.expect(), got,
                              e.value.IsScalar() ? fmt::format(": write [{}], or put it under "
                                                               "`defaults`",
                                                               shown(e.value.Scalar()))
                                                 : ""));
    }
    if (e.value.size() == 0)
      return fail(line_of(e.value, e.line), label,
                  fmt::format("the list is empty: give at least one value ({}), or remove the key",
                              spec.expect()));
    for (size_t i = 0; i < e.value.size(); ++i) {
      YAML::Node item = e.value[i];
      int line = line_of(item, line_of(e.value, e.line));
      CPB_ASSIGN_OR_RETURN(ParamValue v, value(item, spec, line, fmt::format("{}[{}]", label, i)));
      note(k, v);
      out.push_back(std::move(v));
      lines.push_back(line);
    }
    return {};
  }

  // Axis keys, to refuse a key given in two axes.
  Status claim(int k, const std::string& label, int line) {
    if (!claimed_[k].empty())
      return fail(line, label,
                  fmt::format("'{}' is already an axis ({}): a key may be in only one of `axes` "
                              "and the `zip` groups",
                              kKeyNames[k], claimed_[k]));
    claimed_[k] = label;
    return {};
  }

  Status check_distinct(const Axis& a) const {
    std::map<std::string, size_t> seen;
    for (size_t i = 0; i < a.rows.size(); ++i) {
      std::string id;
      for (const auto& v : a.rows[i]) id += to_string(v) + ",";
      auto [it, fresh] = seen.emplace(id, i);
      if (!fresh)
        return fail(a.lines[i][0], fmt::format("{}[{}]", a.key_labels[0], i),
                    fmt::format("repeats the value{} of position {}: remove the duplicate",
                                a.keys.size() > 1 ? "s" : "", it->second));
    }
    return {};
  }

  Status read_axes(const Entry& top) {
    if (top.value.IsNull()) return {};
    CPB_ASSIGN_OR_RETURN(auto list, entries(top.value, "axes", top.line));
    for (const auto& e : list) {
      CPB_ASSIGN_OR_RETURN(int k, point_key(e, "axes"));
      Axis a;
      a.label = "axes." + e.key;
      a.line = e.line;
      a.keys = {k};
      a.key_labels = {a.label};
      CPB_TRY(claim(k, a.label, e.line));
      std::vector<ParamValue> vals;
      std::vector<int> lines;
      CPB_TRY(read_list(e, k, a.label, vals, lines));
      for (size_t i = 0; i < vals.size(); ++i) {
        a.rows.push_back({std::move(vals[i])});
        a.lines.push_back({lines[i]});
      }
      CPB_TRY(check_distinct(a));
      axes_.push_back(std::move(a));
    }
    return {};
  }

  Status read_zip_group(const YAML::Node& group, const std::string& label, int line) {
    CPB_ASSIGN_OR_RETURN(auto list, entries(group, label, line));
    if (list.empty())
      return fail(line_of(group, line), label,
                  "the zip group is empty: give keys with lists, or remove it");
    Axis a;
    a.label = label;
    a.line = line_of(group, line);
    std::vector<std::vector<ParamValue>> cols;
    std::vector<std::vector<int>> col_lines;
    for (const auto& e : list) {
      CPB_ASSIGN_OR_RETURN(int k, point_key(e, label));
      std::string kl = sub(label, e.key);
      CPB_TRY(claim(k, kl, e.line));
      cols.emplace_back();
      col_lines.emplace_back();
      CPB_TRY(read_list(e, k, kl, cols.back(), col_lines.back()));
      if (cols.back().size() != cols.front().size())
        return fail(e.line, kl,
                    fmt::format("has {} values but {} has {}: every list of one zip group needs "
                                "the same length",
                                cols.back().size(), a.key_labels.front(), cols.front().size()));
      a.keys.push_back(k);
      a.key_labels.push_back(kl);
    }
    for (size_t i = 0; i < cols.front().size(); ++i) {
      a.rows.emplace_back();
      a.lines.emplace_back();
      for (size_t j = 0; j < cols.size(); ++j) {
        a.rows.back().push_back(cols[j][i]);
        a.lines.back().push_back(col_lines[j][i]);
      }
    }
    CPB_TRY(check_distinct(a));
    axes_.push_back(std::move(a));
    return {};
  }

  Status read_zip(const Entry& top) {
    if (top.value.IsNull()) return {};
    if (top.value.IsMap()) return read_zip_group(top.value, "zip", top.line);
    if (!top.value.IsSequence())
      return fail(line_of(top.value, top.line), "zip",
                  fmt::format("expected a map of key: [values] or a list of such maps, got '{}'",
                              shown(top.value.Scalar())));
    for (size_t i = 0; i < top.value.size(); ++i) {
      YAML::Node g = top.value[i];
      std::string label = fmt::format("zip[{}]", i);
      if (!g.IsMap())
        return fail(line_of(g, top.line), label,
                    fmt::format("expected a map of key: [values], got {}", node_kind(g)));
      CPB_TRY(read_zip_group(g, label, line_of(g, top.line)));
    }
    return {};
  }

  Status add_where(const YAML::Node& n, const std::string& label, int line) {
    if (!n.IsScalar())
      return fail(line, label,
                  fmt::format("expected an expression string such as \"cp >= 2\", got {}{}",
                              n.IsNull() ? "nothing" : node_kind(n),
                              n.IsMap() ? " (quote an expression that contains ': ')" : ""));
    auto e = parse_expr(n.Scalar(), symbols_);
    if (!e) return fail(line, label, e.error().message);
    auto names = check_expr_names(*e, point_keys(), symbols_);
    if (!names) return fail(line, label, names.error().message);
    wheres_.push_back(Where{std::move(e).value(), line, label});
    return {};
  }

  Status read_where(const Entry& top) {
    if (top.value.IsNull()) return {};
    if (!top.value.IsSequence()) return add_where(top.value, "where", line_of(top.value, top.line));
    for (size_t i = 0; i < top.value.size(); ++i) {
      YAML::Node n = top.value[i];
      CPB_TRY(add_where(n, fmt::format("where[{}]", i), line_of(n, line_of(top.value, top.line))));
    }
    return {};
  }

  // ---- expansion --------------------------------------------------------------------------------

  std::string combo_text(const std::vector<size_t>& idx) const {
    std::string out;
    for (size_t a = 0; a < axes_.size(); ++a)
      for (size_t j = 0; j < axes_[a].keys.size(); ++j)
        out += fmt::format("{}{}={}", out.empty() ? "" : ", ", kKeyNames[axes_[a].keys[j]],
                           to_string(axes_[a].rows[idx[a]][j]));
    return out;
  }

  Status expand() {
    // Count first (the product can overflow), refusing before any point is built.
    int64_t total = 1;
    std::string sizes;
    for (const auto& a : axes_) {
      sizes += fmt::format("{}{}: {}", sizes.empty() ? "" : " x ", a.label, a.rows.size());
      total *= static_cast<int64_t>(a.rows.size());
      if (total > kMaxPoints) {
        for (const auto& b : axes_)
          if (&b > &a) sizes += fmt::format(" x {}: {}", b.label, b.rows.size());
        return fail(axes_.front().line, axes_.front().label,
                    fmt::format("the sweep has more than {} points ({}): shrink the axes, add "
                                "`where`, or split the experiment",
                                kMaxPoints, sizes));
      }
    }

    std::array<Given, kNumKeys> base{};
    for (int k = 0; k < kNumKeys; ++k)
      if (defaults_[k]) base[k] = Given{&*defaults_[k], default_lines_[k], &default_labels_[k], -1};

    // The given values of the current combination as `where` sees them before resolution; one
    // map updated in place (its slots for axis keys never move), not one built per point.
    std::map<std::string, ParamValue> raw = raw_params(base);
    std::vector<std::vector<ParamValue*>> slots(axes_.size());
    for (size_t a = 0; a < axes_.size(); ++a)
      for (int k : axes_[a].keys) slots[a].push_back(&raw[kKeyNames[k]]);

    // No two points share an id: combinations differ in some axis value, the values of one
    // axis are distinct (check_distinct), and every given value appears unchanged in `params`.
    std::vector<size_t> idx(axes_.size(), 0);
    for (int64_t n = 0; n < total; ++n) {
      std::array<Given, kNumKeys> g = base;
      for (size_t a = 0; a < axes_.size(); ++a) {
        const Axis& ax = axes_[a];
        for (size_t j = 0; j < ax.keys.size(); ++j) {
          g[ax.keys[j]] = Given{&ax.rows[idx[a]][j], ax.lines[idx[a]][j], &ax.key_labels[j],
                                static_cast<int>(idx[a])};
          *slots[a][j] = ax.rows[idx[a]][j];
        }
      }
      auto combo = [&] { return combo_text(idx); };
      CPB_ASSIGN_OR_RETURN(std::optional<Point> p, point(g, raw, n, combo));
      if (p) {
        p->index = static_cast<int>(exp_.points.size());
        exp_.points.push_back(std::move(*p));
      }
      // Next combination: the last axis varies fastest.
      for (size_t a = axes_.size(); a-- > 0;) {
        if (++idx[a] < axes_[a].rows.size()) break;
        idx[a] = 0;
      }
    }
    return {};
  }

  // Evaluates `w` on a point; false/true, or an error naming where the expression came from.
  Expected<bool> test(const Where& w, const std::map<std::string, ParamValue>& params, int64_t n,
                      const std::function<std::string()>& combo) const {
    ExprScope scope{&params, &point_keys(), &symbols_};
    auto r = eval_bool(w.expr, scope);
    if (r) return r;
    std::string c = combo();
    std::string msg =
        fmt::format("point {}{}: {}", n, c.empty() ? "" : " (" + c + ")", r.error().message);
    if (w.line == 0) return CPB_ERROR("{}: {}", w.label, msg);
    return fail(w.line, w.label, msg);
  }

  // The resolved point, nullopt when `where` or --filter drops it, or an error.
  Expected<std::optional<Point>> point(const std::array<Given, kNumKeys>& g,
                                       const std::map<std::string, ParamValue>& raw, int64_t n,
                                       const std::function<std::string()>& combo) const {
    // A constraint is first tried on what was given (plus the built-in defaults): every given
    // value appears unchanged among the resolved parameters, so a verdict reached there is the
    // verdict on the resolved point. This lets `where` remove combinations that would not
    // resolve (decode with new_tokens 4096) and skips resolving points it drops. A constraint
    // that reads a derived key (context, heads, ...) waits for the resolved point.
    ExprScope raw_scope{&raw, &point_keys(), &symbols_};
    std::vector<const Where*> later;
    for (const auto& w : wheres_) {
      auto r = eval_bool(w.expr, raw_scope);
      if (!r)
        later.push_back(&w);
      else if (!*r)
        return std::optional<Point>();
    }
    CPB_ASSIGN_OR_RETURN(Point p, resolve(g, n, combo));
    for (const Where* w : later) {
      CPB_ASSIGN_OR_RETURN(bool keep, test(*w, p.params, n, combo));
      if (!keep) return std::optional<Point>();
    }
    if (filter_) {
      CPB_ASSIGN_OR_RETURN(bool keep, test(*filter_, p.params, n, combo));
      if (!keep) return std::optional<Point>();
    }
    return std::optional<Point>(std::move(p));
  }

  std::map<std::string, ParamValue> raw_params(const std::array<Given, kNumKeys>& g) const {
    std::map<std::string, ParamValue> m = {{"strategy", std::string("ring_pass_kv")},
                                           {"layout", std::string("zigzag")},
                                           {"cp", int64_t{1}},
                                           {"batch", int64_t{1}},
                                           {"dtype", std::string("bf16")},
                                           {"mask", std::string("causal")},
                                           {"seed", int64_t{0}},
                                           {"phase", std::string("prefill")},
                                           {"ulysses", int64_t{0}}};
    for (int k = 0; k < kNumKeys; ++k)
      if (g[k].v) m[kKeyNames[k]] = *g[k].v;
    return m;
  }

  Expected<Point> resolve(const std::array<Given, kNumKeys>& g, int64_t n,
                          const std::function<std::string()>& combo) const {
    auto has = [&](int k) { return g[k].v != nullptr; };
    auto ival = [&](int k, int64_t def) { return has(k) ? std::get<int64_t>(*g[k].v) : def; };
    auto sval = [&](int k, const char* def) {
      return has(k) ? std::get<std::string>(*g[k].v) : std::string(def);
    };
    auto at = [&](int k) {
      if (k < 0 || !has(k)) return std::string(anchor_label_);
      return g[k].elem < 0 ? *g[k].label : fmt::format("{}[{}]", *g[k].label, g[k].elem);
    };
    auto bad = [&](int k, const std::string& msg) {
      std::string c = combo();
      int line = k >= 0 && has(k) ? g[k].line : anchor_line_;
      return fail(line, at(k),
                  fmt::format("point {}{}: {}", n, c.empty() ? "" : " (" + c + ")", msg));
    };
    auto line = [&](int k) { return has(k) ? g[k].line : 0; };

    Point p;
    p.strategy = sval(kStrategy, "ring_pass_kv");
    if (!has(kStrategy) && !strategies_.empty() &&
        !std::binary_search(strategies_.begin(), strategies_.end(), p.strategy))
      return bad(-1, fmt::format("the built-in default strategy '{}' is not registered: set "
                                 "`strategy` (one of {})",
                                 p.strategy, join(strategies_)));
    std::string layout = sval(kLayout, "zigzag");
    CPB_ASSIGN_OR_RETURN(p.layout, parse_layout(layout));
    p.cp = static_cast<int>(ival(kCp, 1));
    p.seed = static_cast<uint64_t>(ival(kSeed, 0));
    p.options.ulysses = static_cast<int>(ival(kUlysses, 0));
    p.options.auto_algorithm = static_cast<int>(ival(kAutoAlgorithm, 1));
    if (p.options.auto_algorithm != 1 && p.options.auto_algorithm != 5)
      return bad(kAutoAlgorithm, fmt::format("auto_algorithm is {}: use 1 or 5 (Yang et al. "
                                             "2024, Algorithm 1 or 5)",
                                             p.options.auto_algorithm));
    auto rval = [&](int k) { return has(k) ? std::get<double>(*g[k].v) : 0.0; };
    p.options.peak_tflops = rval(kPeakTflops);
    p.options.bandwidth_gbps = rval(kBandwidthGbps);
    p.options.hardware_profile = sval(kHardwareProfile, "");
    std::string dtype = sval(kDtype, "bf16");
    std::string mask = sval(kMask, "causal");
    std::string phase = sval(kPhase, "prefill");
    Workload& w = p.workload;
    w.batch = ival(kBatch, 1);
    CPB_ASSIGN_OR_RETURN(w.dtype, parse_dtype(dtype));
    CPB_ASSIGN_OR_RETURN(w.mask, parse_mask(mask));

    // Shape: the preset, then explicit values over it.
    std::string preset;
    if (has(kPreset)) {
      preset = sval(kPreset, "");
      const Preset& pr = exp_.presets.at(preset);  // checked when read
      w.heads = pr.heads;
      w.kv_heads = pr.kv_heads;
      w.head_dim = pr.head_dim;
    }
    w.heads = ival(kHeads, w.heads);
    w.kv_heads = ival(kKvHeads, w.kv_heads);
    w.head_dim = ival(kHeadDim, w.head_dim);
    if (w.heads == 0 && w.kv_heads == 0 && w.head_dim == 0)
      return bad(-1, "no heads: give `preset` or heads/kv_heads/head_dim");
    {
      std::vector<std::string> missing;
      if (w.heads == 0) missing.push_back("heads");
      if (w.kv_heads == 0) missing.push_back("kv_heads");
      if (w.head_dim == 0) missing.push_back("head_dim");
      if (!missing.empty())
        return bad(has(kHeads)     ? kHeads
                   : has(kKvHeads) ? kKvHeads
                                   : kHeadDim,
                   fmt::format("no {}: give heads, kv_heads and head_dim, or a `preset`",
                               join(missing, " or ")));
    }

    // Tokens: new_tokens (+ cached_tokens), or context + miss_rate; decode fixes T = 1.
    bool hn = has(kNewTokens), hc = has(kCachedTokens), hx = has(kContext), hm = has(kMissRate);
    int64_t t = 0, cached = 0;
    if (phase == "decode") {
      if (hm)
        return bad(kMissRate,
                   "phase decode has exactly one new token, so miss_rate does not "
                   "apply: give cached_tokens or context instead");
      if (hn && ival(kNewTokens, 0) != 1)
        return bad(kNewTokens, fmt::format("phase decode means new_tokens = 1, got {}: remove "
                                           "new_tokens or use phase prefill",
                                           ival(kNewTokens, 0)));
      if (hx && hc)
        return bad(kContext, fmt::format("gives both context and cached_tokens (line {}): in "
                                         "decode give one of them",
                                         line(kCachedTokens)));
      t = 1;
      if (hx) {
        int64_t c = ival(kContext, 0);
        if (c < 2)
          return bad(kContext, fmt::format("decode needs context >= 2 (cached tokens plus the "
                                           "new one), got {}",
                                           c));
        cached = c - 1;
      } else if (hc) {
        cached = ival(kCachedTokens, 0);
        if (cached < 1)
          return bad(kCachedTokens, "decode needs cached_tokens >= 1 (a KV cache to attend to)");
      } else {
        return bad(-1,
                   "phase decode needs the cache size: give cached_tokens (>= 1) or context "
                   "(>= 2)");
      }
    } else {
      if ((hn || hc) && (hx || hm)) {
        int form2 = hx ? kContext : kMissRate;
        int form1 = hn ? kNewTokens : kCachedTokens;
        return bad(form2, fmt::format("gives tokens two ways: {} (line {}) and {}: use either "
                                      "new_tokens (+ cached_tokens) or context + miss_rate",
                                      kKeyNames[form1], line(form1), kKeyNames[form2]));
      }
      if (hx && !hm)
        return bad(kContext,
                   "context needs miss_rate (new tokens = context * miss_rate; 1 for "
                   "a full prefill), or give new_tokens instead");
      if (hm && !hx)
        return bad(kMissRate, "miss_rate needs context (new tokens = context * miss_rate)");
      if (hx) {
        int64_t c = ival(kContext, 0);
        double m = std::get<double>(*g[kMissRate].v);
        t = std::llround(static_cast<double>(c) * m);
        if (t < 1)
          return bad(kMissRate, fmt::format("context {} * miss_rate {} rounds to 0 new tokens: "
                                            "raise miss_rate or context",
                                            c, m));
        cached = c - t;
      } else if (hn) {
        t = ival(kNewTokens, 0);
        cached = ival(kCachedTokens, 0);
      } else if (hc) {
        return bad(kCachedTokens, "cached_tokens needs new_tokens: give new_tokens too");
      } else {
        return bad(-1,
                   "no tokens: give new_tokens (and optionally cached_tokens), or context "
                   "and miss_rate");
      }
    }
    if (t + cached > kMaxTokens)
      return bad(hc ? kCachedTokens : kNewTokens,
                 fmt::format("context {} + {} is more than {} tokens", t, cached, kMaxTokens));
    w.new_tokens = t;
    w.cached_tokens = cached;
    if (auto v = w.validate(); !v)
      return bad(has(kKvHeads) ? kKvHeads : has(kHeads) ? kHeads : kPreset, v.error().message);

    double miss = hm ? std::get<double>(*g[kMissRate].v)
                     : static_cast<double>(t) / static_cast<double>(t + cached);
    auto& m = p.params;
    m["strategy"] = p.strategy;
    m["layout"] = layout;
    m["cp"] = int64_t{p.cp};
    m["batch"] = w.batch;
    if (!preset.empty()) m["preset"] = preset;
    m["heads"] = w.heads;
    m["kv_heads"] = w.kv_heads;
    m["head_dim"] = w.head_dim;
    m["dtype"] = dtype;
    m["mask"] = mask;
    m["new_tokens"] = t;
    m["cached_tokens"] = cached;
    m["context"] = t + cached;
    m["miss_rate"] = miss;
    m["phase"] = phase;
    m["seed"] = ival(kSeed, 0);
    m["ulysses"] = int64_t{p.options.ulysses};
    // auto's inputs join the point only where given, so other points keep short ids.
    for (int k : {kAutoAlgorithm, kPeakTflops, kBandwidthGbps, kHardwareProfile})
      if (has(k)) m[kKeyNames[k]] = *g[k].v;
    for (const auto& [k, v] : m) {
      if (!p.id.empty()) p.id += ',';
      p.id += k + "=" + to_string(v);
    }
    return p;
  }

  const std::string& text_;
  const std::string& path_;
  const ParseOptions& opts_;
  YAML::Node root_;
  Experiment exp_;
  std::vector<std::string> preset_names_;
  std::vector<std::string> strategies_;  // sorted registered names
  std::set<std::string> seen_strategies_;
  std::set<std::string> symbols_;
  std::array<std::optional<ParamValue>, kNumKeys> defaults_;
  std::array<std::string, kNumKeys> default_labels_;
  std::array<int, kNumKeys> default_lines_{};
  std::array<std::string, kNumKeys> claimed_;
  std::vector<Axis> axes_;
  std::vector<Where> wheres_;
  std::optional<Where> filter_;
  int anchor_line_ = 1;  // for errors about a point with no key to blame
  std::string anchor_label_ = "defaults";
};

}  // namespace

const std::set<std::string>& point_keys() {
  static const std::set<std::string> keys(kKeyNames.begin(), kKeyNames.end());
  return keys;
}

std::set<std::string> expr_symbols(const std::vector<std::string>& strategies,
                                   const std::map<std::string, Preset>& presets) {
  std::set<std::string> s(strategies.begin(), strategies.end());
  for (const auto* list : {&kLayouts, &kDtypes, &kMasks, &kPhases, &kBackends})
    s.insert(list->begin(), list->end());
  for (const auto& [name, p] : presets) s.insert(name);
  return s;
}

Expected<std::vector<Point>> filter_points(std::vector<Point> points, std::string_view expr,
                                           const std::set<std::string>& symbols,
                                           std::string_view what) {
  auto e = parse_expr(expr, symbols);
  if (!e) return CPB_ERROR("{}: {}", what, e.error().message);
  auto names = check_expr_names(*e, point_keys(), symbols);
  if (!names) return CPB_ERROR("{}: {}", what, names.error().message);
  std::vector<Point> kept;
  for (auto& p : points) {
    ExprScope scope{&p.params, &point_keys(), &symbols};
    auto keep = eval_bool(*e, scope);
    if (!keep) return CPB_ERROR("{}: point {} ({}): {}", what, p.index, p.id, keep.error().message);
    if (*keep) {
      p.index = static_cast<int>(kept.size());
      kept.push_back(std::move(p));
    }
  }
  return kept;
}

Expected<Experiment> parse_experiment(const std::string& text, const std::string& path,
                                      const ParseOptions& opts) {
  // yaml-cpp reports bad input by throwing; so might the standard library (bad_alloc). Nothing
  // may escape: the CLI reports an Error and exits cleanly.
  try {
    ExperimentParser parser(text, path, opts);
    return parser.run();
  } catch (const YAML::Exception& e) {
    return CPB_ERROR("{}:{}: YAML: {}", path, e.mark.line + 1, e.msg);
  } catch (const std::exception& e) {
    return CPB_ERROR("{}: cannot parse the experiment: {}", path, e.what());
  }
}

Expected<Experiment> load_experiment(const std::string& path, const ParseOptions& opts) {
  CPB_ASSIGN_OR_RETURN(std::string text, read_text_file(path, "experiment file", kMaxFileBytes));
  return parse_experiment(text, path, opts);
}

}  // namespace cpb
