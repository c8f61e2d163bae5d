// Tests of `auto` and what it is built from:
//  - Heuristic*: Yang et al. 2024 Algorithms 1 and 5 (strategies/heuristic.hpp) reproduce the
//    paper's decisions for its own setting (Llama3 405B heads, CP4, 128K context, H100 + 400 Gb/s
//    RDMA), move their thresholds the right way with the hardware, and send decode to pass-Q;
//  - HardwareProfile*: the profile parser (harness/core/hardware_profile.hpp) accepts the
//    committed example and refuses broken files with file:line: key messages;
//  - Auto*: C and BW resolve point > profile > default with each source recorded, auto's record
//    explains its choice, and a real run through execute_point is exact and is the chosen
//    strategy.
#include <gtest/gtest.h>

#include <fstream>
#include <limits>

#include "harness/core/hardware_profile.hpp"
#include "harness/runner/runner.hpp"
#include "strategies/heuristic.hpp"
#include "strategies/strategy.hpp"
#include "tests/support/temp_dir.hpp"

namespace cpb {
namespace {

const std::string kData = CPBENCH_TEST_DATA;
const std::string kPaperProfile = kData + "/profiles/yang2024_h100_rdma.yaml";

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// ---- the decision -------------------------------------------------------------------------------

// The paper's setting: per-rank heads of Llama3 405B before TP (NH 128, NKV 8), bf16, CP4, a
// 128000-token context, C = 800 TF/s, BW = 50 GB/s.
constexpr int64_t kContext = 128000;

HeuristicInputs paper(int64_t new_tokens, int algorithm = 1) {
  HeuristicInputs in;
  in.new_tokens = new_tokens;
  in.cached_tokens = kContext - new_tokens;
  in.cp = 4;
  in.heads = 128;
  in.kv_heads = 8;
  in.elem_bytes = 2;
  in.peak_flops = 800e12;
  in.bandwidth = 50e9;
  in.algorithm = algorithm;
  return in;
}

// New tokens of the 128000-token context at a miss rate given in tenths of a percent (exact).
int64_t tokens_at(int64_t miss_x10) {
  return kContext * miss_x10 / 1000;
}

HeuristicDecision decide(const HeuristicInputs& in) {
  auto d = decide_pass_kv_or_q(in);
  EXPECT_TRUE(d.ok()) << d.error().message;
  return d.ok() ? *d : HeuristicDecision{};
}

TEST(HeuristicPaper, Eq2ThresholdIsExactly4000Tokens) {
  // N*C*NKV*e / (2*NH*BW) = 4 * 800e12 * 8 * 2 / (2 * 128 * 50e9) = 4000.
  HeuristicDecision d = decide(paper(1280));
  EXPECT_EQ(d.eq2_min_new_tokens, 4000.0);
  EXPECT_EQ(d.miss_rate_threshold, 0.125);  // 2*NKV/NH = 16/128
  // The boundary itself: T >= 4000 is pass-KV by Eq. 2 whatever the miss rate.
  HeuristicDecision below = decide(paper(3999));
  EXPECT_EQ(below.choice, kPassQ);
  EXPECT_EQ(below.decided_by, "neither");
  HeuristicDecision at = decide(paper(4000));
  EXPECT_EQ(at.choice, kPassKV);
  EXPECT_EQ(at.decided_by, "eq2");
}

TEST(HeuristicPaper, Algorithm1PassQBelowEq2AndEq1PassKVAbove) {
  struct Case {
    int64_t miss_x10;  // miss rate in tenths of a percent
    const char* choice;
    const char* decided_by;
  };
  // 1% and 2.5% of 128000 are 1280 and 3200 new tokens: below Eq. 2's 4000 and below 12.5%, so
  // pass-Q. 5% and 10% (6400, 12800 tokens) already clear Eq. 2. From 12.5% up both tests hold;
  // Eq. 2 is asked first.
  const Case cases[] = {{10, kPassQ, "neither"}, {25, kPassQ, "neither"}, {50, kPassKV, "eq2"},
                        {100, kPassKV, "eq2"},   {125, kPassKV, "eq2"},   {250, kPassKV, "eq2"},
                        {500, kPassKV, "eq2"},   {1000, kPassKV, "eq2"}};
  for (const Case& c : cases) {
    HeuristicDecision d = decide(paper(tokens_at(c.miss_x10)));
    EXPECT_EQ(d.choice, c.choice) << "miss " << c.miss_x10 / 10.0 << "%: " << d.reason;
    EXPECT_EQ(d.decided_by, c.decided_by) << "miss " << c.miss_x10 / 10.0 << "%";
    EXPECT_DOUBLE_EQ(d.miss_rate, static_cast<double>(c.miss_x10) / 1000.0);
    EXPECT_FALSE(d.reason.empty());
  }
  // The miss-rate test on its own (Eq. 1): few new tokens, so Eq. 2 fails, at exactly 12.5%.
  HeuristicInputs small = paper(1000);
  small.cached_tokens = 7000;
  HeuristicDecision d = decide(small);
  EXPECT_EQ(d.choice, kPassKV);
  EXPECT_EQ(d.decided_by, "miss_rate");
  small.cached_tokens = 7001;  // just under 12.5%
  EXPECT_EQ(decide(small).choice, kPassQ);
}

TEST(HeuristicPaper, Algorithm5ChargesPassQForItsAll2All) {
  // By hand: Algorithm 5's miss-rate threshold is 2*NKV/NH - 4*T*BW/(N*C*e)
  //   = 0.125 - 4 * T * 50e9 / (4 * 800e12 * 2) = 0.125 - T / 32000; Eq. 2 is unchanged (4000).
  //  1%   T = 1280:  Eq. 2 fails; threshold 0.125 - 0.04 = 0.085 > 0.01     -> pass-Q.
  //  2.5% T = 3200:  Eq. 2 fails; threshold 0.125 - 0.1  = 0.025 = the miss rate, and the test is
  //                  ">=", so pass-KV (where Algorithm 1 says pass-Q: the All2All tips it).
  //  5%   T = 6400:  Eq. 2 holds (threshold would be -0.075)                  -> pass-KV.
  //  10%  T = 12800: Eq. 2 holds                                               -> pass-KV.
  struct Case {
    int64_t miss_x10;
    const char* choice;
    const char* decided_by;
    double threshold;
  };
  const Case cases[] = {{10, kPassQ, "neither", 0.085},
                        {25, kPassKV, "miss_rate", 0.025},
                        {50, kPassKV, "eq2", -0.075},
                        {100, kPassKV, "eq2", -0.275}};
  for (const Case& c : cases) {
    HeuristicDecision d = decide(paper(tokens_at(c.miss_x10), 5));
    EXPECT_EQ(d.choice, c.choice) << "miss " << c.miss_x10 / 10.0 << "%: " << d.reason;
    EXPECT_EQ(d.decided_by, c.decided_by) << "miss " << c.miss_x10 / 10.0 << "%";
    EXPECT_NEAR(d.miss_rate_threshold, c.threshold, 1e-12);
    EXPECT_EQ(d.eq2_min_new_tokens, 4000.0);
  }
  // Either side of the 2.5% tie, away from rounding: T = 3000 (2.34%) has threshold 0.03125,
  // T = 3500 (2.73%) has 0.015625.
  EXPECT_EQ(decide(paper(3000, 5)).choice, kPassQ);
  EXPECT_EQ(decide(paper(3500, 5)).choice, kPassKV);
  EXPECT_EQ(decide(paper(3500, 1)).choice, kPassQ);
}

TEST(HeuristicPaper, ThresholdsMoveWithBandwidthAndCp) {
  for (int alg : {1, 5}) {
    const HeuristicDecision base = decide(paper(6400, alg));
    // Half the bandwidth: a K/V block takes twice as long, so twice the tokens are needed to hide
    // it; pass-Q's All2All also costs twice as long, so Algorithm 5 subtracts half as much.
    HeuristicInputs slow = paper(6400, alg);
    slow.bandwidth /= 2;
    const HeuristicDecision s = decide(slow);
    EXPECT_EQ(s.eq2_min_new_tokens, 2 * base.eq2_min_new_tokens);
    // Twice the ranks: each rank holds half the queries per K/V block, the same effect on Eq. 2.
    HeuristicInputs wide = paper(6400, alg);
    wide.cp *= 2;
    const HeuristicDecision w = decide(wide);
    EXPECT_EQ(w.eq2_min_new_tokens, 2 * base.eq2_min_new_tokens);
    if (alg == 1) {
      EXPECT_EQ(s.miss_rate_threshold, base.miss_rate_threshold);
      EXPECT_EQ(w.miss_rate_threshold, base.miss_rate_threshold);
    } else {
      EXPECT_GT(s.miss_rate_threshold, base.miss_rate_threshold);
      EXPECT_GT(w.miss_rate_threshold, base.miss_rate_threshold);
      EXPECT_LE(s.miss_rate_threshold, 0.125);
    }
    // At 5% miss (6400 tokens) the paper's machine is pass-KV by Eq. 2; with half the bandwidth
    // or twice the ranks Eq. 2 needs 8000 tokens. Algorithm 1 then falls back on 5% < 12.5%:
    // pass-Q. Algorithm 5's threshold rises from -0.075 to 0.125 - 4*6400*25e9/(4*800e12*2) =
    // 0.025 (the same with N = 8), which 5% still clears: pass-KV, now by the miss rate.
    EXPECT_EQ(base.choice, kPassKV);
    EXPECT_EQ(base.decided_by, "eq2");
    if (alg == 1) {
      EXPECT_EQ(s.choice, kPassQ) << s.reason;
      EXPECT_EQ(w.choice, kPassQ) << w.reason;
    } else {
      EXPECT_NEAR(s.miss_rate_threshold, 0.025, 1e-12);
      EXPECT_NEAR(w.miss_rate_threshold, 0.025, 1e-12);
      EXPECT_EQ(s.choice, kPassKV) << s.reason;
      EXPECT_EQ(s.decided_by, "miss_rate");
      EXPECT_EQ(w.choice, kPassKV) << w.reason;
      EXPECT_EQ(w.decided_by, "miss_rate");
    }
    // More compute per byte (a faster GPU on the same link) raises the bar the same way.
    HeuristicInputs fast = paper(6400, alg);
    fast.peak_flops *= 2;
    EXPECT_EQ(decide(fast).eq2_min_new_tokens, 2 * base.eq2_min_new_tokens);
  }
}

TEST(HeuristicDecode, OneNewTokenChoosesPassQ) {
  for (int alg : {1, 5})
    for (int64_t kv_heads : {1, 8, 128}) {
      HeuristicInputs in = paper(1, alg);
      in.cached_tokens = 1'000'000;
      in.kv_heads = kv_heads;
      HeuristicDecision d = decide(in);
      EXPECT_EQ(d.choice, kPassQ) << "alg " << alg << " NKV " << kv_heads << ": " << d.reason;
      EXPECT_EQ(d.decided_by, "neither");
      EXPECT_LT(d.miss_rate, 1e-5);
    }
}

TEST(HeuristicInputsCheck, RefusesMeaninglessInputs) {
  auto bad = [](auto edit, const std::string& expect) {
    HeuristicInputs in = paper(1280);
    edit(in);
    auto d = decide_pass_kv_or_q(in);
    ASSERT_FALSE(d.ok());
    EXPECT_TRUE(contains(d.error().message, expect)) << d.error().message;
  };
  bad([](HeuristicInputs& in) { in.algorithm = 3; }, "use 1 or 5");
  bad([](HeuristicInputs& in) { in.new_tokens = 0; }, "new_tokens");
  bad([](HeuristicInputs& in) { in.cp = 0; }, "cp");
  bad([](HeuristicInputs& in) { in.kv_heads = 0; }, "kv_heads");
  bad([](HeuristicInputs& in) { in.peak_flops = 0; }, "peak_tflops");
  bad([](HeuristicInputs& in) { in.bandwidth = -1; }, "bandwidth_gbps");
  bad([](HeuristicInputs& in) { in.bandwidth = std::numeric_limits<double>::infinity(); },
      "bandwidth_gbps");
}

TEST(HeuristicJson, HasEveryField) {
  nlohmann::json j = to_json(decide(paper(1280, 5)));
  EXPECT_EQ(j["choice"], kPassQ);
  EXPECT_EQ(j["algorithm"], 5);
  EXPECT_EQ(j["inputs"]["T"], 1280);
  EXPECT_EQ(j["inputs"]["P"], kContext - 1280);
  EXPECT_EQ(j["inputs"]["N"], 4);
  EXPECT_EQ(j["inputs"]["NH"], 128);
  EXPECT_EQ(j["inputs"]["NKV"], 8);
  EXPECT_EQ(j["inputs"]["e"], 2);
  EXPECT_EQ(j["inputs"]["C"], 800e12);
  EXPECT_EQ(j["inputs"]["BW"], 50e9);
  EXPECT_EQ(j["thresholds"]["eq2_min_new_tokens"], 4000.0);
  EXPECT_NEAR(j["thresholds"]["miss_rate_threshold"].get<double>(), 0.085, 1e-12);
  EXPECT_DOUBLE_EQ(j["miss_rate"].get<double>(), 0.01);
  EXPECT_EQ(j["decided_by"], "neither");
  EXPECT_TRUE(contains(j["reason"].get<std::string>(), "pass-Q"));
}

// ---- hardware profiles -------------------------------------------------------------------------

std::string profile_error(const std::string& text) {
  auto p = parse_hardware_profile(text, "hw.yaml");
  if (p.ok()) return "<parsed without error>";
  return p.error().message;
}

TEST(HardwareProfileLoad, CommittedPaperProfile) {
  auto p = load_hardware_profile(kPaperProfile);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->name, "yang2024-h100-rdma");
  EXPECT_EQ(p->peak_tflops, 800.0);
  EXPECT_EQ(p->bandwidth_gbps, 50.0);
  EXPECT_EQ(p->peak_flops(), kDefaultPeakFlops);
  EXPECT_EQ(p->bandwidth_bytes_per_s(), kDefaultBandwidth);
  EXPECT_TRUE(contains(p->source, "2411.01783"));
  EXPECT_FALSE(p->description.empty());
  EXPECT_FALSE(p->machine.empty());
  EXPECT_EQ(p->path, kPaperProfile);
}

TEST(HardwareProfileLoad, MinimalProfileAndExtraMapAreAccepted) {
  auto p = parse_hardware_profile(
      "name: lab-box\npeak_tflops: 1.5e2\nbandwidth_gbps: 25\nextra:\n  calibrated_by: alice\n"
      "  nvlink_gbps: [450, 900]\n  anything: {goes: here}\n",
      "hw.yaml");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->name, "lab-box");
  EXPECT_EQ(p->peak_tflops, 150.0);
  EXPECT_EQ(p->bandwidth_gbps, 25.0);
  EXPECT_TRUE(p->description.empty());
}

TEST(HardwareProfileLoad, MissingFileNamesThePath) {
  auto p = load_hardware_profile("/nonexistent/profiles/h100.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(contains(p.error().message, "/nonexistent/profiles/h100.yaml")) << p.error().message;
  EXPECT_TRUE(contains(p.error().message, "no such file")) << p.error().message;
  testing_support::TempDir dir;
  auto folder = load_hardware_profile(dir.path().string());
  ASSERT_FALSE(folder.ok());
  EXPECT_TRUE(contains(folder.error().message, "folder")) << folder.error().message;
}

TEST(HardwareProfileLoad, FromAFile) {
  testing_support::TempDir dir;
  const std::string path = dir.file("p.yaml");
  std::ofstream(path) << "name: f\npeak_tflops: 400\nbandwidth_gbps: 12.5\n";
  auto p = load_hardware_profile(path);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->bandwidth_bytes_per_s(), 12.5e9);
  std::ofstream(path) << "name: f\npeak_tflops: 400\nbandwidth_gbps: 0\n";
  auto bad = load_hardware_profile(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message.rfind(path + ":3: bandwidth_gbps: ", 0), 0u) << bad.error().message;
}

TEST(HardwareProfileErrors, MissingKeyNamesIt) {
  std::string e = profile_error("name: x\npeak_tflops: 800\n");
  EXPECT_TRUE(contains(e, "hw.yaml:1: bandwidth_gbps: missing")) << e;
  e = profile_error("peak_tflops: 800\nbandwidth_gbps: 50\n");
  EXPECT_TRUE(contains(e, "hw.yaml:1: name: missing")) << e;
  e = profile_error("");
  EXPECT_TRUE(contains(e, "hw.yaml:1:")) << e;
  EXPECT_TRUE(contains(e, "empty")) << e;
}

TEST(HardwareProfileErrors, NumbersMustBePositiveFiniteAndUnquoted) {
  const std::string head = "name: x\nbandwidth_gbps: 50\n";
  std::string e = profile_error(head + "peak_tflops: -800\n");
  EXPECT_TRUE(contains(e, "hw.yaml:3: peak_tflops: -800 is not positive")) << e;
  e = profile_error(head + "peak_tflops: 0\n");
  EXPECT_TRUE(contains(e, "hw.yaml:3: peak_tflops:")) << e;
  for (const char* v : {".inf", "nan", "fast", "0x10", "800 TF/s", "[800]"}) {
    e = profile_error(head + "peak_tflops: " + v + "\n");
    EXPECT_TRUE(contains(e, "hw.yaml:3: peak_tflops: expected a number")) << v << ": " << e;
  }
  e = profile_error(head + "peak_tflops: \"800\"\n");
  EXPECT_TRUE(contains(e, "remove the quotes")) << e;
  e = profile_error(head + "peak_tflops: 8e14\n");  // FLOP/s written where TFLOP/s is meant
  EXPECT_TRUE(contains(e, "check the unit")) << e;
  e = profile_error(head + "peak_tflops:\n");
  EXPECT_TRUE(contains(e, "peak_tflops: expected a number")) << e;
}

TEST(HardwareProfileErrors, UnknownKeyIsAnErrorOutsideExtra) {
  std::string e = profile_error("name: x\npeak_tflops: 800\nbandwith_gbps: 50\n");
  EXPECT_TRUE(contains(e, "hw.yaml:3: bandwith_gbps: unknown key")) << e;
  EXPECT_TRUE(contains(e, "did you mean 'bandwidth_gbps'")) << e;
  EXPECT_TRUE(contains(e, "extra")) << e;
  // Inside extra anything goes; extra itself must be a map.
  e = profile_error("name: x\npeak_tflops: 800\nbandwidth_gbps: 50\nextra: 3\n");
  EXPECT_TRUE(contains(e, "hw.yaml:4: extra: expected a map")) << e;
}

TEST(HardwareProfileErrors, StructureAndSyntax) {
  std::string e = profile_error("- name: x\n");
  EXPECT_TRUE(contains(e, "expected a map")) << e;
  e = profile_error("name: x\nname: y\npeak_tflops: 800\nbandwidth_gbps: 50\n");
  EXPECT_TRUE(contains(e, "hw.yaml:2: name: given twice")) << e;
  e = profile_error("name: x\npeak_tflops: [800\n");
  EXPECT_TRUE(contains(e, "hw.yaml:")) << e;
  EXPECT_TRUE(contains(e, "YAML")) << e;
  e = profile_error("name: x\npeak_tflops: 800\nbandwidth_gbps: 50\n---\nname: y\n");
  EXPECT_TRUE(contains(e, "more than one YAML document")) << e;
  e = profile_error("name: ''\npeak_tflops: 800\nbandwidth_gbps: 50\n");
  EXPECT_TRUE(contains(e, "hw.yaml:1: name: is empty")) << e;
  // auto's 7 keys and the sim cost model's 13 (tests/harness/core/hardware_profile_test.cpp).
  EXPECT_EQ(hardware_profile_keys().size(), 20u);
}

// ---- auto: resolution of C and BW ---------------------------------------------------------------

// A profile file with distinct numbers, so a source can be told from the default by value.
class AutoResolution : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("lab.yaml");
    std::ofstream(path_) << "name: lab\npeak_tflops: 400\nbandwidth_gbps: 25\n";
  }
  testing_support::TempDir dir_;
  std::string path_;
};

TEST_F(AutoResolution, DefaultsWhenNothingIsGiven) {
  auto hw = resolve_hardware(StrategyOptions{});
  ASSERT_TRUE(hw.ok()) << hw.error().message;
  EXPECT_EQ(hw->peak_flops, 800e12);
  EXPECT_EQ(hw->bandwidth, 50e9);
  EXPECT_EQ(hw->peak_flops_source, "default (Yang et al. 2024 H100 + 400 Gb/s RDMA)");
  EXPECT_EQ(hw->bandwidth_source, "default (Yang et al. 2024 H100 + 400 Gb/s RDMA)");
}

TEST_F(AutoResolution, ProfileOverridesDefaults) {
  StrategyOptions o;
  o.hardware_profile = path_;
  auto hw = resolve_hardware(o);
  ASSERT_TRUE(hw.ok()) << hw.error().message;
  EXPECT_EQ(hw->peak_flops, 400e12);
  EXPECT_EQ(hw->bandwidth, 25e9);
  EXPECT_EQ(hw->peak_flops_source, "profile lab (" + path_ + ")");
  EXPECT_EQ(hw->bandwidth_source, "profile lab (" + path_ + ")");
}

TEST_F(AutoResolution, PointOverridesProfileOneNumberAtATime) {
  StrategyOptions o;
  o.hardware_profile = path_;
  o.peak_tflops = 990;
  auto hw = resolve_hardware(o);
  ASSERT_TRUE(hw.ok()) << hw.error().message;
  EXPECT_EQ(hw->peak_flops, 990e12);
  EXPECT_EQ(hw->peak_flops_source, "point (peak_tflops)");
  EXPECT_EQ(hw->bandwidth, 25e9);
  EXPECT_EQ(hw->bandwidth_source, "profile lab (" + path_ + ")");
  // Without a profile the other number falls back to the default.
  StrategyOptions p;
  p.bandwidth_gbps = 3;
  hw = resolve_hardware(p);
  ASSERT_TRUE(hw.ok()) << hw.error().message;
  EXPECT_EQ(hw->bandwidth, 3e9);
  EXPECT_EQ(hw->bandwidth_source, "point (bandwidth_gbps)");
  EXPECT_EQ(hw->peak_flops, kDefaultPeakFlops);
  EXPECT_EQ(hw->peak_flops_source, kDefaultSource);
}

TEST_F(AutoResolution, BadProfileOrNumberIsAnErrorEvenWhenOverridden) {
  StrategyOptions o;
  o.hardware_profile = dir_.file("missing.yaml");
  o.peak_tflops = 800;
  o.bandwidth_gbps = 50;  // both numbers given, yet a broken profile must not go unnoticed
  auto hw = resolve_hardware(o);
  ASSERT_FALSE(hw.ok());
  EXPECT_TRUE(contains(hw.error().message, "hardware_profile: " + o.hardware_profile))
      << hw.error().message;
  StrategyOptions neg;
  neg.peak_tflops = -1;
  hw = resolve_hardware(neg);
  ASSERT_FALSE(hw.ok());
  EXPECT_TRUE(contains(hw.error().message, "peak_tflops is -1")) << hw.error().message;
}

// ---- auto: the registered strategy --------------------------------------------------------------

Workload small_workload(int64_t T, int64_t P) {
  // GQA 8 (NH 8, NKV 1): the miss-rate threshold is 2*NKV/NH = 25%.
  return Workload{.batch = 1,
                  .heads = 8,
                  .kv_heads = 1,
                  .head_dim = 16,
                  .dtype = DType::bf16,
                  .mask = MaskKind::causal,
                  .new_tokens = T,
                  .cached_tokens = P};
}

nlohmann::json describe_point(const Workload& w, int cp, const StrategyOptions& o) {
  const StrategyInfo* info = find_strategy("auto");
  EXPECT_NE(info, nullptr);
  if (info == nullptr) return {};
  auto pl = Placement::make(w, LayoutKind::zigzag, cp);
  EXPECT_TRUE(pl.ok()) << pl.error().message;
  if (!pl.ok()) return {};
  return info->describe(StrategyContext{w, *pl, o});
}

TEST(AutoStrategy, IsRegisteredWithItsSummary) {
  const StrategyInfo* info = find_strategy("auto");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->summary, "chooses ring_pass_kv or ring_pass_q by Yang et al. Algorithm 1 or 5");
  EXPECT_TRUE(info->check && info->prepare && info->describe);
}

TEST(AutoStrategy, DescribeExplainsTheChoice) {
  StrategyOptions o;
  o.auto_algorithm = 5;
  o.hardware_profile = kPaperProfile;
  o.bandwidth_gbps = 100;
  nlohmann::json j = describe_point(small_workload(8, 120), 2, o);
  ASSERT_FALSE(j.contains("error")) << j.dump();
  EXPECT_EQ(j["choice"], kPassQ);
  EXPECT_EQ(j["algorithm"], 5);
  EXPECT_EQ(j["inputs"]["T"], 8);
  EXPECT_EQ(j["inputs"]["P"], 120);
  EXPECT_EQ(j["inputs"]["N"], 2);
  EXPECT_EQ(j["inputs"]["NH"], 8);
  EXPECT_EQ(j["inputs"]["NKV"], 1);
  EXPECT_EQ(j["inputs"]["e"], 2);
  EXPECT_EQ(j["inputs"]["C"], 800e12);
  EXPECT_EQ(j["inputs"]["BW"], 100e9);
  EXPECT_EQ(j["inputs"]["C_source"], "profile yang2024-h100-rdma (" + kPaperProfile + ")");
  EXPECT_EQ(j["inputs"]["BW_source"], "point (bandwidth_gbps)");
  // N*C*NKV*e / (2*NH*BW) = 2 * 800e12 * 1 * 2 / (2 * 8 * 100e9) = 2000.
  EXPECT_EQ(j["thresholds"]["eq2_min_new_tokens"], 2000.0);
  EXPECT_TRUE(j["thresholds"].contains("miss_rate_threshold"));
  EXPECT_DOUBLE_EQ(j["miss_rate"].get<double>(), 8.0 / 128.0);
  EXPECT_EQ(j["decided_by"], "neither");
  EXPECT_FALSE(j["reason"].get<std::string>().empty());
  // 50% miss clears 2*NKV/NH = 25%; the default sources are named when nothing is given.
  j = describe_point(small_workload(8, 8), 2, StrategyOptions{});
  EXPECT_EQ(j["choice"], kPassKV);
  EXPECT_EQ(j["decided_by"], "miss_rate");
  EXPECT_EQ(j["inputs"]["C_source"], kDefaultSource);
  EXPECT_EQ(j["inputs"]["BW_source"], kDefaultSource);
}

TEST(AutoStrategy, CheckRefusesABadProfileClearly) {
  ExecSpec spec;
  spec.strategy = "auto";
  spec.cp = 2;
  spec.workload = small_workload(8, 8);
  spec.options.hardware_profile = "/nonexistent/lab.yaml";
  auto st = check_point(spec);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, "auto: hardware_profile: /nonexistent/lab.yaml"))
      << st.error().message;
  spec.options.hardware_profile.clear();
  spec.options.auto_algorithm = 3;
  st = check_point(spec);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, "use 1 or 5")) << st.error().message;
}

TEST(AutoStrategy, CheckWhenTheChosenStrategyIsMissingOrRefuses) {
  ExecSpec spec;
  spec.strategy = "auto";
  spec.cp = 2;
  spec.workload = small_workload(8, 120);  // 6.25% miss: pass-Q
  auto st = check_point(spec);
  if (find_strategy(kPassQ) == nullptr) {
    ASSERT_FALSE(st.ok());
    EXPECT_TRUE(contains(st.error().message, "auto chose ring_pass_q")) << st.error().message;
    EXPECT_TRUE(contains(st.error().message, "not registered")) << st.error().message;
  } else {
    EXPECT_TRUE(st.ok()) << st.error().message;
  }
}

// Runs `auto` on the cpu backend and checks it is exact and chose `expect`.
ExecResult run_auto(const Workload& w, int cp, const StrategyOptions& o, const char* expect) {
  ExecSpec spec;
  spec.strategy = "auto";
  spec.layout = LayoutKind::zigzag;
  spec.cp = cp;
  spec.workload = w;
  spec.options = o;
  spec.seed = 7;
  spec.timeout_s = 60;
  auto res = execute_point(spec);
  EXPECT_TRUE(res.ok()) << res.error().detail();
  if (!res.ok()) return {};
  EXPECT_TRUE(res->verify.ran);
  EXPECT_TRUE(res->verify.passed()) << "max_rel_err " << res->verify.max_rel_err;
  EXPECT_EQ(res->strategy_detail["choice"], expect) << res->strategy_detail.dump();
  return std::move(res).value();
}

TEST(AutoExecute, PartialPrefillAboveTheMissThresholdRunsPassKV) {
  // T = 16, P = 16: 50% miss >= 25%; Eq. 2 needs 4000 tokens at the defaults.
  ExecResult r = run_auto(small_workload(16, 16), 4, StrategyOptions{}, kPassKV);
  EXPECT_EQ(r.strategy_detail["decided_by"], "miss_rate");
  // auto *is* ring_pass_kv for this point: the same bytes on the same ring.
  for (const auto& rank : r.ranks) EXPECT_TRUE(rank.accounting.phases.count("ring_kv"));
}

TEST(AutoExecute, Eq2CanChoosePassKVAtALowMissRate) {
  // 16 / 256 = 6.25% miss, but with a link this fast Eq. 2 needs only
  // 4 * 800e12 * 1 * 2 / (2 * 8 * 1e15) = 0.4 tokens.
  StrategyOptions o;
  o.bandwidth_gbps = 1e6;
  ExecResult r = run_auto(small_workload(16, 240), 4, o, kPassKV);
  EXPECT_EQ(r.strategy_detail["decided_by"], "eq2");
}

TEST(AutoExecute, PartialPrefillBelowTheMissThresholdRunsPassQ) {
  if (!find_strategy(kPassQ)) GTEST_SKIP() << "ring_pass_q is not registered in this build yet";
  // T = 16, P = 240: 6.25% miss < 25%, T < 4000: pass-Q under both algorithms.
  for (int alg : {1, 5}) {
    StrategyOptions o;
    o.auto_algorithm = alg;
    ExecResult r = run_auto(small_workload(16, 240), 4, o, kPassQ);
    EXPECT_EQ(r.strategy_detail["decided_by"], "neither");
    EXPECT_EQ(r.strategy_detail["algorithm"], alg);
    for (const auto& rank : r.ranks) EXPECT_FALSE(rank.accounting.phases.count("ring_kv"));
  }
}

}  // namespace
}  // namespace cpb
