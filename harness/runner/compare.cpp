// The regression gate's statistics, loading and rendering. Mann-Whitney U rather than a t-test
// because per-iteration times are skewed with a long right tail (a clock boost lost, a stray
// interrupt): ranks ignore how far an outlier lies, so one slow iteration cannot fake a
// regression, and the test needs no assumption about the distribution.
#include "harness/runner/compare.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "harness/core/text_file.hpp"
#include "harness/io/results.hpp"
#include "harness/runner/stats.hpp"

namespace cpb {
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxInputBytes = size_t{1} << 30;

// Upper tail of the standard normal distribution.
double normal_sf(double x) {
  return 0.5 * std::erfc(x / std::sqrt(2.0));
}

double median_of(const std::vector<double>& v) {
  return summarize(v).median;
}

Expected<nlohmann::json> parse_json_file(const std::string& path, const std::string& what) {
  CPB_ASSIGN_OR_RETURN(std::string text, read_text_file(path, what, kMaxInputBytes));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return CPB_ERROR("{}: malformed JSON: not a valid {}", path, what);
  return j;
}

// The manifest.json in the folder of `results` (a results.jsonl); null when there is none.
Expected<nlohmann::json> manifest_beside(const fs::path& results) {
  const fs::path mpath = results.parent_path() / "manifest.json";
  std::error_code ec;
  if (!fs::exists(mpath, ec)) return nlohmann::json(nullptr);
  return parse_json_file(mpath.string(), "manifest");
}

// The per-iteration samples of `metric` in a record (or a baseline point's "samples").
Expected<std::vector<double>> samples_of(const nlohmann::json& holder, const std::string& id,
                                         const std::string& source, const std::string& where) {
  const auto it = holder.find("samples");
  if (it == holder.end() || !it->is_array())
    return CPB_ERROR("{}: point {}: {} has no \"samples\" array", source, id, where);
  std::vector<double> out;
  out.reserve(it->size());
  for (const auto& x : *it) {
    // NaN is written as null: a broken timer must stop the gate, not pass it.
    if (!x.is_number())
      return CPB_ERROR("{}: point {}: {}.samples holds {} (a broken timer?); rerun the point",
                       source, id, where, x.dump());
    out.push_back(x.get<double>());
  }
  return out;
}

std::string fmt_seconds(double s) {
  if (!std::isfinite(s)) return "n/a";
  const double a = std::fabs(s);
  if (a >= 1) return fmt::format("{:.3g} s", s);
  if (a >= 1e-3) return fmt::format("{:.3g} ms", s * 1e3);
  return fmt::format("{:.3g} µs", s * 1e6);
}

std::string json_text(const nlohmann::json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// Config keys shown in their own columns, or derived from them (context = new + cached).
const std::set<std::string> kShownKeys = {"strategy",      "layout",  "cp",        "new_tokens",
                                          "cached_tokens", "context", "miss_rate", "phase"};

// Short name of a point: what the table's columns hold, then every other config key whose
// value differs between the points being compared.
struct PointLabel {
  std::string strategy, layout, cp, tokens, other;
};

PointLabel label_of(const nlohmann::json& config, const std::set<std::string>& varying) {
  auto get = [&](const char* k) {
    return config.contains(k) ? json_text(config[k]) : std::string("-");
  };
  PointLabel l{get("strategy"), get("layout"), get("cp"),
               config.contains("new_tokens") ? "T=" + get("new_tokens") : "-", ""};
  if (config.contains("cached_tokens") && config["cached_tokens"] != 0)
    l.tokens += " P=" + get("cached_tokens");
  for (const auto& k : varying) {
    if (kShownKeys.count(k) || !config.contains(k)) continue;
    if (!l.other.empty()) l.other += ' ';
    l.other += k + "=" + json_text(config[k]);
  }
  return l;
}

// label_of for markdown: record values go into table cells and list items, where a '|' or a
// line break would split the row.
PointLabel markdown_label(const nlohmann::json& config, const std::set<std::string>& varying) {
  PointLabel l = label_of(config, varying);
  for (std::string* cell : {&l.strategy, &l.layout, &l.cp, &l.tokens, &l.other})
    for (size_t i = 0; i < cell->size(); ++i) {
      if ((*cell)[i] == '\n' || (*cell)[i] == '\r') (*cell)[i] = ' ';
      if ((*cell)[i] == '|') cell->insert(i++, 1, '\\');
    }
  return l;
}

std::set<std::string> varying_keys(const std::vector<const nlohmann::json*>& configs) {
  std::map<std::string, std::set<std::string>> values;
  for (const auto* c : configs)
    if (c->is_object())
      for (const auto& [k, v] : c->items()) values[k].insert(v.dump());
  std::set<std::string> out;
  for (const auto& [k, vs] : values)
    if (vs.size() > 1) out.insert(k);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Statistics.

MannWhitney mann_whitney(const std::vector<double>& base, const std::vector<double>& fresh) {
  MannWhitney r;
  const size_t n1 = base.size(), n2 = fresh.size();
  if (n1 == 0 || n2 == 0) return r;
  std::vector<std::pair<double, bool>> all;  // (value, from fresh)
  all.reserve(n1 + n2);
  for (double x : base) all.emplace_back(x, false);
  for (double x : fresh) all.emplace_back(x, true);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  // Average ranks over runs of ties; sum of t^3 - t over the runs for the variance.
  double rank_sum_fresh = 0, ties = 0;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j].first == all[i].first) ++j;
    const double avg_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2;
    for (size_t k = i; k < j; ++k)
      if (all[k].second) rank_sum_fresh += avg_rank;
    const auto t = static_cast<double>(j - i);
    ties += t * t * t - t;
    i = j;
  }
  const auto a = static_cast<double>(n1), b = static_cast<double>(n2), n = a + b;
  r.u = rank_sum_fresh - b * (b + 1) / 2;
  const double mean = a * b / 2;
  const double var = a * b / 12 * ((n + 1) - ties / (n * (n - 1)));
  if (!(var > 0)) return r;  // every sample ties: no evidence either way
  const double sd = std::sqrt(var);
  const double d = r.u - mean;
  r.z = d / sd;
  r.p_greater = normal_sf((d - 0.5) / sd);
  r.p_less = normal_sf((-d - 0.5) / sd);
  r.p_two = std::min(1.0, 2 * normal_sf((std::fabs(d) - 0.5) / sd));
  return r;
}

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::same:
      return "same";
    case Verdict::regression:
      return "REGRESSION";
    case Verdict::improvement:
      return "improvement";
    case Verdict::too_few_samples:
      return "too few samples";
  }
  return "?";
}

Verdict classify(const MannWhitney& mw, double base_median, double new_median, size_t n_base,
                 size_t n_new, const CompareOptions& opts) {
  const auto need = static_cast<size_t>(std::max(opts.min_samples, 0));
  if (n_base < need || n_new < need) return Verdict::too_few_samples;
  if (!(base_median > 0) || !std::isfinite(new_median)) return Verdict::same;
  const double change = new_median / base_median - 1;
  if (change > opts.threshold && mw.p_greater < opts.alpha) return Verdict::regression;
  if (change < -opts.threshold && mw.p_less < opts.alpha) return Verdict::improvement;
  return Verdict::same;
}

// ---------------------------------------------------------------------------------------------
// Machines.

nlohmann::json machine_description(const nlohmann::json& manifest) {
  if (!manifest.is_object()) return nullptr;
  const nlohmann::json machine = manifest.value("machine", nlohmann::json::object());
  const nlohmann::json prov = manifest.value("provenance", nlohmann::json::object());
  if (!machine.is_object() || !prov.is_object()) return nullptr;
  nlohmann::json m = nlohmann::json::object();
  m["backend"] = machine.value("backend", manifest.value("backend", "unknown"));
  if (m["backend"] == "sim") {
    // The sim's machine is the hardware profile it predicts for, whatever computer ran it: the
    // profile file's name (--hardware-profile, else the default the manifest names).
    std::string path = manifest.value("hardware_profile", std::string());
    if (path.empty()) path = machine.value("default_hardware_profile", std::string());
    m["profile"] = path.empty() ? "unknown" : std::filesystem::path(path).stem().string();
    return m;
  }
  nlohmann::json gpus = nlohmann::json::array();
  for (const auto& g : machine.value("gpus", nlohmann::json::array()))
    if (g.is_object()) gpus.push_back(g.value("name", "unknown"));
  m["gpus"] = gpus;
  const nlohmann::json cpu = prov.value("cpu", nlohmann::json::object());
  m["cpu"] = cpu.is_object() ? cpu.value("model", "unknown") : "unknown";
  m["logical_cores"] =
      cpu.is_object() ? cpu.value("logical_cores", nlohmann::json(0)) : nlohmann::json(0);
  m["host"] = prov.value("host", "unknown");
  return m;
}

std::string machine_summary(const nlohmann::json& machine) {
  if (!machine.is_object()) return "an unknown machine (no manifest.json)";
  const std::string backend = machine.value("backend", "unknown");
  if (machine.contains("profile"))
    return fmt::format("{} on profile {}", backend, json_text(machine["profile"]));
  const nlohmann::json gpus = machine.value("gpus", nlohmann::json::array());
  if (gpus.is_array() && !gpus.empty()) {
    // "4x NVIDIA H200", or each name when they differ.
    std::map<std::string, int> count;
    for (const auto& g : gpus) ++count[json_text(g)];
    std::string s;
    for (const auto& [name, k] : count)
      s += fmt::format("{}{}x {}", s.empty() ? "" : " + ", k, name);
    return fmt::format("{} on {}", backend, s);
  }
  // No GPU: the CPU is the machine (the cpu backend's ranks are its threads).
  return fmt::format("{} on {} ({} logical cores)", backend,
                     json_text(machine.value("cpu", nlohmann::json("unknown"))),
                     json_text(machine.value("logical_cores", nlohmann::json(0))));
}

Status check_same_machine(const ResultSet& base, const ResultSet& fresh) {
  const std::string a = machine_summary(base.machine), b = machine_summary(fresh.machine);
  if (base.machine.is_object() && fresh.machine.is_object() && a == b) return ok_status();
  auto host = [](const nlohmann::json& m) {
    return m.is_object() ? fmt::format(", host {}", json_text(m.value("host", nlohmann::json("?"))))
                         : std::string();
  };
  return CPB_ERROR(
      "different machines: BASE {} is {}{}, NEW {} is {}{}; timings from different "
      "machines do not compare (add --force to compare anyway)",
      base.source, a, host(base.machine), fresh.source, b, host(fresh.machine));
}

// ---------------------------------------------------------------------------------------------
// Loading.

Expected<ResultSet> result_set_from_records(const std::vector<nlohmann::json>& records,
                                            const nlohmann::json& manifest,
                                            const std::string& metric, const std::string& source) {
  ResultSet rs;
  rs.source = source;
  rs.metric = metric;
  rs.machine = machine_description(manifest);
  // The last record of a point wins (as for --resume); order of first appearance is kept.
  std::vector<std::string> order;
  std::map<std::string, const nlohmann::json*> last;
  for (const auto& r : records) {
    if (!r.is_object()) return CPB_ERROR("{}: a record is not a JSON object", source);
    const auto id = r.find("point_id");
    if (id == r.end() || !id->is_string()) continue;
    const std::string key = id->get<std::string>();
    if (last.emplace(key, &r).second)
      order.push_back(key);
    else
      last[key] = &r;
  }
  for (const auto& id : order) {
    const nlohmann::json& r = *last[id];
    const std::string status = r.value("status", "");
    if (status != "ok") {
      rs.not_ok[id] = status.empty() ? "no status" : status;
      continue;
    }
    const auto m = r.find(metric);
    if (m == r.end() || !m->is_object())
      return CPB_ERROR(
          "{}: point {}: the record has no \"{}\" object (--metric names a "
          "record key with samples: time, time_compute_only, time_comm_only)",
          source, id, metric);
    CPB_ASSIGN_OR_RETURN(auto samples, samples_of(*m, id, source, metric));
    rs.points.push_back({id, r.value("config", nlohmann::json::object()), std::move(samples)});
  }
  return rs;
}

Expected<ResultSet> result_set_from_baseline(const nlohmann::json& doc, const std::string& metric,
                                             const std::string& source) {
  CPB_REQUIRE(doc.is_object() && doc.value("schema", "") == kBaselineSchema,
              "{}: not a baseline file (expected a JSON object with \"schema\": \"{}\"); give a "
              "run folder, a results.jsonl or a file written by `cpbench compare "
              "--write-baseline`",
              source, kBaselineSchema);
  const std::string have = doc.value("metric", "time");
  CPB_REQUIRE(have == metric, "{}: the baseline holds samples of '{}', not of '{}' (--metric)",
              source, have, metric);
  const auto pts = doc.find("points");
  CPB_REQUIRE(pts != doc.end() && pts->is_array(), "{}: baseline has no \"points\" array", source);
  ResultSet rs;
  rs.source = source;
  rs.metric = metric;
  rs.machine = doc.value("machine", nlohmann::json(nullptr));
  std::set<std::string> seen;
  for (const auto& p : *pts) {
    CPB_REQUIRE(p.is_object() && p.contains("id") && p["id"].is_string(),
                "{}: a baseline point has no string \"id\"", source);
    const std::string id = p["id"].get<std::string>();
    CPB_REQUIRE(seen.insert(id).second, "{}: point {} appears twice", source, id);
    CPB_ASSIGN_OR_RETURN(auto samples, samples_of(p, id, source, "the point"));
    double spread = 0;
    if (const auto s = p.find("between_run_spread"); s != p.end()) {
      CPB_REQUIRE(s->is_number() && s->get<double>() >= 0 && std::isfinite(s->get<double>()),
                  "{}: point {}: between_run_spread must be a number >= 0", source, id);
      spread = s->get<double>();
    }
    rs.points.push_back(
        {id, p.value("config", nlohmann::json::object()), std::move(samples), spread});
  }
  return rs;
}

namespace {

Expected<ResultSet> load_unchecked(const std::string& path, const std::string& metric) {
  std::error_code ec;
  CPB_REQUIRE(fs::exists(path, ec),
              "{}: no such file or folder: give a run folder, a "
              "results.jsonl or a baseline file",
              path);
  const bool folder = fs::is_directory(path, ec);
  if (!folder && fs::path(path).extension() != ".jsonl") {
    CPB_ASSIGN_OR_RETURN(auto doc, parse_json_file(path, "baseline"));
    return result_set_from_baseline(doc, metric, path);
  }
  const fs::path results = folder ? fs::path(path) / "results.jsonl" : fs::path(path);
  CPB_REQUIRE(!folder || fs::exists(results, ec), "{}: not a run folder (no results.jsonl in it)",
              path);
  CPB_ASSIGN_OR_RETURN(auto records, read_jsonl(results.string()));
  CPB_ASSIGN_OR_RETURN(auto manifest, manifest_beside(results));
  return result_set_from_records(records, manifest, metric, path);
}

}  // namespace

Expected<ResultSet> load_result_set(const std::string& path, const std::string& metric) {
  // A value of the wrong type (a number where a string belongs) throws in nlohmann::json.
  try {
    return load_unchecked(path, metric);
  } catch (const nlohmann::json::exception& e) {
    return CPB_ERROR("{}: unexpected content: {}", path, e.what());
  }
}

nlohmann::json baseline_json(const ResultSet& rs, const nlohmann::json& source_info) {
  nlohmann::json pts = nlohmann::json::array();
  for (const auto& p : rs.points) {
    nlohmann::json j = {{"id", p.id}, {"config", p.config}, {"samples", p.samples}};
    if (p.spread > 0) j["between_run_spread"] = p.spread;
    pts.push_back(std::move(j));
  }
  return {{"schema", kBaselineSchema},
          {"metric", rs.metric},
          {"machine", rs.machine},
          {"source", source_info},
          {"points", std::move(pts)}};
}

Status write_baseline(const std::vector<std::string>& runs, const std::string& out,
                      const std::string& metric) {
  CPB_REQUIRE(!runs.empty(), "a baseline is made from at least one run folder");
  const std::string& run = runs.front();
  std::error_code ec;
  for (const auto& r : runs)
    CPB_REQUIRE(fs::is_directory(r, ec) || fs::path(r).extension() == ".jsonl",
                "{}: a baseline is made from run folders or results.jsonl files", r);
  const bool folder = fs::is_directory(run, ec);
  CPB_ASSIGN_OR_RETURN(ResultSet rs, load_result_set(run, metric));
  // More runs of the same code on the same machine: each point's spread of the medians.
  std::vector<std::string> sources = {run};
  std::map<std::string, std::pair<double, double>> range;  // point -> lowest, highest median
  for (const auto& p : rs.points) range[p.id] = {median_of(p.samples), median_of(p.samples)};
  for (size_t i = 1; i < runs.size(); ++i) {
    CPB_ASSIGN_OR_RETURN(ResultSet more, load_result_set(runs[i], metric));
    CPB_TRY(check_same_machine(rs, more));
    for (const auto& p : more.points)
      if (auto r = range.find(p.id); r != range.end()) {
        const double m = median_of(p.samples);
        r->second = {std::min(r->second.first, m), std::max(r->second.second, m)};
      }
    sources.push_back(runs[i]);
  }
  for (auto& p : rs.points) {
    const double first = median_of(p.samples);
    const auto [lo, hi] = range[p.id];
    p.spread = first > 0 ? (hi - lo) / first : 0;
  }
  CPB_REQUIRE(!rs.points.empty(), "{}: no point with status ok: nothing to make a baseline of",
              run);
  CPB_ASSIGN_OR_RETURN(auto manifest,
                       manifest_beside(folder ? fs::path(run) / "results.jsonl" : fs::path(run)));
  CPB_REQUIRE(rs.machine.is_object(),
              "{}: no manifest.json beside the results: a baseline must name its machine", run);
  const nlohmann::json prov = manifest.value("provenance", nlohmann::json::object());
  const nlohmann::json git =
      prov.is_object() ? prov.value("git", nlohmann::json::object()) : nlohmann::json::object();
  nlohmann::json source = {{"path", run},
                           {"runs", sources},
                           {"name", manifest.value("name", "")},
                           {"started", manifest.value("started", "")},
                           {"git_sha", git.is_object() ? git.value("sha", "unknown") : "unknown"}};
  const std::string text =
      baseline_json(rs, source).dump(1, ' ', false, nlohmann::json::error_handler_t::replace);
  CPB_TRY(write_file_atomic(out, text + "\n"));
  return ok_status();
}

// ---------------------------------------------------------------------------------------------
// Comparing and rendering.

Comparison compare_results(const ResultSet& base, const ResultSet& fresh,
                           const CompareOptions& opts) {
  Comparison c;
  std::map<std::string, const PointSamples*> in_new, in_base;
  for (const auto& p : fresh.points) in_new[p.id] = &p;
  for (const auto& p : base.points) in_base[p.id] = &p;
  for (const auto& b : base.points) {
    const auto it = in_new.find(b.id);
    if (it == in_new.end()) {
      c.missing.push_back(b);
      if (const auto f = fresh.not_ok.find(b.id); f != fresh.not_ok.end())
        c.failed_in_new[b.id] = f->second;
      continue;
    }
    const PointSamples& n = *it->second;
    PointComparison pc;
    pc.id = b.id;
    pc.config = b.config;
    pc.n_base = b.samples.size();
    pc.n_new = n.samples.size();
    pc.base_median = median_of(b.samples);
    pc.new_median = median_of(n.samples);
    pc.change = pc.base_median > 0 ? pc.new_median / pc.base_median - 1 : 0;
    pc.mw = mann_whitney(b.samples, n.samples);
    CompareOptions mine = opts;
    mine.threshold = std::max(opts.threshold, b.spread);
    pc.threshold = mine.threshold;
    pc.verdict = classify(pc.mw, pc.base_median, pc.new_median, pc.n_base, pc.n_new, mine);
    c.regressions += pc.verdict == Verdict::regression;
    c.improvements += pc.verdict == Verdict::improvement;
    c.points.push_back(std::move(pc));
  }
  for (const auto& n : fresh.points)
    if (!in_base.count(n.id)) c.added.push_back(n);
  return c;
}

std::string render_markdown(const Comparison& c, const ResultSet& base, const ResultSet& fresh,
                            const CompareOptions& opts) {
  std::vector<const nlohmann::json*> configs;
  for (const auto& p : base.points) configs.push_back(&p.config);
  for (const auto& p : fresh.points) configs.push_back(&p.config);
  const std::set<std::string> varying = varying_keys(configs);

  std::string s = fmt::format(
      "## cpbench compare\n\nBASE: {} ({})\nNEW:  {} ({})\n\nmetric `{}`; a point regresses "
      "when its median is more than {:.3g}% slower and a one-sided Mann-Whitney U test says "
      "slower at alpha {:.3g}.\n\n",
      base.source, machine_summary(base.machine), fresh.source, machine_summary(fresh.machine),
      base.metric, opts.threshold * 100, opts.alpha);
  s += "| # | strategy | layout | cp | tokens | other | base median | new median | change | "
       "p (one-sided) | n base/new | verdict |\n";
  s += "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---|\n";
  int row = 0;
  for (const auto& p : c.points) {
    const PointLabel l = markdown_label(p.config, varying);
    // The p-value of the direction the median moved: the one the verdict used.
    const double pv = p.change >= 0 ? p.mw.p_greater : p.mw.p_less;
    const bool bold = p.verdict == Verdict::regression;
    s += fmt::format(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {:+.1f}% | {:.2g} | {}/{} | {}{}{} |\n", row++,
        l.strategy, l.layout, l.cp, l.tokens, l.other.empty() ? "" : l.other,
        fmt_seconds(p.base_median), fmt_seconds(p.new_median), p.change * 100, pv, p.n_base,
        p.n_new, bold ? "**" : "", to_string(p.verdict), bold ? "**" : "");
    if (p.threshold > opts.threshold)
      s.insert(s.size() - 2, fmt::format(" (threshold {:.1f}%: runs of BASE differed so much)",
                                         p.threshold * 100));
  }
  auto list = [&](const char* title, const std::vector<PointSamples>& pts, bool with_status) {
    if (pts.empty()) return;
    s += fmt::format("\n{} ({}):\n", title, pts.size());
    for (const auto& p : pts) {
      const PointLabel l = markdown_label(p.config, varying);
      std::string status;
      if (with_status)
        if (auto f = c.failed_in_new.find(p.id); f != c.failed_in_new.end())
          status = fmt::format(" — **{} in NEW**", f->second);
      s += fmt::format("- {} {} cp={} {}{}{}{}\n", l.strategy, l.layout, l.cp, l.tokens,
                       l.other.empty() ? "" : " ", l.other, status);
    }
  };
  list("Missing in NEW (ok in BASE)", c.missing, true);
  list("New in NEW (not in BASE)", c.added, false);
  s += fmt::format(
      "\n{} compared: {} regression(s), {} improvement(s); {} missing ({} failed in "
      "NEW), {} new. {}\n",
      c.points.size(), c.regressions, c.improvements, c.missing.size(), c.failed_in_new.size(),
      c.added.size(), c.failed() ? "FAIL" : "PASS");
  return s;
}

}  // namespace cpb
