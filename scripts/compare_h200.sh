#!/usr/bin/env bash
# On a machine with 2-4 GPUs, the one command of Step E (issue #6): build (Release) in a folder
# under /tmp, run the strategies' GPU tests, run experiments/compare/h200.yaml with cpbench, run
# PyTorch's context_parallel on the same workloads with benchmarks/peer_torch_cp.py (torchrun, one
# process a GPU), then put both side by side (python3 -m analysis.compare_peers).
#
# Usage: scripts/compare_h200.sh [--part mha|gqa|all] [--skip-tests] [--skip-peer]
#   mha  the MHA 32x128 points (the shape PyTorch supports) + the peer at cp 2 and 4
#   gqa  the GQA points (llama3-8b, llama3-405b-tp8) + the NCCL primitive benchmark
#   all  both (the default; longer than one 10-minute device call)
# Environment: OUT (default ./out-compare), BUILD_DIR (default /tmp/cpbench-compare),
# CPBENCH_GIT_SHA (recorded; from git when unset), PYTHON (default python3, the one with torch),
# GPU_TESTS (the gtest filter of the GPU tests run first), SWEEP_TIMEOUT_S / PEER_TIMEOUT_S (default 330 / 150: each phase is cut off there so that the
# files are always packed, whatever limit the caller runs under).
# Files under $OUT (a remote runner returns at most eight):
#   compare.log       this script's console
#   build.log         nvidia-smi, configure and build
#   gpu_tests.log     the strategies' GPU tests
#   cpbench-<part>.tar.gz   the cpbench run folder (manifest, results.jsonl, bench.json, traces)
#   peer-<part>.tar.gz      the peer's run folders (cp 4 and 2)
#   tables-<part>.md, compare_peers-<part>.png   the side-by-side tables and plot
#   nccl_bench.json   (gqa) the NCCL primitive benchmark
# Exit status: nonzero when the build failed; failed points are recorded, not fatal.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/device.sh
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
part=all
skip_tests=0
skip_peer=0
while (($#)); do
  case $1 in
    --part)
      (($# >= 2)) || { echo "compare_h200: --part needs mha, gqa or all" >&2; exit 2; }
      part=$2
      shift ;;
    --skip-tests) skip_tests=1 ;;
    --skip-peer) skip_peer=1 ;;
    *) echo "compare_h200: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
case $part in
  mha) filter='preset == "mha-32x128"' ;;
  gqa) filter='preset != "mha-32x128"' ;;
  all) filter='' ;;
  *) echo "compare_h200: --part must be mha, gqa or all, not '$part'" >&2; exit 2 ;;
esac
device_knobs compare_h200 SWEEP_TIMEOUT_S PEER_TIMEOUT_S
device_setup "$PWD/out-compare" /tmp/cpbench-compare
exec > >(tee -a "$OUT/compare.log") 2>&1

gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | grep -c . || true)
stamp "git $CPBENCH_GIT_SHA part $part, $gpus GPU(s), build dir $B"
{
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  nvidia-smi topo -m
} > "$OUT/build.log" 2>&1
targets=(cpbench cpbench_gpu_tests)
[[ $part != mha ]] && targets+=(cpbench_bench_nccl)
device_build compare_h200 "$OUT/build.log" "${targets[@]}"
stamp "built: $(grep -E '^-- cpbench:' "$OUT/build.log" | tr '\n' ' ')"

if ((!skip_tests)); then
  timeout 150 "$B/tests/cpbench_gpu_tests" \
    --gtest_filter="${GPU_TESTS:-CudaInputs*:CudaVerify*:Gpus/CudaStrategies*:CudaKernel.SingleGpu*}" \
    > "$OUT/gpu_tests.log" 2>&1
  stamp "gpu tests rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/gpu_tests.log" | tr '\n' ' ')"
fi

parent="$OUT/cpbench-$part"  # cpbench writes its run folder <name>-<UTC time> under it
rm -rf "$parent"
args=(run experiments/compare/h200.yaml --out "$parent")
[[ -n $filter ]] && args+=(--filter "$filter")
timeout "${SWEEP_TIMEOUT_S:-330}" "$B/cpbench" "${args[@]}"
stamp "cpbench sweep rc=$?"
run_dir=$(find "$parent" -mindepth 1 -maxdepth 1 -type d | head -1)

peer_dirs=()
if ((!skip_peer)) && [[ $part != gqa ]]; then
  for n in 4 2; do
    ((gpus >= n)) || continue
    d="$OUT/peer-cp$n"
    rm -rf "$d"
    timeout "${PEER_TIMEOUT_S:-150}" "$PY" -m torch.distributed.run --standalone --nproc_per_node="$n" \
      benchmarks/peer_torch_cp.py --out "$d" --seq 32768,131072,262144
    stamp "peer cp $n rc=$?"
    peer_dirs+=("$d")
  done
fi

if [[ $part != mha ]]; then
  "$B/benchmarks/cpbench_bench_nccl" --benchmark_format=json \
    --benchmark_out="$OUT/nccl_bench.json" > "$OUT/nccl_bench.log" 2>&1
  stamp "nccl bench rc=$?"
fi

"$PY" -m analysis.compare_peers "$run_dir" "${peer_dirs[@]}" --out "$OUT/tables-$part" \
  --markdown "$OUT/tables-$part.md"
stamp "tables rc=$?"
[[ -f "$OUT/tables-$part/compare_peers.png" ]] &&
  mv "$OUT/tables-$part/compare_peers.png" "$OUT/compare_peers-$part.png"
rm -rf "$OUT/tables-$part"
tar -C "$OUT" -czf "$OUT/cpbench-$part.tar.gz" "cpbench-$part" && rm -rf "$parent"
if ((${#peer_dirs[@]})); then
  tar -C "$OUT" -czf "$OUT/peer-$part.tar.gz" $(for d in "${peer_dirs[@]}"; do basename "$d"; done) &&
    rm -rf "${peer_dirs[@]}"
fi
[[ -f "$OUT/tables-$part.md" ]] && cat "$OUT/tables-$part.md"
stamp "done"
