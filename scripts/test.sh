#!/usr/bin/env bash
# The test command: installs what is missing, builds with the `ci` preset (warnings are errors)
# and runs every test that needs no GPU (label `gpu` is excluded by the preset).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cmake --preset ci
cmake --build --preset ci
ctest --preset ci
