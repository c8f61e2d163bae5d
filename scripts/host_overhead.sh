#!/usr/bin/env bash
# On a machine with 2-4 GPUs: host overhead per ring step and memory per rank of every strategy
# (Step E, issue #6), issued op by op and replayed from CUDA graphs. Builds (Release) in a folder
# under /tmp, runs the strategies' GPU tests (each strategy op by op and as graph replays), runs
# experiments/compare/host_overhead.yaml twice (the second time with --cuda-graph) and puts the
# two side by side (python3 -m analysis.host_memory).
#
# Usage: scripts/host_overhead.sh [--skip-tests]
# Environment: OUT (default ./out-host), BUILD_DIR (default /tmp/cpbench-host), CPBENCH_GIT_SHA
# (recorded; from git when unset), PYTHON (default python3), GPU_TESTS (gtest filter of the GPU
# tests run first), SWEEP_TIMEOUT_S (default 200: each of the two sweeps is cut off there).
# Files under $OUT: host.log (this console), build.log, gpu_tests.log, runs.tar.gz (both run
# folders), host_memory.md (the table).
# Exit status: nonzero when the build failed; failed points are recorded, not fatal.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/device.sh
export NCCL_NVLS_ENABLE=0
skip_tests=0
while (($#)); do
  case $1 in
    --skip-tests) skip_tests=1 ;;
    *) echo "host_overhead: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
device_knobs host_overhead SWEEP_TIMEOUT_S
device_setup "$PWD/out-host" /tmp/cpbench-host
exec > >(tee -a "$OUT/host.log") 2>&1

stamp "git $CPBENCH_GIT_SHA, build dir $B"
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv > "$OUT/build.log" 2>&1
device_build host_overhead "$OUT/build.log" cpbench cpbench_gpu_tests
stamp "built"

if ((!skip_tests)); then
  timeout 240 "$B/tests/cpbench_gpu_tests" \
    --gtest_filter="${GPU_TESTS:-CudaInputs*:Gpus/CudaStrategies*}" > "$OUT/gpu_tests.log" 2>&1
  stamp "gpu tests rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/gpu_tests.log" | tr '\n' ' ')"
fi

for mode in eager graph; do
  extra=()
  [[ $mode == graph ]] && extra=(--cuda-graph)
  rm -rf "$OUT/$mode"
  timeout "${SWEEP_TIMEOUT_S:-200}" "$B/cpbench" run experiments/compare/host_overhead.yaml \
    --out "$OUT/$mode" "${extra[@]}"
  stamp "$mode sweep rc=$?"
done

"$PY" -m analysis.host_memory "$OUT/eager" "$OUT/graph" --markdown "$OUT/host_memory.md"
stamp "table rc=$?"
tar -C "$OUT" -czf "$OUT/runs.tar.gz" eager graph && rm -rf "$OUT/eager" "$OUT/graph"
stamp "done"
