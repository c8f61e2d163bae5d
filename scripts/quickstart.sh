#!/usr/bin/env bash
# The main job: installs what is missing, builds optimised, and runs experiments/quickstart.yaml
# (on GPUs when the cuda backend can use them, else on the cpu reference backend). Without a
# GPU it then runs experiments/quickstart-sim.yaml: the same strategies at real sizes on 1-4
# H200s, predicted by the sim backend. Extra arguments go to `cpbench run` of the first sweep,
# e.g. --backend cpu or --dry-run (and then the sim sweep is left out).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cmake --preset release >/dev/null
cmake --build --preset release --target cpbench
rc=0
build/release/cpbench run experiments/quickstart.yaml "$@" || rc=$?
if (($# == 0)) && ! nvidia-smi -L > /dev/null 2>&1; then
  echo
  echo "No GPU here: what these strategies would take on 4x H200 (predicted, sim backend):"
  build/release/cpbench run experiments/quickstart-sim.yaml || rc=$?
fi
exit "$rc"
