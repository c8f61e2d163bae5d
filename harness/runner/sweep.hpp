// `cpbench run`: loads an experiment, checks every point before anything runs, then runs the
// valid ones one after another, appending one record per point to results.jsonl as it ends (an
// invalid or failing point becomes an error record and the sweep goes on), with a progress line
// per point. --dry-run prints the expanded points and writes nothing; --resume continues the
// latest run folder of the experiment, skipping points already recorded.
#pragma once

#include <string>
#include <vector>

namespace cpb {

struct SweepOptions {
  std::string config;
  std::string backend;  // empty: the experiment's `backend`
  std::string out = "results/runs";  // parent folder of run folders
  std::string run_dir;  // explicit run folder (new or to resume)
  std::string filter;
  bool resume = false;
  bool dry_run = false;
  bool quiet = false;
  int gpus = 0;  // use at most this many GPUs (0: all visible)
  bool cuda_graph = false;  // as the experiment's `cuda_graph: true`
  // The hardware profile of points that name none (sim: its cost model; auto: C and BW).
  std::string hardware_profile;
  std::vector<std::string> argv;
};

// Exit code: 0 every point ran and verified; 1 some point was invalid, failed or wrong (its
// record says which); 2 the config or the options are bad (nothing written); 130 / 143 stopped
// by SIGINT / SIGTERM after the point in flight (the manifest says "interrupted"; --resume
// continues).
int run_sweep(const SweepOptions& opts);

// The backend a name resolves to on this machine: "auto" -> cuda when it is built and a GPU is
// visible, else cpu; "sim" is always there. Errors name what to use instead.
struct BackendChoice {
  std::string name;
  std::string why;
};
BackendChoice resolve_backend(const std::string& requested, std::string* error);

}  // namespace cpb
