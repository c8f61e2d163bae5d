#!/usr/bin/env bash
# On a GPU machine: Nsight Compute counters of our attention kernel next to cuDNN's on the same
# problem (benchmarks/profile_attention.py), d128 full and causal at 16K: pipe utilisation and
# the sampled warp stall reasons. Only metrics this ncu knows are asked for. Clocks are left
# alone (--clock-control none). Needs the capi library (scripts/kernel_bench.sh builds it).
# Usage: scripts/kernel_profile.sh [BUILD_DIR]; writes $OUT/ncu_profile.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-${BUILD_DIR:-/tmp/cpbench-kbench}}
OUT=${OUT:-$PWD/out-kbench}
mkdir -p "$OUT"
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null |
  sort -V | tail -1 || true)
[[ -n $ncu ]] || { echo "kernel_profile: ncu not found"; exit 1; }
known=$(mktemp)
trap 'rm -f "$known"' EXIT
"$ncu" --query-metrics > "$known" 2>&1 || true
wanted=(
  gpu__time_duration.sum
  sm__throughput.avg.pct_of_peak_sustained_elapsed
  sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_elapsed
  sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_elapsed
  sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_elapsed
  sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_elapsed
  sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_elapsed
  sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_elapsed
  l1tex__data_pipe_lsu_wavefronts_mem_shared.sum.pct_of_peak_sustained_elapsed
  dram__throughput.avg.pct_of_peak_sustained_elapsed
  smsp__inst_executed.sum
  sm__warps_active.avg.pct_of_peak_sustained_active
  launch__registers_per_thread
  launch__grid_size
)
metrics=()
for m in "${wanted[@]}"; do
  if grep -q "^${m%%.*}\b" "$known"; then metrics+=("$m"); else echo "ncu has no ${m%%.*}"; fi
done
grep -q "^smsp__pcsamp_warps_issue_stalled_wait" "$known" &&
  metrics+=("regex:smsp__pcsamp_warps_issue_stalled_.*")
list=$(IFS=,; echo "${metrics[*]}")
rc=0
: > "$OUT/ncu_profile.txt"
for shape in "full 16384" "causal 16384"; do
  read -r mask seq <<< "$shape"
  echo "== $mask S=$seq" | tee -a "$OUT/ncu_profile.txt"
  "$ncu" --profile-from-start off --clock-control none --metrics "$list" \
    python3 benchmarks/profile_attention.py --lib "$B/benchmarks/libcpbench_attention_capi.so" \
    --mask "$mask" --seq "$seq" >> "$OUT/ncu_profile.txt" 2>&1 || { echo "ncu failed ($mask)"; rc=1; }
done
grep -E "^  [a-z_0-9]+\(|==|^\s+[a-z]+__|flash_fwd|cudnn|sm90|Kernel" "$OUT/ncu_profile.txt" | head -80 || true
exit $rc
