#!/usr/bin/env bash
# The performance regression flow: runs experiments/ci/regression.yaml on this machine's GPUs and
# compares it with this machine's committed baseline, results/baselines/<machine>.json, through
# `cpbench compare` (per point: Mann-Whitney U on the per-iteration times plus a relative
# threshold). Exit 0: no significant regression; 1: a regression, or a point that passed in the
# baseline failed now; 2: bad input, no GPU, or no baseline for this machine yet.
# With --update the run becomes the machine's baseline instead (commit the baseline file and say
# in the commit which run it came from).
#
# Usage: scripts/regression.sh [--update] [--threshold X] [--alpha A]
# <machine> is the count and name of the GPUs the run uses (CUDA_VISIBLE_DEVICES counts), e.g.
# 4x-nvidia-h200; points with more ranks than GPUs are left out. Without a GPU this flow has nothing
# to measure; the deterministic sim backend (Step G) will give CI its own.
set -euo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}  # NVLink multicast stays off unless asked for
update=0
compare_args=()
while (($#)); do
  case $1 in
    --update) update=1 ;;
    --threshold | --alpha)
      (($# >= 2)) || { echo "regression: $1 needs a value" >&2; exit 2; }
      compare_args+=("$1" "$2")
      shift ;;
    *) echo "regression: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done

if ! gpus=$(nvidia-smi --query-gpu=index,name --format=csv,noheader 2>/dev/null) || [[ -z $gpus ]]; then
  echo "regression: no GPU visible; the GPU regression flow needs one (CI's comes with Step G)" >&2
  exit 2
fi
# The GPUs the run will use: CUDA_VISIBLE_DEVICES (indices) narrows nvidia-smi's list.
if [[ -n ${CUDA_VISIBLE_DEVICES:-} ]]; then
  gpus=$(awk -F', ' -v keep=",$CUDA_VISIBLE_DEVICES," 'index(keep, "," $1 ",")' <<< "$gpus")
fi
names=$(cut -d, -f2- <<< "$gpus" | sed 's/^ *//')
count=$(grep -c . <<< "$names" || true)
((count > 0)) || { echo "regression: CUDA_VISIBLE_DEVICES leaves no GPU" >&2; exit 2; }
machine=$(sort <<< "$names" | uniq -c |
  awk '{n = $1; $1 = ""; sub(/^ +/, ""); printf "%s%dx-%s", (NR > 1 ? "_" : ""), n, $0}' |
  tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9_.-')
baseline=results/baselines/$machine.json
if ((!update)) && [[ ! -f $baseline ]]; then
  echo "regression: no baseline for $machine ($baseline); make one with $0 --update" >&2
  exit 2
fi

if ! { cmake --preset release > /dev/null && cmake --build --preset release --target cpbench; }; then
  echo "regression: the build failed" >&2
  exit 2
fi
run_dir=results/runs/regression-$(date -u +%Y%m%dT%H%M%SZ)
run_rc=0
# Points need at most as many GPUs as there are (cp 4 needs 4).
build/release/cpbench run experiments/ci/regression.yaml --backend cuda --run-dir "$run_dir" \
  --filter "cp <= $count" || run_rc=$?
if ((run_rc != 0 && run_rc != 1)); then
  echo "regression: the sweep did not finish (exit $run_rc)" >&2
  exit 2
fi
# run_rc 1 (a point invalid, failed or wrong) goes on: compare reports such points against the
# baseline, and an update refuses to record them as the reference.
if ((update)); then
  if ((run_rc != 0)); then
    echo "regression: not updating $baseline: some point of $run_dir failed (exit $run_rc)" >&2
    exit 1
  fi
  mkdir -p results/baselines
  build/release/cpbench compare --write-baseline "$baseline" "$run_dir"
  echo "regression: wrote $baseline from $run_dir"
  exit 0
fi
build/release/cpbench compare "$baseline" "$run_dir" ${compare_args[@]+"${compare_args[@]}"}
