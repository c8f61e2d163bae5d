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
# <machine> is the GPU count and name, e.g. 4x-nvidia-h200. Without a GPU this flow has nothing
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

if ! names=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null) || [[ -z $names ]]; then
  echo "regression: no GPU visible; the GPU regression flow needs one (CI's comes with Step G)" >&2
  exit 2
fi
machine=$(sort <<< "$names" | uniq -c |
  awk '{n = $1; $1 = ""; sub(/^ +/, ""); printf "%s%dx-%s", (NR > 1 ? "_" : ""), n, $0}' |
  tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9_.-')
baseline=results/baselines/$machine.json
if ((!update)) && [[ ! -f $baseline ]]; then
  echo "regression: no baseline for $machine ($baseline); make one with $0 --update" >&2
  exit 2
fi

cmake --preset release > /dev/null
cmake --build --preset release --target cpbench
run_dir=results/runs/regression-$(date -u +%Y%m%dT%H%M%SZ)
run_rc=0
build/release/cpbench run experiments/ci/regression.yaml --backend cuda --run-dir "$run_dir" ||
  run_rc=$?
if ((run_rc == 2)); then
  echo "regression: the sweep could not run (exit 2)" >&2
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
