"""The plots of DESIGN.md ("Analysis"), each drawn from a run's DataFrame (analysis.load).

Every function takes the points it is given, draws what they support, and writes one PNG to
`out`; where the points lack the axis a plot needs (one CP degree, one context, no pass-Q
points, no trace, no prediction) it writes nothing and returns a PlotResult whose `note` says
why. `reference=True` overlays the numbers of analysis/reference/ where a published figure
exists for that plot; published numbers come from other machines and whole models, so they
are drawn on their own axes or as dimensionless ratios, never mixed into our time axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the report runs on CI machines and GPU boxes without X
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import reference as ref  # noqa: E402
from analysis.load import SHAPE_KEYS, read_trace  # noqa: E402

MAX_PANELS = 4  # rows of one figure; further workloads are named in the note
LAYOUT_STYLE = {"contiguous": "-", "zigzag": "--", "striped": ":"}
PASS_COLORS = {"ring_pass_kv": "tab:blue", "ring_pass_q": "tab:orange"}


@dataclass
class PlotResult:
    name: str
    title: str
    path: Path | None = None
    note: str = ""
    sources: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.path is not None


def _ok_points(df: pd.DataFrame) -> pd.DataFrame:
    if df is None or df.empty or "time_median" not in df:
        return pd.DataFrame()
    d = df[pd.to_numeric(df["time_median"], errors="coerce") > 0]
    if "status" in d:
        d = d[d["status"].fillna("ok") == "ok"]
    return d


def _keys(df: pd.DataFrame, keys: list[str]) -> list[str]:
    return [k for k in keys if k in df.columns]


def _groups(df: pd.DataFrame, keys: list[str]):
    keys = _keys(df, keys)
    if not keys:
        return [((), df)]
    return [(k if isinstance(k, tuple) else (k,), g)
            for k, g in df.groupby(keys, dropna=False, sort=True)]


def _label(df: pd.DataFrame, keys: list[str], values: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(_keys(df, keys), values))


def _strategy_color(strategies) -> dict:
    # tab10 from index 2: blue and orange stay pass-KV's and pass-Q's in every plot.
    cmap = plt.get_cmap("tab10")
    others = [s for s in sorted(strategies) if s not in PASS_COLORS]
    colors = {s: cmap((i + 2) % 10) for i, s in enumerate(others)}
    return {**colors, **{s: c for s, c in PASS_COLORS.items() if s in set(strategies)}}


def _save(fig, out: str | Path, res: PlotResult) -> PlotResult:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    res.path = out
    return res


def _cap(groups: list, res: PlotResult) -> list:
    if len(groups) > MAX_PANELS:
        res.note = f"{len(groups) - MAX_PANELS} more workload(s) not drawn"
    return groups[:MAX_PANELS]


def scaling(df: pd.DataFrame, out, reference: bool = True) -> PlotResult:
    """Time and parallel efficiency vs CP degree, one row per workload with two or more CP
    degrees. Efficiency = (N0 * T(N0)) / (N * T(N)) of the same strategy and layout, N0 the
    smallest degree measured (1 where present). Overlays: Yang 2024's 128K full-prefill TTFT
    as efficiency; PyTorch context_parallel times of the same shape."""
    res = PlotResult("scaling", "Time and parallel efficiency vs CP degree")
    d = _ok_points(df)
    wkeys = ["phase", *SHAPE_KEYS, "new_tokens", "cached_tokens"]
    groups = [(k, g) for k, g in _groups(d, wkeys) if g["cp"].nunique() >= 2] if len(d) else []
    if not groups:
        res.note = "skipped: no workload was run at two or more CP degrees"
        return res
    groups = _cap(groups, res)
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 3.6 * len(groups)), squeeze=False)
    colors = _strategy_color(d["strategy"].unique())
    eff = ref.yang_prefill_efficiency() if reference else None
    for (key, g), (ax_t, ax_e) in zip(groups, axes):
        for (strat, layout), s in g.groupby(["strategy", "layout"]):
            s = s.sort_values("cp")
            ls = LAYOUT_STYLE.get(layout, "-.")
            kw = dict(color=colors[strat], ls=ls, marker="o", ms=4, label=f"{strat} / {layout}")
            ax_t.plot(s.cp, s.time_median * 1e3, **kw)
            n0 = s.cp.iloc[0]
            ax_e.plot(s.cp, n0 * s.time_median.iloc[0] / (s.cp * s.time_median), **kw)
        if reference:
            peers = ref.torch_context_parallel(*(g[k].iloc[0] for k in
                                                 ("heads", "kv_heads", "head_dim", "context")),
                                               causal=g["mask"].iloc[0] == "causal")
            for (m, b), p in peers.groupby(["method", "backend"], dropna=False):
                ax_t.plot(p.cp, p.ms, "kx:", label=f"torch {p.kind.iloc[0]} {b} {m or ''} "
                          f"({p.machine.iloc[0]})")
                res.sources.append(str(p.source.iloc[0]))
            if eff is not None and len(eff) and g["phase"].iloc[0] != "decode":
                ax_e.plot(eff.cp, eff.efficiency, "k^--", alpha=0.6,
                          label="Yang 2024 Tables 6-7: 405B, 128K, TTFT")
        cps = sorted(g.cp.unique())
        for ax in (ax_t, ax_e):
            ax.set_xscale("log", base=2)
            ax.set_xticks(cps, [str(c) for c in cps])
            ax.set_xlabel("CP degree N")
            ax.grid(alpha=0.3)
        ax_t.set_yscale("log")
        ax_t.set_ylabel("median time (ms)")
        ax_e.set_ylabel("parallel efficiency")
        ax_e.axhline(1.0, color="grey", lw=0.8)
        ax_t.set_title(_label(d, wkeys, key), fontsize=8)
        ax_e.legend(fontsize=6, loc="best")
    if reference and eff is not None:
        res.sources.append("Yang et al. 2024, arXiv 2411.01783, Tables 6-7 and Sec. 4.2")
    fig.suptitle(res.title)
    return _save(fig, out, res)


def ttft_vs_context(df: pd.DataFrame, out, reference: bool = True) -> PlotResult:
    """Full-prefill time (TTFT of one attention layer) vs context, log-log, a line per
    strategy, layout and CP degree. Overlay (own panel): Yang 2024 whole-model TTFT and
    single-GPU PyTorch SDPA times of the same head shape."""
    res = PlotResult("ttft_vs_context", "TTFT vs context (full prefill, log-log)")
    d = _ok_points(df)
    if len(d) and "phase" in d:
        d = d[d["phase"] == "full_prefill"]
    elif len(d) and "cached_tokens" in d:
        d = d[d["cached_tokens"] == 0]
    groups = [(k, g) for k, g in _groups(d, SHAPE_KEYS) if g["context"].nunique() >= 2] \
        if len(d) else []
    if not groups:
        res.note = "skipped: no full-prefill workload was run at two or more context lengths"
        return res
    key, g = max(groups, key=lambda kg: len(kg[1]))
    ncols = 2 if reference else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.5), squeeze=False)
    ax = axes[0][0]
    colors = _strategy_color(g["strategy"].unique())
    markers = "os^Dv<>p"
    for (strat, layout, cp), s in g.groupby(["strategy", "layout", "cp"]):
        s = s.sort_values("context")
        ax.plot(s.context, s.time_median * 1e3, color=colors[strat],
                ls=LAYOUT_STYLE.get(layout, "-."), marker=markers[int(np.log2(cp)) % 8], ms=4,
                label=f"{strat} / {layout} / cp{cp}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("median time (ms)")
    ax.set_title(_label(d, SHAPE_KEYS, key), fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=5, ncol=2)
    if reference:
        axr = axes[0][1]
        y = ref.table("yang2024_ttft_prefill.csv")
        for cfg in ("TP8", "CP2+TP8"):
            r = y[y.config == cfg].sort_values("context")
            axr.plot(r.context, r.ttft_ms, "o--", label=f"Yang 2024 {cfg} (405B model)")
        t = ref.table("peers_torch.csv")
        t = t[(t.kind == "single_gpu") & (t.heads == g["heads"].iloc[0])
              & (t.head_dim == g["head_dim"].iloc[0]) & (t.causal == (g["mask"].iloc[0] == "causal"))]
        for (m, b), p in t.groupby(["machine", "backend"]):
            p = p.sort_values("seq_len")
            axr.plot(p.seq_len, p.ms, "x:", label=f"torch SDPA {b}, {m}")
        axr.set_xscale("log", base=2)
        axr.set_yscale("log")
        axr.set_xlabel("context (tokens)")
        axr.set_ylabel("published / external time (ms)")
        axr.set_title("reference (other machines, other sizes)", fontsize=8)
        axr.grid(alpha=0.3, which="both")
        axr.legend(fontsize=6)
        res.sources += ["Yang et al. 2024, arXiv 2411.01783, Tables 6-7",
                        "peers_torch.csv: PyTorch 2.11 SDPA, measured 2026-11-21"]
    fig.suptitle(res.title)
    return _save(fig, out, res)


def miss_rate_sweep(df: pd.DataFrame, out, reference: bool = True) -> PlotResult:
    """pass-KV vs pass-Q time across miss rates at one context and CP degree, with auto's
    choice marked (a star in the chosen strategy's colour at auto's own time); right panel:
    the time ratio pass-Q / pass-KV, Yang 2024 Table 4's ratio overlaid."""
    res = PlotResult("miss_rate_sweep", "Miss-rate sweep: pass-KV vs pass-Q, auto's choice")
    d = _ok_points(df)
    if len(d) and "phase" in d:
        d = d[d["phase"] != "decode"]
    need = {"ring_pass_kv", "ring_pass_q"}
    gkeys = ["cp", "layout", "context", *SHAPE_KEYS]
    groups = []
    for k, g in (_groups(d, gkeys) if len(d) and "miss_rate" in d else []):
        sub = g[g.strategy.isin(need)]
        if set(sub.strategy) == need and sub.groupby("strategy").miss_rate.nunique().min() >= 2:
            groups.append((k, g))
    if not groups:
        res.note = ("skipped: no (cp, context) at which both ring_pass_kv and ring_pass_q "
                    "ran at two or more miss rates")
        return res
    groups = _cap(groups, res)
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 3.8 * len(groups)), squeeze=False)
    yang = ref.table("yang2024_partial_prefill.csv") if reference else None
    for (key, g), (ax, axr) in zip(groups, axes):
        piv = {}
        for strat in sorted(need):
            s = g[g.strategy == strat].groupby("miss_rate").time_median.median()
            piv[strat] = s
            ax.plot(s.index, s.values * 1e3, "o-", color=PASS_COLORS[strat], label=strat)
        auto = g[(g.strategy == "auto") & g.get("auto_choice", pd.Series(dtype=object)).notna()] \
            if "auto_choice" in g else g.iloc[0:0]
        for choice, a in auto.groupby("auto_choice"):
            ax.scatter(a.miss_rate, a.time_median * 1e3, marker="*", s=140, zorder=5,
                       color=PASS_COLORS.get(choice, "black"), edgecolor="black",
                       label=f"auto chose {choice}")
        thr = auto["auto_miss_rate_threshold"].dropna() if len(auto) else pd.Series(dtype=float)
        if len(thr):
            ax.axvline(float(thr.iloc[0]), color="grey", ls=":", label="auto's miss-rate threshold")
        ax.set_xscale("log")
        ax.set_xlabel("miss rate T/(T+P)")
        ax.set_ylabel("median time (ms)")
        ax.set_title(_label(d, gkeys, key), fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
        ratio = (piv["ring_pass_q"] / piv["ring_pass_kv"]).dropna()
        axr.plot(ratio.index, ratio.values, "o-", color="tab:green", label="cpbench (this run)")
        if yang is not None:
            axr.plot(yang.miss_rate, yang.pass_q_ttft_ms / yang.pass_kv_ttft_ms, "k^--",
                     alpha=0.6, label="Yang 2024 Table 4 (CP4, 128K, 405B)")
        axr.axhline(1.0, color="grey", lw=0.8)
        axr.set_xscale("log")
        axr.set_xlabel("miss rate T/(T+P)")
        axr.set_ylabel("time pass-Q / pass-KV  (<1: pass-Q faster)")
        axr.grid(alpha=0.3, which="both")
        axr.legend(fontsize=6)
    if yang is not None:
        res.sources.append("Yang et al. 2024, arXiv 2411.01783, Table 4")
    fig.suptitle(res.title)
    return _save(fig, out, res)


def _phase_order(cols: list[str]) -> list[str]:
    first = ["attention", "merge"]
    return [c for c in first if c in cols] + sorted(c for c in cols if c not in first)


def breakdown(df: pd.DataFrame, out, reference: bool = True) -> PlotResult:
    """Stacked time per point of the workload with the most multi-rank points. Top (where the
    record has them, cuda): compute-only time + exposed comm (= total - compute-only), the
    measured total marked. Below: the traced iteration by phase (attention, merge, each comm
    phase), max over ranks; on cpu phases run one after another, so this is not overlap.
    Overlay: Yang 2024 Table 5's per-ring-iteration SendRecv / attention / All2All."""
    res = PlotResult("breakdown", "Time breakdown per point")
    d = _ok_points(df)
    wkeys = ["phase", *SHAPE_KEYS, "new_tokens", "cached_tokens"]
    groups = [(k, g) for k, g in _groups(d, wkeys)] if len(d) else []
    measured = [c for c in ("compute_only_s", "exposed_comm_s") if c in d.columns]
    traced = [c for c in d.columns if c.startswith("trace_s.")]
    has_measured = len(measured) == 2 and len(d) and d[measured].notna().all(axis=1).any()
    if not groups or not (has_measured or traced):
        res.note = ("skipped: the records have neither compute-only / exposed-comm times "
                    "nor traces")
        return res
    key, g = max(groups, key=lambda kg: ((kg[1].cp > 1).sum(), len(kg[1])))
    g = g.sort_values(["strategy", "layout", "cp"])
    labels = [f"{s}\n{l[:4]} cp{c}" for s, l, c in zip(g.strategy, g.layout, g.cp)]
    x = np.arange(len(g))
    rows = (1 if has_measured else 0) + (1 if traced else 0)
    ncols = 2 if reference else 1
    fig, axes = plt.subplots(rows, ncols, figsize=(max(8, 0.5 * len(g)) + 4 * (ncols - 1),
                                                   3.8 * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1][:ncols]})
    row = 0
    if has_measured:
        ax = axes[row][0]
        comp = g.compute_only_s.astype(float).fillna(0) * 1e3
        exp_ = g.exposed_comm_s.astype(float).fillna(0) * 1e3
        ax.bar(x, comp, label="compute only (measured variant)", color="tab:blue")
        ax.bar(x, exp_, bottom=comp, label="exposed comm = total - compute only",
               color="tab:red")
        ax.scatter(x, g.time_median * 1e3, marker="_", s=200, color="black",
                   label="median total", zorder=5)
        ax.set_ylabel("time (ms)")
        ax.set_title("measured: " + _label(d, wkeys, key), fontsize=8)
        row += 1
    if traced:
        ax = axes[row][0]
        phases = _phase_order([c.split(".", 1)[1] for c in traced])
        bottom = np.zeros(len(g))
        cmap = plt.get_cmap("tab20")
        for i, ph in enumerate(phases):
            v = g[f"trace_s.{ph}"].astype(float).fillna(0).to_numpy() * 1e3
            ax.bar(x, v, bottom=bottom, label=ph, color=cmap(i % 20))
            bottom += v
        ax.set_ylabel("traced time (ms)")
        ax.set_title("traced iteration by phase, max over ranks (slices summed: "
                     "overlapped streams add up)", fontsize=8)
    for r in range(rows):
        axes[r][0].set_xticks(x, labels, fontsize=6, rotation=90)
        axes[r][0].legend(fontsize=6)
        axes[r][0].grid(alpha=0.3, axis="y")
    if reference:
        y = ref.table("yang2024_ring_iteration.csv")
        ax = axes[0][1]
        lab = [f"{v}\n{m:g}" for v, m in zip(y.variant, y.miss_rate)]
        xb = np.arange(len(y))
        parts = [("attention_us", "attention", "tab:blue"), ("sendrecv_us", "SendRecv", "tab:red"),
                 ("all2all_us", "All2All", "tab:purple")]
        bottom = np.zeros(len(y))
        for col, name, c in parts:
            v = y[col].fillna(0).to_numpy(dtype=float)
            ax.bar(xb, v, bottom=bottom, label=name, color=c)
            bottom += v
        ax.set_xticks(xb, lab, fontsize=6)
        ax.set_ylabel("µs per ring iteration")
        ax.set_title("Yang 2024 Table 5 (CP4, 128K)", fontsize=8)
        ax.legend(fontsize=6)
        for r in range(1, rows):
            axes[r][1].axis("off")
        res.sources.append("Yang et al. 2024, arXiv 2411.01783, Table 5")
    fig.suptitle(res.title)
    return _save(fig, out, res)


def timeline(trace_path, out, title: str | None = None) -> PlotResult:
    """An overlap timeline from one Chrome trace: a row per (rank, stream), a bar per slice
    coloured by phase. No published traces exist to overlay."""
    res = PlotResult("timeline", title or "Overlap timeline")
    try:
        trace = read_trace(trace_path)
    except (OSError, ValueError, TypeError) as e:
        res.note = f"skipped: no readable trace ({e})"
        return res
    ev = trace["traceEvents"]
    pname = {e.get("pid"): _meta_name(e) for e in ev
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    tname = {(e.get("pid"), e.get("tid")): _meta_name(e) for e in ev
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
    slices = [e for e in ev if e.get("ph") == "X" and "dur" in e and "ts" in e]
    if not slices:
        res.note = "skipped: the trace has no slices"
        return res
    rows = sorted({(e.get("pid"), e.get("tid")) for e in slices}, key=lambda r: (str(r[0]),
                                                                                str(r[1])))
    phases = _phase_order(sorted({_slice_phase(e) for e in slices}))
    cmap = plt.get_cmap("tab10")
    color = {p: cmap(i % 10) for i, p in enumerate(phases)}
    t0 = min(float(e["ts"]) for e in slices)
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(rows) + 1.6))
    for i, r in enumerate(rows):
        bars = [((float(e["ts"]) - t0) / 1e3, float(e["dur"]) / 1e3) for e in slices
                if (e.get("pid"), e.get("tid")) == r]
        cols = [color[_slice_phase(e)] for e in slices if (e.get("pid"), e.get("tid")) == r]
        ax.broken_barh(bars, (i - 0.4, 0.8), facecolors=cols, edgecolor="black", lw=0.3)
    ax.set_yticks(range(len(rows)),
                  [f"{pname.get(p, f'pid {p}')} / {tname.get((p, t), f'tid {t}')}"
                   for p, t in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time since first slice (ms)")
    ax.legend(handles=[Patch(color=color[p], label=p) for p in phases], fontsize=6,
              ncol=min(len(phases), 6), loc="upper right")
    ax.grid(alpha=0.3, axis="x")
    other = trace.get("otherData") or {}
    sub = f"  [{other.get('backend', '?')} backend, {other.get('clock', '?')} clock]" \
        if other else ""
    ax.set_title(res.title + sub, fontsize=8)
    res.note = "no published traces to overlay"
    return _save(fig, out, res)


def _meta_name(e: dict) -> str:
    return str((e.get("args") or {}).get("name", ""))


def _slice_phase(e: dict) -> str:
    return str((e.get("args") or {}).get("phase") or e.get("cat") or e.get("name", "?"))


def model_vs_measured(df: pd.DataFrame, out, reference: bool = True) -> PlotResult:
    """Predicted (cost model) vs measured median time per point, log-log with y = x. Needs the
    `predicted_time_s` column (analysis.load.PREDICTION_PATHS); the reference folder has no
    model predictions, so there is nothing published to overlay."""
    res = PlotResult("model_vs_measured", "Cost model vs measured")
    d = _ok_points(df)
    if not len(d) or "predicted_time_s" not in d or d["predicted_time_s"].isna().all():
        res.note = ("skipped: the records carry no model prediction (the sim backend and "
                    "calibrated model arrive with Step G)")
        return res
    d = d[d.predicted_time_s.notna()]
    fig, ax = plt.subplots(figsize=(6, 5.5))
    colors = _strategy_color(d.strategy.unique())
    for strat, s in d.groupby("strategy"):
        ax.scatter(s.time_median * 1e3, s.predicted_time_s.astype(float) * 1e3, s=14,
                   color=colors[strat], label=strat)
    lo = min(d.time_median.min(), d.predicted_time_s.min()) * 1e3 * 0.8
    hi = max(d.time_median.max(), d.predicted_time_s.max()) * 1e3 * 1.25
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured median (ms)")
    ax.set_ylabel("predicted (ms)")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3, which="both")
    err = (d.predicted_time_s / d.time_median - 1).abs()
    ax.set_title(f"{res.title}: median |error| {err.median():.0%}", fontsize=9)
    res.note = "no published model predictions to overlay"
    return _save(fig, out, res)


def pick_traces(df: pd.DataFrame, limit: int = 2) -> list[pd.Series]:
    """Points whose trace best shows overlap: the largest CP degree and context, pass-KV then
    pass-Q then anything else."""
    d = _ok_points(df)
    if not len(d) or "trace_path" not in d:
        return []
    d = d[d.trace_path.notna()]
    if not len(d):
        return []
    d = d.assign(_rank=d.strategy.map({"ring_pass_kv": 0, "ring_pass_q": 1}).fillna(2))
    d = d.sort_values(["cp", "context", "_rank"], ascending=[False, False, True])
    picked = []
    for strat in ("ring_pass_kv", "ring_pass_q"):
        s = d[d.strategy == strat]
        if len(s):
            picked.append(s.iloc[0])
    if not picked:
        picked.append(d.iloc[0])
    return picked[:limit]


# Plots that take a DataFrame, in report order.
TABLE_PLOTS = [scaling, ttft_vs_context, miss_rate_sweep, breakdown, model_vs_measured]
