#!/usr/bin/env bash
# On a GPU machine: each version of the Hopper attention kernel (kernels/README.md) timed in one
# run, next to cuDNN, by re-running benchmarks/attention_vs_sdpa.py with the kernel's
# measurement switches (CPBENCH_SM90_VARIANT, CPBENCH_SM90_BLOCK_N, CPBENCH_SM90_PERSISTENT).
# Needs the capi library built (scripts/kernel_bench.sh builds it). Writes $OUT/ablation.csv
# (every row of every run, with the version) and prints a table of TF/s per version and shape.
# Usage: scripts/kernel_ablation.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-${BUILD_DIR:-/tmp/cpbench-kbench}}
OUT=${OUT:-$PWD/out-kbench}
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# version: variant block_n stages grid (grid: 0 one block per tile, 1 persistent, auto: the
# default)
versions=(
  "v1-serial serial 128 2 0"
  "v2-overlap overlap 128 2 0"
  "v3-pingpong pingpong 128 2 0"
  "v4-tile176 pingpong 176 2 0"
  "v5-persistent pingpong 176 2 1"
  "v6-3stages pingpong 128 3 1"
  "final pingpong 176 2 auto"
)
for v in "${versions[@]}"; do
  read -r name variant block_n stages grid <<< "$v"
  echo "== $name (variant $variant, full-mask key tile $block_n, $stages stages, grid $grid)"
  env -u CPBENCH_SM90_PERSISTENT -u CPBENCH_ATTENTION_KERNEL \
    CPBENCH_SM90_VARIANT="$variant" CPBENCH_SM90_BLOCK_N="$block_n" \
    CPBENCH_SM90_STAGES="$stages" \
    ${grid:+$([[ $grid == auto ]] || echo CPBENCH_SM90_PERSISTENT="$grid")} \
    python3 benchmarks/attention_vs_sdpa.py --lib "$B/benchmarks/libcpbench_attention_capi.so" \
    --out "$work/$name" --sdpa cudnn --head-dims 128 --seqs 2048,4096,8192,16384,32768 --ring-sq 4096 \
    --ring-factors 2 --no-kernel-names > "$work/$name.log" 2>&1 || echo "$name: benchmark failed"
  tail -1 "$work/$name.log"
done
python3 - "$work" "$OUT/ablation.csv" "${versions[@]}" <<'PY'
import csv, sys
work, out, versions = sys.argv[1], sys.argv[2], [v.split()[0] for v in sys.argv[3:]]
rows = []
for name in versions:
    try:
        with open(f"{work}/{name}/sdpa_side_by_side.csv") as f:
            for r in csv.DictReader(f):
                rows.append({"version": name, **r})
    except FileNotFoundError:
        print(f"{name}: no results")
if not rows:
    sys.exit(1)
with open(out, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows)
shapes = []
for r in rows:
    key = (r["mask"], int(r["sq"]), int(r["sk"]))
    if key not in shapes:
        shapes.append(key)
def cell(version, impl, key):
    for r in rows:
        if r["version"] == version and r["impl"] == impl and (r["mask"], int(r["sq"]), int(r["sk"])) == key:
            return f'{float(r["tflops"]):.0f}' if r["status"] == "ok" and r["tflops"] else r["status"]
    return "-"
print("| version | " + " | ".join(f"{m} {sq // 1024}K/{sk // 1024}K" for m, sq, sk in shapes) + " |")
print("|---|" + "---|" * len(shapes))
for v in versions:
    print(f"| {v} | " + " | ".join(cell(v, "ours", k) for k in shapes) + " |")
print("| cuDNN (final run) | " + " | ".join(cell(versions[-1], "sdpa-cudnn", k) for k in shapes) + " |")
PY
