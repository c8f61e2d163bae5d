// Reads hardware profiles (see hardware_profile.hpp for the schema). The parser is one table of
// fields, each with its key, whether it is required, what to write and how to read it, so adding
// a key is adding a row. Values are typed by hand, as in the experiment parser: a plain scalar
// is a number only if all of it is one, quoted text is never a number, and inf/nan are refused,
// because a profile feeds a decision and a silently wrong number gives a silently wrong choice.
// No exception leaves this file.
#include "harness/core/hardware_profile.hpp"
#include "harness/core/executor.hpp"
#include "harness/core/suggest.hpp"
#include "harness/core/text_file.hpp"

#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <tuple>

namespace cpb {
namespace {

// A profile is a handful of lines; anything larger is the wrong file.
constexpr size_t kMaxProfileBytes = size_t{1} << 20;
// Upper bounds that catch unit mistakes (B/s written where GB/s was meant) without limiting any
// machine we can foresee: 1 EFLOP/s and 1 PB/s per rank.
constexpr double kMaxTflops = 1e6;
constexpr double kMaxGbps = 1e6;
// Sizes, head_dim, ranks (2^50), curve values (us or GB/s), a launch cost (1 s) and a slowdown.
constexpr double kMaxCount = 1125899906842624.0;
constexpr double kMaxCurveValue = 1e12;
constexpr double kMaxLaunchUs = 1e6;
constexpr int64_t kMaxRanks = 1 << 20;  // rank counts (issue_us_ranks)
constexpr double kMaxShareFactor = 10;

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

// A number: a plain scalar that is all digits, '.', exponent and signs (refuses inf, nan, hex
// and quoted text, which from_chars or YAML would take). `unit` names it in messages.
Expected<double> read_number(const YAML::Node& n, const char* unit) {
  if (!n.IsScalar()) return CPB_ERROR("expected a number of {}, got {}", unit, kind_of(n));
  const std::string& raw = n.Scalar();
  if (n.Tag() == "!")  // quoted: "800" is text in YAML, and we do not guess
    return CPB_ERROR("expected a number of {}, got the string '{}': remove the quotes", unit,
                     shown(raw));
  std::string_view body = raw;
  if (!body.empty() && body[0] == '+') body.remove_prefix(1);
  const bool chars_ok = !body.empty() && std::all_of(body.begin(), body.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+';
  });
  double v = 0;
  if (chars_ok) {
    auto res = std::from_chars(body.data(), body.data() + body.size(), v);
    if (res.ptr != body.data() + body.size() || res.ec != std::errc()) v = NAN;
  }
  if (!chars_ok || !std::isfinite(v))
    return CPB_ERROR("expected a number of {}, got '{}'", unit, shown(raw));
  return v;
}

// The value of a positive number field in (0, max]; `unit` names it in messages.
Expected<double> read_positive(const YAML::Node& n, double max, const char* unit) {
  if (!n.IsScalar()) return CPB_ERROR("expected a number of {} > 0, got {}", unit, kind_of(n));
  CPB_ASSIGN_OR_RETURN(double v, read_number(n, unit));
  if (!(v > 0))
    return CPB_ERROR("{} is not positive: give the {} as a number > 0", shown(n.Scalar()), unit);
  if (v > max)
    return CPB_ERROR("{} is more than {:g} {}: check the unit (the key is in {})",
                     shown(n.Scalar()), max, unit, unit);
  return v;
}

// A number in [lo, hi]; `unit` names it in messages ("us" is also written after the range) and
// `what` says what to give.
Expected<double> read_in_range(const YAML::Node& n, const char* unit, double lo, double hi,
                               std::string_view what) {
  CPB_ASSIGN_OR_RETURN(double v, read_number(n, unit));
  CPB_REQUIRE(v >= lo && v <= hi, "{} is outside {:g}..{:g}{}: {}", shown(n.Scalar()), lo, hi,
              std::string_view(unit) == "us" ? " us" : "", what);
  return v;
}

// A whole number >= 1 (sizes, head_dim, ranks).
Expected<int64_t> read_count(const YAML::Node& n, const char* what) {
  CPB_ASSIGN_OR_RETURN(double v, read_positive(n, kMaxCount, what));
  if (v != std::floor(v))
    return CPB_ERROR("{} is not a whole number of {}", shown(n.Scalar()), what);
  return static_cast<int64_t>(v);
}

int line_of(const YAML::Node& n, int fallback);

// Where an error stands: nested readers narrow it from the top-level key to the inner one.
struct Where {
  int line = 0;
  std::string key;
};

// Calls fn(key, value) for every key of map `n` (at `path`); unknown or repeated keys are errors
// that name the allowed ones. Narrows `where` to each key as it goes.
Status read_map(const YAML::Node& n, const std::string& path,
                const std::vector<std::string>& allowed, Where& where,
                const std::function<Status(const std::string&, const YAML::Node&)>& fn) {
  if (!n.IsMap())
    return CPB_ERROR("expected a map with keys {}, got {}", fmt::join(allowed, ", "), kind_of(n));
  std::set<std::string> seen;
  for (const auto& kv : n) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string("?");
    where.line = line_of(kv.first, where.line);
    where.key = path + "." + shown(key);
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      return CPB_ERROR("unknown key{}; {} may have {}", suggest(key, allowed), path,
                       fmt::join(allowed, ", "));
    if (!seen.insert(key).second) return CPB_ERROR("given twice: keep one");
    where.line = line_of(kv.second, where.line);
    CPB_TRY(fn(key, kv.second));
  }
  return {};
}

// A list of numbers (each checked by `one`).
Expected<std::vector<double>> read_list(
    const YAML::Node& n, const char* unit,
    const std::function<Expected<double>(const YAML::Node&)>& one) {
  if (!n.IsSequence() || n.size() == 0)
    return CPB_ERROR("expected a non-empty list of {}, got {}", unit,
                     n.IsSequence() ? "an empty list" : kind_of(n));
  std::vector<double> out;
  for (size_t i = 0; i < n.size(); ++i) {
    auto v = one(n[i]);
    if (!v.ok()) return CPB_ERROR("item {}: {}", i, v.error().message);
    out.push_back(*v);
  }
  return out;
}

// {bytes: [...], <ykey>: [...]}: bytes strictly increasing, y positive, the same length.
Expected<ProfileCurve> read_curve(const YAML::Node& n, const std::string& path, const char* ykey,
                                  const char* yunit, Where& where) {
  ProfileCurve c;
  bool have_x = false, have_y = false;
  CPB_TRY(read_map(
      n, path, {"bytes", ykey}, where, [&](const std::string& k, const YAML::Node& v) -> Status {
        if (k == "bytes") {
          CPB_ASSIGN_OR_RETURN(c.x,
                               read_list(v, "bytes", [](const YAML::Node& x) -> Expected<double> {
                                 CPB_ASSIGN_OR_RETURN(int64_t b, read_count(x, "bytes"));
                                 return static_cast<double>(b);
                               }));
          for (size_t i = 1; i < c.x.size(); ++i)
            CPB_REQUIRE(c.x[i] > c.x[i - 1],
                        "sizes must increase: item {} ({:g}) is not above item {} ({:g})", i,
                        c.x[i], i - 1, c.x[i - 1]);
          have_x = true;
        } else {
          CPB_ASSIGN_OR_RETURN(c.y, read_list(v, yunit, [yunit](const YAML::Node& x) {
                                 return read_positive(x, kMaxCurveValue, yunit);
                               }));
          have_y = true;
        }
        return {};
      }));
  where.key = path;
  CPB_REQUIRE(have_x && have_y, "needs both bytes: [...] and {}: [...]", ykey);
  CPB_REQUIRE(c.x.size() == c.y.size(),
              "bytes has {} sizes and {} has {} values: give one value per size", c.x.size(), ykey,
              c.y.size());
  return c;
}

Status read_attention(const YAML::Node& n, HardwareProfile& p, Where& where) {
  if (!n.IsSequence())
    return CPB_ERROR(
        "expected a list of points {{mask, head_dim, gqa, heads, sq, sk, tflops}}, got {}",
        kind_of(n));
  for (size_t i = 0; i < n.size(); ++i) {
    const std::string path = fmt::format("attention[{}]", i);
    where.line = line_of(n[i], where.line);
    where.key = path;
    AttentionPoint a;
    std::set<std::string> got;
    CPB_TRY(read_map(
        n[i], path, {"mask", "head_dim", "gqa", "heads", "sq", "sk", "tflops", "shared", "warm"},
        where,
        [&](const std::string& k, const YAML::Node& v) -> Status {
          got.insert(k);
          if (k == "mask") {
            CPB_ASSIGN_OR_RETURN(std::string m, read_text(v));
            CPB_REQUIRE(m == "full" || m == "causal", "'{}' is not a mask: use full or causal",
                        shown(m));
            a.causal = m == "causal";
          } else if (k == "head_dim") {
            CPB_ASSIGN_OR_RETURN(a.head_dim, read_count(v, "elements"));
          } else if (k == "gqa") {
            CPB_ASSIGN_OR_RETURN(a.gqa, read_positive(v, kMaxCount, "query heads per KV head"));
            CPB_REQUIRE(a.gqa >= 1, "{} is below 1: gqa is H / Hkv", shown(v.Scalar()));
          } else if (k == "heads") {
            CPB_ASSIGN_OR_RETURN(a.heads, read_count(v, "heads"));
          } else if (k == "sq") {
            CPB_ASSIGN_OR_RETURN(a.sq, read_count(v, "tokens"));
          } else if (k == "sk") {
            CPB_ASSIGN_OR_RETURN(a.sk, read_count(v, "tokens"));
          } else if (k == "shared" || k == "warm") {
            CPB_ASSIGN_OR_RETURN(std::string b, read_text(v));
            CPB_REQUIRE(b == "true" || b == "false", "'{}' is not true or false", shown(b));
            (k == "shared" ? a.shared : a.warm) = b == "true";
          } else {
            CPB_ASSIGN_OR_RETURN(a.tflops, read_positive(v, kMaxTflops, "TFLOP/s"));
          }
          return {};
        }));
    where.key = path;
    where.line = line_of(n[i], where.line);
    for (const char* k : {"mask", "head_dim", "sq", "sk", "tflops"})
      CPB_REQUIRE(got.count(k), "missing {}: a point needs mask, head_dim, sq, sk and tflops", k);
    p.attention.push_back(a);
  }
  return {};
}

Status read_sustained(const YAML::Node& n, HardwareProfile& p, Where& where) {
  if (!n.IsSequence() || n.size() == 0)
    return CPB_ERROR("expected a non-empty list of {{duty, seconds: [...], slowdown: [...]}}, got {}",
                     n.IsSequence() ? "an empty list" : kind_of(n));
  for (size_t i = 0; i < n.size(); ++i) {
    const std::string path = fmt::format("sustained[{}]", i);
    where.line = line_of(n[i], where.line);
    where.key = path;
    SustainedCurve c;
    std::set<std::string> got;
    CPB_TRY(read_map(
        n[i], path, {"duty", "tokens", "seconds", "slowdown"}, where,
        [&](const std::string& k, const YAML::Node& v) -> Status {
          got.insert(k);
          if (k == "duty") {
            CPB_ASSIGN_OR_RETURN(c.duty, read_positive(v, 1, "share of the time"));
          } else if (k == "tokens") {
            CPB_ASSIGN_OR_RETURN(c.tokens, read_count(v, "tokens"));
          } else if (k == "seconds") {
            CPB_ASSIGN_OR_RETURN(c.slowdown.x,
                                 read_list(v, "seconds", [](const YAML::Node& x) {
                                   return read_number(x, "seconds");
                                 }));
            for (size_t j = 0; j < c.slowdown.x.size(); ++j)
              CPB_REQUIRE(c.slowdown.x[j] >= 0 && (j == 0 || c.slowdown.x[j] > c.slowdown.x[j - 1]),
                          "times must be >= 0 and increase: item {} ({:g}) is not", j,
                          c.slowdown.x[j]);
          } else {
            CPB_ASSIGN_OR_RETURN(c.slowdown.y, read_list(v, "slowdown", [](const YAML::Node& x) {
                                   return read_positive(x, kMaxShareFactor, "slowdown");
                                 }));
          }
          return {};
        }));
    where.key = path;
    for (const char* k : {"duty", "seconds", "slowdown"})
      CPB_REQUIRE(got.count(k), "missing {}: a curve needs duty, seconds and slowdown", k);
    CPB_REQUIRE(c.slowdown.x.size() == c.slowdown.y.size(),
                "seconds has {} times and slowdown {} values: give one value per time",
                c.slowdown.x.size(), c.slowdown.y.size());
    for (const auto& other : p.sustained)
      CPB_REQUIRE(other.duty != c.duty || other.tokens != c.tokens,
                  "duty {:g} is given twice{}: keep one curve per duty and block size", c.duty,
                  c.tokens > 0 ? fmt::format(" for blocks of {} tokens", c.tokens) : "");
    p.sustained.push_back(std::move(c));
  }
  const bool any = std::any_of(p.sustained.begin(), p.sustained.end(),
                               [](const SustainedCurve& c) { return c.tokens == 0; });
  const bool sized = std::any_of(p.sustained.begin(), p.sustained.end(),
                                 [](const SustainedCurve& c) { return c.tokens > 0; });
  where.key = "sustained";
  CPB_REQUIRE(!(any && sized),
              "some curves give tokens and some do not: give every curve its block's tokens, or "
              "none");
  std::sort(p.sustained.begin(), p.sustained.end(),
            [](const SustainedCurve& a, const SustainedCurve& b) {
              return std::tie(a.tokens, a.duty) < std::tie(b.tokens, b.duty);
            });
  return {};
}

// A map of op kind (or `event`) to the host's time in us to issue one such call (issue_us).
Status read_issue_costs(const YAML::Node& n, const std::string& path,
                        std::map<std::string, double, std::less<>>& out, Where& where) {
  std::vector<std::string> kinds;
  for (int k = 0; k < kOpKinds; ++k) kinds.emplace_back(to_string(static_cast<OpKind>(k)));
  kinds.emplace_back("event");
  return read_map(n, path, kinds, where, [&](const std::string& k, const YAML::Node& v) -> Status {
    CPB_ASSIGN_OR_RETURN(
        out[k], read_in_range(v, "us", 0, kMaxLaunchUs,
                              fmt::format("give the host's time to issue one {} call in "
                                          "microseconds",
                                          k)));
    return {};
  });
}

Status read_links(const YAML::Node& n, HardwareProfile& p, Where& where) {
  return read_map(
      n, "links", link_classes(), where,
      [&](const std::string& cls, const YAML::Node& v) -> Status {
        const std::string path = "links." + cls;
        LinkProfile& l = p.links[cls];
        CPB_TRY(read_map(v, path, {"ranks", "sendrecv", "all_to_all", "all_gather"}, where,
                         [&](const std::string& k, const YAML::Node& c) -> Status {
                           if (k == "ranks") {
                             CPB_ASSIGN_OR_RETURN(int64_t r, read_count(c, "ranks"));
                             l.ranks = static_cast<int>(r);
                             return {};
                           }
                           ProfileCurve& dst = k == "sendrecv"     ? l.sendrecv
                                               : k == "all_to_all" ? l.all_to_all
                                                                   : l.all_gather;
                           CPB_ASSIGN_OR_RETURN(dst,
                                                read_curve(c, path + "." + k, "us", "us", where));
                           // Stored in seconds, the unit of the cost model.
                           for (double& y : dst.y) y *= 1e-6;
                           return {};
                         }));
        where.key = path;
        CPB_REQUIRE(l.ranks >= 2,
                    "missing ranks: add the number of ranks the curves were measured on (>= 2)");
        return {};
      });
}

Status read_topology(const YAML::Node& n, HardwareProfile& p, Where& where) {
  CPB_TRY(read_map(n, "topology", {"gpus_per_node", "tensor_parallel", "intra_node", "inter_node"},
                   where, [&](const std::string& k, const YAML::Node& v) -> Status {
                     if (k == "gpus_per_node" || k == "tensor_parallel") {
                       CPB_ASSIGN_OR_RETURN(int64_t g, read_count(v, "GPUs"));
                       (k == "gpus_per_node" ? p.gpus_per_node : p.tensor_parallel) =
                           static_cast<int>(g);
                       return {};
                     }
                     CPB_ASSIGN_OR_RETURN(std::string cls, read_text(v));
                     const auto& all = link_classes();
                     CPB_REQUIRE(std::find(all.begin(), all.end(), cls) != all.end(),
                                 "'{}' is not a link class{}: use one of {}", shown(cls),
                                 suggest(cls, all), fmt::join(all, ", "));
                     (k == "intra_node" ? p.intra_node_link : p.inter_node_link) = cls;
                     return {};
                   }));
  where.key = "topology.tensor_parallel";
  CPB_REQUIRE(p.tensor_parallel == 1 || p.gpus_per_node > 0,
              "needs gpus_per_node: add the GPUs of one node beside it");
  CPB_REQUIRE(p.gpus_per_node == 0 || p.gpus_per_node % p.tensor_parallel == 0,
              "{} does not divide gpus_per_node {}: a node holds gpus_per_node / tensor_parallel "
              "ranks of each CP group",
              p.tensor_parallel, p.gpus_per_node);
  return {};
}

// One top-level key of the schema. `read` returns an error message without file, line and key
// (the caller adds them).
struct Field {
  const char* key;
  bool required;
  const char* want;  // what to write, for "missing" messages
  Status (*read)(const YAML::Node&, HardwareProfile&, Where&);
};

const std::vector<Field>& fields() {
  static const std::vector<Field> f = {
      {"name", true, "a name for records, e.g. `name: h100-rdma`",
       [](const YAML::Node& n, HardwareProfile& p, Where&) -> Status {
         CPB_ASSIGN_OR_RETURN(p.name, read_text(n));
         return {};
       }},
      {"peak_tflops", true, "the attention FLOP rate per rank, e.g. `peak_tflops: 800`",
       [](const YAML::Node& n, HardwareProfile& p, Where&) -> Status {
         CPB_ASSIGN_OR_RETURN(p.peak_tflops, read_positive(n, kMaxTflops, "TFLOP/s"));
         return {};
       }},
      {"bandwidth_gbps", true,
       "the bytes per second per rank on the CP ring link in GB/s (1e9 B/s), e.g. "
       "`bandwidth_gbps: 50` for 400 Gb/s RDMA",
       [](const YAML::Node& n, HardwareProfile& p, Where&) -> Status {
         CPB_ASSIGN_OR_RETURN(p.bandwidth_gbps, read_positive(n, kMaxGbps, "GB/s"));
         return {};
       }},
      {"description", false, "",
       [](const YAML::Node& n, HardwareProfile& p, Where&) -> Status {
         CPB_ASSIGN_OR_RETURN(p.description, read_text(n));
         return {};
       }},
      {"machine", false, "",
       [](const YAML::Node& n, HardwareProfile& p, Where&) -> Status {
         CPB_ASSIGN_OR_RETURN(p.machine, read_text(n));
         return {};
       }},
      {"source", false, "",
       [](const YAML::Node& n, HardwareProfile& p, Where&) -> Status {
         CPB_ASSIGN_OR_RETURN(p.source, read_text(n));
         return {};
       }},
      {"launch_us", false, "",
       [](const YAML::Node& n, HardwareProfile& p, Where&) -> Status {
         CPB_ASSIGN_OR_RETURN(p.launch_us,
                              read_in_range(n, "us", 0, kMaxLaunchUs,
                                            "give the per-op launch cost in microseconds"));
         return {};
       }},
      {"wait_us", false, "",
       [](const YAML::Node& n, HardwareProfile& p, Where&) -> Status {
         CPB_ASSIGN_OR_RETURN(
             p.wait_us, read_in_range(n, "us", 0, kMaxLaunchUs,
                                      "give the cross-stream wait's latency in microseconds"));
         return {};
       }},
      {"issue_lead_us", false, "",
       [](const YAML::Node& n, HardwareProfile& p, Where&) -> Status {
         CPB_ASSIGN_OR_RETURN(p.issue_lead_us,
                              read_in_range(n, "us", 0, kMaxLaunchUs,
                                            "give the host's head start in microseconds"));
         return {};
       }},
      {"issue_us", false, "",
       [](const YAML::Node& n, HardwareProfile& p, Where& w) -> Status {
         return read_issue_costs(n, "issue_us", p.issue_us, w);
       }},
      {"issue_us_ranks", false, "",
       [](const YAML::Node& n, HardwareProfile& p, Where& w) -> Status {
         if (!n.IsMap())
           return CPB_ERROR("expected a map of rank counts to issue_us maps, e.g. `{{2: {{p2p: "
                            "8}}}}`, got {}",
                            kind_of(n));
         for (const auto& kv : n) {
           w.line = line_of(kv.first, w.line);
           w.key = "issue_us_ranks." + shown(kv.first.IsScalar() ? kv.first.Scalar() : "?");
           CPB_ASSIGN_OR_RETURN(int64_t r, read_count(kv.first, "ranks"));
           CPB_REQUIRE(r <= kMaxRanks, "{} ranks: at most {}", r, kMaxRanks);
           CPB_REQUIRE(!p.issue_us_ranks.contains(static_cast<int>(r)), "given twice: keep one");
           CPB_TRY(read_issue_costs(kv.second, w.key, p.issue_us_ranks[static_cast<int>(r)], w));
         }
         return {};
       }},
      {"share_factor", false, "",
       [](const YAML::Node& n, HardwareProfile& p, Where&) -> Status {
         CPB_ASSIGN_OR_RETURN(
             p.share_factor,
             read_in_range(n, "slowdown", 1, kMaxShareFactor,
                           "it is attention time with a transfer beside it over the time alone"));
         return {};
       }},
      {"comm_share_factor", false, "",
       [](const YAML::Node& n, HardwareProfile& p, Where&) -> Status {
         CPB_ASSIGN_OR_RETURN(
             p.comm_share_factor,
             read_in_range(n, "slowdown", 1, kMaxShareFactor,
                           "it is a transfer's time beside attention over its time alone"));
         return {};
       }},
      {"sustained", false, "", read_sustained},
      {"attention", false, "", read_attention},
      {"links", false, "", read_links},
      {"topology", false, "", read_topology},
      {"copy", false, "",
       [](const YAML::Node& n, HardwareProfile& p, Where& w) -> Status {
         CPB_ASSIGN_OR_RETURN(p.copy_gbps, read_curve(n, "copy", "gbps", "GB/s", w));
         return {};
       }},
      {"merge", false, "",
       [](const YAML::Node& n, HardwareProfile& p, Where& w) -> Status {
         CPB_ASSIGN_OR_RETURN(p.merge_gbps, read_curve(n, "merge", "gbps", "GB/s", w));
         return {};
       }},
      // Free-form: whatever is under it is never read, which is the point.
      {"extra", false, "",
       [](const YAML::Node& n, HardwareProfile&, Where&) -> Status {
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
    Where where{line_of(kv.second, line), key};
    if (auto st = f->read(kv.second, p, where); !st)
      return fail(where.line, where.key, st.error().message);
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

const std::vector<std::string>& link_classes() {
  static const std::vector<std::string> c = {"nvlink", "pcie", "rdma", "tcp"};
  return c;
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
