"""`python3 -m analysis.compare_peers RUN_DIR [RUN_DIR ...] [--out DIR] [--markdown FILE]`

cpbench next to its peer, PyTorch `context_parallel` (run folders of
benchmarks/peer_torch_cp.py), on the same workloads. Every RUN_DIR is a run folder or a parent
of run folders (analysis.load); cpbench's and the peer's are told apart by the record
(`backend` "torch" or a `torch_*` strategy is the peer). Writes:

- OUT/compare_peers.md (or --markdown FILE), also printed: per workload and CP degree one
  table, a row per cpbench strategy / layout (usp with its ulysses degree) and per peer backend
  / rotate method, with median ms, TF/s per GPU, the ratio to the best peer (best peer time /
  row time: > 1 is faster than PyTorch's best backend and method there), the issue's target
  where it applies (cp 4, 32 x 128 MHA, causal full prefill: cpbench's best >= 1.2x at 32K,
  >= 1.1x at 128K and 256K), efficiency = compute-only / total time, exposed communication and
  overlap (cuda runs), and the scaling efficiency T1 / (N TN), T1 being cpbench's fastest cp-1
  point for cpbench rows and single-GPU SDPA of the same backend for the peer's, where run.
  Where no live peer ran, the published/measured peer numbers of
  analysis/reference/peers_torch.csv fill an extra column "peer (reference csv)". Then the
  zigzag-over-contiguous speedup of causal ring_pass_kv (contiguous time / zigzag time; striped
  too where it ran), beside the ideal 2 - 1/N.
- OUT/compare_peers.png: TF/s per GPU vs context, log-x, one panel per CP degree and head
  shape, a line per implementation.

OUT defaults to the first RUN_DIR. Failed points show as "failed: <short error>". Exit 0, or 2
with one line when a RUN_DIR is not a run folder or no run holds any point.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import reference as ref  # noqa: E402
from analysis.load import RunError, load_runs  # noqa: E402

PEER_STRATEGIES = ("torch_context_parallel", "torch_sdpa")
WORKLOAD_KEYS = ["phase", "batch", "heads", "kv_heads", "head_dim", "mask", "dtype", "context",
                 "new_tokens", "cached_tokens"]
# The goal: at cp 4, MHA 32 x 128, causal full prefill, cpbench's best strategy at
# least this many times the best PyTorch context_parallel, by context.
TARGET_SHAPE = {"phase": "full_prefill", "heads": 32, "kv_heads": 32, "head_dim": 128,
                "mask": "causal"}
TARGET_CP = 4
TARGETS = {32768: 1.2, 131072: 1.1, 262144: 1.1}
MAX_PANELS = 8
REF_CSV = "peers_torch.csv"


def _clean(v):
    """A cell as a plain Python value: NaN -> None, integral floats -> int."""
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        return v
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _num(v) -> float | None:
    v = _clean(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def short_error(text, limit: int = 80) -> str:
    s = " ".join(str(text or "").split()) or "no error message"
    s = s.replace("|", "/")
    return s if len(s) <= limit else s[:limit - 3] + "..."


# --- loading -------------------------------------------------------------------------------------

def load_points(paths) -> tuple[pd.DataFrame, list[str]]:
    """Every point of every run under `paths`, the last record of a point id per run; column
    `run` names the run. Raises RunError when a path is not a run folder or nothing loads."""
    frames, notes = [], []
    for path in paths:
        for run in load_runs(path, traces=False):
            notes += [f"{run.path}: {n}" for n in run.notes]
            if run.df.empty:
                continue
            d = run.df.copy()
            d["run"] = run.name
            if "point_id" in d:
                has_id = d["point_id"].notna()
                d = pd.concat([d[has_id].drop_duplicates("point_id", keep="last"), d[~has_id]])
            frames.append(d)
    if not frames:
        raise RunError(f"{', '.join(map(str, paths))}: no points in any run folder: nothing "
                       "to compare")
    # All-NA columns (a field no point of a run has) are dropped before the concatenation and
    # come back below; pandas would otherwise warn about their dtypes.
    df = pd.concat([f.dropna(axis=1, how="all") for f in frames], ignore_index=True)
    for col in [*WORKLOAD_KEYS, "cp", "strategy", "layout", "backend", "status", "error",
                "time_median", "tflops_per_gpu", "compute_only_s", "exposed_comm_s",
                "overlap_fraction", "verify_ran", "verify_passed", "verify_max_rel_err",
                "peer_backend", "rotate_method", "ulysses", "auto_choice"]:
        if col not in df:
            df[col] = None
    df["is_peer"] = df.apply(is_peer, axis=1)
    df["label"] = df.apply(label, axis=1)
    df["wkey"] = df.apply(lambda r: tuple(_clean(r[k]) for k in WORKLOAD_KEYS), axis=1)
    df["cp"] = df["cp"].map(_clean)
    return df, notes


def is_peer(r) -> bool:
    return r.get("backend") == "torch" or str(r.get("strategy")) in PEER_STRATEGIES


def label(r) -> str:
    strategy = _clean(r.get("strategy")) or "?"
    if is_peer(r):
        backend = _clean(r.get("peer_backend")) or "?"
        if strategy == "torch_sdpa":
            return f"PyTorch SDPA, 1 GPU ({backend})"
        return f"PyTorch context_parallel {backend} / {_clean(r.get('rotate_method')) or '?'}"
    text = f"{strategy} / {_clean(r.get('layout')) or '?'}"
    if strategy == "usp":
        u = _clean(r.get("ulysses"))
        text += f" u={u}" if isinstance(u, int) and u > 0 else " u=auto"
    choice = _clean(r.get("auto_choice"))
    if strategy == "auto" and choice:
        text += f" (-> {choice})"
    return text


def _impl_key(r) -> tuple:
    """The one-GPU baseline of a row's scaling efficiency: for the peer, single-GPU SDPA of
    its backend; for cpbench, its fastest cp-1 point (every strategy is one kernel call on
    the whole problem there)."""
    if r["is_peer"]:
        return ("torch", _clean(r.get("peer_backend")))
    return ("cpbench",)


def _sort_key(key) -> tuple:
    """Orders group keys that mix numbers, strings and None (nested tuples flattened)."""
    flat = []
    for v in key if isinstance(key, tuple) else (key,):
        flat += list(v) if isinstance(v, tuple) else [v]
    return tuple((0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool)
                 else (1, 0, str(v)) for v in map(_clean, flat))


def _ok(d: pd.DataFrame) -> pd.DataFrame:
    t = pd.to_numeric(d["time_median"], errors="coerce")
    return d[(d["status"].fillna("ok") == "ok") & (t > 0)]


# --- the tables ----------------------------------------------------------------------------------

@dataclass
class Row:
    label: str
    run: str
    is_peer: bool
    status: str
    error: str | None = None
    median_s: float | None = None
    tflops: float | None = None
    ratio: float | None = None       # best live peer time / this time
    ref_ratio: float | None = None   # reference-csv peer time / this time
    target: str = ""
    efficiency: float | None = None  # compute-only / total
    exposed_ms: float | None = None
    overlap: float | None = None
    scaling_eff: float | None = None  # T1 / (N TN)
    verify: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.median_s is not None


@dataclass
class Table:
    workload: dict
    cp: int | None
    rows: list[Row]
    best_peer: Row | None = None
    ref_peer: dict | None = None  # {label, ms, tflops, source, machine}
    target: float | None = None
    summary: list[str] = field(default_factory=list)

    def title(self) -> str:
        w = self.workload
        return (f"{w.get('phase')}, B={w.get('batch')}, H={w.get('heads')} / "
                f"Hkv={w.get('kv_heads')} / d={w.get('head_dim')}, {w.get('mask')}, "
                f"{w.get('dtype')}, context {w.get('context')} (T={w.get('new_tokens')}, "
                f"P={w.get('cached_tokens')}) - cp {self.cp}")

    def row(self, lbl: str) -> Row:
        (r,) = [r for r in self.rows if r.label == lbl]
        return r


def target_for(workload: dict, cp) -> float | None:
    if cp != TARGET_CP or any(workload.get(k) != v for k, v in TARGET_SHAPE.items()):
        return None
    return TARGETS.get(workload.get("context"))


def reference_peer(workload: dict, cp) -> dict | None:
    """The fastest peers_torch.csv row of this shape, context and CP degree (context_parallel
    at cp > 1, single-GPU SDPA at cp 1), batch-1 full prefill only."""
    if workload.get("phase") != "full_prefill" or workload.get("batch") != 1 or cp is None:
        return None
    try:
        t = ref.torch_context_parallel(workload.get("heads"), workload.get("kv_heads"),
                                       workload.get("head_dim"), workload.get("context"),
                                       causal=workload.get("mask") == "causal")
    except (KeyError, OSError, ValueError):
        return None
    t = t[(t.cp == cp) & (t.kind == ("single_gpu" if cp == 1 else "context_parallel"))
          & (t.dtype == workload.get("dtype"))]
    if t.empty:
        return None
    b = t.sort_values("ms").iloc[0]
    method = b.method if isinstance(b.method, str) and b.method else ""
    return {"label": f"{b.kind} {b.backend} {method}".strip(), "ms": float(b.ms),
            "tflops": float(b.tflops_per_gpu), "source": str(b.source),
            "machine": str(b.machine)}


def _verify_cell(r) -> str:
    if _clean(r.get("verify_ran")) not in (True, 1):
        return "not run" if r.get("status") == "ok" else ""
    err = _num(r.get("verify_max_rel_err"))
    word = "pass" if _clean(r.get("verify_passed")) in (True, 1) else "FAIL"
    return f"{word} {err:.1e}" if err is not None else word


def _one_gpu_times(df: pd.DataFrame) -> dict:
    """(workload, implementation) -> median of its cp-1 point (the fastest if several)."""
    out = {}
    for _, r in _ok(df[df["cp"] == 1]).iterrows():
        k = (r["wkey"], _impl_key(r))
        out[k] = min(out.get(k, math.inf), float(r["time_median"]))
    return out


def compare(df: pd.DataFrame) -> list[Table]:
    """One Table per (workload, cp), cpbench rows first (fastest first), then the peer's."""
    one_gpu = _one_gpu_times(df)
    tables = []
    for (wkey, cp), g in sorted(df.groupby(["wkey", "cp"], dropna=False, sort=False),
                                key=lambda kg: _sort_key(kg[0])):
        workload = dict(zip(WORKLOAD_KEYS, wkey))
        cp = _clean(cp)
        t = Table(workload, cp, [], target=target_for(workload, cp))
        multi_run = g["run"].nunique() > 1
        for _, r in g.iterrows():
            status = _clean(r.get("status")) or "ok"
            row = Row(label=r["label"], run=str(r["run"]), is_peer=bool(r["is_peer"]),
                      status=status, error=_clean(r.get("error")), verify=_verify_cell(r))
            med = _num(r.get("time_median"))
            if status == "ok" and med and med > 0:
                row.median_s = med
                row.tflops = _num(r.get("tflops_per_gpu"))
                comp = _num(r.get("compute_only_s"))
                row.efficiency = comp / med if comp is not None else None
                exp = _num(r.get("exposed_comm_s"))
                row.exposed_ms = exp * 1e3 if exp is not None else None
                row.overlap = _num(r.get("overlap_fraction"))
                t1 = one_gpu.get((wkey, _impl_key(r)))
                if t1 is not None and cp and cp > 1:
                    row.scaling_eff = t1 / (cp * med)
            t.rows.append(row)
        # The same label twice (two runs, or two seeds): tell them apart by run.
        seen: dict[str, int] = {}
        for row in t.rows:
            seen[row.label] = seen.get(row.label, 0) + 1
        for row in t.rows:
            if seen[row.label] > 1 and multi_run:
                row.label = f"{row.label} [{row.run}]"
        t.rows.sort(key=lambda x: (x.is_peer, not x.ok, x.median_s or math.inf, x.label))
        _fill_ratios(t)
        tables.append(t)
    return tables


def _fill_ratios(t: Table) -> None:
    peers = [r for r in t.rows if r.is_peer and r.ok]
    # At cp > 1 the peer is context_parallel; single-GPU SDPA is the peer only at cp 1.
    if t.cp and t.cp > 1:
        peers = [r for r in peers if not r.label.startswith("PyTorch SDPA")]
    t.best_peer = min(peers, key=lambda r: r.median_s) if peers else None
    if t.best_peer is None:
        t.ref_peer = reference_peer(t.workload, t.cp)
    base_s = t.best_peer.median_s if t.best_peer else None
    ref_s = t.ref_peer["ms"] * 1e-3 if t.ref_peer else None
    for r in t.rows:
        if not r.ok:
            continue
        r.ratio = base_s / r.median_s if base_s else None
        r.ref_ratio = ref_s / r.median_s if ref_s else None
        x = r.ratio if r.ratio is not None else r.ref_ratio
        if t.target is not None and not r.is_peer and x is not None:
            r.target = f"{'met' if x >= t.target else 'not met'} (>= {t.target:g}x)"
    ours = [r for r in t.rows if not r.is_peer and r.ok]
    best = min(ours, key=lambda r: r.median_s) if ours else None
    if best is not None and (t.best_peer or t.ref_peer):
        vs = (f"the best live peer ({t.best_peer.label}, {t.best_peer.median_s * 1e3:.3f} ms)"
              if t.best_peer else f"the reference csv peer ({t.ref_peer['label']}, "
              f"{t.ref_peer['ms']:.3f} ms on {t.ref_peer['machine']})")
        x = best.ratio if best.ratio is not None else best.ref_ratio
        line = f"cpbench's best, {best.label}, runs at {_x(x)} {vs}"
        if t.target is not None:
            line += f"; target >= {t.target:g}x: {'met' if x >= t.target else 'NOT met'}"
        t.summary.append(line + ".")
    elif t.target is not None:
        t.summary.append(f"target >= {t.target:g}x: not evaluated ("
                         f"{'no successful cpbench point' if best is None else 'no peer'}).")


# --- zigzag over contiguous ----------------------------------------------------------------------

@dataclass
class ZigzagRow:
    workload: dict
    cp: int | None
    contiguous: str
    zigzag: str
    speedup: float | None  # contiguous time / zigzag time
    runs: str
    striped: str = ""  # "" when the striped layout was not run
    striped_speedup: float | None = None  # contiguous time / striped time

    @property
    def ideal(self) -> float | None:
        """The balanced layouts' ideal gain over contiguous, 2 - 1/N (Yang et al. 2024): the
        last contiguous rank attends N - 1/2 blocks of the N/2 a balanced rank attends."""
        return 2 - 1 / self.cp if self.cp else None


def _layout_cell(g: pd.DataFrame) -> tuple[str, float | None]:
    if g.empty:
        return "missing", None
    ok = _ok(g)
    if not ok.empty:
        t = float(ok["time_median"].min())
        return f"{t * 1e3:.3f}", t
    r = g.iloc[-1]
    return f"failed: {short_error(r.get('error') or r.get('status'))}", None


def zigzag_over_contiguous(df: pd.DataFrame) -> list[ZigzagRow]:
    """Causal ring_pass_kv with the contiguous layout beside a balanced one (zigzag, striped)."""
    d = df[(df["strategy"] == "ring_pass_kv") & (df["mask"] == "causal")
           & df["layout"].isin(["zigzag", "contiguous", "striped"])]
    rows = []
    for (wkey, cp), g in sorted(d.groupby(["wkey", "cp"], dropna=False, sort=False),
                                key=lambda kg: _sort_key(kg[0])):
        if g["layout"].nunique() < 2 or "contiguous" not in set(g["layout"]):
            continue  # nothing to compare with contiguous
        cc, tc = _layout_cell(g[g["layout"] == "contiguous"])
        zc, tz = _layout_cell(g[g["layout"] == "zigzag"])
        row = ZigzagRow(dict(zip(WORKLOAD_KEYS, wkey)), _clean(cp), cc, zc,
                        tc / tz if tc and tz else None,
                        ", ".join(sorted(g["run"].astype(str).unique())))
        if (g["layout"] == "striped").any():
            row.striped, ts = _layout_cell(g[g["layout"] == "striped"])
            row.striped_speedup = tc / ts if tc and ts else None
        rows.append(row)
    return rows


# --- markdown ------------------------------------------------------------------------------------

def _run_kind(g: pd.DataFrame) -> str:
    return "peer" if g["is_peer"].all() else "mixed" if g["is_peer"].any() else "cpbench"


def _f(x, spec: str) -> str:
    return "" if x is None else format(x, spec)


def _x(ratio) -> str:
    """A ratio as '1.23x' (two significant digits below 0.1)."""
    if ratio is None:
        return ""
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return out


def table_markdown(t: Table) -> list[str]:
    with_ref = t.best_peer is None and t.ref_peer is not None
    header = ["implementation", "run", "median ms", "TF/s/GPU", "x best peer"]
    header += ["peer (reference csv)"] if with_ref else []
    header += ["target", "eff. (compute-only / total)", "exposed comm ms", "overlap",
               "scaling eff. T1/(N TN)", "verify"]
    body = []
    for r in t.rows:
        name = f"**{r.label}**" if r.is_peer else r.label
        if not r.ok:
            cells = [name, r.run, f"failed: {short_error(r.error or r.status)}", "", ""]
            cells += [""] if with_ref else []
            cells += ["", "", "", "", "", r.verify]
        else:
            cells = [name, r.run, _f(r.median_s * 1e3, ".3f"), _f(r.tflops, ".1f"),
                     _x(r.ratio)]
            cells += [_x(r.ref_ratio)] if with_ref else []
            cells += [r.target, _f(r.efficiency, ".2f"), _f(r.exposed_ms, ".3f"),
                      _f(r.overlap, ".2f"), _f(r.scaling_eff, ".2f"), r.verify]
        body.append(cells)
    lines = [f"### {t.title()}", ""] + _md_table(header, body) + [""]
    if with_ref:
        p = t.ref_peer
        lines.append(f"peer (reference csv): {p['label']}, {p['ms']:.3f} ms, "
                     f"{p['tflops']:.1f} TF/s/GPU on {p['machine']} ({p['source']}; "
                     f"analysis/reference/{REF_CSV}); no live peer run at this point.")
    lines += t.summary
    return lines + ([""] if with_ref or t.summary else [])


def render_markdown(tables: list[Table], zz: list[ZigzagRow], runs: list[str],
                    notes: list[str], plot_note: str) -> str:
    lines = ["# cpbench vs PyTorch context_parallel", "",
             "Ratios are time ratios at the same workload and CP degree: x best peer = the "
             "fastest live PyTorch context_parallel backend / rotate method (single-GPU SDPA at "
             "cp 1) divided by the row's median; > 1 is faster than the peer. TF/s count "
             "4·B·H·d per visible (query, key) pair on both sides. Efficiency = compute-only "
             "time / total (cuda runs with the variants); scaling eff. = one-GPU time / (N x "
             "the row's time), the one-GPU time being cpbench's fastest cp-1 point for cpbench "
             "rows and single-GPU SDPA of the same backend for the peer's.", "",
             "Runs: " + "; ".join(runs), ""]
    if not tables:
        lines += ["No points to tabulate.", ""]
    for t in tables:
        lines += table_markdown(t)
    lines += ["## ring_pass_kv, causal: zigzag over contiguous", "",
              "speedup = contiguous median / zigzag (striped) median (> 1: the balanced "
              "layout wins); ideal = 2 - 1/N, the contiguous ring's last rank attending N - 1/2 "
              "blocks where a balanced rank attends N/2 (Yang et al. 2024).", ""]
    if zz:
        with_striped = any(z.striped for z in zz)
        header = ["workload", "cp", "contiguous ms", "zigzag ms", "zigzag speedup"]
        header += ["striped ms", "striped speedup"] if with_striped else []
        header += ["ideal", "runs"]
        body = []
        for z in zz:
            cells = [f"{z.workload.get('phase')}, B={z.workload.get('batch')}, "
                     f"{z.workload.get('heads')}/{z.workload.get('kv_heads')}/"
                     f"{z.workload.get('head_dim')}, context {z.workload.get('context')}",
                     str(z.cp), z.contiguous, z.zigzag, _x(z.speedup)]
            cells += [z.striped or "not run", _x(z.striped_speedup)] if with_striped else []
            cells += [_x(z.ideal), z.runs]
            body.append(cells)
        lines += _md_table(header, body)
    else:
        lines.append("No causal ring_pass_kv workload was run with both layouts.")
    lines += ["", f"Plot: {plot_note}"]
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


# --- plot ----------------------------------------------------------------------------------------

def plot(df: pd.DataFrame, out_png: str | Path) -> tuple[Path | None, str]:
    """TF/s per GPU vs context, log-x, a panel per (cp, head shape, mask, phase)."""
    d = _ok(df)
    d = d[pd.to_numeric(d["tflops_per_gpu"], errors="coerce") > 0]
    if d.empty:
        return None, "skipped: no successful point"
    keys = ["cp", "heads", "kv_heads", "head_dim", "mask", "phase"]
    panels = sorted(d.groupby([d[k].map(_clean) for k in keys], dropna=False, sort=False),
                    key=lambda kg: _sort_key(kg[0]))
    note = ""
    if len(panels) > MAX_PANELS:
        note = f" ({len(panels) - MAX_PANELS} more panel(s) not drawn)"
        panels = panels[:MAX_PANELS]
    ncols = 1 if len(panels) == 1 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 4.2 * nrows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    labels = sorted(d["label"].unique())
    color = {lb: cmap(i % 10) for i, lb in enumerate(labels)}
    for ax, (key, g) in zip(axes.flat, panels):
        kv = dict(zip(keys, key))
        for lb, s in g.groupby("label", sort=True):
            s = s.assign(ctx=s["context"].map(_num)).groupby("ctx")["tflops_per_gpu"].max()
            peer = lb.startswith("PyTorch")
            ax.plot(s.index, s.values, marker="s" if peer else "o", ms=4,
                    ls="--" if peer else "-", color=color[lb], label=lb)
        if not g["is_peer"].any():
            _plot_reference(ax, kv, sorted({_clean(c) for c in g["context"]}))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel("TF/s per GPU")
        ax.set_ylim(bottom=0)
        ax.set_title(f"cp {kv['cp']}, H={kv['heads']} Hkv={kv['kv_heads']} d={kv['head_dim']}, "
                     f"{kv['mask']}, {kv['phase']}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("cpbench vs PyTorch context_parallel: TF/s per GPU")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out, f"{out.name}{note}"


def _plot_reference(ax, kv: dict, contexts: list) -> None:
    """The reference csv's best peer at each context of the panel, where no live peer ran."""
    pts = []
    for c in contexts:
        w = {"phase": kv["phase"], "batch": 1, "heads": kv["heads"], "kv_heads": kv["kv_heads"],
             "head_dim": kv["head_dim"], "mask": kv["mask"], "dtype": "bf16", "context": c}
        p = reference_peer(w, kv["cp"])
        if p:
            pts.append((c, p["tflops"], p["machine"]))
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "x:", color="grey",
                label=f"peer (reference csv, {pts[0][2]})")


# --- command -------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m analysis.compare_peers",
                                description="cpbench next to PyTorch context_parallel.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", help="folder for compare_peers.md and .png (default: the first "
                                 "RUN_DIR)")
    p.add_argument("--markdown", help="write the markdown here instead of OUT/compare_peers.md")
    a = p.parse_args(argv)
    try:
        df, notes = load_points(a.runs)
    except RunError as e:
        print(f"compare_peers: error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out or a.runs[0])
    out.mkdir(parents=True, exist_ok=True)
    png, plot_note = plot(df, out / "compare_peers.png")
    runs = [f"{name} ({_run_kind(g)}, {len(g)} points)"
            for name, g in df.groupby("run", sort=True)]
    md = render_markdown(compare(df), zigzag_over_contiguous(df), runs, notes, plot_note)
    md_path = Path(a.markdown) if a.markdown else out / "compare_peers.md"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(md, encoding="utf-8")
    print(md)
    print(f"wrote {md_path}" + (f" and {png}" if png else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
