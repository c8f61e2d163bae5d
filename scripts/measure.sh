#!/usr/bin/env bash
# On a GPU machine: build cpbench (Release) and run sweep files on the GPUs while nvidia-smi
# samples every GPU's SM clock, power, temperature and clock-event reasons, so that a measured
# run carries the clock state it ran in (the sim's validation needs it: results/sim/). Each
# console line of the runs gets a Unix timestamp, so points can be placed on the telemetry.
#
# Usage: scripts/measure.sh CONFIG.yaml [CONFIG.yaml ...]
# Environment: OUT (default ./out-measure), BUILD_DIR (default /tmp/cpbench-measure),
# CPBENCH_GIT_SHA (recorded; from git when unset), TELEMETRY_MS (default 100), RUN_ARGS (extra
# arguments of `cpbench run`, e.g. "--cuda-graph").
# Files under $OUT: measure.log (this console, timestamped), build.log, telemetry.csv (one row
# per GPU per sample), runs.tar.gz (the run folders: records, manifests, traces).
# Exit status: nonzero when the build or a run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/device.sh
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
if (($# == 0)); then
  echo "measure: give one or more sweep files (see the header of $0)" >&2
  exit 2
fi
for f in "$@"; do
  if [[ ! -f $f ]]; then
    echo "measure: $f: no such sweep file" >&2
    exit 2
  fi
done
device_knobs measure TELEMETRY_MS
ms=${TELEMETRY_MS:-100}
device_setup "$PWD/out-measure" /tmp/cpbench-measure
exec > >(device_timestamps | tee -a "$OUT/measure.log") 2>&1
echo "measure: git $CPBENCH_GIT_SHA, build dir $B"
: > "$OUT/build.log"
device_build measure "$OUT/build.log" cpbench
echo "measure: built"

device_telemetry measure "$OUT/telemetry.csv" "$ms"

rc=0
read -r -a extra <<< "${RUN_ARGS:-}"
for f in "$@"; do
  echo "measure: run $f"
  "$B/cpbench" run "$f" --out "$OUT/runs" "${extra[@]}"
  r=$?
  echo "measure: run $f rc=$r"
  ((r != 0)) && rc=$r
done
device_telemetry_stop
if tar -C "$OUT" -czf "$OUT/runs.tar.gz" runs; then
  rm -rf "$OUT/runs"
else
  echo "measure: could not pack $OUT/runs (left as it is)"
  rc=1
fi
echo "measure: done rc=$rc"
exit $rc
