// Where a result came from: enough to rebuild the binary (git sha, dirty flag, compiler, cpbench
// version), to know the machine (host, OS, CPU) and to rerun the exact command (argv and a
// shell-quoted repro line). GPU, driver, CUDA and NCCL versions are added by the cuda backend,
// which is the only part that can ask for them. Collecting never fails: whatever cannot be found
// out is recorded as "unknown", because a missing detail must not cost a benchmark run.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace cpb {

// Keys: cpbench_version, git {source_dir, sha, dirty (bool, or "unknown")}, host, os
// {sysname, release, version, machine}, cpu {model, logical_cores}, compiler {id, version},
// cwd, argv, repro, env (NCCL_*, CUDA_VISIBLE_DEVICES and similar knobs that change timings),
// time_utc.
nlohmann::json collect_provenance(int argc, const char* const* argv);

// POSIX shell quoting, as Python's shlex.quote: safe words stay bare, anything else is put in
// single quotes (an embedded ' becomes '"'"').
std::string shell_quote(std::string_view arg);
std::string shell_join(const std::vector<std::string>& args);

}  // namespace cpb
