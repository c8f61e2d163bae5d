#!/usr/bin/env bash
# On a GPU machine, the one command for the attention kernel comparison (issue #5): configure and
# build (Release, tests on) in a folder under /tmp, run the kernel GPU tests, dump the compiler's
# resource usage of the kernels library (registers, shared memory, spills), then time ours next
# to PyTorch SDPA (flash and cuDNN) with benchmarks/attention_vs_sdpa.py. Extra arguments go to
# that script (e.g. --quick, --kernels portable,hopper). Exits nonzero when the tests or the
# benchmark failed; every step still runs where it can.
#
# Environment: OUT (default ./out-kbench), BUILD_DIR (default /tmp/cpbench-kbench),
# CPBENCH_GIT_SHA (recorded in the manifest; taken from git when unset and available).
# Files under $OUT (eight: a remote runner may return only a few files):
#   build.log            nvidia-smi, configure and build output
#   gpu_tests.log        cpbench_gpu_tests --gtest_filter='*AttentionKernels*:CudaKernel*:CudaReference*'
#   resource_usage.txt   cuobjdump --dump-resource-usage of the kernels library
#   sdpa_bench.log       the benchmark's output
#   sdpa/                sdpa_side_by_side.{csv,md,png} and manifest.json
set -euo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}  # NVLink multicast stays off unless asked for
export PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/out-kbench}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
B=${BUILD_DIR:-/tmp/cpbench-kbench}
if [[ -z "${CPBENCH_GIT_SHA:-}" ]]; then
  CPBENCH_GIT_SHA=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [[ $CPBENCH_GIT_SHA != unknown ]] && ! git diff --quiet HEAD 2>/dev/null; then
    CPBENCH_GIT_SHA+="-dirty"
  fi
fi
export CPBENCH_GIT_SHA

log="$OUT/build.log"
{
  echo "== $(date -u +%FT%TZ) git $CPBENCH_GIT_SHA build dir $B"
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.sm,clocks.max.sm \
    --format=csv || echo "nvidia-smi failed"
} > "$log" 2>&1
cat "$log"

if ! cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCPBENCH_BUILD_TESTS=ON \
    >> "$log" 2>&1; then
  tail -30 "$log"
  echo "kernel_bench: configure failed (see $log)"
  exit 1
fi
grep -E "^-- cpbench:" "$log" || true
if ! cmake --build "$B" --target cpbench_gpu_tests cpbench_attention_capi >> "$log" 2>&1; then
  grep -m 30 -E "error|Error" "$log" || tail -30 "$log"
  echo "kernel_bench: build failed (see $log)"
  exit 1
fi
echo "build ok"

tests_rc=0
"$B/tests/cpbench_gpu_tests" --gtest_filter='*AttentionKernels*:CudaKernel*:CudaReference*' \
  > "$OUT/gpu_tests.log" 2>&1 || tests_rc=$?
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]" "$OUT/gpu_tests.log" | tail -30 || true
echo "gpu tests rc=$tests_rc"

# Registers, shared memory, stack and spills of every kernel: from the static library, or from
# the object files when that gives nothing. cuobjdump sits beside nvcc, which may not be on PATH.
cuobjdump=$(command -v cuobjdump || true)
if [[ -z $cuobjdump ]]; then
  nvcc=$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$B/CMakeCache.txt")
  cuobjdump="$(dirname "${nvcc:-/usr/local/cuda/bin/nvcc}")/cuobjdump"
fi
dump_resources() {  # files...
  local f
  for f in "$@"; do
    echo "== $f"
    "$cuobjdump" --dump-resource-usage "$f" 2>&1 || echo "cuobjdump failed on $f"
  done | { if command -v c++filt >/dev/null; then c++filt; else cat; fi; }
}
usage="$OUT/resource_usage.txt"
mapfile -t libs < <(find "$B" -maxdepth 2 -name 'libcpbench_cuda*.a' | sort)
dump_resources "${libs[@]}" > "$usage" || true
if ! grep -q 'REG:' "$usage"; then
  mapfile -t objs < <(find "$B" -path '*cpbench_cuda*' -name '*.cu.o' | sort)
  dump_resources "${objs[@]}" >> "$usage" || true
fi
echo "resource usage: $(grep -c 'REG:' "$usage" || true) kernel entries in $usage"

bench_rc=0
python3 benchmarks/attention_vs_sdpa.py --lib "$B/benchmarks/libcpbench_attention_capi.so" \
  --out "$OUT/sdpa" "$@" 2>&1 | tee "$OUT/sdpa_bench.log" || bench_rc=$?
echo "gpu tests rc=$tests_rc benchmark rc=$bench_rc"
if ((tests_rc != 0 || bench_rc != 0)); then
  exit 1
fi
