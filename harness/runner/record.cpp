// Builds the results.jsonl record of a point from its run.
#include "harness/runner/record.hpp"

#include <algorithm>

#include "harness/runner/stats.hpp"
#include "harness/runner/trace.hpp"

namespace cpb {
namespace {

nlohmann::json param_json(const ParamValue& v) {
  return std::visit([](const auto& x) { return nlohmann::json(x); }, v);
}

nlohmann::json workload_json(const Workload& w) {
  return {
      {"batch", w.batch},          {"heads", w.heads},           {"kv_heads", w.kv_heads},
      {"head_dim", w.head_dim},    {"gqa_ratio", w.gqa_ratio()}, {"dtype", to_string(w.dtype)},
      {"mask", to_string(w.mask)}, {"new_tokens", w.new_tokens}, {"cached_tokens", w.cached_tokens},
      {"context", w.context()},    {"miss_rate", w.miss_rate()}, {"phase", to_string(w.phase())}};
}

}  // namespace

std::string point_filter(const Point& p) {
  std::string f;
  for (const auto& [k, v] : p.params) {
    if (!f.empty()) f += " and ";
    if (std::holds_alternative<std::string>(v))
      f += fmt::format("{} == \"{}\"", k, std::get<std::string>(v));
    else if (std::holds_alternative<bool>(v))
      f += fmt::format("{} == {}", k, std::get<bool>(v) ? "true" : "false");
    else
      f += fmt::format("{} == {}", k, to_string(v));
  }
  return f;
}

nlohmann::json point_record(const Point& p, const std::string& backend, const std::string& status,
                            const std::string& error, const ExecResult* res,
                            const nlohmann::json& provenance, const std::string& repro) {
  nlohmann::json r;
  r["schema"] = kRecordSchema;
  r["point_id"] = p.id;
  r["index"] = p.index;
  r["status"] = status;
  r["error"] = error.empty() ? nlohmann::json(nullptr) : nlohmann::json(error);
  nlohmann::json cfg = nlohmann::json::object();
  for (const auto& [k, v] : p.params) cfg[k] = param_json(v);
  r["config"] = cfg;
  r["strategy"] = p.strategy;
  r["layout"] = to_string(p.layout);
  r["cp"] = p.cp;
  r["backend"] = backend;
  r["workload"] = workload_json(p.workload);
  r["provenance"] = provenance;
  r["repro"] = repro;
  if (res == nullptr) return r;

  if (!res->strategy_detail.is_null()) r["strategy_detail"] = res->strategy_detail;
  // The backend's own fields (sim: "predicted": true and the hardware profile it used).
  if (res->backend_detail.is_object())
    for (const auto& [k, v] : res->backend_detail.items()) r[k] = v;
  const int n = static_cast<int>(res->ranks.size());
  TimeStats ts = summarize(res->iteration_times_s);
  nlohmann::json time = to_json(ts);
  // cpu: host wall clock around each iteration; cuda: CUDA events; sim: predicted by the cost
  // model and the timing engine. Max over ranks per iteration.
  time["clock"] = res->clock;
  time["unit"] = "s";
  time["reduction"] = "max over ranks per iteration";
  time["samples"] = res->iteration_times_s;
  r["time"] = time;

  // Host overhead: seconds the host spent issuing an iteration's ops (or launching its CUDA
  // graph), and per ring step (the steps the strategy numbered; 1 for a strategy without steps).
  if (!res->issue_s.empty()) {
    int steps = 1;
    for (const auto& rk : res->ranks) steps = std::max(steps, rk.steps);
    const TimeStats is = summarize(res->issue_s);
    nlohmann::json issue = to_json(is);
    issue["samples"] = res->issue_s;
    // Where the issue time goes: per iteration, the host time in the backend's calls of each
    // op kind (and of event record/wait), max over ranks; the rest is the strategy's own logic
    // and the harness's bookkeeping.
    const double iters = static_cast<double>(std::max<size_t>(res->issue_s.size(), 1));
    nlohmann::json calls = nlohmann::json::object();
    for (const auto& rk : res->ranks)
      for (const auto& [kind, c] : rk.host_calls) {
        const double us = c.seconds / iters * 1e6;
        auto& slot = calls[kind];
        if (!slot.is_object() || slot["us_per_iteration"].get<double>() < us)
          slot = {{"us_per_iteration", us}, {"calls_per_iteration", static_cast<double>(c.calls) / iters}};
      }
    r["host"] = {{"issue_s", issue},
                 {"steps", steps},
                 {"issue_per_step_us", is.median / steps * 1e6},
                 {"cuda_graph", !res->ranks.empty() && res->ranks[0].graph},
                 {"calls", calls}};
  }

  const double flops = workload_flops(p.workload);
  nlohmann::json per_rank_flops = nlohmann::json::array();
  for (const auto& rk : res->ranks) per_rank_flops.push_back(rk.accounting.total().flops);
  r["flops"] = {{"total", flops},
                {"per_rank", per_rank_flops},
                {"convention", "4*B*H*d per visible (query, key) pair; masked work not counted"}};
  r["tflops_per_gpu"] = ts.median > 0 ? flops / n / ts.median / 1e12 : 0.0;

  // Per rank and per phase: bytes sent and received, mask-aware attention FLOPs, op count.
  nlohmann::json acct = nlohmann::json::array();
  int64_t max_sent = 0;
  for (int i = 0; i < n; ++i) {
    nlohmann::json phases = nlohmann::json::object();
    for (const auto& [name, c] : res->ranks[i].accounting.phases) {
      nlohmann::json ph = {{"bytes_sent", c.bytes_sent},
                           {"bytes_recv", c.bytes_recv},
                           {"flops", c.flops},
                           {"ops", c.ops}};
      // Bandwidth of the phase's communication in the traced iteration (nccl-tests
      // convention: busbw counts the bytes that cross links; algbw of a collective counts the
      // whole buffer, n/(n-1) times more).
      const double secs = phase_comm_seconds(res->ranks[i].trace, name);
      if (secs > 0 && (c.bytes_sent > 0 || c.bytes_recv > 0)) {
        const double bytes = static_cast<double>(std::max(c.bytes_sent, c.bytes_recv));
        // A collective's group (c.participants: N, or u for a USP group) sets the factor.
        const int g = c.participants;
        ph["comm_s"] = secs;
        ph["busbw_GBps"] = bytes / secs / 1e9;
        ph["algbw_GBps"] = g > 1 ? bytes * g / (g - 1) / secs / 1e9 : bytes / secs / 1e9;
      }
      phases[name] = ph;
    }
    max_sent = std::max(max_sent, res->ranks[i].accounting.total().bytes_sent);
    acct.push_back({{"rank", i}, {"phases", phases}});
  }
  r["accounting"] = acct;
  // Exposed communication = total - compute-only time; overlap = the share of the comm-only
  // time hidden behind compute. Measured only where the variants ran (cuda); null otherwise,
  // never estimated.
  r["comm"] = {{"max_bytes_sent_per_rank", max_sent},
               {"exposed_comm_s", nullptr},
               {"overlap_fraction", nullptr}};
  if (!res->compute_only_s.empty() && !res->comm_only_s.empty()) {
    const double compute = summarize(res->compute_only_s).median;
    const double comm = summarize(res->comm_only_s).median;
    const double exposed = std::max(0.0, ts.median - compute);
    r["comm"]["exposed_comm_s"] = exposed;
    r["comm"]["comm_only_s"] = comm;
    r["comm"]["compute_only_s"] = compute;
    r["comm"]["overlap_fraction"] = comm > 0
                                        ? nlohmann::json(std::clamp(1.0 - exposed / comm, 0.0, 1.0))
                                        : nlohmann::json(nullptr);
    nlohmann::json co = to_json(summarize(res->compute_only_s));
    co["samples"] = res->compute_only_s;
    nlohmann::json mo = to_json(summarize(res->comm_only_s));
    mo["samples"] = res->comm_only_s;
    r["time_compute_only"] = co;
    r["time_comm_only"] = mo;
  }

  // peak: what the strategy allocated (inputs and outputs included; NCCL's own buffers not);
  // minimum: what the same buffers need at the least, each held only over its stages.
  nlohmann::json mem = nlohmann::json::array(), least = nlohmann::json::array();
  for (const auto& rk : res->ranks) {
    mem.push_back(rk.peak_memory_bytes);
    least.push_back(rk.minimum_memory_bytes);
  }
  r["memory"] = {{"peak_bytes_per_rank", mem}, {"minimum_bytes_per_rank", least}};

  const auto& v = res->verify;
  if (v.ran) {
    r["verify"] = {{"ran", true},
                   {"passed", v.passed()},
                   {"finite", v.finite},
                   {"max_abs_err", v.max_abs_err},
                   {"max_rel_err", v.max_rel_err},
                   {"lse_max_abs_err", v.lse_max_abs_err},
                   {"tolerance", v.tolerance},
                   {"reference", v.reference}};
  } else {
    r["verify"] = {{"ran", false}};
    if (!v.reference.empty()) r["verify"]["reason"] = v.reference;
  }
  return r;
}

}  // namespace cpb
