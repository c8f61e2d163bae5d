"""Published and externally measured numbers (analysis/reference/*.csv) for the plots' overlays.

Each CSV row names its source in a `source` column; lines starting with `#` are notes kept
beside the table. The citations are in analysis/reference/README.md.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import pandas as pd

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


@lru_cache(maxsize=None)
def _read(name: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    text = (REFERENCE_DIR / name).read_text()
    rows = [ln for ln in text.splitlines() if not ln.startswith("#")]
    notes = tuple(ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#"))
    return pd.read_csv(io.StringIO("\n".join(rows))), notes


def table(name: str) -> pd.DataFrame:
    """A reference CSV by file name (`yang2024_partial_prefill.csv`); a copy, safe to edit."""
    return _read(name)[0].copy()


def notes(name: str) -> list[str]:
    return list(_read(name)[1])


def yang_prefill_efficiency(context: int = 131072) -> pd.DataFrame:
    """Yang et al. 2024 full-prefill TTFT (Tables 6-7, Sec. 4.2) as parallel efficiency over
    CP degree at one context: TTFT(CP1) / (N * TTFT(CPN)), the TP8 row being CP1."""
    t = table("yang2024_ttft_prefill.csv")
    t = t[(t.context == context) & t.config.str.match(r"^(TP8|CP\d+\+TP8)$")].copy()
    t["cp"] = t.config.str.extract(r"^CP(\d+)", expand=False).fillna(1).astype(int)
    t = t.sort_values("cp")
    base = t.loc[t.cp == 1, "ttft_ms"]
    t["efficiency"] = float(base.iloc[0]) / (t.cp * t.ttft_ms) if len(base) else float("nan")
    return t


def torch_context_parallel(heads, kv_heads, head_dim, context, causal=True) -> pd.DataFrame:
    """PyTorch context_parallel and SDPA rows (peers_torch.csv) of exactly this shape."""
    t = table("peers_torch.csv")
    return t[(t.heads == heads) & (t.kv_heads == kv_heads) & (t.head_dim == head_dim)
             & (t.seq_len == context) & (t.causal == causal)]
