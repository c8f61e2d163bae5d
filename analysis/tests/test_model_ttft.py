"""The Llama3-405B TTFT wrapper (analysis/model_ttft.py) on hand-computed numbers: the layer's
weights, GEMM and all-reduce times, the cost model's curve semantics, the crossover, and the
tables built from made-up sim times."""

import pytest

from analysis import model_ttft as mt

M = mt.LLAMA3_405B


def test_layer_weights_add_up_to_405b():
    w = mt.layer_weights()
    assert w == 16384 * 16384 * 2 + 2 * 16384 * 1024 + 3 * 16384 * 53248
    embeddings = 2 * 128256 * 16384  # input embedding and LM head
    assert M["layers"] * w + embeddings == pytest.approx(405.8e9, rel=0.01)


def test_gemm_and_allreduce_seconds():
    # 1000 tokens: 2 * weights * 1000 FLOPs, an eighth per GPU, at 1 TF/s.
    assert mt.gemm_seconds(1000, 1.0) == pytest.approx(2 * mt.layer_weights() * 1000 / 8 / 1e12)
    curve = {"bytes": [32768 * 10, 32768 * 20], "us": [100, 150]}
    assert mt.allreduce_seconds(5, curve) == pytest.approx(100e-6)    # below: latency floor
    assert mt.allreduce_seconds(15, curve) == pytest.approx(125e-6)   # between: linear
    assert mt.allreduce_seconds(40, curve) == pytest.approx(250e-6)   # above: last slope
    assert mt.allreduce_seconds(0, curve) == 0


def test_interpolate_time_matches_the_cost_model():
    xs, ys = [1000, 2000, 4000], [1, 2, 6]
    assert mt.interpolate_time(xs, ys, 10) == 1
    assert mt.interpolate_time(xs, ys, 1500) == pytest.approx(1.5)
    assert mt.interpolate_time(xs, ys, 3000) == pytest.approx(4)
    assert mt.interpolate_time(xs, ys, 8000) == pytest.approx(14)


def test_layer_parts_split_tokens_over_cp():
    model = {"matmul_tflops": 500.0, "tp_allreduce": {"bytes": [1, 2], "us": [1, 2]}}
    p = mt.layer_parts(0.01, 8192, 4, model)
    assert p["attention"] == 0.01
    assert p["gemm"] == pytest.approx(mt.gemm_seconds(2048, 500.0))
    assert p["allreduce"] == pytest.approx(2 * 2048 * 16384 * 2 * 1e-6)
    assert mt.ttft_seconds(p) == pytest.approx(126 * sum(p.values()))


def test_crossover():
    # pass-Q wins at 1% and 2%, pass-KV from 4%: the difference goes +2, +1, -1.
    assert mt.crossover([0.01, 0.02, 0.04], [5, 5, 5], [3, 4, 6]) == pytest.approx(0.03)
    assert mt.crossover([0.01, 0.02], [1, 1], [2, 2]) is None  # pass-KV everywhere
    assert mt.crossover([0.01, 0.02], [2, 2], [1, 1]) is None  # pass-Q everywhere
    _, partial = mt.read_reference()
    paper = mt.crossover([float(r["miss_rate"]) for r in partial],
                         [float(r["pass_kv_ttft_ms"]) for r in partial],
                         [float(r["pass_q_ttft_ms"]) for r in partial])
    assert 0.05 < paper < 0.055  # Table 4: pass-Q ahead at 5%, pass-KV at 10%


def test_cp_of_paper_configs():
    assert mt.cp_of("TP8") == 1
    assert mt.cp_of("CP16+TP8") == 16
    assert mt.cp_of("TP16") is None


def test_build_from_made_up_sim_times():
    model = {"matmul_tflops": 700.0, "tp_allreduce": {"bytes": [1e6, 2e6], "us": [10, 20]}}
    _, partial_ref = mt.read_reference()
    full = {}
    for cp in (1, 2, 4, 8, 16):
        for ctx in (8192, 32768, 131072, 1048576):
            for s in (("ring_pass_kv",) if cp == 1 else ("ring_pass_kv", "ring_pass_q")):
                full[(s, cp, ctx, 0)] = (1e-3 * ctx / 8192 / cp, "")
    partial = {}
    for r in partial_ref:
        new, cached = int(r["new_tokens"]), int(r["cached_tokens"])
        m = float(r["miss_rate"])
        # pass-Q cheaper below 5%, dearer above.
        partial[("ring_pass_kv", 4, new, cached)] = (1e-3, "")
        partial[("ring_pass_q", 4, new, cached)] = (1e-3 * m / 0.05, "")
        partial[("auto", 4, new, cached)] = (1e-3, "ring_pass_kv")
    t = mt.build({mt.PRIMARY: {"full": full, "partial": partial}}, {mt.PRIMARY: model})
    row = next(r for r in t["paper_ttft"] if r["config"] == "CP4+TP8")
    parts = mt.layer_parts(1e-3 * 16 / 4, 131072, 4, model)
    assert row[mt.PRIMARY] == pytest.approx(mt.ttft_seconds(parts))
    assert row[mt.PRIMARY + "_err"] == pytest.approx(row[mt.PRIMARY] / 10.95 - 1)
    assert not any(r["config"] == "TP16" for r in t["paper_ttft"])  # no CP: not ours to model
    assert t["crossover"][mt.PRIMARY] == pytest.approx(0.05, abs=1e-9)
    md = mt.render_tables(t, {mt.PRIMARY: model})
    assert "| CP4+TP8 | 32 | 128K | 10.95 |" in md
    assert "Crossover" in md and "5.0%" in md


def test_paper_experiments_expand_with_no_invalid_point():
    import subprocess

    from analysis.tests.conftest import ROOT, find_cpbench

    exe = find_cpbench()
    if exe is None:
        pytest.skip("the cpbench binary is not built (or set CPBENCH)")
    for exp, points in (("full", 102), ("partial", 42)):
        r = subprocess.run([str(exe), "run", str(mt.EXPERIMENTS[exp]), "--backend", "sim",
                            "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{points} points" in r.stdout + r.stderr, r.stdout[-500:]
        assert "invalid" not in (r.stdout + r.stderr).replace("0 invalid", "")


def test_plots_are_written(tmp_path):
    from analysis.tests.conftest import assert_png

    model = {"matmul_tflops": 700.0, "tp_allreduce": {"bytes": [1e6, 2e6], "us": [10, 20]}}
    _, partial_ref = mt.read_reference()
    full = {("ring_pass_kv", cp, 131072, 0): (1e-2 / cp, "") for cp in (1, 2, 4, 8, 16)}
    partial = {(s, 4, int(r["new_tokens"]), int(r["cached_tokens"])): (1e-3, "ring_pass_kv")
               for r in partial_ref for s in ("ring_pass_kv", "ring_pass_q", "auto")}
    t = mt.build({mt.PRIMARY: {"full": full, "partial": partial}}, {mt.PRIMARY: model})
    for f in mt.plot(t, tmp_path):
        assert_png(f)
