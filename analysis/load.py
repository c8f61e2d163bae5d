"""Reads cpbench run folders (manifest.json, results.jsonl, traces/) into pandas.

One row per point. The record's `config` is flattened into plain columns, the resolved
`workload` overrides it (so `phase` is full_prefill / partial_prefill / decode), and nested
sections become prefixed columns (`time_median`, `comm_s.ring_kv`, `trace_s.attention`, ...).
Every field is optional: a record from an older or newer schema, or a failed point with no
timings, loads with NaN/None where a field is missing. Per-phase numbers are the max over
ranks, like the record's times. Column names are listed in analysis/README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

# Workload fields that, with cp/strategy/layout, identify a problem; plots group by them.
SHAPE_KEYS = ["batch", "heads", "kv_heads", "head_dim", "mask", "dtype"]
WORKLOAD_KEYS = ["phase", *SHAPE_KEYS, "new_tokens", "cached_tokens"]

# Where a cost-model prediction may sit in a record (the sim backend, Step G, is not written
# yet): the first one found fills `predicted_time_s`.
PREDICTION_PATHS = [("predicted_time_s",), ("prediction", "time_s"), ("model", "time_s"),
                    ("model", "predicted_s"), ("sim", "time_s")]


class RunError(Exception):
    """A folder that is not a readable cpbench run folder."""


@dataclass
class Run:
    path: Path
    manifest: dict
    df: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.name)


def _get(d: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def find_runs(path: str | Path) -> list[Path]:
    """The run folders at `path`: itself if it holds manifest.json, else its subfolders that do
    (the parent given to `cpbench run --out`)."""
    p = Path(path)
    if not p.is_dir():
        raise RunError(f"{p}: not a folder")
    if (p / "manifest.json").is_file():
        return [p]
    runs = sorted(c for c in p.iterdir() if c.is_dir() and (c / "manifest.json").is_file())
    if not runs:
        raise RunError(f"{p}: no manifest.json here or in its subfolders: not a cpbench run folder")
    return runs


def read_manifest(run_dir: Path) -> dict:
    try:
        m = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{run_dir / 'manifest.json'}: {e}") from e
    if not isinstance(m, dict):
        raise RunError(f"{run_dir / 'manifest.json'}: not a JSON object")
    return m


def read_records(path: Path, notes: list[str] | None = None) -> list[dict]:
    """results.jsonl's records. A torn last line (a run killed mid-write) is skipped with a
    note; a bad line elsewhere is an error."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    recs = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            if i == len(lines) - 1:
                if notes is not None:
                    notes.append(f"{path.name}: last line is incomplete, skipped")
                continue
            raise RunError(f"{path}:{i + 1}: invalid JSON ({e})") from e
        if isinstance(rec, dict):
            recs.append(rec)
    return recs


def read_trace(path: str | Path) -> dict:
    """A Chrome trace as a dict with `traceEvents` (a bare event list is accepted too)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):
        data = {"traceEvents": data}
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ValueError(f"{path}: no traceEvents")
    return data


def trace_phase_seconds(trace: dict) -> dict[str, float]:
    """Per phase, the summed slice durations of one rank, max over ranks (seconds)."""
    per_rank: dict[Any, dict[str, float]] = {}
    for e in trace["traceEvents"]:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        phase = _get(e, "args", "phase") or e.get("cat") or e.get("name", "?")
        d = per_rank.setdefault(e.get("pid"), {})
        d[phase] = d.get(phase, 0.0) + float(e["dur"]) * 1e-6  # trace times are in us
    out: dict[str, float] = {}
    for d in per_rank.values():
        for k, v in d.items():
            out[k] = max(out.get(k, 0.0), v)
    return out


def flatten_record(rec: dict, run_dir: Path | None = None, traces: bool = True) -> dict:
    row: dict[str, Any] = {}
    cfg = rec.get("config") if isinstance(rec.get("config"), dict) else {}
    row.update(cfg)
    for k in ("point_id", "index", "status", "error", "strategy", "layout", "cp", "backend",
              "tflops_per_gpu", "trace", "repro"):
        if k in rec:
            row[k] = rec[k]
    wl = rec.get("workload") if isinstance(rec.get("workload"), dict) else {}
    row.update(wl)

    t = rec.get("time") if isinstance(rec.get("time"), dict) else {}
    for k in ("median", "min", "p10", "p90", "max", "mean", "stdev", "n", "clock"):
        row[f"time_{k}"] = t.get(k)
    row["time_samples"] = t.get("samples")
    row["flops_total"] = _get(rec, "flops", "total")

    comm = rec.get("comm") if isinstance(rec.get("comm"), dict) else {}
    row["comm_max_bytes_sent"] = comm.get("max_bytes_sent_per_rank")
    for k in ("exposed_comm_s", "overlap_fraction", "comm_only_s", "compute_only_s"):
        row[k] = comm.get(k)

    for rank in rec.get("accounting") or []:
        for name, ph in (_get(rank, "phases") or {}).items():
            for src, col in (("bytes_sent", "bytes_sent"), ("comm_s", "comm_s"),
                             ("busbw_GBps", "busbw_GBps")):
                v = ph.get(src)
                if v is not None:
                    key = f"{col}.{name}"
                    row[key] = max(row.get(key, v), v)

    host = rec.get("host") if isinstance(rec.get("host"), dict) else {}
    row["host_issue_per_step_us"] = host.get("issue_per_step_us")
    row["host_steps"] = host.get("steps")
    row["cuda_graph"] = host.get("cuda_graph")
    # Memory per rank: the largest peak, and the largest peak over its rank's minimum.
    peaks = _get(rec, "memory", "peak_bytes_per_rank") or []
    least = _get(rec, "memory", "minimum_bytes_per_rank") or []
    row["memory_peak_bytes"] = max(peaks) if peaks else None
    row["memory_minimum_bytes"] = max(least) if least else None
    ratios = [a / b for a, b in zip(peaks, least) if b]
    row["memory_over_minimum"] = max(ratios) if ratios else None

    detail = rec.get("strategy_detail") if isinstance(rec.get("strategy_detail"), dict) else {}
    row["auto_choice"] = detail.get("choice")
    row["auto_reason"] = detail.get("reason")
    row["auto_miss_rate_threshold"] = _get(detail, "thresholds", "miss_rate_threshold")

    v = rec.get("verify") if isinstance(rec.get("verify"), dict) else {}
    row["verify_ran"] = v.get("ran")
    row["verify_passed"] = v.get("passed")
    row["verify_max_rel_err"] = v.get("max_rel_err")
    row["verify_reason"] = v.get("reason")

    row["predicted_time_s"] = next(
        (x for p in PREDICTION_PATHS if isinstance(x := _get(rec, *p), (int, float))), None)

    row["trace_path"] = None
    if run_dir is not None and isinstance(rec.get("trace"), str):
        tp = run_dir / rec["trace"]
        if tp.is_file():
            row["trace_path"] = str(tp)
            if traces:
                try:
                    for k, s in trace_phase_seconds(read_trace(tp)).items():
                        row[f"trace_s.{k}"] = s
                except ValueError:
                    pass  # an unreadable trace only loses the traced breakdown
    return row


def load_run(path: str | Path, traces: bool = True) -> Run:
    """One run folder (the folder holding manifest.json)."""
    run_dir = Path(path)
    manifest = read_manifest(run_dir)
    notes: list[str] = []
    recs = read_records(run_dir / "results.jsonl", notes)
    if not recs:
        notes.append("results.jsonl is missing or holds no records")
    df = pd.DataFrame([flatten_record(r, run_dir, traces) for r in recs])
    if len(df):
        df.insert(0, "experiment", manifest.get("name") or run_dir.name)
    return Run(run_dir, manifest, df, notes)


def load_runs(path: str | Path, traces: bool = True) -> list[Run]:
    """Every run folder at `path` (see find_runs)."""
    return [load_run(p, traces) for p in find_runs(path)]


def load(path: str | Path, traces: bool = True) -> pd.DataFrame:
    """All points of every run at `path` in one DataFrame (column `experiment` tells them
    apart)."""
    frames = [r.df for r in load_runs(path, traces) if len(r.df)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
