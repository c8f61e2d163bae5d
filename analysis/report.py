"""`python3 -m analysis.report RUN_DIR`: one HTML page for a run folder.

Writes RUN_DIR/plots/*.png and RUN_DIR/report.html: machine and versions from the manifest,
a table per experiment (one row per point), the plots (relative paths, so the folder can be
moved or served as is), links to the traces, and the citations of the published numbers
overlaid. RUN_DIR is a run folder (holding manifest.json) or the parent given to
`cpbench run --out`, whose run folders become one section each. Exit 0, or 2 with one line on
stderr when RUN_DIR is not a readable run folder. `cpbench report` calls this module.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import re
import sys
import urllib.parse
from pathlib import Path

from analysis import plots
from analysis.load import Run, RunError, load_runs
from analysis.plots import PlotResult

CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}th{background:#eee}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{background:#fdd}img{max-width:100%;border:1px solid #ddd;margin:.3em 0}
.note{color:#666;font-size:12px}"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _url(rel_path: str) -> str:
    """A relative file path as an href/src: percent-encoded (names with '#', '?', '%' or spaces
    stay links to the file), then HTML-escaped."""
    return html.escape(urllib.parse.quote(rel_path.replace(os.sep, "/")))


def _num(x, fmt: str) -> str:
    try:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return ""
        return format(float(x), fmt)
    except (TypeError, ValueError):
        return _e(x)


def _kv_table(rows: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows
                   if v not in (None, "", [], {}))
    return f"<table>{body}</table>"


def machine_rows(m: dict) -> list[tuple[str, object]]:
    prov = m.get("provenance") or {}
    mach = m.get("machine") or {}
    gpus = mach.get("gpus") or []
    names = sorted({f"{g.get('name')} (sm {g.get('sm')})" for g in gpus if isinstance(g, dict)})
    git = prov.get("git") or {}
    os_ = prov.get("os") or {}
    cpu = prov.get("cpu") or {}
    comp = prov.get("compiler") or {}
    return [
        ("backend", f"{m.get('backend', '?')} ({m.get('backend_reason', '')})"),
        ("GPUs", f"{len(gpus)} x {', '.join(names)}" if gpus else None),
        ("CUDA runtime / driver", " / ".join(str(mach[k]) for k in ("cuda_runtime", "driver")
                                             if k in mach) or None),
        ("NCCL", mach.get("nccl")),
        ("host", prov.get("host")),
        ("CPU", f"{cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} logical cores"
         if cpu else None),
        ("OS", " ".join(str(os_[k]) for k in ("sysname", "release", "machine") if k in os_)
         or None),
        ("compiler", f"{comp.get('id', '')} {comp.get('version', '')}".strip() or None),
        ("cpbench", prov.get("cpbench_version")),
        ("git", f"{git.get('sha', '?')}{' (dirty)' if git.get('dirty') else ''}" if git else None),
        ("environment", json.dumps(prov.get("env")) if prov.get("env") else None),
        ("command", prov.get("repro") or " ".join(prov.get("argv") or [])),
    ]


def run_rows(m: dict) -> list[tuple[str, object]]:
    return [("experiment", m.get("name")), ("description", m.get("description")),
            ("config", m.get("config_path")), ("status", m.get("status")),
            ("started / finished", f"{m.get('started', '?')} / {m.get('finished', '?')}"),
            ("points", f"{m.get('points_total', '?')} total, {m.get('points_run', '?')} run, "
                       f"{m.get('points_failed', '?')} failed"),
            ("warmup / iterations", f"{m.get('warmup', '?')} / {m.get('iterations', '?')}"),
            ("filter", m.get("filter"))]


def _verify_cell(r) -> str:
    if r.get("verify_ran") is not True:
        return "not run" + (f": {r.get('verify_reason')}" if r.get("verify_reason") else "")
    ok = "pass" if r.get("verify_passed") else "FAIL"
    return f"{ok} (rel {_num(r.get('verify_max_rel_err'), '.1e')})"


def points_table(run: Run, base: Path) -> str:
    df = run.df
    if df.empty:
        return "<p class=note>No points recorded.</p>"
    head = ["#", "strategy", "layout", "cp", "phase", "T new", "P cached", "status",
            "median (ms)", "p10-p90 (ms)", "TF/s/GPU", "verify", "trace"]
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in df.sort_values("index" if "index" in df else df.columns[0]).to_dict("records"):
        strat = _e(r.get("strategy"))
        if r.get("auto_choice"):
            strat += f" &rarr; {_e(r['auto_choice'])}"
        status = _e(r.get("status"))
        if r.get("error"):
            status += f": {_e(r['error'])}"
        tp = r.get("trace_path")
        trace = (f'<a href="{_url(os.path.relpath(tp, base))}">{_e(r.get("trace"))}</a>'
                 if isinstance(tp, str) else "")
        cells = [
            _e(r.get("index")), strat, _e(r.get("layout")), _e(r.get("cp")), _e(r.get("phase")),
            _e(r.get("new_tokens")), _e(r.get("cached_tokens")), status,
            _num(_ms(r.get("time_median")), ".3f"),
            f"{_num(_ms(r.get('time_p10')), '.3f')} - {_num(_ms(r.get('time_p90')), '.3f')}"
            if r.get("time_p10") is not None else "",
            _num(r.get("tflops_per_gpu"), ".4g"), _e(_verify_cell(r)), trace]
        num = {8, 9, 10}
        bad = r.get("status") not in ("ok", None) or r.get("verify_passed") is False
        out.append(f"<tr{' class=bad' if bad else ''}>" + "".join(
            f"<td{' class=num' if i in num else ''}>{c}</td>" for i, c in enumerate(cells))
            + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _ms(x):
    try:
        return float(x) * 1e3 if x is not None else None
    except (TypeError, ValueError):
        return None


def make_plots(run: Run, plot_dir: Path, prefix: str) -> list[PlotResult]:
    results = [fn(run.df, plot_dir / f"{prefix}{fn.__name__}.png") for fn in plots.TABLE_PLOTS]
    picked = plots.pick_traces(run.df)
    if not picked:
        results.append(PlotResult("timeline", "Overlap timeline",
                                  note="skipped: no trace file in the run folder"))
    for row in picked:
        title = (f"Overlap timeline: {row.strategy} / {row.layout} / cp{row.cp}, "
                 f"T={row.get('new_tokens')} P={row.get('cached_tokens')} ({row.trace})")
        results.append(plots.timeline(row.trace_path,
                                      plot_dir / f"{prefix}timeline_{row.strategy}.png", title))
    return results


def plots_html(results: list[PlotResult], base: Path) -> str:
    out = []
    for p in results:
        if p.ok:
            rel = os.path.relpath(p.path, base)
            out.append(f"<h4>{_e(p.title)}</h4><img src=\"{_url(rel)}\" alt=\"{_e(p.title)}\">")
            extra = [p.note] if p.note else []
            if p.sources:
                extra.append("overlaid: " + "; ".join(dict.fromkeys(p.sources)))
            if extra:
                out.append(f"<p class=note>{_e(' — '.join(extra))}</p>")
        else:
            out.append(f"<p class=note><b>{_e(p.title)}</b>: {_e(p.note)}</p>")
    return "\n".join(out)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_report(run_dir: str | Path) -> Path:
    base = Path(run_dir)
    runs = load_runs(base)
    plot_dir = base / "plots"
    sections = []
    for run in runs:
        prefix = "" if len(runs) == 1 else _safe(run.path.name) + "-"
        results = make_plots(run, plot_dir, prefix)
        notes = "".join(f"<p class=note>{_e(n)}</p>" for n in run.notes)
        sections.append(
            f"<h2>{_e(run.name)}</h2><p class=note>{_e(run.path)}</p>{notes}"
            f"<h3>Machine and versions</h3>{_kv_table(machine_rows(run.manifest))}"
            f"<h3>Run</h3>{_kv_table(run_rows(run.manifest))}"
            f"<h3>Plots</h3>{plots_html(results, base)}"
            f"<h3>Points</h3>{points_table(run, base)}")
    cites = ("<h3>Published numbers</h3><p class=note>Overlays come from analysis/reference/ "
             "(README.md there cites every row): Yang et al. 2024, arXiv 2411.01783; USP "
             "(Fang &amp; Zhao 2024); Striped Attention; ring-flash-attention; PyTorch and "
             "nccl-tests runs named in each file. They were measured on other machines and "
             "models: compare shapes and ratios, not absolute times.</p>")
    title = f"cpbench report: {', '.join(r.name for r in runs)}"
    page = (f"<!DOCTYPE html><html><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>"
            + "\n".join(sections) + cites + "</body></html>\n")
    out = base / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m analysis.report",
                                 description="Write RUN_DIR/report.html and RUN_DIR/plots/.")
    ap.add_argument("run_dir", metavar="RUN_DIR")
    args = ap.parse_args(argv)
    try:
        out = write_report(args.run_dir)
    except (RunError, OSError) as e:
        print(f"report: error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
