#!/usr/bin/env bash
# The performance regression flow: runs experiments/ci/regression.yaml and compares it with the
# machine's committed baseline, results/baselines/<machine>.json, through `cpbench compare` (per
# point: Mann-Whitney U on the per-iteration times plus a relative threshold). Exit 0: no
# significant regression; 1: a regression, or a point that passed in the baseline failed now;
# 2: bad input, no GPU (without --sim), or no baseline for this machine yet.
# With --update the sweep runs twice and the two runs become the machine's baseline instead: the
# first run's samples and, per point, how far the two runs' medians lay apart, which raises that
# point's threshold (between runs a GPU's state moves every sample of a point together, which
# one run cannot show). Commit the baseline file and say in the commit which runs it came from.
#
# Usage: scripts/regression.sh [--sim] [--profile FILE] [--update] [--threshold X] [--alpha A]
#                              [--out DIR]
#   (GPU)  <machine> is the count and name of the GPUs the run uses (CUDA_VISIBLE_DEVICES
#          counts), e.g. 4x-nvidia-h200; points with more ranks than GPUs are left out.
#   --sim  the same sweep on the sim backend, on a hardware profile (--profile FILE, default
#          results/profiles/h200x4-calibrated.yaml, the sim's default): no GPU needed, and deterministic, so any change of a
#          strategy's schedule (bytes, ops, overlap) that moves a predicted time by more than the
#          threshold is caught; <machine> is sim-<profile file name>. CI runs this (ctest
#          `regression_sim`).
#   --out DIR  parent folder of the run folder (default results/runs).
# Environment: CPBENCH, a built cpbench binary to use (default: build the release preset).
set -euo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}  # NVLink multicast stays off unless asked for
update=0
sim=0
profile=
out=results/runs
compare_args=()
while (($#)); do
  case $1 in
    --update) update=1 ;;
    --sim) sim=1 ;;
    --profile | --out | --threshold | --alpha)
      (($# >= 2)) || { echo "regression: $1 needs a value" >&2; exit 2; }
      case $1 in
        --profile) profile=$2; sim=1 ;;
        --out) out=$2 ;;
        *) compare_args+=("$1" "$2") ;;
      esac
      shift ;;
    *) echo "regression: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done

run_args=(--backend cuda)
if ((sim)); then
  profile=${profile:-results/profiles/h200x4-calibrated.yaml}
  [[ -f $profile ]] || { echo "regression: no hardware profile $profile" >&2; exit 2; }
  machine=sim-$(basename "$profile" .yaml)
  run_args=(--backend sim --hardware-profile "$profile")
else
  if ! gpus=$(nvidia-smi --query-gpu=index,name --format=csv,noheader 2>/dev/null) || [[ -z $gpus ]]; then
    echo "regression: no GPU visible; the GPU regression flow needs one (--sim runs it on the sim backend)" >&2
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
  # Points need at most as many GPUs as there are (cp 4 needs 4).
  run_args+=(--filter "cp <= $count")
fi
baseline=results/baselines/$machine.json
if ((!update)) && [[ ! -f $baseline ]]; then
  echo "regression: no baseline for $machine ($baseline); make one with $0 --update" >&2
  exit 2
fi

exe=${CPBENCH:-}
if [[ -z $exe ]]; then
  if ! { cmake --preset release > /dev/null && cmake --build --preset release --target cpbench; }; then
    echo "regression: the build failed" >&2
    exit 2
  fi
  exe=build/release/cpbench
fi
[[ -x $exe ]] || { echo "regression: CPBENCH=$exe is not an executable" >&2; exit 2; }
stamp=$(date -u +%Y%m%dT%H%M%SZ)
run_dir=$out/regression-$stamp
sweep() {  # sweep RUN_DIR: runs the experiment into RUN_DIR, sets run_rc
  run_rc=0
  "$exe" run experiments/ci/regression.yaml "${run_args[@]}" --run-dir "$1" --quiet || run_rc=$?
  if ((run_rc != 0 && run_rc != 1)); then
    echo "regression: the sweep did not finish (exit $run_rc)" >&2
    exit 2
  fi
}
sweep "$run_dir"
# run_rc 1 (a point invalid, failed or wrong) goes on: compare reports such points against the
# baseline, and an update refuses to record them as the reference.
if ((update)); then
  if ((run_rc != 0)); then
    echo "regression: not updating $baseline: some point of $run_dir failed (exit $run_rc)" >&2
    exit 1
  fi
  second=$out/regression-$stamp-second
  sweep "$second"
  if ((run_rc != 0)); then
    echo "regression: not updating $baseline: some point of $second failed (exit $run_rc)" >&2
    exit 1
  fi
  mkdir -p results/baselines
  "$exe" compare --write-baseline "$baseline" "$run_dir" "$second"
  echo "regression: wrote $baseline from $run_dir and $second"
  exit 0
fi
"$exe" compare "$baseline" "$run_dir" ${compare_args[@]+"${compare_args[@]}"}
