#!/usr/bin/env bash
# The main job: installs what is missing, builds optimised, and runs experiments/quickstart.yaml
# (on GPUs when the cuda backend can use them, else on the cpu reference backend). Extra
# arguments go to `cpbench run`, e.g. --backend cpu or --dry-run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cmake --preset release >/dev/null
cmake --build --preset release --target cpbench
exec build/release/cpbench run experiments/quickstart.yaml "$@"
