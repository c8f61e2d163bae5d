#!/usr/bin/env bash
# On a machine with 1-4 GPUs: measure it into a hardware profile for the sim backend and check the
# sim on that profile against committed measured runs (issue 8, item 1). Builds (Release) in a
# folder under /tmp, runs the calibrate GPU test, runs `cpbench calibrate` with the default grid
# (writing $OUT/profile.yaml and the raw samples $OUT/profile.json), then `python3 -m
# analysis.sim_validate` on the new profile and, for comparison, on the committed
# results/profiles/h200x4-calibrated.yaml (the sim's default) against three measured runs: Step
# E and the quickstart on 4x H200 (cp 1-4) and the host-overhead sweep on 2x H200 (cp 2). Last,
# a short table: points, median and max |predicted - measured| / measured per run and profile.
#
# Usage: scripts/calibrate.sh [--quick] [--skip-tests] [--measure-quickstart] [--skip-validation]
# --skip-validation: stop after calibrate (sim_validate needs no GPU: run it elsewhere).
# --measure-quickstart: first run experiments/quickstart.yaml on this machine with the same build
# (its run folder under $OUT/quickstart/runs, traces included), and validate the sim against it
# too (label quickstart-here): the quickstart as the current kernels run it.
# Environment: OUT (default ./out-calibrate), BUILD_DIR (default /tmp/cpbench-calibrate),
# CPBENCH_GIT_SHA (recorded; from git when unset), PYTHON (default python3), GPUS (ranks; default
# every visible GPU), NAME (profile name; default from the GPUs, e.g. h200x2), CALIBRATE_TIMEOUT_S
# (default 420: calibrate is cut off there).
# Files under $OUT: calibrate.log (this console), build.log, gpu_tests.log, profile.yaml,
# profile.json, profile.series.jsonl, validation/<run>-<profile>/{summary.json,table.md,validation.csv}.
# Exit status: nonzero when the build or calibrate failed; validation bounds missed are reported
# in the table, not fatal.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/device.sh
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
quick=()
skip_tests=0
measure_quickstart=0
skip_validation=0
while (($#)); do
  case $1 in
    --quick) quick=(--quick) ;;
    --skip-tests) skip_tests=1 ;;
    --measure-quickstart) measure_quickstart=1 ;;
    --skip-validation) skip_validation=1 ;;
    *) echo "calibrate: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
device_knobs calibrate GPUS CALIBRATE_TIMEOUT_S
device_setup "$PWD/out-calibrate" /tmp/cpbench-calibrate
exec > >(tee -a "$OUT/calibrate.log") 2>&1

stamp "git $CPBENCH_GIT_SHA, build dir $B"
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv > "$OUT/build.log" 2>&1
device_build calibrate "$OUT/build.log" cpbench cpbench_gpu_tests
stamp "built"

if ((!skip_tests)); then
  timeout 120 "$B/tests/cpbench_gpu_tests" --gtest_filter='CalibrateGpu*' > "$OUT/gpu_tests.log" 2>&1
  stamp "calibrate GPU test rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/gpu_tests.log" | tr '\n' ' ')"
fi

if ((measure_quickstart)); then
  "$B/cpbench" run experiments/quickstart.yaml --out "$OUT/quickstart/runs" > "$OUT/quickstart.log" 2>&1
  stamp "quickstart rc=$? $(tail -1 "$OUT/quickstart.log")"
fi

args=(calibrate --out "$OUT/profile.yaml" "${quick[@]}")
[[ -n ${GPUS:-} ]] && args+=(--gpus "$GPUS")
[[ -n ${NAME:-} ]] && args+=(--name "$NAME")
timeout "${CALIBRATE_TIMEOUT_S:-420}" "$B/cpbench" "${args[@]}"
rc=$?
stamp "calibrate rc=$rc"
if ((rc != 0)) || [[ ! -f $OUT/profile.yaml ]]; then
  echo "calibrate: no profile was written"
  exit 1
fi

if ((skip_validation)); then
  stamp "done (validation skipped)"
  exit 0
fi

# label=run folder
runs=(stepE-h200x4=results/gpu/2026-11-22-h200x4-stepE-telemetry/runs/compare-h200-20261122T070341Z
      quickstart-h200x4=results/gpu/2026-11-22-h200x4-quickstart-portable-kernel/runs/quickstart-20261122T122735Z
      host-h200x2=results/gpu/2026-11-22-h200x2-host-memory/eager/host-overhead-20261122T045453Z)
if ((measure_quickstart)); then
  for d in "$OUT"/quickstart/runs/*/; do runs+=("quickstart-here=${d%/}"); done
fi
profiles=("$OUT/profile.yaml" results/profiles/h200x4-calibrated.yaml)
mkdir -p "$OUT/validation"
for entry in "${runs[@]}"; do
  label=${entry%%=*}
  run=${entry#*=}
  for prof in "${profiles[@]}"; do
    dir="$OUT/validation/$label-$(basename "$prof" .yaml)"
    "$PY" -m analysis.sim_validate --cpbench "$B/cpbench" --run "$run" --profile "$prof" \
      --out "$dir" > "$dir.log" 2>&1
    stamp "sim_validate $run on $prof: rc=$? $(tail -1 "$dir.log")"
    rm -rf "$dir/sim"  # the sim's own run folder: reproducible, and large
  done
done

echo
echo "## sim vs measured (error = (predicted - measured) / measured, median times)"
echo
"$PY" - "$OUT/validation" "$OUT/profile.yaml" <<'EOF'
import json, sys
from pathlib import Path
runs = {"stepE-h200x4": "Step E sweep, 4x H200 (cp 1, 2, 4)",
        "quickstart-h200x4": "quickstart, 4x H200 (cp 1-4)",
        "host-h200x2": "host-overhead sweep, 2x H200 (cp 2)",
        "quickstart-here": "quickstart, measured here before calibrating"}
print("| measured run | profile | points | median abs err | max abs err | bounds 5% / 15% |")
print("|---|---|---|---|---|---|")
for d in sorted(p for p in Path(sys.argv[1]).iterdir() if p.is_dir()):
    f = d / "summary.json"
    label = next((v for k, v in runs.items() if d.name.startswith(k + "-")), d.name)
    if not f.exists():
        print(f"| {label} | (failed: see {d.name}.log) | | | | |")
        continue
    s = json.loads(f.read_text())
    prof = "calibrated here" if s["profile"] == sys.argv[2] else s["profile"]
    pct = lambda x: "-" if x is None else f"{x:.1%}"
    print(f"| {label} | {prof} | {s['points']} | {pct(s['median_abs_error'])} | "
          f"{pct(s['max_abs_error'])} | {'met' if s['met'] else 'not met'} |")
EOF
grep -E "^(peak_tflops|bandwidth_gbps|launch_us|share_factor|comm_share_factor):" "$OUT/profile.yaml"
stamp "done"
