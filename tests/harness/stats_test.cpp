// Timing statistics against values numpy computes for the same samples (np.percentile with its
// default "linear" method, np.std with ddof=1), so Python analysis and C++ records agree.
#include "harness/runner/stats.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

TEST(Stats, OneToTen) {
  std::vector<double> v = {7, 3, 10, 1, 5, 2, 9, 4, 8, 6};  // order must not matter
  const cpb::TimeStats s = cpb::summarize(v);
  EXPECT_EQ(s.n, 10);
  EXPECT_DOUBLE_EQ(s.median, 5.5);
  EXPECT_DOUBLE_EQ(s.p10, 1.9);
  EXPECT_DOUBLE_EQ(s.p90, 9.1);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 10);
  EXPECT_DOUBLE_EQ(s.mean, 5.5);
  EXPECT_NEAR(s.stdev, 3.0276503540974917, 1e-12);  // np.std(range(1, 11), ddof=1)
}

TEST(Stats, UnevenSamples) {
  // np.percentile([3.1, 0.5, 2.2, 9.0, 4.4], [10, 50, 90]) = [1.18, 3.1, 7.16]
  const cpb::TimeStats s = cpb::summarize({3.1, 0.5, 2.2, 9.0, 4.4});
  EXPECT_NEAR(s.p10, 1.18, 1e-12);
  EXPECT_DOUBLE_EQ(s.median, 3.1);
  EXPECT_NEAR(s.p90, 7.16, 1e-12);
  EXPECT_NEAR(s.mean, 3.84, 1e-12);
  EXPECT_NEAR(s.stdev, 3.214498405661449, 1e-12);  // np.std(..., ddof=1)
}

TEST(Stats, SmallCounts) {
  const cpb::TimeStats zero = cpb::summarize({});
  EXPECT_EQ(zero.n, 0);
  for (double x : {zero.median, zero.min, zero.p10, zero.p90, zero.max, zero.mean, zero.stdev})
    EXPECT_EQ(x, 0);

  const cpb::TimeStats one = cpb::summarize({2.5});
  EXPECT_EQ(one.n, 1);
  for (double x : {one.median, one.min, one.p10, one.p90, one.max, one.mean}) EXPECT_EQ(x, 2.5);
  EXPECT_EQ(one.stdev, 0);

  const cpb::TimeStats two = cpb::summarize({3, 1});
  EXPECT_DOUBLE_EQ(two.median, 2);
  EXPECT_DOUBLE_EQ(two.p10, 1.2);
  EXPECT_DOUBLE_EQ(two.p90, 2.8);
  EXPECT_DOUBLE_EQ(two.stdev, std::sqrt(2.0));
}

TEST(Stats, LargeOffsetKeepsPrecision) {
  // One-pass variance would lose these digits entirely.
  const cpb::TimeStats s = cpb::summarize({1e9 + 1, 1e9 + 2, 1e9 + 3});
  EXPECT_DOUBLE_EQ(s.stdev, 1.0);
  EXPECT_DOUBLE_EQ(s.median, 1e9 + 2);
}

TEST(Stats, NanPoisonsEverything) {
  const cpb::TimeStats s = cpb::summarize({1, std::numeric_limits<double>::quiet_NaN(), 3});
  EXPECT_EQ(s.n, 3);
  EXPECT_TRUE(std::isnan(s.median));
  EXPECT_TRUE(std::isnan(s.stdev));
  const nlohmann::json j = cpb::to_json(s);
  EXPECT_TRUE(j["median"].is_number());  // dump() turns NaN into null
  EXPECT_NE(j.dump().find("\"median\":null"), std::string::npos) << j.dump();
}

TEST(Stats, QuantileSorted) {
  const std::vector<double> v = {10, 20, 30, 40};
  EXPECT_DOUBLE_EQ(cpb::quantile_sorted(v, 0), 10);
  EXPECT_DOUBLE_EQ(cpb::quantile_sorted(v, 1), 40);
  EXPECT_DOUBLE_EQ(cpb::quantile_sorted(v, 0.5), 25);
  EXPECT_DOUBLE_EQ(cpb::quantile_sorted(v, 0.25), 17.5);
  EXPECT_DOUBLE_EQ(cpb::quantile_sorted(v, -1), 10);
  EXPECT_DOUBLE_EQ(cpb::quantile_sorted(v, 2), 40);
  EXPECT_EQ(cpb::quantile_sorted({}, 0.5), 0);
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(cpb::quantile_sorted(std::vector<double>{1, inf}, 1), inf);
}

TEST(Stats, ToJson) {
  const nlohmann::json j = cpb::to_json(cpb::summarize({1, 2, 3, 4}));
  EXPECT_EQ(j.size(), 8u);
  EXPECT_EQ(j["n"], 4);
  EXPECT_DOUBLE_EQ(j["median"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(j["p90"].get<double>(), 3.7);
  for (const char* k : {"median", "min", "p10", "p90", "max", "mean", "stdev", "n"})
    EXPECT_TRUE(j.contains(k)) << k;
}
