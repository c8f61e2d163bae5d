#!/usr/bin/env python3
"""Markdown tables for kernels/README.md from committed result folders (written by
scripts/kernel_bench.sh and scripts/kernel_ablation.sh), so that the numbers there are copied by
a program, not by hand:  python3 benchmarks/kernel_tables.py results/gpu/<run>/ [...]"""
import csv
import json
import sys
from pathlib import Path


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def label(r):
    mask = r["mask"]
    if mask == "causal" and r["sq"] != r["sk"]:
        mask = "causal, offset"
    return f'd{r["head_dim"]} {mask} {int(r["sq"]) // 1024}K×{int(r["sk"]) // 1024}K'


def side_by_side(run):
    data = rows(run / "sdpa_side_by_side.csv")
    man = json.loads((run / "manifest.json").read_text())
    ceil = man.get("ceilings", {})
    print(f'**{man["gpu"]["name"]}** (commit {man["git_sha"]}, {man["utc"]}; measured in the same '
          f'run: bf16 matmul {ceil.get("matmul_tflops", 0):.0f} TF/s, copy '
          f'{ceil.get("copy_gbps", ceil.get("copy_gb_per_s", 0)):.0f} GB/s; source `{run}/sdpa_side_by_side.csv`)\n')
    print("| shape | floor ms | ours ms | ours TF/s | FA2 TF/s | cuDNN TF/s | ours÷cuDNN | ours÷FA2 |")
    print("|---|---|---|---|---|---|---|---|")
    by = {}
    for r in data:
        by.setdefault(label(r), {})[r["impl"]] = r
    for shape, impls in by.items():
        o, f, c = impls.get("ours"), impls.get("sdpa-flash"), impls.get("sdpa-cudnn")
        num = lambda r, key: float(r[key]) if r and r["status"] == "ok" and r[key] else None
        cell = lambda r, x: f"{x:.0f}" if x else (r["status"] if r else "—")
        ratio = lambda a, b: f"{a / b:.2f}" if a and b else "—"
        to, tf_, tc = num(o, "tflops"), num(f, "tflops"), num(c, "tflops")
        floor = f'{float(o["floor_ms"]):.3f}' if o and o["floor_ms"] else "—"
        ms = num(o, "ms_median")
        print(f'| {shape} | {floor} | {f"{ms:.3f}" if ms else "—"} | {cell(o, to)} | '
              f'{cell(f, tf_)} | {cell(c, tc)} | {ratio(to, tc)} | {ratio(to, tf_)} |')
    print()


def ablation(run):
    path = run / "ablation.csv"
    if not path.exists():
        return
    data = rows(path)
    versions, shapes = [], []
    for r in data:
        if r["version"] not in versions:
            versions.append(r["version"])
        if label(r) not in shapes:
            shapes.append(label(r))
    cell = {(r["version"], r["impl"], label(r)): r for r in data}
    print(f"TF/s of each version in one run (source `{path}`; d128, 32/8 heads):\n")
    print("| version | " + " | ".join(shapes) + " |")
    print("|---|" + "---|" * len(shapes))
    for v in versions + ["cuDNN"]:
        impl, ver = ("sdpa-cudnn", versions[-1]) if v == "cuDNN" else ("ours", v)
        vals = []
        for s in shapes:
            r = cell.get((ver, impl, s))
            ok = r and r["status"] == "ok" and r["tflops"]
            vals.append(f'{float(r["tflops"]):.0f}' if ok else (r["status"] if r else "—"))
        print(f"| {v} | " + " | ".join(vals) + " |")
    print()


def main(argv):
    for arg in argv:
        run = Path(arg)
        side_by_side(run)
        ablation(run)


if __name__ == "__main__":
    main(sys.argv[1:])
