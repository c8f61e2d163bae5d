// One results.jsonl record per config point, in the schema of DESIGN.md: the point's config,
// time statistics with the per-iteration samples, mask-aware TF/s per GPU, bytes per rank per
// phase, peak memory per rank, the verification errors and the provenance with a repro command.
// Fields a backend cannot measure (cpu: exposed comm, busbw) are present and null, not invented.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "harness/config/config.hpp"
#include "harness/runner/runner.hpp"

namespace cpb {

inline constexpr const char* kRecordSchema = "cpbench.result/1";

// status: "ok" (ran and verified or verify off), "wrong" (ran, failed verification), "error"
// (failed while running), "invalid" (rejected before running). `res` is null unless it ran.
nlohmann::json point_record(const Point& p, const std::string& backend, const std::string& status,
                            const std::string& error, const ExecResult* res,
                            const nlohmann::json& provenance, const std::string& repro);

// `cpbench run CONFIG --filter '...'` selecting exactly this point.
std::string point_filter(const Point& p);

}  // namespace cpb
