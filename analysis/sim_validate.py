"""Validates the sim backend: predicted against measured time per point of a measured run.

    python3 -m analysis.sim_validate --cpbench build/release/cpbench \\
        --run results/gpu/2026-11-22-h200x4-compare/cpbench \\
        --profile results/profiles/h200x4.yaml --out results/sim/validation-h200x4

Runs the measured run's own experiment (manifest `config_text`) on the sim backend with the
profile, pairs the records by point_id, and writes to --out: `validation.csv` (one row per point:
predicted and measured median seconds, the signed relative error (predicted - measured) /
measured), `summary.json` (median and max |error|, the targets, the worst points), `README.md`
(the table), `validation.png` (predicted against measured, log-log, with the bounds' bands) and
the sim's own run folder under `sim/` (predicted records and traces). With `--predicted DIR` the
sim is not run: the records of DIR, a sim run folder made earlier (a prediction committed before
the measurement, say), are compared as they are. Exit status 1 when a bound is missed
(--median-bound, --max-bound), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

TARGET_MEDIAN = 0.05  # issue 8: median |error| <= 5%
TARGET_MAX = 0.15  # and max <= 15%


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def point_label(rec: dict) -> str:
    c = rec.get("config", {})
    ctx = c.get("new_tokens", 0)
    size = f"{ctx // 1024}K" if ctx >= 1024 and ctx % 1024 == 0 else str(ctx)
    phase = c.get("phase", "prefill")
    what = "" if phase == "prefill" and not c.get("cached_tokens") else (
        f" {phase}" if phase != "prefill" else f" after {c.get('cached_tokens')}")
    return (f"{c.get('preset', '') or 'd' + str(c.get('head_dim', ''))} {size}{what} "
            f"cp{c.get('cp')} {c.get('strategy')} {c.get('layout')}").strip()


def pair_records(measured: list[dict], predicted: list[dict]) -> list[dict]:
    """One row per measured ok point that the sim predicted (ok), in the measured order."""
    pred = {r["point_id"]: r for r in predicted if r.get("status") == "ok"}
    rows = []
    for m in measured:
        if m.get("status") != "ok" or m["point_id"] not in pred:
            continue
        p = pred[m["point_id"]]
        t_m = m["time"]["median"]
        t_p = p["time"]["median"]
        rows.append({
            "index": m.get("index"),
            "point": point_label(m),
            "strategy": m.get("config", {}).get("strategy"),
            "cp": m.get("config", {}).get("cp"),
            "measured_s": t_m,
            "predicted_s": t_p,
            "error": (t_p - t_m) / t_m,
            "measured_compute_only_s": (m.get("time_compute_only") or {}).get("median"),
        })
    return rows


def summarize(rows: list[dict], median_bound: float = TARGET_MEDIAN,
              max_bound: float = TARGET_MAX) -> dict:
    if not rows:
        return {"points": 0, "median_abs_error": None, "max_abs_error": None, "met": False}
    errs = [abs(r["error"]) for r in rows]
    worst = sorted(rows, key=lambda r: -abs(r["error"]))[:5]
    med, mx = median(errs), max(errs)
    return {
        "points": len(rows),
        "median_abs_error": med,
        "max_abs_error": mx,
        "within_5pct": sum(e <= 0.05 for e in errs),
        "within_15pct": sum(e <= 0.15 for e in errs),
        "median_bound": median_bound,
        "max_bound": max_bound,
        "met": med <= median_bound and mx <= max_bound,
        "worst": [{"index": w["index"], "point": w["point"], "error": w["error"]} for w in worst],
    }


def markdown(rows: list[dict], s: dict, title: str) -> str:
    out = [f"# {title}", ""]
    if s["points"]:
        out += [f"{s['points']} points; median |error| {s['median_abs_error']:.1%} (bound "
                f"{s['median_bound']:.0%}), max |error| {s['max_abs_error']:.1%} (bound "
                f"{s['max_bound']:.0%}): {'met' if s['met'] else 'not met'}. Error = (predicted - "
                "measured) / measured, median times.", ""]
    out += ["| # | point | measured ms | predicted ms | error |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['index']} | {r['point']} | {r['measured_s'] * 1e3:.3f} | "
                   f"{r['predicted_s'] * 1e3:.3f} | {r['error']:+.1%} |")
    return "\n".join(out) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    cols = ["index", "point", "strategy", "cp", "measured_s", "predicted_s", "error",
            "measured_compute_only_s"]
    lines = [",".join(cols)]
    for r in rows:
        lines.append(",".join("" if r[c] is None else str(r[c]) for c in cols))
    path.write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], s: dict, title: str, path: Path) -> None:
    """Predicted against measured time per point (log-log), one colour per strategy, with the
    bands of the median and max bounds around the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    xs = [r["measured_s"] * 1e3 for r in rows] + [r["predicted_s"] * 1e3 for r in rows]
    lo, hi = min(xs) / 1.3, max(xs) * 1.3
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    for b, alpha in ((s["max_bound"], 0.08), (s["median_bound"], 0.15)):
        ax.fill_between([lo, hi], [lo * (1 - b), hi * (1 - b)], [lo * (1 + b), hi * (1 + b)],
                        color="tab:green", alpha=alpha, lw=0, label=f"within {b:.0%}")
    for strat in sorted({r["strategy"] or "?" for r in rows}):
        pts = [r for r in rows if (r["strategy"] or "?") == strat]
        ax.scatter([r["measured_s"] * 1e3 for r in pts], [r["predicted_s"] * 1e3 for r in pts],
                   s=14, label=strat)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured ms (median of the timed iterations)")
    ax.set_ylabel("predicted ms (sim)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpbench", required=True)
    ap.add_argument("--run", required=True, type=Path, action="append",
                    help="measured run folder (repeat it for one experiment run in parts, e.g. "
                         "with different --filter)")
    ap.add_argument("--profile", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--median-bound", type=float, default=TARGET_MEDIAN)
    ap.add_argument("--max-bound", type=float, default=TARGET_MAX)
    ap.add_argument("--title", default="", help="the plot's title (default: run and profile)")
    ap.add_argument("--predicted", type=Path, default=None,
                    help="a sim run folder made earlier: compare its records, run no sim")
    args = ap.parse_args(argv)
    measured, configs = [], set()
    for run in args.run:
        try:
            manifest = json.loads((run / "manifest.json").read_text())
            measured += read_jsonl(run / "results.jsonl")
        except (OSError, ValueError) as e:
            print(f"error: {run}: {e}", file=sys.stderr)
            return 2
        configs.add(manifest.get("config_text"))
    if len(configs) > 1 and args.predicted is None:
        print("error: the --run folders ran different experiments; the sim plays one (give "
              "the parts of one sweep, or --predicted)", file=sys.stderr)
        return 2
    if args.predicted is not None:
        try:
            predicted = read_jsonl(args.predicted / "results.jsonl")
        except (OSError, ValueError) as e:
            print(f"error: --predicted {args.predicted}: {e}", file=sys.stderr)
            return 2
        if any(r.get("backend") != "sim" for r in predicted):
            print(f"error: --predicted {args.predicted}: not a sim run (backend "
                  f"{sorted({str(r.get('backend')) for r in predicted})})", file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        sim_dir = args.out / "sim"
        if sim_dir.exists():
            shutil.rmtree(sim_dir)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "experiment.yaml"
            cfg.write_text(manifest["config_text"])
            subprocess.run([args.cpbench, "run", str(cfg), "--backend", "sim",
                            "--hardware-profile", str(args.profile), "--run-dir", str(sim_dir),
                            "--quiet"], check=True)
        predicted = read_jsonl(sim_dir / "results.jsonl")
    rows = pair_records(measured, predicted)
    s = summarize(rows, args.median_bound, args.max_bound)
    s["measured_run"] = ", ".join(str(r) for r in args.run)
    s["profile"] = str(args.profile)
    if args.predicted is not None:
        s["predicted_run"] = str(args.predicted)
    write_csv(rows, args.out / "validation.csv")
    (args.out / "summary.json").write_text(json.dumps(s, indent=2) + "\n")
    (args.out / "table.md").write_text(
        markdown(rows, s, f"sim vs measured: {s['measured_run']} on {args.profile}"))
    if rows and all(r["measured_s"] > 0 and r["predicted_s"] > 0 for r in rows):
        head = args.title or f"{args.run[0].name} on {args.profile.name}"
        try:
            plot(rows, s, f"{head}: {s['points']} points, median |err| "
                 f"{s['median_abs_error']:.1%}, max {s['max_abs_error']:.1%}",
                 args.out / "validation.png")
        except ImportError as e:
            print(f"warning: no plot ({e}); the tables are written", file=sys.stderr)
    print(f"{s['points']} points: median |err| {s['median_abs_error']:.2%}, max "
          f"{s['max_abs_error']:.2%} -> {args.out}")
    return 0 if s["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
