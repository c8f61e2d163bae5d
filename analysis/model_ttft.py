"""Llama3-405B time to first token on the sim's multi-node profiles, beside Yang et al. 2024.

    python3 -m analysis.model_ttft --cpbench build/release/cpbench \\
        --out results/sim/extrapolation

The sim predicts one attention layer (experiments/paper/yang2024_*.yaml, per GPU the TP8 shape
`llama3-405b-tp8`: 16 query heads, 1 KV head, d 128) for CP over 1-16 hosts on each profile of
results/profiles/yang2024-*.yaml. The model around it, per layer and per GPU (TP8 inside a host,
each CP rank holding T/N of the T new tokens):

    layer = attention (sim) + GEMMs + 2 TP all-reduces
    GEMMs = (T/N) x 2 x (the layer's weights) / 8 / matmul rate
    all-reduce = the profile's `extra.model.tp_allreduce` curve at (T/N) x D x 2 bytes
    TTFT = 126 layers x layer

with the layer's weights Wq, Wk, Wv, Wo and the SwiGLU FFN (D 16384, 8 KV heads x 128, FFN
53248), the matmul rate and the all-reduce curve from the profile (measured, see
analysis/sim_cluster_profile.py). Left out: embeddings and the LM head (one token), norms,
RoPE and other element-wise work, and any overlap of the all-reduce with the GEMMs.

Writes, under --out: ttft.csv (every context x CP x strategy x profile), partial_prefill.csv,
tables.md (the paper's tables beside ours, with errors), summary.json, two plots, and the sim
runs' manifests and records (runs/<experiment>-<profile>/, traces left out).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from analysis.sim_cluster_profile import PROFILES, read_extra

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "analysis" / "reference"
EXPERIMENTS = {
    "full": REPO / "experiments" / "paper" / "yang2024_full_prefill.yaml",
    "partial": REPO / "experiments" / "paper" / "yang2024_partial_prefill.yaml",
}
PRIMARY = "yang2024-h200-rdma"

# Llama3 405B (Yang et al. 2024; Llama 3 paper Table 3).
LLAMA3_405B = {"layers": 126, "dim": 16384, "heads": 128, "kv_heads": 8, "head_dim": 128,
               "ffn": 53248, "tp": 8, "bytes_per_element": 2}


def layer_weights(m: dict = LLAMA3_405B) -> int:
    """Weights of one transformer layer's matrices: Wq, Wk, Wv, Wo and the FFN's three."""
    d, kv = m["dim"], m["kv_heads"] * m["head_dim"]
    return d * m["heads"] * m["head_dim"] * 2 + 2 * d * kv + 3 * d * m["ffn"]


def gemm_seconds(tokens: float, matmul_tflops: float, m: dict = LLAMA3_405B) -> float:
    """One GPU's share (1/TP) of the layer's GEMMs for `tokens` tokens."""
    return tokens * 2 * layer_weights(m) / m["tp"] / (matmul_tflops * 1e12)


def interpolate_time(xs: list[float], ys: list[float], x: float) -> float:
    """The cost model's time curve (harness/backends/sim/cost_model.cpp): piecewise linear, the
    first point's value below it, the last segment's slope above it."""
    if x <= xs[0]:
        return ys[0]
    for i in range(1, len(xs)):
        if x <= xs[i] or i == len(xs) - 1:
            a, b = i - 1, i
            return ys[a] + (ys[b] - ys[a]) * (x - xs[a]) / (xs[b] - xs[a])
    return ys[0] * x / xs[0]


def allreduce_seconds(tokens: float, curve: dict, m: dict = LLAMA3_405B) -> float:
    if tokens <= 0:
        return 0.0
    size = tokens * m["dim"] * m["bytes_per_element"]
    return interpolate_time(curve["bytes"], curve["us"], size) * 1e-6


def layer_parts(attention_s: float, new_tokens: int, cp: int, model: dict,
                m: dict = LLAMA3_405B) -> dict:
    """One layer's seconds on one GPU, by part."""
    tokens = new_tokens / cp
    return {"attention": attention_s,
            "gemm": gemm_seconds(tokens, model["matmul_tflops"], m),
            "allreduce": 2 * allreduce_seconds(tokens, model["tp_allreduce"], m)}


def ttft_seconds(parts: dict, m: dict = LLAMA3_405B) -> float:
    return m["layers"] * sum(parts.values())


def crossover(miss_rates: list[float], pass_kv: list[float], pass_q: list[float]):
    """The miss rate where pass-KV starts to win (pass-Q faster below it), interpolated linearly
    between the last row pass-Q wins and the next; None when one side wins every row (then
    `below`/`above` says which)."""
    rows = sorted(zip(miss_rates, pass_kv, pass_q))
    d = [(m, kv - q) for m, kv, q in rows]
    for (m0, d0), (m1, d1) in zip(d, d[1:]):
        if d0 > 0 >= d1:
            return m0 + (m1 - m0) * d0 / (d0 - d1)
    return None


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]


def attention_times(records: list[dict]) -> dict:
    """(strategy, cp, new_tokens, cached_tokens) -> (median seconds, auto's choice)."""
    out = {}
    for r in records:
        if r.get("status") != "ok":
            continue
        c = r["config"]
        choice = (r.get("strategy_detail") or {}).get("choice", "")
        out[(c["strategy"], c["cp"], c["new_tokens"], c["cached_tokens"])] = (
            r["time"]["median"], choice)
    return out


def run_sim(cpbench: str, experiment: Path, profile: Path, run_dir: Path) -> Path:
    subprocess.run([cpbench, "run", str(experiment), "--backend", "sim", "--hardware-profile",
                    str(profile), "--run-dir", str(run_dir), "--quiet"], check=True, cwd=REPO)
    return run_dir


def read_reference():
    with open(REFERENCE / "yang2024_ttft_prefill.csv") as f:
        ttft = [r for r in csv.DictReader(f) if r["network"] == "RDMA-400Gb"]
    with open(REFERENCE / "yang2024_partial_prefill.csv") as f:
        partial = list(csv.DictReader(f))
    return ttft, partial


def cp_of(config: str) -> int | None:
    """CP degree of a paper config ('TP8' -> 1, 'CP4+TP8' -> 4, 'TP16' -> None)."""
    if config == "TP8":
        return 1
    if config.startswith("CP") and config.endswith("+TP8"):
        return int(config[2:-4])
    return None


def build(times: dict, models: dict) -> dict:
    """Every table from the sim's attention times: times[profile][experiment] is
    attention_times(...) of that run, models[profile] its `extra.model`."""
    paper_ttft, paper_partial = read_reference()
    rows = []
    for prof, by_exp in times.items():
        for (strategy, cp, new, cached), (att, choice) in sorted(by_exp["full"].items()):
            parts = layer_parts(att, new, cp, models[prof])
            rows.append({"profile": prof, "strategy": strategy, "auto_choice": choice,
                         "cp": cp, "gpus": 8 * cp, "context": new,
                         "attention_layer_ms": att * 1e3,
                         "ttft_s": ttft_seconds(parts),
                         **{f"{k}_s": LLAMA3_405B["layers"] * v for k, v in parts.items()}})

    def ours(prof, cp, context, strategy="ring_pass_kv"):
        hit = [r for r in rows if r["profile"] == prof and r["cp"] == cp
               and r["context"] == context and r["strategy"] == (strategy if cp > 1 else
                                                                  "ring_pass_kv")]
        return hit[0] if hit else None

    paper_rows = []
    for p in paper_ttft:
        cp = cp_of(p["config"])
        if cp is None:
            continue
        entry = {"config": p["config"], "gpus": int(p["gpus"]), "context": int(p["context"]),
                 "paper_s": float(p["ttft_ms"]) / 1e3, "source": p["source"]}
        for prof in times:
            o = ours(prof, cp, int(p["context"]))
            if o is not None:
                entry[prof] = o["ttft_s"]
                # The published rows are RDMA; a TCP profile's prediction stands alone.
                entry[f"{prof}_err"] = (o["ttft_s"] / entry["paper_s"] - 1 if "tcp" not in prof
                                        else None)
                entry[f"{prof}_parts"] = {k: o[f"{k}_s"] for k in ("attention", "gemm",
                                                                    "allreduce")}
        paper_rows.append(entry)

    partial = []
    for prof, by_exp in times.items():
        for p in paper_partial:
            new, cached, cp = int(p["new_tokens"]), int(p["cached_tokens"]), int(p["cp"])
            row = {"profile": prof, "miss_rate": float(p["miss_rate"]), "new_tokens": new,
                   "paper_pass_kv_s": float(p["pass_kv_ttft_ms"]) / 1e3,
                   "paper_pass_q_s": float(p["pass_q_ttft_ms"]) / 1e3}
            for s in ("ring_pass_kv", "ring_pass_q", "auto"):
                att, choice = by_exp["partial"][(s, cp, new, cached)]
                row[f"{s}_attention_ms"] = att * 1e3
                row[f"{s}_s"] = ttft_seconds(layer_parts(att, new, cp, models[prof]))
                if s == "auto":
                    row["auto_choice"] = choice
            partial.append(row)
    cross = {}
    paper_cross = crossover([r["miss_rate"] for r in partial if r["profile"] == PRIMARY] or
                            [float(p["miss_rate"]) for p in paper_partial],
                            [float(p["pass_kv_ttft_ms"]) for p in paper_partial],
                            [float(p["pass_q_ttft_ms"]) for p in paper_partial])
    for prof in times:
        rs = [r for r in partial if r["profile"] == prof]
        cross[prof] = crossover([r["miss_rate"] for r in rs], [r["ring_pass_kv_s"] for r in rs],
                                [r["ring_pass_q_s"] for r in rs])
    return {"ttft": rows, "paper_ttft": paper_rows, "partial": partial,
            "crossover": {"paper": paper_cross, **cross}}


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def render_tables(t: dict, models: dict) -> str:
    profs = list(models)
    out = ["# Llama3-405B TTFT extrapolated on the sim, beside Yang et al. 2024", ""]
    out += ["Profiles (results/profiles/, analysis/sim_cluster_profile.py): " +
            "; ".join(f"`{p}` (matmul {models[p]['matmul_tflops']:.0f} TF/s)" for p in profs) +
            ". Attention: `ring_pass_kv` (zigzag) on the sim, as the paper uses pass-KV in full "
            "prefill; GEMMs and TP all-reduce: the model in analysis/model_ttft.py.", ""]
    out += ["## Full prefill TTFT (s), RDMA", "",
            "| config | GPUs | context | paper | " +
            " | ".join(f"{p} | err" for p in profs) + " |",
            "|---|---|---|---|" + "---|---|" * len(profs)]
    for r in t["paper_ttft"]:
        cells = " | ".join(f"{r[p]:.2f} | {pct(r[p + '_err'])}" if p in r else "| "
                           for p in profs)
        out.append(f"| {r['config']} | {r['gpus']} | {r['context'] // 1024}K | "
                   f"{r['paper_s']:.2f} | {cells} |")
    out += ["", f"Where the time goes on `{PRIMARY}` (s: 126 layers x per-GPU layer time):", "",
            "| config | context | attention | GEMMs | TP all-reduce | total | paper |",
            "|---|---|---|---|---|---|---|"]
    for r in t["paper_ttft"]:
        if PRIMARY in r:
            p = r[PRIMARY + "_parts"]
            out.append(f"| {r['config']} | {r['context'] // 1024}K | {p['attention']:.2f} | "
                       f"{p['gemm']:.2f} | {p['allreduce']:.2f} | {r[PRIMARY]:.2f} | "
                       f"{r['paper_s']:.2f} |")
    out += ["", "## Partial prefill at CP4, 128K context (Table 4): TTFT (s)", "",
            "| miss rate | paper pass-KV | paper pass-Q | " +
            " | ".join(f"{p} pass-KV | {p} pass-Q | auto" for p in profs) + " |",
            "|---|---|---|" + "---|---|---|" * len(profs)]
    by = {(r["profile"], r["miss_rate"]): r for r in t["partial"]}
    for m in sorted({r["miss_rate"] for r in t["partial"]}):
        r0 = by[(profs[0], m)]
        cells = []
        for p in profs:
            r = by[(p, m)]
            cells.append(f"{r['ring_pass_kv_s']:.3f} | {r['ring_pass_q_s']:.3f} | "
                         f"{r['auto_choice'].replace('ring_', '')}")
        out.append(f"| {m * 100:g}% | {r0['paper_pass_kv_s']:.3f} | {r0['paper_pass_q_s']:.3f} | "
                   + " | ".join(cells) + " |")
    c = t["crossover"]
    out += ["", "Crossover (the miss rate above which pass-KV wins; linear between rows): paper "
            + (f"{c['paper'] * 100:.1f}%" if c["paper"] is not None else "none") + "; " +
            "; ".join(f"{p} " + (f"{c[p] * 100:.1f}%" if c[p] is not None else
                                 "none (one side wins every row)") for p in profs) + ".", ""]
    return "\n".join(out)


def save(fig, ax, path: Path, **labels) -> Path:
    """Log-log TTFT axes with a legend, written to path."""
    import matplotlib.pyplot as plt

    ax.set(xscale="log", yscale="log", ylabel="TTFT (s)", **labels)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot(t: dict, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(6, 4))
    paper = [r for r in t["paper_ttft"] if r["context"] == 131072]
    ax.plot([r["gpus"] for r in paper], [r["paper_s"] for r in paper], "ko-", label="Yang 2024")
    for prof in sorted({r["profile"] for r in t["ttft"]}):
        rs = sorted((r for r in t["ttft"] if r["profile"] == prof and r["context"] == 131072
                     and r["strategy"] == "ring_pass_kv"), key=lambda r: r["gpus"])
        ax.plot([r["gpus"] for r in rs], [r["ttft_s"] for r in rs], "s--", label=f"sim {prof}")
    files.append(save(fig, ax, out / "ttft_128k.png", xlabel="GPUs (TP8 x CP)",
                      title="Llama3-405B, 128K full prefill"))

    fig, ax = plt.subplots(figsize=(6, 4))
    rs = sorted((r for r in t["partial"] if r["profile"] == PRIMARY), key=lambda r: r["miss_rate"])
    m = [r["miss_rate"] * 100 for r in rs]
    ax.plot(m, [r["paper_pass_kv_s"] for r in rs], "ko-", label="Yang 2024 pass-KV")
    ax.plot(m, [r["paper_pass_q_s"] for r in rs], "kx--", label="Yang 2024 pass-Q")
    ax.plot(m, [r["ring_pass_kv_s"] for r in rs], "bo-", label=f"sim pass-KV ({PRIMARY})")
    ax.plot(m, [r["ring_pass_q_s"] for r in rs], "rx--", label=f"sim pass-Q ({PRIMARY})")
    files.append(save(fig, ax, out / "partial_prefill_cp4.png", xlabel="miss rate (%)",
                      title="CP4, 128K context, partial prefill"))
    return files


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpbench", required=True, help="the cpbench binary (runs the sim)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "sim" / "extrapolation")
    ap.add_argument("--profiles", nargs="*", default=list(PROFILES))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    times, models = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for prof in args.profiles:
            path = REPO / "results" / "profiles" / f"{prof}.yaml"
            models[prof] = read_extra(path)["model"]
            times[prof] = {}
            for exp, cfg in EXPERIMENTS.items():
                run = run_sim(args.cpbench, cfg, path.relative_to(REPO), Path(tmp) / f"{exp}-{prof}")
                times[prof][exp] = attention_times(read_jsonl(run / "results.jsonl"))
                keep = args.out / "runs" / f"{cfg.stem}-{prof}"
                keep.mkdir(parents=True, exist_ok=True)
                for name in ("manifest.json", "results.jsonl"):
                    shutil.copy(run / name, keep / name)
    t = build(times, models)
    write_csv(args.out / "ttft.csv", t["ttft"])
    write_csv(args.out / "partial_prefill.csv", t["partial"])
    (args.out / "tables.md").write_text(render_tables(t, models))
    summary = {"crossover": t["crossover"],
               "paper_ttft": [{k: v for k, v in r.items() if not k.endswith("_parts")}
                              for r in t["paper_ttft"]],
               "models": models}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(t, args.out)
    print((args.out / "tables.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
