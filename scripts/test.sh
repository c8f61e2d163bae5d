#!/usr/bin/env bash
# The test command: installs what is missing, builds with the `ci` preset (warnings are errors)
# and runs every test that needs no GPU (label `gpu` is excluded by the preset), then the analysis
# package's pytest suite (analysis/tests) in the venv that bootstrap made.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cmake --preset ci
cmake --build --preset ci
ctest --preset ci
CPBENCH="$PWD/build/ci/cpbench" .venv/bin/python3 -m pytest -q analysis/tests
