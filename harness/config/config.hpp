// The YAML experiment: a sweep described by defaults, axes (cartesian product), zip (axes that
// move together), where (constraints) and presets (model shapes), expanded into config points.
// Parsing rejects unknown keys, wrong types, bad values and empty axes with a message that names
// the file, the line and the key; nothing is run or written when the file is bad.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "harness/core/layout.hpp"
#include "harness/core/status.hpp"
#include "harness/core/strategy_options.hpp"
#include "harness/core/workload.hpp"

namespace cpb {

// A point parameter value as written in YAML: integer, real, string or bool.
using ParamValue = std::variant<int64_t, double, std::string, bool>;
std::string to_string(const ParamValue& v);

// One fully resolved point of a sweep.
struct Point {
  int index = 0;            // 0-based position in the expanded sweep
  std::string id;           // canonical "key=value,..." over `params`; stable across runs
  // Every parameter of the point after defaults, axes, zip and presets, by key (sorted).
  std::map<std::string, ParamValue> params;

  // Resolved view of `params`.
  std::string strategy;
  LayoutKind layout = LayoutKind::zigzag;
  int cp = 1;
  Workload workload;
  uint64_t seed = 0;
  StrategyOptions options;  // ulysses, auto's inputs
};

struct Preset {
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  std::string description;
};

// Built-in model presets: per-GPU attention shapes (e.g. llama3-405b-tp8: 16 Q heads, 1 KV head,
// d 128; llama3-8b: 32/8/128).
const std::map<std::string, Preset>& builtin_presets();

struct Experiment {
  std::string path;         // file it was read from ("<string>" for text)
  std::string text;         // the YAML text as read (kept in the manifest)
  std::string name;         // [A-Za-z0-9_.-]+, used in the run folder name
  std::string description;
  std::string backend = "auto";  // auto | cuda | cpu | sim
  int warmup = 1;
  int iterations = 5;
  bool verify = true;
  double timeout_s = 120.0;  // per point; a rank that waits longer aborts the point
  bool cuda_graph = false;   // time CUDA graph replays of each point's iteration (cuda backend)
  std::map<std::string, Preset> presets;  // built-ins plus the file's own
  std::vector<Point> points;  // after `where`
};

struct ParseOptions {
  std::vector<std::string> strategies;  // registered strategy names, to validate `strategy`
  std::string filter;                   // optional --filter expression applied after `where`
};

// Reads and expands a YAML experiment file. Errors name "file:line: key: what to change".
Expected<Experiment> load_experiment(const std::string& path, const ParseOptions& opts);
// Same from text (tests); `path` names it in messages.
Expected<Experiment> parse_experiment(const std::string& text, const std::string& path,
                                      const ParseOptions& opts);

// The keys a point may set in `defaults`, `axes` and `zip` (sorted); also the names that `where`
// and --filter may use.
const std::set<std::string>& point_keys();
// The bare words `where` and --filter accept as strings (see harness/config/expr.hpp): layout,
// mask, dtype, phase and backend names, the given strategy names and the given presets' names.
std::set<std::string> expr_symbols(const std::vector<std::string>& strategies,
                                   const std::map<std::string, Preset>& presets);
// Keeps the points for which `expr` is true and renumbers them 0..n-1, for a --filter applied
// to an already expanded experiment. `what` names the expression in errors ("--filter").
Expected<std::vector<Point>> filter_points(std::vector<Point> points, std::string_view expr,
                                           const std::set<std::string>& symbols,
                                           std::string_view what);


}  // namespace cpb
