"""Derives a sim hardware profile (harness/core/hardware_profile.hpp) from committed measurements.

    python3 -m analysis.sim_profile --cpbench build/release/cpbench \\
        --run results/gpu/2026-11-22-h200x4-compare/cpbench \\
        --nccl results/gpu/2026-11-22-h200x4-compare/nccl_bench.json \\
        --name h200x4 --out results/profiles/h200x4.yaml

Where each number comes from (nothing is typed in):

- attention points, merge and copy throughput, launch_us and share_factor: the measured run's
  own traces (one traced iteration per point, CUDA events per op), i.e. the kernels of the
  commit that ran, on exactly the blocks the strategies issue. A trace does not say a block's
  shape, so the same experiment is run on the sim backend (any profile: shapes and op order do
  not depend on costs) and the i-th slice of each rank's stream in the measured trace is paired
  with the i-th slice of the predicted one, which carries sq, sk, mask, bytes and
  comm_in_flight. Attention TF/s per (mask, head_dim, gqa, sq, sk) is the median over slices;
  share_factor is the median, over shapes measured both ways, of the rate alone over the rate
  with a transfer possibly beside it (comm_in_flight), and shapes seen only with one have their
  alone-rate inferred through it. launch_us is the median gap between consecutive ops of a
  stream where the prediction (with no launch cost) has the second start right at the first's
  end (no event or peer held it back).
- links.nvlink: the NCCL microbenchmark (cpbench_bench_nccl, nccl-tests sizes), converted to
  bytes a rank sends to its peers: sendrecv its size, all-to-all and all-gather size·(n-1)/n.
- peak_tflops (auto's C): total attention FLOPs over total attention time of the paired slices;
  bandwidth_gbps (auto's BW): the sendrecv curve's bandwidth at its largest size.

Calibrating on the run that is then validated against makes the kernel rates in-sample: the
validation (analysis.sim_validate) tests the composition (overlap, transfers, merges, order),
and says so; `--exclude EXPR` leaves points out (pandas query on the record's config) for a
held-out check.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent


def causal_pairs(sq: int, sk: int, diag: int) -> int:
    """Visible pairs of a causal block: key j visible to query i iff j <= i + diag."""
    first = max(0, -diag)  # first row that sees a key
    all_from = max(first, sk - diag - 1)  # first row that sees all sk keys
    partial_end = min(sq, all_from)
    total = 0
    if partial_end > first:  # rows [first, partial_end) see i + diag + 1 keys
        n = partial_end - first
        total += n * (first + diag + 1) + n * (n - 1) // 2
    return total + max(0, sq - all_from) * sk


def block_heads(flops: float, batch: int, head_dim: int, sq: int, sk: int, mask: str,
                diag: int) -> int:
    """Query heads of a block, from its FLOPs (4 B H d per visible pair)."""
    pairs = sq * sk if mask == "full" else causal_pairs(sq, sk, diag)
    return max(1, round(flops / (4.0 * batch * head_dim * pairs))) if pairs else 0


def slices_by_stream(trace: dict) -> dict[tuple[int, int], list[dict]]:
    out: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for e in trace.get("traceEvents", []):
        if e.get("ph") == "X":
            out[(e["pid"], e["tid"])].append(e)
    for v in out.values():
        v.sort(key=lambda e: e["ts"])
    return out


def pair_trace(measured: dict, predicted: dict) -> list[tuple[dict, dict]] | None:
    """(measured, predicted) slices of the same op, or None when the op lists differ."""
    m, p = slices_by_stream(measured), slices_by_stream(predicted)
    if set(m) != set(p):
        return None
    pairs = []
    for key in sorted(m):
        if len(m[key]) != len(p[key]):
            return None
        for a, b in zip(m[key], p[key]):
            if a["name"] != b["name"]:
                return None
            pairs.append((a, b))
    return pairs


def attention_samples(pairs, workload: dict) -> list[dict]:
    """One sample per attention slice: shape from the prediction, TF/s from the measurement."""
    out = []
    g_work = workload["heads"] / workload["kv_heads"]
    for m, p in pairs:
        a = p["args"]
        if "sq" not in a or m["dur"] <= 0 or a.get("flops", 0) <= 0:
            continue
        sq, sk, diag = a["sq"], a["sk"], a.get("diag", 0)
        mask = a["mask"]
        if mask == "causal" and causal_pairs(sq, sk, diag) == sq * sk:
            mask = "full"
        heads = block_heads(a["flops"], workload["batch"], workload["head_dim"], sq, sk,
                            a["mask"], diag)
        out.append({"mask": mask, "head_dim": workload["head_dim"],
                    # A replicated KV head (ulysses with Hkv < N) leaves a block fewer query
                    # heads per KV head than the workload.
                    "gqa": min(g_work, heads), "heads": workload["batch"] * heads,
                    "sq": sq, "sk": sk,
                    "shared": bool(a.get("comm_in_flight", False)),
                    "flops": a["flops"], "seconds": m["dur"] * 1e-6})
    return out


def memory_samples(pairs) -> dict[str, list[tuple[int, float]]]:
    """(bytes, GB/s) of merges and of copies/resets."""
    out: dict[str, list[tuple[int, float]]] = {"merge": [], "copy": []}
    for m, p in pairs:
        b = p["args"].get("mem_bytes", 0)
        name = p["name"].split()[-1]
        if b <= 0 or m["dur"] <= 0 or name not in ("merge", "copy", "reset"):
            continue
        out["merge" if name == "merge" else "copy"].append((b, b / (m["dur"] * 1e-6) / 1e9))
    return out


def launch_gaps(pairs_by_stream) -> list[float]:
    """Measured gaps (us) between consecutive ops the prediction starts back to back."""
    gaps = []
    for seq in pairs_by_stream:
        for (m0, p0), (m1, p1) in zip(seq, seq[1:]):
            if abs(p1["ts"] - (p0["ts"] + p0["dur"])) < 1e-6:
                gaps.append(max(0.0, m1["ts"] - (m0["ts"] + m0["dur"])))
    return gaps


def attention_points(samples: list[dict]) -> tuple[list[dict], float]:
    """Points (median TF/s per shape, alone) and the share factor."""
    groups: dict[tuple, dict[bool, list[float]]] = defaultdict(lambda: {True: [], False: []})
    for s in samples:
        key = (s["mask"], s["head_dim"], s["gqa"], s["heads"], s["sq"], s["sk"])
        groups[key][s["shared"]].append(s["flops"] / s["seconds"] / 1e12)
    ratios = [median(v[False]) / median(v[True]) for v in groups.values() if v[False] and v[True]]
    share = max(1.0, median(ratios)) if ratios else 1.0
    points = []
    for key, v in sorted(groups.items()):
        rate = median(v[False]) if v[False] else median(v[True]) * share
        mask, d, g, h, sq, sk = key
        points.append({"mask": mask, "head_dim": d, "gqa": g, "heads": h, "sq": sq, "sk": sk,
                       "tflops": rate})
    return points, share


def throughput_curve(samples: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    by: dict[int, list[float]] = defaultdict(list)
    for b, g in samples:
        by[b].append(g)
    xs = sorted(by)
    return xs, [median(by[x]) for x in xs]


def nccl_curves(bench: dict) -> tuple[int, dict[str, tuple[list[int], list[float]]]]:
    """Per collective: bytes a rank sends to its peers -> us, from cpbench_bench_nccl JSON."""
    names = {"sendrecv": "sendrecv", "alltoall": "all_to_all", "all_gather": "all_gather"}
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    ranks = 0
    for b in bench["benchmarks"]:
        if b.get("error_occurred"):
            continue
        coll = b["name"].split("/")[1]
        if coll not in names:
            continue
        n = int(b["gpus"])
        ranks = ranks or n
        if n != ranks:
            raise SystemExit(f"nccl bench mixes {ranks} and {n} ranks: give one machine's file")
        size = b["bytes"]
        sent = size if coll == "sendrecv" else size * (n - 1) / n
        scale = {"us": 1.0, "ms": 1e3, "ns": 1e-3, "s": 1e6}[b["time_unit"]]
        curves[names[coll]].append((int(round(sent)), b["real_time"] * scale))
    out = {}
    for k, pts in curves.items():
        pts.sort()
        out[k] = ([x for x, _ in pts], [y for _, y in pts])
    return ranks, out


def sig(x: float, digits: int = 5) -> str:
    return f"{x:.{digits}g}"


def flow_list(values, fmt=sig) -> str:
    return "[" + ", ".join(fmt(v) if isinstance(v, float) else str(v) for v in values) + "]"


def render_yaml(name: str, description: str, machine: str, source: str, peak: float, bw: float,
                launch_us: float, share: float, points: list[dict], ranks: int,
                links: dict, copy: tuple, merge: tuple) -> str:
    lines = [
        "# Generated by analysis/sim_profile.py from the files named in `source` (do not edit:",
        "# rerun the script). Schema: harness/core/hardware_profile.hpp.",
        f"name: {name}",
        f"description: {json.dumps(description)}",
        f"machine: {json.dumps(machine)}",
        f"source: {json.dumps(source)}",
        f"peak_tflops: {sig(peak)}",
        f"bandwidth_gbps: {sig(bw)}",
        f"launch_us: {sig(launch_us)}",
        f"share_factor: {sig(share)}",
        "attention:",
    ]
    for p in points:
        lines.append(f"  - {{mask: {p['mask']}, head_dim: {p['head_dim']}, gqa: {sig(p['gqa'])}, "
                     f"heads: {p['heads']}, sq: {p['sq']}, sk: {p['sk']}, tflops: {sig(p['tflops'])}}}")
    lines += ["links:", "  nvlink:", f"    ranks: {ranks}"]
    for k in ("sendrecv", "all_to_all", "all_gather"):
        if k in links:
            xs, ys = links[k]
            lines.append(f"    {k}: {{bytes: {flow_list(xs)}, us: {flow_list(ys)}}}")
    for key, (xs, ys) in (("copy", copy), ("merge", merge)):
        if xs:
            lines.append(f"{key}: {{bytes: {flow_list(xs)}, gbps: {flow_list(ys)}}}")
    return "\n".join(lines) + "\n"


def run_sim(cpbench: str, config_text: str, workdir: Path, bootstrap: str) -> Path:
    cfg = workdir / "experiment.yaml"
    cfg.write_text(config_text)
    out = workdir / "sim"
    subprocess.run([cpbench, "run", str(cfg), "--backend", "sim", "--hardware-profile",
                    bootstrap, "--run-dir", str(out), "--quiet"], check=True)
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def calibrate(run_dir: Path, sim_dir: Path, exclude=None) -> dict:
    """Samples from every point of run_dir whose trace pairs with sim_dir's."""
    measured = {r["point_id"]: r for r in read_jsonl(run_dir / "results.jsonl")
                if r.get("status") == "ok" and r.get("trace")}
    predicted = {r["point_id"]: r for r in read_jsonl(sim_dir / "results.jsonl")
                 if r.get("status") == "ok" and r.get("trace")}
    att, mem, streams, used, skipped = [], {"merge": [], "copy": []}, [], [], []
    for pid, rec in measured.items():
        if pid not in predicted or (exclude is not None and exclude(rec)):
            continue
        mt = json.loads((run_dir / rec["trace"]).read_text())
        pt = json.loads((sim_dir / predicted[pid]["trace"]).read_text())
        pairs = pair_trace(mt, pt)
        if pairs is None:
            skipped.append(rec["index"])
            continue
        used.append(rec["index"])
        att += attention_samples(pairs, rec["workload"])
        ms = memory_samples(pairs)
        for k in mem:
            mem[k] += ms[k]
        m_by, p_by = slices_by_stream(mt), slices_by_stream(pt)
        streams += [list(zip(m_by[k], p_by[k])) for k in sorted(m_by)]
    return {"attention": att, "memory": mem, "gaps": launch_gaps(streams), "used": used,
            "skipped": skipped}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpbench", required=True, help="the cpbench binary (runs the sim)")
    ap.add_argument("--run", required=True, type=Path, help="measured run folder (with traces)")
    ap.add_argument("--nccl", required=True, type=Path, help="cpbench_bench_nccl JSON")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--bootstrap", default=str(REPO / "tests/data/profiles/yang2024_h100_rdma.yaml"),
                    help="any profile: the sim run only supplies shapes and op order")
    args = ap.parse_args(argv)

    manifest = json.loads((args.run / "manifest.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        sim_dir = run_sim(args.cpbench, manifest["config_text"], Path(tmp), args.bootstrap)
        cal = calibrate(args.run, sim_dir)
    if not cal["attention"]:
        print("error: no attention slice paired: is --run a traced run of the same strategies?",
              file=sys.stderr)
        return 2
    points, share = attention_points(cal["attention"])
    flops = sum(s["flops"] for s in cal["attention"])
    secs = sum(s["seconds"] for s in cal["attention"])
    ranks, links = nccl_curves(json.loads(args.nccl.read_text()))
    xs, ys = links["sendrecv"]
    bw = xs[-1] / (ys[-1] * 1e-6) / 1e9
    machine = manifest.get("machine", {})
    gpus = machine.get("gpus", [])
    gpu_names = sorted({g.get("name", "?") for g in gpus})
    machine_text = f"{len(gpus)}x {', '.join(gpu_names)}" if gpus else "unknown"
    sha = manifest.get("provenance", {}).get("environment", {}).get("CPBENCH_GIT_SHA", "")
    rel = lambda p: str(Path(p).resolve().relative_to(REPO)) if Path(p).resolve().is_relative_to(REPO) else str(p)
    source = (f"attention, merge, copy, launch_us, share_factor: the traces of {rel(args.run)} "
              f"({len(cal['used'])} points paired{', commit ' + sha if sha else ''}); links: "
              f"{rel(args.nccl)}")
    text = render_yaml(
        args.name, f"{machine_text}, calibrated by analysis/sim_profile.py", machine_text, source,
        flops / secs / 1e12, bw, median(cal["gaps"]) if cal["gaps"] else 0.0, share, points,
        ranks, links, throughput_curve(cal["memory"]["copy"]),
        throughput_curve(cal["memory"]["merge"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"{args.out}: {len(points)} attention points, share_factor {share:.3f}, launch "
          f"{median(cal['gaps']) if cal['gaps'] else 0:.2f} us; points paired {len(cal['used'])}, "
          f"not paired {cal['skipped']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
