// `cpbench compare BASE NEW`: the regression gate between two result sets. Each side is a run
// folder, a results.jsonl file or a baseline file (cpbench.baseline/1, below). Points match by
// point id; per matching point a Mann-Whitney U test on the per-iteration samples decides
// whether NEW differs from BASE at all, and a relative threshold on the medians decides whether
// the difference matters. Both must hold for a REGRESSION (or an improvement), so noise never
// fails the gate and neither does a real but negligible shift. Everything here is a pure
// function of its inputs except load_result_set and write_baseline, so the decisions are
// unit-tested without files.
//
// Baseline file (what `cpbench compare --write-baseline OUT.json RUN_DIR` writes):
//   {"schema": "cpbench.baseline/1", "metric": "time", "machine": {...machine_description...},
//    "source": {"path", "name", "started", "git_sha"},
//    "points": [{"id": "<point id>", "config": {...}, "samples": [seconds, ...]}, ...]}
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness/core/status.hpp"

namespace cpb {

inline constexpr const char* kBaselineSchema = "cpbench.baseline/1";

// Two-sided and one-sided Mann-Whitney U test, normal approximation with tie correction and
// continuity correction (scipy.stats.mannwhitneyu(method="asymptotic") gives the same numbers).
// u counts the pairs (b, n) with n > b, ties half: u = n_base*n_new/2 when nothing moved.
// p_greater: NEW tends to larger values than BASE (slower); p_less: NEW smaller (faster);
// p_two: either. All p are 1 when a side is empty or every sample ties.
struct MannWhitney {
  double u = 0;
  double z = 0;  // (u - mean) / sd without continuity correction; 0 when sd is 0
  double p_less = 1, p_greater = 1, p_two = 1;
};
MannWhitney mann_whitney(const std::vector<double>& base, const std::vector<double>& fresh);

enum class Verdict { same, regression, improvement, too_few_samples };
const char* to_string(Verdict v);

struct CompareOptions {
  double threshold = 0.05;  // relative change of the median that matters
  double alpha = 0.01;      // significance level of the one-sided test
  int min_samples = 5;      // fewer on either side: too_few_samples
};

// REGRESSION: new median > base median * (1 + threshold) and p_greater < alpha; IMPROVEMENT:
// new median < base median * (1 - threshold) and p_less < alpha; else same. Fewer than
// min_samples on either side is too_few_samples, never a regression.
Verdict classify(const MannWhitney& mw, double base_median, double new_median, size_t n_base,
                 size_t n_new, const CompareOptions& opts);

struct PointSamples {
  std::string id;
  nlohmann::json config;  // the record's config (strategy, layout, cp, new_tokens, ...)
  std::vector<double> samples;
  // Baselines made from several runs of the same code: how far their medians lay apart,
  // (max - min) / the first run's median. Between runs a machine's state moves every sample
  // together (clocks, placement), which one run's samples cannot show; a change must exceed
  // this as well as the threshold to count. 0 for a baseline of one run.
  double spread = 0;
};

// One side of a comparison: the points whose last record is "ok", in order of first appearance.
struct ResultSet {
  std::string source;      // the path given
  std::string metric;      // the record key the samples came from ("time")
  nlohmann::json machine;  // machine_description(); null when unknown
  std::vector<PointSamples> points;
  std::map<std::string, std::string> not_ok;  // point id -> status of its last record
};

// The machine that produced a run, from its manifest: {"backend", "gpus": [names], "cpu",
// "logical_cores", "host"}. null when the manifest says nothing about the machine.
nlohmann::json machine_description(const nlohmann::json& manifest);
// One line naming the machine, e.g. "cuda on 4x NVIDIA H200" or "cpu on Intel Xeon (64 logical
// cores)". Two machines are the same when these lines are equal; the host name is left out
// because cloud hosts get a fresh name each boot.
std::string machine_summary(const nlohmann::json& machine);

// Builds a result set from results.jsonl records (the last record of a point wins; only "ok"
// counts) and the run's manifest (may be null). metric names the record's object holding
// "samples": time, time_compute_only or time_comm_only.
Expected<ResultSet> result_set_from_records(const std::vector<nlohmann::json>& records,
                                            const nlohmann::json& manifest,
                                            const std::string& metric, const std::string& source);
// Same from a parsed cpbench.baseline/1 document.
Expected<ResultSet> result_set_from_baseline(const nlohmann::json& doc, const std::string& metric,
                                             const std::string& source);
// Reads a run folder (results.jsonl + manifest.json), a results.jsonl file (with the
// manifest.json beside it when there is one) or a baseline .json file.
Expected<ResultSet> load_result_set(const std::string& path, const std::string& metric);

nlohmann::json baseline_json(const ResultSet& rs, const nlohmann::json& source_info);
// Writes the baseline of the run folders (or results.jsonl files) `runs` to `out` atomically:
// the first run's samples, and with two or more runs (of the same machine) each point's
// between-run spread of the medians.
Status write_baseline(const std::vector<std::string>& runs, const std::string& out,
                      const std::string& metric);

struct PointComparison {
  std::string id;
  nlohmann::json config;
  double base_median = 0, new_median = 0;
  double change = 0;     // new_median / base_median - 1
  double threshold = 0;  // the one applied: max(--threshold, the baseline's between-run spread)
  size_t n_base = 0, n_new = 0;
  MannWhitney mw;
  Verdict verdict = Verdict::same;
};

struct Comparison {
  std::vector<PointComparison> points;  // matching points, in BASE's order
  std::vector<PointSamples> missing;    // ok in BASE, not ok (or absent) in NEW
  std::vector<PointSamples> added;      // ok in NEW, absent from BASE
  // Of `missing`: points NEW did record but whose last record is not ok (id -> status).
  std::map<std::string, std::string> failed_in_new;
  int regressions = 0, improvements = 0;
  // A point that ran fine in BASE and failed, or never ran (a crashed or cut-short run), in NEW
  // fails the gate like a regression.
  bool failed() const { return regressions > 0 || !missing.empty(); }
};

Comparison compare_results(const ResultSet& base, const ResultSet& fresh,
                           const CompareOptions& opts);

// Ok when both machines are the same (machine_summary); otherwise an error naming both.
Status check_same_machine(const ResultSet& base, const ResultSet& fresh);

// The markdown summary: one table row per matching point, then missing and new points.
std::string render_markdown(const Comparison& c, const ResultSet& base, const ResultSet& fresh,
                            const CompareOptions& opts);

}  // namespace cpb
