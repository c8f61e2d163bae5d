// Summary statistics of per-iteration timings, as every record reports them. Percentiles use
// linear interpolation between the closest ranks (numpy.percentile's default, "linear"), so the
// numbers match what the Python analysis computes from the same samples.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

namespace cpb {

struct TimeStats {
  double median = 0, min = 0, p10 = 0, p90 = 0, max = 0, mean = 0;
  double stdev = 0;  // sample standard deviation (n - 1 denominator); 0 when n < 2
  int64_t n = 0;
};

// Summarises samples in any order. n = 0 gives all zeros; any NaN sample makes every statistic
// NaN (a broken timer must show, not vanish into a plausible median).
TimeStats summarize(std::vector<double> samples);

// The q-th quantile (q in [0, 1], clamped) of ascending `sorted` samples, numpy "linear" method.
// 0 for an empty span.
double quantile_sorted(std::span<const double> sorted, double q);

// {"median", "min", "p10", "p90", "max", "mean", "stdev", "n"}; NaN is written as null.
nlohmann::json to_json(const TimeStats& s);

}  // namespace cpb
