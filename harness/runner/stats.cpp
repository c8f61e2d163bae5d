// Timing statistics. Two-pass mean and variance (not the one-pass sum of squares) because
// timings are large numbers with small spread, where the one-pass formula cancels badly.
#include "harness/runner/stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace cpb {

double quantile_sorted(std::span<const double> sorted, double q) {
  if (sorted.empty()) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  // numpy's form: a + (b - a) * t, which returns a exactly when t = 0 even for infinite a.
  if (frac == 0) return sorted[lo];
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

TimeStats summarize(std::vector<double> samples) {
  TimeStats s;
  s.n = static_cast<int64_t>(samples.size());
  if (samples.empty()) return s;
  if (std::any_of(samples.begin(), samples.end(), [](double x) { return std::isnan(x); })) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    s.median = s.min = s.p10 = s.p90 = s.max = s.mean = s.stdev = nan;
    return s;
  }
  std::sort(samples.begin(), samples.end());
  s.min = samples.front();
  s.max = samples.back();
  s.median = quantile_sorted(samples, 0.5);
  s.p10 = quantile_sorted(samples, 0.1);
  s.p90 = quantile_sorted(samples, 0.9);
  double sum = 0;
  for (double x : samples) sum += x;
  s.mean = sum / static_cast<double>(samples.size());
  if (samples.size() >= 2) {
    double ss = 0;
    for (double x : samples) ss += (x - s.mean) * (x - s.mean);
    s.stdev = std::sqrt(ss / static_cast<double>(samples.size() - 1));
  }
  return s;
}

nlohmann::json to_json(const TimeStats& s) {
  return {{"median", s.median}, {"min", s.min},   {"p10", s.p10},     {"p90", s.p90},
          {"max", s.max},       {"mean", s.mean}, {"stdev", s.stdev}, {"n", s.n}};
}

}  // namespace cpb
