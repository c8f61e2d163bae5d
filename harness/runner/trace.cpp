// Chrome trace JSON from the traced iteration of each rank.
#include "harness/runner/trace.hpp"

namespace cpb {

nlohmann::json chrome_trace(const ExecResult& res, const std::string& title) {
  nlohmann::json events = nlohmann::json::array();
  for (size_t r = 0; r < res.ranks.size(); ++r) {
    const int pid = static_cast<int>(r);
    events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", pid},
                      {"args", {{"name", fmt::format("rank {}", r)}}}});
    for (int tid : {0, 1})
      events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", pid}, {"tid", tid},
                        {"args", {{"name", tid == 0 ? "compute" : "comm"}}}});
    for (const auto& t : res.ranks[r].trace) {
      nlohmann::json args = {{"phase", t.phase}, {"step", t.step}};
      if (t.bytes > 0) args["bytes"] = t.bytes;
      if (t.flops > 0) args["flops"] = t.flops;
      if (t.mem_bytes > 0) args["mem_bytes"] = t.mem_bytes;
      if (t.kind == OpKind::attention) {
        // The block's shape and mask (the sim's calibration pairs measured slices with them).
        args["sq"] = t.sq;
        args["sk"] = t.sk;
        args["mask"] = t.mask.kind == BlockMask::Kind::full     ? "full"
                       : t.mask.kind == BlockMask::Kind::causal ? "causal"
                                                                : "none";
        if (t.mask.kind == BlockMask::Kind::causal) args["diag"] = t.mask.diag;
        args["comm_in_flight"] = t.comm_in_flight;
        args["kv_fresh"] = t.kv_fresh;
      }
      const std::string kind(to_string(t.kind));
      events.push_back({{"name", t.phase == kind ? kind : fmt::format("{} {}", t.phase, kind)},
                        {"cat", t.phase},
                        {"ph", "X"},
                        {"pid", pid},
                        {"tid", static_cast<int>(t.stream)},
                        {"ts", t.begin_s * 1e6},
                        {"dur", std::max(0.0, t.end_s - t.begin_s) * 1e6},
                        {"args", args}});
    }
  }
  return {{"traceEvents", events},
          {"displayTimeUnit", "ms"},
          {"otherData", {{"title", title}, {"backend", res.backend}, {"clock", res.clock}}}};
}

double phase_comm_seconds(const std::vector<TraceSlice>& trace, const std::string& phase) {
  double s = 0;
  for (const auto& t : trace)
    if (t.phase == phase && Executor::is_comm(t.kind)) s += std::max(0.0, t.end_s - t.begin_s);
  return s;
}

}  // namespace cpb
