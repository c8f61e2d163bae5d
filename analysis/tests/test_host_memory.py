"""analysis.host_memory on a real cpu run folder (tiny_run: the record's host and memory
sections as cpbench writes them) and on synthetic records whose numbers are known."""

import json
import math

from analysis import host_memory as hm
from analysis.load import load


def record(strategy, cp, ms, issue_us, peak, minimum, graph, phase="full_prefill", index=0):
    cfg = {"strategy": strategy, "cp": cp, "layout": "zigzag", "new_tokens": 8192}
    return {"index": index, "status": "ok", "config": cfg, "strategy": strategy,
            "layout": "zigzag", "cp": cp, "backend": "cuda",
            "workload": {"phase": phase, "batch": 1, "new_tokens": 8192, "cached_tokens": 0},
            "time": {"median": ms * 1e-3, "samples": [ms * 1e-3]},
            "host": {"issue_per_step_us": issue_us, "steps": cp, "cuda_graph": graph},
            "memory": {"peak_bytes_per_rank": [peak] * cp,
                       "minimum_bytes_per_rank": [minimum] * cp}}


def write_run(folder, records):
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"name": "host-overhead"}))
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_loader_reads_host_and_memory_of_a_real_run(tiny_run):
    df = load(tiny_run, traces=False)
    ok = df[df["status"] == "ok"]
    assert ok["host_issue_per_step_us"].gt(0).all()
    assert (ok["cuda_graph"] == False).all()  # noqa: E712 (the cpu backend has no graphs)
    assert ok["memory_minimum_bytes"].gt(0).all()
    # Every strategy's peak is at least its minimum and within Step E's 1.2x.
    assert ok["memory_over_minimum"].between(1.0, hm.MEMORY_TARGET).all()


def test_table_and_targets(tmp_path, capsys):
    eager = write_run(tmp_path / "eager", [
        record("ring_pass_kv", 2, 2.0, 25.0, 3 << 30, 3 << 30, False, index=0),
        record("ring_pass_q", 2, 3.0, 30.0, 5 << 30, 4 << 30, False, index=1)])
    graph = write_run(tmp_path / "graph", [
        record("ring_pass_kv", 2, 1.9, 4.0, 3 << 30, 3 << 30, True, index=0),
        record("ring_pass_q", 2, 2.8, 6.0, 5 << 30, 4 << 30, True, index=1)])
    md = tmp_path / "t.md"
    assert hm.main([str(eager), str(graph), "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "| full_prefill | 8192 | 2 | ring_pass_q | 3.000 | 2.800 | 30.0 | 6.0 | 5.00 | 1.250 |" \
        in text
    # Worst op-by-op 30 us (not met), graph 6 us (met), memory 1.25x (not met).
    assert "op by op 30.0 µs (NOT met), CUDA graph 6.0 µs (met)" in text
    assert "1.250x (NOT met)" in text
    assert text in capsys.readouterr().out


def test_a_point_missing_from_one_run_shows_dashes(tmp_path):
    eager = write_run(tmp_path / "eager", [record("allgather", 2, 1.0, 20.0, 1, 1, False)])
    graph = write_run(tmp_path / "graph", [])
    j = hm.joined(load(eager), load(graph))
    assert len(j) == 1 and math.isnan(j["time_median_graph"].iloc[0])
    assert "| - |" in hm.table(j)


def test_bad_folder_exits_2(tmp_path, capsys):
    assert hm.main([str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert "host_memory:" in capsys.readouterr().err


def test_no_points_exits_2(tmp_path, capsys):
    a = write_run(tmp_path / "a", [])
    b = write_run(tmp_path / "b", [])
    assert hm.main([str(a), str(b)]) == 2
    assert "no point ran" in capsys.readouterr().err
