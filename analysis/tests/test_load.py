import json

import pandas as pd
import pytest

from analysis.load import RunError, find_runs, load, load_run


def test_tiny_run_loads_flat(tiny_run):
    run = load_run(tiny_run)
    df = run.df
    assert run.name == "tiny" and len(df) == 72
    for col in ("strategy", "layout", "cp", "phase", "heads", "new_tokens", "miss_rate",
                "time_median", "time_samples", "tflops_per_gpu", "verify_passed", "trace_path",
                "trace_s.attention", "comm_s.ring_kv", "auto_choice"):
        assert col in df, col
    assert set(df.phase) == {"full_prefill", "partial_prefill"}
    assert df.time_median.gt(0).all() and df.verify_passed.all()
    assert set(df[df.strategy == "auto"].auto_choice) == {"ring_pass_kv", "ring_pass_q"}
    assert df.exposed_comm_s.isna().all()  # cpu: null, never estimated
    assert all(len(s) == 3 for s in df.time_samples)


def test_parent_folder_finds_runs(tiny_run):
    assert find_runs(tiny_run.parent) == [tiny_run]
    assert len(load(tiny_run.parent)) == 72


def test_gpu_run_has_exposed_comm(gpu_run):
    df = load_run(gpu_run).df
    assert df.exposed_comm_s.notna().all() and df.compute_only_s.notna().all()
    assert df.trace_path.notna().sum() == 2  # only two traces were committed


def test_missing_fields_and_torn_last_line(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    recs = [{"point_id": "a", "status": "error", "error": "boom", "strategy": "ring_pass_q"},
            {"status": "ok", "time": {"median": 0.5}, "accounting": "not a list",
             "trace": "traces/missing.json"}]
    (tmp_path / "results.jsonl").write_text(
        "\n".join(json.dumps(r) for r in recs) + '\n{"status": "o')
    run = load_run(tmp_path)
    assert len(run.df) == 2 and run.notes
    assert pd.isna(run.df.time_median[0]) and run.df.time_median[1] == 0.5
    assert run.name == tmp_path.name


def test_invalid_folders(tmp_path):
    with pytest.raises(RunError):
        find_runs(tmp_path / "nope")
    with pytest.raises(RunError):
        find_runs(tmp_path)
    (tmp_path / "manifest.json").write_text("[1]")
    with pytest.raises(RunError):
        load_run(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "results.jsonl").write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(RunError, match=":2:"):
        load_run(tmp_path)
