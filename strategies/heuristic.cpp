// Yang et al. 2024's pass-KV / pass-Q heuristic (Algorithms 1 and 5) and the resolution of its
// hardware inputs. The decision is a few lines of arithmetic kept apart from `auto` so that it can
// be tested against the paper's own numbers without a run, and so that every record can carry the
// thresholds it was decided by, not only the verdict: a surprising choice is then explained by
// the numbers in the record.
#include "strategies/heuristic.hpp"

#include <cmath>

#include "harness/core/hardware_profile.hpp"

namespace cpb {

namespace {

std::string pct(double rate) {
  return fmt::format("{:.4g}%", rate * 100.0);
}

bool positive_finite(double v) {
  return std::isfinite(v) && v > 0;
}

}  // namespace

Expected<HeuristicDecision> decide_pass_kv_or_q(const HeuristicInputs& in) {
  CPB_REQUIRE(in.algorithm == 1 || in.algorithm == 5,
              "auto_algorithm is {}: use 1 or 5 (Yang et al. 2024, Algorithm 1 or 5)",
              in.algorithm);
  CPB_REQUIRE(in.new_tokens >= 1, "the heuristic needs new_tokens >= 1, got {}", in.new_tokens);
  CPB_REQUIRE(in.cached_tokens >= 0, "the heuristic needs cached_tokens >= 0, got {}",
              in.cached_tokens);
  CPB_REQUIRE(in.cp >= 1, "the heuristic needs cp >= 1, got {}", in.cp);
  CPB_REQUIRE(in.heads >= 1 && in.kv_heads >= 1,
              "the heuristic needs heads and kv_heads >= 1, got {} and {}", in.heads, in.kv_heads);
  CPB_REQUIRE(in.elem_bytes >= 1, "the heuristic needs bytes per element >= 1, got {}",
              in.elem_bytes);
  CPB_REQUIRE(positive_finite(in.peak_flops),
              "the heuristic needs C (peak FLOP/s) > 0, got {}: set peak_tflops", in.peak_flops);
  CPB_REQUIRE(positive_finite(in.bandwidth),
              "the heuristic needs BW (bytes/s per rank) > 0, got {}: set bandwidth_gbps",
              in.bandwidth);

  const auto T = static_cast<double>(in.new_tokens);
  const auto P = static_cast<double>(in.cached_tokens);
  const auto N = static_cast<double>(in.cp);
  const auto NH = static_cast<double>(in.heads);
  const auto NKV = static_cast<double>(in.kv_heads);
  const auto e = static_cast<double>(in.elem_bytes);
  const double C = in.peak_flops, BW = in.bandwidth;

  HeuristicDecision d;
  d.inputs = in;
  // Eq. 2: a ring step moves one rank's K/V shard, (T+P)/N tokens of 2*NKV*d*e bytes, while the
  // rank attends its T/N queries to it, 4*(T/N)*((T+P)/N)*NH*d FLOPs; compute time >= transfer
  // time gives T >= N*C*NKV*e/(2*NH*BW), with T+P and d cancelling.
  d.eq2_min_new_tokens = N * NKV * e * C / (2.0 * NH * BW);
  // Eq. 1: per rank pass-KV moves (N-1)/N * (T+P)*2*NKV*d*e bytes, pass-Q (N-1)/N * T*NH*d*e;
  // Q is smaller iff T/(T+P) <= 2*NKV/NH.
  d.miss_rate_threshold = 2.0 * NKV / NH;
  // Appendix C: pass-Q must also return its partial outputs by All2All, which shifts the
  // break-even towards pass-KV by 4*T*BW/(N*C*e).
  if (in.algorithm == 5) d.miss_rate_threshold -= 4.0 * T * BW / (N * C * e);
  d.miss_rate = T / (T + P);

  const std::string alg = fmt::format("Alg. {}", in.algorithm);
  const std::string miss_formula = in.algorithm == 1 ? "2*NKV/NH" : "2*NKV/NH - 4*T*BW/(N*C*e)";
  if (T >= d.eq2_min_new_tokens) {
    d.choice = kPassKV;
    d.decided_by = "eq2";
    d.reason = fmt::format(
        "pass-KV: T = {} >= {:.6g} new tokens (Eq. 2), so each K/V ring step hides under the "
        "attention it feeds",
        in.new_tokens, d.eq2_min_new_tokens);
  } else if (d.miss_rate >= d.miss_rate_threshold) {
    d.choice = kPassKV;
    d.decided_by = "miss_rate";
    d.reason = fmt::format(
        "pass-KV: T = {} < {:.6g} (Eq. 2 fails) but miss rate {} >= {} = {} ({}), so K/V is "
        "the cheaper message",
        in.new_tokens, d.eq2_min_new_tokens, pct(d.miss_rate), pct(d.miss_rate_threshold),
        miss_formula, alg);
  } else {
    d.choice = kPassQ;
    d.decided_by = "neither";
    d.reason = fmt::format(
        "pass-Q: T = {} < {:.6g} new tokens (Eq. 2) and miss rate {} < {} = {} ({}), so K/V "
        "would not hide and Q is the cheaper message",
        in.new_tokens, d.eq2_min_new_tokens, pct(d.miss_rate), pct(d.miss_rate_threshold),
        miss_formula, alg);
  }
  return d;
}

nlohmann::json to_json(const HeuristicDecision& d) {
  const HeuristicInputs& in = d.inputs;
  return {
      {"choice", d.choice},
      {"algorithm", in.algorithm},
      {"inputs",
       {{"T", in.new_tokens},
        {"P", in.cached_tokens},
        {"N", in.cp},
        {"NH", in.heads},
        {"NKV", in.kv_heads},
        {"e", in.elem_bytes},
        {"C", in.peak_flops},
        {"BW", in.bandwidth}}},
      {"thresholds",
       {{"eq2_min_new_tokens", d.eq2_min_new_tokens},
        {"miss_rate_threshold", d.miss_rate_threshold}}},
      {"miss_rate", d.miss_rate},
      {"decided_by", d.decided_by},
      {"reason", d.reason},
  };
}

Expected<ResolvedHardware> resolve_hardware(const StrategyOptions& o) {
  // 0 means "not given"; anything else must be a usable number (a programmatic ExecSpec does not
  // pass through the config parser's checks).
  CPB_REQUIRE(std::isfinite(o.peak_tflops) && o.peak_tflops >= 0,
              "peak_tflops is {}: give a number > 0 (TFLOP/s), or leave it out to take C from "
              "the hardware profile or the default",
              o.peak_tflops);
  CPB_REQUIRE(std::isfinite(o.bandwidth_gbps) && o.bandwidth_gbps >= 0,
              "bandwidth_gbps is {}: give a number > 0 (GB/s per rank), or leave it out to take "
              "BW from the hardware profile or the default",
              o.bandwidth_gbps);
  ResolvedHardware hw;
  if (!o.hardware_profile.empty()) {
    auto prof = load_hardware_profile(o.hardware_profile);
    if (!prof) {
      Error err = std::move(prof).error();
      err.message = "hardware_profile: " + err.message;
      return std::move(err).hop(__FILE__, __LINE__);
    }
    const std::string src = fmt::format("profile {} ({})", prof->name, prof->path);
    hw.peak_flops = prof->peak_flops();
    hw.bandwidth = prof->bandwidth_bytes_per_s();
    hw.peak_flops_source = hw.bandwidth_source = src;
  }
  if (o.peak_tflops > 0) {
    hw.peak_flops = o.peak_tflops * 1e12;
    hw.peak_flops_source = "point (peak_tflops)";
  }
  if (o.bandwidth_gbps > 0) {
    hw.bandwidth = o.bandwidth_gbps * 1e9;
    hw.bandwidth_source = "point (bandwidth_gbps)";
  }
  return hw;
}

HeuristicInputs heuristic_inputs(const Workload& w, int cp, const ResolvedHardware& hw,
                                 int algorithm) {
  HeuristicInputs in;
  in.new_tokens = w.new_tokens;
  in.cached_tokens = w.cached_tokens;
  in.cp = cp;
  in.heads = w.heads;
  in.kv_heads = w.kv_heads;
  in.elem_bytes = dtype_bytes(w.dtype);
  in.peak_flops = hw.peak_flops;
  in.bandwidth = hw.bandwidth;
  in.algorithm = algorithm;
  return in;
}

}  // namespace cpb
