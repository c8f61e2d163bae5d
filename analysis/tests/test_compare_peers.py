"""analysis.compare_peers on synthetic run folders, and benchmarks/peer_torch_cp.py's dry run,
arguments and records (none of which needs torch or a GPU)."""

import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from analysis import compare_peers as cmp
from analysis.load import load_run
from analysis.tests.conftest import ROOT, assert_png

PEER_SCRIPT = ROOT / "benchmarks" / "peer_torch_cp.py"
MHA = {"heads": 32, "kv_heads": 32, "head_dim": 128}


def _peer_module():
    spec = importlib.util.spec_from_file_location("peer_torch_cp", PEER_SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


peer = _peer_module()


def write_run(folder, records, name):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"name": name}))
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def cpbench_record(strategy, layout, cp, context, ms, compute_ms=None, status="ok", error=None,
                   ulysses=0, shape=MHA, index=0):
    wl = {"batch": 1, **shape, "gqa_ratio": shape["heads"] // shape["kv_heads"],
          "dtype": "bf16", "mask": "causal", "new_tokens": context, "cached_tokens": 0,
          "context": context, "miss_rate": 1.0, "phase": "full_prefill"}
    cfg = {"strategy": strategy, "layout": layout, "cp": cp, "new_tokens": context,
           "ulysses": ulysses, "mask": "causal", **shape}
    rec = {"schema": "cpbench.result/1", "point_id": ",".join(f"{k}={v}" for k, v in
                                                              sorted(cfg.items())),
           "index": index, "status": status, "error": error, "config": cfg,
           "strategy": strategy, "layout": layout, "cp": cp, "backend": "cuda", "workload": wl}
    if status == "ok":
        flops = 4.0 * shape["heads"] * shape["head_dim"] * context * (context + 1) / 2
        s = ms * 1e-3
        rec["time"] = {"median": s, "min": s, "p10": s, "p90": s, "max": s, "mean": s,
                       "stdev": 0.0, "n": 3, "samples": [s] * 3, "clock": "cuda_event"}
        rec["flops"] = {"total": flops}
        rec["tflops_per_gpu"] = flops / cp / s / 1e12
        rec["verify"] = {"ran": True, "passed": True, "max_rel_err": 1e-3}
        if compute_ms is not None:
            c = compute_ms * 1e-3
            rec["comm"] = {"compute_only_s": c, "exposed_comm_s": s - c, "comm_only_s": 2 * c,
                           "overlap_fraction": 1 - (s - c) / (2 * c)}
    return rec


def peer_record(seq, backend, rotate, cp, ms=None, error=None, index=0):
    """A record made by the peer runner's own code, as its run would write it."""
    a = peer.parse_args(["--dry-run", "--world-size", str(cp)] if rotate else
                        ["--dry-run", "--single-gpu"])
    a.out = "/tmp/peer"
    p = peer.Point(index, seq, backend, rotate, cp, 1, 32, 128, 0)
    prov = {"git": {"sha": "abc"}, "host": "test"}
    if error:
        return peer.base_record(a, p, "error", error, prov, {"torch": "2.11.0"})
    rec = peer.base_record(a, p, "ok", None, prov, {"torch": "2.11.0"})
    verify = {"ran": True, "passed": True, "max_rel_err": 4e-3, "tolerance": 1e-2,
              "reference": "torch SDPA"}
    return peer.finish_record(rec, p, [ms * 1e-3] * 5, [1 << 30] * cp, verify)


@pytest.fixture
def runs(tmp_path):
    ours = write_run(tmp_path / "ours", [
        cpbench_record("ring_pass_kv", "zigzag", 4, 32768, 4.0, compute_ms=3.6, index=0),
        cpbench_record("ring_pass_kv", "contiguous", 4, 32768, 5.0, index=1),
        cpbench_record("usp", "zigzag", 4, 32768, 4.5, ulysses=2, index=2),
        cpbench_record("ulysses", "zigzag", 4, 32768, None, status="error",
                       error="CUDA error: out of memory\nat line 3 | more", index=3),
        cpbench_record("ring_pass_kv", "zigzag", 4, 131072, 60.0, index=4),
    ], "ours")
    theirs = write_run(tmp_path / "peer", [
        peer_record(32768, "cudnn", "allgather", 4, 5.5, index=0),
        peer_record(32768, "cudnn", "alltoall", 4, 6.8, index=1),
        peer_record(32768, "flash", "allgather", 4, 8.4, index=2),
        peer_record(32768, "flash", "alltoall", 4, error="OutOfMemoryError: CUDA out of memory.",
                    index=3),
    ], "peer-torch-cp")
    single = write_run(tmp_path / "single", [
        peer_record(32768, "cudnn", None, 1, 20.0, index=0),
    ], "peer-torch-sdpa")
    return ours, theirs, single


def _table(tables, context, cp):
    (t,) = [t for t in tables if t.workload["context"] == context and t.cp == cp]
    return t


def test_peer_records_load(runs):
    df = load_run(runs[1]).df
    assert len(df) == 4
    assert set(df.strategy) == {"torch_context_parallel"} and set(df.backend) == {"torch"}
    assert set(df.layout) == {"torch_load_balanced"} and set(df.phase) == {"full_prefill"}
    ok = df[df.status == "ok"]
    assert ok.kv_heads.eq(32).all() and ok.context.eq(32768).all()
    assert ok.time_median.round(6).tolist() == [0.0055, 0.0068, 0.0084]
    flops = 4.0 * 32 * 128 * 32768 * 32769 / 2
    assert ok.flops_total.eq(flops).all()
    assert ok.tflops_per_gpu.iloc[0] == pytest.approx(flops / 4 / 0.0055 / 1e12)
    assert df[df.status == "error"].error.iloc[0].startswith("OutOfMemoryError")
    assert ok.verify_passed.all()


def test_table_rows_and_ratios(runs):
    df, _ = cmp.load_points(runs)
    t = _table(cmp.compare(df), 32768, 4)
    labels = [r.label for r in t.rows]
    assert labels == [
        "ring_pass_kv / zigzag", "usp / zigzag u=2", "ring_pass_kv / contiguous",
        "ulysses / zigzag",
        "PyTorch context_parallel cudnn / allgather", "PyTorch context_parallel cudnn / alltoall",
        "PyTorch context_parallel flash / allgather", "PyTorch context_parallel flash / alltoall"]
    assert t.best_peer.label == "PyTorch context_parallel cudnn / allgather"
    zz = t.row("ring_pass_kv / zigzag")
    assert zz.ratio == pytest.approx(5.5 / 4.0)
    assert zz.target == "met (>= 1.2x)"
    assert zz.efficiency == pytest.approx(3.6 / 4.0)
    assert zz.exposed_ms == pytest.approx(0.4)
    assert t.row("ring_pass_kv / contiguous").ratio == pytest.approx(1.1)
    assert t.row("ring_pass_kv / contiguous").target == "not met (>= 1.2x)"
    assert t.row("PyTorch context_parallel cudnn / alltoall").ratio == pytest.approx(5.5 / 6.8)
    assert t.row("PyTorch context_parallel cudnn / alltoall").target == ""
    # one-GPU SDPA (cudnn, 20 ms) against context_parallel cudnn at cp 4
    assert t.row("PyTorch context_parallel cudnn / allgather").scaling_eff == \
        pytest.approx(20.0 / (4 * 5.5))
    assert t.summary and "1.38x" in t.summary[0] and "met" in t.summary[0]
    assert "NOT met" not in t.summary[0]


def test_failed_points_show_as_failed(runs):
    df, _ = cmp.load_points(runs)
    t = _table(cmp.compare(df), 32768, 4)
    assert not t.row("ulysses / zigzag").ok
    md = "\n".join(cmp.table_markdown(t))
    assert "| ulysses / zigzag | ours | failed: CUDA error: out of memory at line 3 / more |" in md
    assert "failed: OutOfMemoryError: CUDA out of memory." in md


def test_reference_csv_when_no_live_peer(runs):
    df, _ = cmp.load_points([runs[0]])
    t = _table(cmp.compare(df), 131072, 4)
    assert t.best_peer is None and t.ref_peer["ms"] == pytest.approx(68.842)
    r = t.row("ring_pass_kv / zigzag")
    assert r.ratio is None and r.ref_ratio == pytest.approx(68.842 / 60.0)
    assert r.target == "met (>= 1.1x)"
    md = "\n".join(cmp.table_markdown(t))
    assert "| peer (reference csv) |" in md and "1.15x" in md
    assert "context_parallel cudnn allgather, 68.842 ms" in md


def test_zigzag_over_contiguous(runs):
    df, _ = cmp.load_points(runs)
    (z,) = cmp.zigzag_over_contiguous(df)
    assert z.cp == 4 and z.workload["context"] == 32768
    assert z.speedup == pytest.approx(5.0 / 4.0)
    assert (z.contiguous, z.zigzag) == ("5.000", "4.000")


def test_striped_beside_zigzag_and_the_ideal(tmp_path):
    run = write_run(tmp_path / "r", [
        cpbench_record("ring_pass_kv", "zigzag", 8, 8192, 2.0, index=0),
        cpbench_record("ring_pass_kv", "contiguous", 8, 8192, 3.6, index=1),
        cpbench_record("ring_pass_kv", "striped", 8, 8192, 2.4, index=2)], "r")
    df, _ = cmp.load_points([run])
    (z,) = cmp.zigzag_over_contiguous(df)
    assert z.speedup == pytest.approx(1.8) and z.striped_speedup == pytest.approx(1.5)
    assert z.ideal == pytest.approx(2 - 1 / 8)
    md = cmp.render_markdown([], [z], ["r"], [], "none")
    assert "| striped ms | striped speedup | ideal |" in md
    assert "| 1.80x | 2.400 | 1.50x | 1.88x |" in md


def test_zigzag_failed_layout(tmp_path):
    run = write_run(tmp_path / "r", [
        cpbench_record("ring_pass_kv", "zigzag", 2, 8192, 2.0, index=0),
        cpbench_record("ring_pass_kv", "contiguous", 2, 8192, None, status="wrong",
                       error="verification failed: max_rel_err 0.5 > 0.01", index=1)], "r")
    df, _ = cmp.load_points([run])
    (z,) = cmp.zigzag_over_contiguous(df)
    assert z.speedup is None and z.contiguous.startswith("failed: verification failed")


def test_main_writes_markdown_and_plot(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cmp.main([str(p) for p in runs] + ["--out", str(out)]) == 0
    assert_png(out / "compare_peers.png")
    md = (out / "compare_peers.md").read_text()
    assert md.strip() in capsys.readouterr().out
    assert "## ring_pass_kv, causal: zigzag over contiguous" in md and "1.25x" in md
    assert "ours (cpbench, 5 points)" in md and "peer-torch-cp (peer, 4 points)" in md
    assert md.count("### ") == 3  # 32K at cp 4 and cp 1 (SDPA alone), 128K at cp 4
    other = tmp_path / "elsewhere.md"
    assert cmp.main([str(runs[0]), "--out", str(out), "--markdown", str(other)]) == 0
    assert other.is_file()


def test_empty_and_bad_input(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text("{}")
    assert cmp.main([str(empty), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no points in any run folder" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    assert cmp.main([str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    # all points failed: tables with failed rows, no plot, no crash
    failed = write_run(tmp_path / "failed", [cpbench_record(
        "allgather", "zigzag", 2, 4096, None, status="error", error="boom")], "failed")
    assert cmp.main([str(failed)]) == 0
    assert not (failed / "compare_peers.png").exists()
    assert "Plot: skipped: no successful point" in (failed / "compare_peers.md").read_text()


# --- benchmarks/peer_torch_cp.py -----------------------------------------------------------------

def peer_cli(*args, env=None):
    import os
    e = {k: v for k, v in os.environ.items() if k != "WORLD_SIZE"}
    e.update(env or {})
    return subprocess.run([sys.executable, str(PEER_SCRIPT), *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=60)


def test_dry_run_lists_points(tmp_path):
    r = peer_cli("--dry-run", "--seq", "32k,131072", "--backends", "flash,cudnn",
                 "--rotate", "allgather,alltoall", "--out", str(tmp_path / "x"),
                 env={"WORLD_SIZE": "4"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("8 points, torch context_parallel at cp 4")
    assert len(lines) == 9
    assert "seq=32768" in lines[1] and "backend=flash" in lines[1] and "allgather" in lines[1]
    assert "seq=131072" in lines[8] and "backend=cudnn" in lines[8] and "alltoall" in lines[8]
    assert ("batch=1,cp=4,dtype=bf16,head_dim=128,heads=32,kv_heads=32,mask=causal,"
            "new_tokens=32768,peer_backend=flash,rotate_method=allgather,seed=0,"
            "strategy=torch_context_parallel") in lines[1]
    assert not (tmp_path / "x").exists()
    single = peer_cli("--dry-run", "--single-gpu", "--seq", "4096", "--backends", "cudnn")
    assert single.returncode == 0 and "strategy=torch_sdpa" in single.stdout
    assert single.stdout.startswith("1 points")


@pytest.mark.parametrize("args, message", [
    (["--seq", "1004", "--world-size", "4"], "not divisible by 2*cp = 8"),
    (["--backends", "flash,foo"], "--backends"),
    (["--rotate", "ring"], "--rotate"),
    (["--heads", "0"], "--heads: 0 is not positive"),
    (["--iterations", "-1"], "--iterations"),
    (["--warmup", "-1"], "--warmup"),
    (["--seq", "abc"], "--seq"),
    (["--single-gpu", "--world-size", "2"], "--single-gpu"),
    (["--bogus"], "unrecognized arguments"),
])
def test_argument_errors_exit_2(args, message):
    r = peer_cli("--dry-run", *args)
    assert r.returncode == 2, r.stdout
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert r.stderr.startswith("peer_torch_cp.py: error: ")


def test_needs_torchrun_and_out(tmp_path):
    r = peer_cli("--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "torchrun" in r.stderr
    r = peer_cli("--single-gpu")
    assert r.returncode == 2 and "--out" in r.stderr
    r = peer_cli("--single-gpu", "--out", str(tmp_path / "x"), env={"WORLD_SIZE": "2"})
    assert r.returncode == 2 and "WORLD_SIZE" in r.stderr
    assert not (tmp_path / "x").exists()


def test_summarize_matches_stats_cpp():
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 30):
        xs = list(rng.random(n))
        s = peer.summarize(xs)
        assert s["median"] == pytest.approx(np.median(xs))
        assert s["p10"] == pytest.approx(np.percentile(xs, 10))
        assert s["p90"] == pytest.approx(np.percentile(xs, 90))
        assert s["stdev"] == pytest.approx(np.std(xs, ddof=1) if n > 1 else 0.0)
        assert (s["min"], s["max"], s["n"]) == (min(xs), max(xs), n)
    assert math.isnan(peer.summarize([1.0, float("nan")])["median"])


def test_record_fields():
    rec = peer_record(262144, "cudnn", "alltoall", 4, 256.0, index=7)
    for key in ("schema", "point_id", "index", "status", "error", "config", "strategy", "layout",
                "cp", "backend", "peer", "workload", "time", "flops", "tflops_per_gpu", "memory",
                "verify", "provenance", "repro"):
        assert key in rec, key
    assert rec["schema"] == "cpbench.result/1" and rec["workload"]["phase"] == "full_prefill"
    assert rec["time"]["reduction"] == "max over ranks per iteration"
    assert rec["peer"]["rotate_method"] == "alltoall" and "GQA" not in rec["peer"]["note"]
    assert "grouped-query" in rec["peer"]["note"]
    assert rec["repro"].startswith("torchrun --standalone --nproc_per_node=4 ")
    assert "--seq 262144 --backends cudnn" in rec["repro"] and "--rotate alltoall" in rec["repro"]
    wrong = peer.finish_record(peer.base_record(
        peer.parse_args(["--dry-run"]), peer.Point(0, 64, "flash", "allgather", 1, 1, 2, 8, 0),
        "ok", None, {}, {}), peer.Point(0, 64, "flash", "allgather", 1, 1, 2, 8, 0), [1e-3],
        [0], {"ran": True, "passed": False, "max_rel_err": 0.5, "tolerance": 1e-2})
    assert wrong["status"] == "wrong" and wrong["error"].startswith("verification failed")


def test_scaling_efficiency_of_cpbench_rows(tmp_path):
    run = write_run(tmp_path / "r", [
        cpbench_record("ring_pass_kv", "zigzag", 1, 32768, 14.0, index=0),
        cpbench_record("usp", "zigzag", 4, 32768, 5.0, ulysses=2, index=1),
        cpbench_record("auto", "zigzag", 4, 32768, 4.0, index=2)], "r")
    df, _ = cmp.load_points([run])
    t = _table(cmp.compare(df), 32768, 4)
    assert t.row("usp / zigzag u=2").scaling_eff == pytest.approx(14.0 / (4 * 5.0))
    assert t.row("auto / zigzag").scaling_eff == pytest.approx(14.0 / (4 * 4.0))
    # no peer live: the reference csv's 32K cp-4 row (cudnn allgather, 5.525 ms)
    assert t.ref_peer["ms"] == pytest.approx(5.525)
    assert t.row("auto / zigzag").target == "met (>= 1.2x)"


def test_memory_estimate():
    e = 32 * 262144 * 128 * 2
    p = peer.Point(0, 262144, "cudnn", "allgather", 4, 1, 32, 128, 0)
    assert peer.cp_bytes_estimate(p) == int(8.25 * e)
    assert peer.cp_bytes_estimate(p, restore=True) == int(11.25 * e)
    single = peer.Point(0, 262144, "cudnn", None, 1, 1, 32, 128, 0)
    assert peer.cp_bytes_estimate(single) == 4 * e
    r = peer_cli("--dry-run", "--world-size", "4", "--seq", "256k", "--backends", "cudnn",
                 "--rotate", "allgather")
    assert f"~{8.25 * e / 2**30:7.1f} GiB/rank" in r.stdout
