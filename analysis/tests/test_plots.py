import pandas as pd
import pytest

from analysis import plots
from analysis.load import load_run
from analysis.tests.conftest import assert_png

# On the tiny cpu run every table plot draws, except model vs measured (no predictions yet).
DRAWN_ON_TINY = {"scaling", "ttft_vs_context", "miss_rate_sweep", "breakdown"}


@pytest.mark.parametrize("fn", plots.TABLE_PLOTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("reference", [True, False])
def test_plot_on_tiny_run(tiny_run, tmp_path, fn, reference):
    res = fn(load_run(tiny_run).df, tmp_path / "p.png", reference=reference)
    if fn.__name__ in DRAWN_ON_TINY:
        assert res.ok, res.note
        assert_png(res.path)
        assert bool(res.sources) == reference
    else:
        assert not res.ok and res.note.startswith("skipped") and not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("fn", plots.TABLE_PLOTS, ids=lambda f: f.__name__)
def test_plot_on_gpu_run_draws_or_skips(gpu_run, tmp_path, fn):
    res = fn(load_run(gpu_run).df, tmp_path / "p.png")
    if res.ok:
        assert_png(res.path)
    else:
        assert res.note.startswith("skipped")
    # 18 points at cp 1, 2, 4 with compute-only times: these two must draw.
    assert res.ok or fn.__name__ not in ("scaling", "breakdown")


@pytest.mark.parametrize("fn", plots.TABLE_PLOTS, ids=lambda f: f.__name__)
def test_plot_skips_empty_and_failed(tmp_path, fn):
    assert not fn(pd.DataFrame(), tmp_path / "a.png").ok
    failed = pd.DataFrame({"status": ["error"], "strategy": ["usp"], "cp": [2],
                           "time_median": [None]})
    res = fn(failed, tmp_path / "b.png")
    assert not res.ok and res.note


def test_model_vs_measured_with_predictions(tiny_run, tmp_path):
    df = load_run(tiny_run).df
    df["predicted_time_s"] = df.time_median * 1.1
    res = plots.model_vs_measured(df, tmp_path / "m.png")
    assert res.ok
    assert_png(res.path)


def test_timeline(tiny_run, tmp_path):
    df = load_run(tiny_run).df
    picked = plots.pick_traces(df)
    assert [p.strategy for p in picked] == ["ring_pass_kv", "ring_pass_q"]
    assert all(p.cp == 4 for p in picked)
    res = plots.timeline(picked[0].trace_path, tmp_path / "t.png")
    assert res.ok
    assert_png(res.path)


def test_timeline_bad_trace(tmp_path):
    assert not plots.timeline(tmp_path / "missing.json", tmp_path / "t.png").ok
    (tmp_path / "empty.json").write_text('{"traceEvents": []}')
    assert "no slices" in plots.timeline(tmp_path / "empty.json", tmp_path / "t.png").note
