#!/usr/bin/env bash
# On a GPU machine: build optimised for Hopper, run the GPU tests and the quickstart on the cuda
# backend. Logs and the run folder go under $OUT (default ./gpu-check). NVLink multicast stays
# off (NCCL_NVLS_ENABLE=0), as these hosts require.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
build=${BUILD_DIR:-/tmp/cpbench-build}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpus.csv" 2>&1
cat "$OUT/gpus.csv"
if ! cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
     -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" > "$OUT/configure.log" 2>&1; then
  tail -30 "$OUT/configure.log"; exit 1
fi
grep -E "cpbench:|NCCL" "$OUT/configure.log"
if ! cmake --build "$build" -j"$(nproc)" > "$OUT/build.log" 2>&1; then
  grep -m 30 -E "error|Error" "$OUT/build.log"; exit 1
fi
"$build/cpbench" list | sed -n '/backends/,/presets/p'
"$build/tests/cpbench_gpu_tests" > "$OUT/gpu_tests.log" 2>&1
gpu_rc=$?
grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran" "$OUT/gpu_tests.log" | tail -30
"$build/cpbench" run experiments/quickstart.yaml --backend cuda --out "$OUT/runs" \
  > "$OUT/quickstart.log" 2>&1
qs_rc=$?
tail -5 "$OUT/quickstart.log"
echo "gpu tests rc=$gpu_rc quickstart rc=$qs_rc"
exit $(( gpu_rc || qs_rc ))
