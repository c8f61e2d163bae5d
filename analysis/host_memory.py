"""`python3 -m analysis.host_memory EAGER_RUN GRAPH_RUN [--markdown FILE]`

Host overhead and memory per point, from two runs of the same experiment
(experiments/compare/host_overhead.yaml, run by scripts/host_overhead.sh): one issuing every op
(EAGER_RUN) and one replaying each point's iteration from a CUDA graph (GRAPH_RUN, `cpbench run
--cuda-graph`). Each RUN is a run folder or a parent of one (analysis.load).

One markdown row per point that ran in either: median time op by op and replayed (ms), host
issue time per ring step of each (µs: the host seconds to issue an iteration, or to launch its
graph, over the ring steps the strategy numbered), and the peak memory per rank with its ratio
to the strategy's minimum (memory.minimum_bytes_per_rank: the same buffers, each held only over
its stages). Then, over the points, the largest issue time per step of each mode and the
largest memory ratio, against Step E's targets (<= 10 µs per step; <= 1.2x the minimum).
Exit 0, or 2 with one line when a RUN is not a run folder or holds no point.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from analysis.load import RunError, load

KEY = ["phase", "batch", "new_tokens", "cached_tokens", "cp", "strategy", "layout"]
ISSUE_TARGET_US = 10.0
MEMORY_TARGET = 1.2


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    if "status" in df:
        df = df[df["status"] == "ok"]
    return df


def joined(eager: pd.DataFrame, graph: pd.DataFrame) -> pd.DataFrame:
    """The two runs' ok points side by side on the point key (suffixes _eager, _graph)."""
    cols = ["time_median", "host_issue_per_step_us", "host_steps", "cuda_graph",
            "memory_peak_bytes", "memory_over_minimum"]
    sides = []
    for df, tag in ((eager, "eager"), (graph, "graph")):
        df = _ok(df).reindex(columns=KEY + cols)  # a run with no point has no columns
        sides.append(df.rename(columns={c: f"{c}_{tag}" for c in cols}))
    return sides[0].merge(sides[1], on=KEY, how="outer").sort_values(KEY).reset_index(drop=True)


def _num(x: object, fmt: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, fmt)


def table(j: pd.DataFrame) -> str:
    head = ("| phase | tokens | cp | strategy | ms op by op | ms graph | issue/step µs op by op "
            "| issue/step µs graph | peak GiB/rank | peak / minimum |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for _, r in j.iterrows():
        tokens = (f"{int(r['new_tokens'])}" if r.get("phase") != "decode" else
                  f"1 x{int(r['batch'])} after {int(r['cached_tokens'])}")
        peak = r.get("memory_peak_bytes_eager")
        lines.append(
            f"| {r['phase']} | {tokens} | {r['cp']} | {r['strategy']} "
            f"| {_num(r.get('time_median_eager', math.nan) * 1e3, '.3f')} "
            f"| {_num(r.get('time_median_graph', math.nan) * 1e3, '.3f')} "
            f"| {_num(r.get('host_issue_per_step_us_eager'), '.1f')} "
            f"| {_num(r.get('host_issue_per_step_us_graph'), '.1f')} "
            f"| {_num(None if peak is None else peak / 2**30, '.2f')} "
            f"| {_num(r.get('memory_over_minimum_eager'), '.3f')} |")
    return "\n".join(lines)


def summary(j: pd.DataFrame) -> str:
    def worst(col: str) -> float:
        return float(j[col].max()) if col in j and j[col].notna().any() else math.nan

    e, g = worst("host_issue_per_step_us_eager"), worst("host_issue_per_step_us_graph")
    m = worst("memory_over_minimum_eager")
    verdict = lambda x, t: "-" if math.isnan(x) else ("met" if x <= t else "NOT met")  # noqa: E731
    return "\n".join([
        f"- host issue per ring step, worst point: op by op {_num(e, '.1f')} µs "
        f"({verdict(e, ISSUE_TARGET_US)}), CUDA graph {_num(g, '.1f')} µs "
        f"({verdict(g, ISSUE_TARGET_US)}); target <= {ISSUE_TARGET_US:g} µs",
        f"- peak memory over the strategy's minimum, worst point: {_num(m, '.3f')}x "
        f"({verdict(m, MEMORY_TARGET)}); target <= {MEMORY_TARGET:g}x",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m analysis.host_memory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eager")
    ap.add_argument("graph")
    ap.add_argument("--markdown", type=Path)
    a = ap.parse_args(argv)
    try:
        eager, graph = load(a.eager, traces=False), load(a.graph, traces=False)
    except RunError as e:
        print(f"host_memory: {e}", file=sys.stderr)
        return 2
    if not len(_ok(eager)) and not len(_ok(graph)):
        print("host_memory: no point ran in either run", file=sys.stderr)
        return 2
    j = joined(eager, graph)
    text = table(j) + "\n\n" + summary(j) + "\n"
    print(text)
    if a.markdown:
        a.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
