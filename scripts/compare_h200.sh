#!/usr/bin/env bash
# On a machine with 2-8 GPUs, the one command of Step E (issue #6) and of its 8-GPU run (issue
# #11): build (Release) in a folder under /tmp, run the strategies' GPU tests, run a comparison
# sweep (experiments/compare/h200.yaml, or --sweep) with cpbench while nvidia-smi samples the
# GPUs, run PyTorch's context_parallel on the same workloads with benchmarks/peer_torch_cp.py
# (torchrun, one process a GPU), then put both side by side (python3 -m analysis.compare_peers).
#
# Usage: scripts/compare_h200.sh [--part mha|gqa|all] [--sweep FILE] [--filter EXPR]
#                                [--skip-tests] [--skip-peer] [--skip-sweep]
#   mha  the MHA 32x128 points (the shape PyTorch supports) + the peer
#   gqa  the GQA points (llama3-8b, llama3-405b-tp8) + the NCCL primitive benchmark
#   all  both (the default; with h200.yaml longer than one 10-minute device call)
#   --sweep FILE   the sweep to run (default experiments/compare/h200.yaml; h200x8.yaml on 8 GPUs)
#   --filter EXPR  only its points where EXPR holds too (cpbench run --filter)
# Environment: OUT (default ./out-compare), BUILD_DIR (default /tmp/cpbench-compare),
# CPBENCH_GIT_SHA (recorded; from git when unset), PYTHON (default python3, the one with torch),
# GPU_TESTS (the gtest filter of the GPU tests run first), SWEEP_TIMEOUT_S / PEER_TIMEOUT_S /
# TESTS_TIMEOUT_S (default 330 / 150 / 150: each phase is cut off there so that the files are
# always packed, whatever limit the caller runs under), PEER_CP (the peer's CP degrees, default
# "4 2"; those above the GPUs are skipped), PEER_SEQ (its sequence lengths, default
# 32768,131072,262144), PEER_ARGS (more arguments of peer_torch_cp.py, e.g. "--iterations 3"),
# TELEMETRY_MS (default 100: nvidia-smi's sampling period during the sweep and the peer),
# DEADLINE_S (the whole script's budget in seconds, from its start: each phase's timeout is cut
# to leave 30 s for the tables and packing, and a phase with under 10 s left is skipped).
# Files under $OUT (a remote runner returns at most eight):
#   compare.log       this script's console (the sweep's lines after their Unix time)
#   build.log         nvidia-smi, configure and build
#   gpu_tests.log     the strategies' GPU tests
#   telemetry.csv     nvidia-smi's samples (see scripts/lib/device.sh device_telemetry)
#   cpbench-<part>.tar.gz   the cpbench run folder (manifest, results.jsonl, bench.json, traces)
#   peer-<part>.tar.gz      the peer's run folders (peer-cp<N>)
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
skip_sweep=0
sweep=experiments/compare/h200.yaml
extra_filter=""
while (($#)); do
  case $1 in
    --part)
      (($# >= 2)) || { echo "compare_h200: --part needs mha, gqa or all" >&2; exit 2; }
      part=$2
      shift ;;
    --sweep)
      (($# >= 2)) || { echo "compare_h200: --sweep needs a sweep file" >&2; exit 2; }
      sweep=$2
      shift ;;
    --filter)
      (($# >= 2)) || { echo "compare_h200: --filter needs an expression" >&2; exit 2; }
      extra_filter=$2
      shift ;;
    --skip-tests) skip_tests=1 ;;
    --skip-peer) skip_peer=1 ;;
    --skip-sweep) skip_sweep=1 ;;
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
[[ -f $sweep ]] || { echo "compare_h200: $sweep: no such sweep file" >&2; exit 2; }
if [[ -n $extra_filter ]]; then
  if [[ -n $filter ]]; then filter="($filter) and ($extra_filter)"; else filter=$extra_filter; fi
fi
peer_seq=${PEER_SEQ:-32768,131072,262144}
[[ $peer_seq =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || {
  echo "compare_h200: PEER_SEQ must be whole numbers >= 1 separated by commas, not '$peer_seq'" >&2
  exit 2
}
peer_cp=${PEER_CP:-4 2}
[[ $peer_cp =~ ^[1-9][0-9]*( +[1-9][0-9]*)*$ ]] || {
  echo "compare_h200: PEER_CP must be whole numbers >= 1 separated by spaces, not '$peer_cp'" >&2
  exit 2
}
device_knobs compare_h200 SWEEP_TIMEOUT_S PEER_TIMEOUT_S TESTS_TIMEOUT_S TELEMETRY_MS DEADLINE_S
device_setup "$PWD/out-compare" /tmp/cpbench-compare
exec > >(tee -a "$OUT/compare.log") 2>&1

# limit DEFAULT: a phase's timeout in seconds, DEFAULT cut to what DEADLINE_S leaves (0: skip it).
limit() {
  local t=$1 left
  if [[ -n ${DEADLINE_S:-} ]]; then
    left=$((DEADLINE_S - (SECONDS - DEVICE_T0) - 30))
    ((left < t)) && t=$left
  fi
  ((t >= 10)) && echo "$t" || echo 0
}

gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | grep -c . || true)
stamp "git $CPBENCH_GIT_SHA part $part, sweep $sweep${filter:+ where $filter}, $gpus GPU(s), build dir $B"
{
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  nvidia-smi topo -m
} > "$OUT/build.log" 2>&1
targets=(cpbench cpbench_gpu_tests)
[[ $part != mha ]] && targets+=(cpbench_bench_nccl)
device_build compare_h200 "$OUT/build.log" "${targets[@]}"
stamp "built: $(grep -E '^-- cpbench:' "$OUT/build.log" | tr '\n' ' ')"

t=$(limit "${TESTS_TIMEOUT_S:-150}")
((skip_tests || t > 0)) || stamp "no time left for the GPU tests (DEADLINE_S)"
if ((!skip_tests && t > 0)); then
  timeout "$t" "$B/tests/cpbench_gpu_tests" \
    --gtest_filter="${GPU_TESTS:-CudaInputs*:CudaVerify*:Gpus/CudaStrategies*:CudaKernel.SingleGpu*}" \
    > "$OUT/gpu_tests.log" 2>&1
  stamp "gpu tests rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/gpu_tests.log" | tr '\n' ' ')"
fi

device_telemetry compare_h200 "$OUT/telemetry.csv" "${TELEMETRY_MS:-100}"
parent="$OUT/cpbench-$part"  # cpbench writes its run folder <name>-<UTC time> under it
run_dir=""
t=$(limit "${SWEEP_TIMEOUT_S:-330}")
((skip_sweep || t > 0)) || stamp "no time left for the sweep (DEADLINE_S)"
if ((!skip_sweep && t > 0)); then
  rm -rf "$parent"
  args=(run "$sweep" --out "$parent")
  [[ -n $filter ]] && args+=(--filter "$filter")
  timeout "$t" "$B/cpbench" "${args[@]}" 2>&1 | device_timestamps
  stamp "cpbench sweep rc=${PIPESTATUS[0]}"
  run_dir=$(find "$parent" -mindepth 1 -maxdepth 1 -type d | head -1)
fi

peer_dirs=()
if ((!skip_peer)) && [[ $part != gqa ]]; then
  read -r -a peer_args <<< "${PEER_ARGS:-}"
  for n in $peer_cp; do
    ((gpus >= n)) || continue
    t=$(limit "${PEER_TIMEOUT_S:-150}")
    ((t > 0)) || { stamp "no time left for the peer at cp $n (DEADLINE_S)"; continue; }
    d="$OUT/peer-cp$n"
    rm -rf "$d"
    timeout "$t" "$PY" -m torch.distributed.run --standalone --nproc_per_node="$n" \
      benchmarks/peer_torch_cp.py --out "$d" --seq "$peer_seq" "${peer_args[@]}" 2>&1 | device_timestamps
    stamp "peer cp $n rc=${PIPESTATUS[0]}"
    peer_dirs+=("$d")
  done
fi
device_telemetry_stop

if [[ $part != mha ]]; then
  "$B/benchmarks/cpbench_bench_nccl" --benchmark_format=json \
    --benchmark_out="$OUT/nccl_bench.json" > "$OUT/nccl_bench.log" 2>&1
  stamp "nccl bench rc=$?"
fi

tables_in=()
[[ -n $run_dir ]] && tables_in+=("$run_dir")
tables_in+=("${peer_dirs[@]}")
if ((${#tables_in[@]})); then
  "$PY" -m analysis.compare_peers "${tables_in[@]}" --out "$OUT/tables-$part" \
    --markdown "$OUT/tables-$part.md"
  stamp "tables rc=$?"
fi
[[ -f "$OUT/tables-$part/compare_peers.png" ]] &&
  mv "$OUT/tables-$part/compare_peers.png" "$OUT/compare_peers-$part.png"
rm -rf "$OUT/tables-$part"
[[ -d $parent ]] && tar -C "$OUT" -czf "$OUT/cpbench-$part.tar.gz" "cpbench-$part" && rm -rf "$parent"
if ((${#peer_dirs[@]})); then
  tar -C "$OUT" -czf "$OUT/peer-$part.tar.gz" $(for d in "${peer_dirs[@]}"; do basename "$d"; done) &&
    rm -rf "${peer_dirs[@]}"
fi
[[ -f "$OUT/tables-$part.md" ]] && cat "$OUT/tables-$part.md"
stamp "done"
