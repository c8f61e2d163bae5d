"""The sim calibration and validation scripts' logic (analysis/sim_profile.py,
analysis/sim_validate.py) on small hand-made traces and records."""

import itertools

import pytest

from analysis import sim_profile as sp
from analysis import sim_validate as sv


def brute_pairs(sq, sk, diag):
    return sum(max(0, min(sk, i + diag + 1)) for i in range(sq))


def test_causal_pairs_matches_brute_force():
    for sq, sk, d in itertools.product(range(7), range(7), range(-8, 9)):
        assert sp.causal_pairs(sq, sk, d) == brute_pairs(sq, sk, d)


def test_block_heads_from_flops():
    flops = 4.0 * 2 * 8 * 16 * sp.causal_pairs(64, 64, 0)
    assert sp.block_heads(flops, 2, 16, 64, 64, "causal", 0) == 8


def ev(name, tid, ts, dur, **args):
    return {"ph": "X", "pid": 0, "tid": tid, "name": name, "ts": ts, "dur": dur, "args": args}


def test_pairing_and_samples():
    w = {"batch": 1, "heads": 8, "kv_heads": 2, "head_dim": 16}
    flops = 4.0 * 8 * 16 * 64 * 64
    measured = {"traceEvents": [ev("attention", 0, 0, 10, flops=flops),
                                ev("attention", 0, 13, 20, flops=flops),
                                ev("merge", 0, 35, 5)]}
    predicted = {"traceEvents": [
        ev("attention", 0, 0, 1, flops=flops, sq=64, sk=64, mask="full", comm_in_flight=True),
        ev("attention", 0, 1, 1, flops=flops, sq=64, sk=64, mask="full", comm_in_flight=False),
        ev("merge", 0, 2, 1, mem_bytes=5000)]}
    pairs = sp.pair_trace(measured, predicted)
    assert pairs is not None and len(pairs) == 3
    s = sp.attention_samples(pairs, w)
    assert [x["shared"] for x in s] == [True, False]
    assert s[0]["gqa"] == 4 and s[0]["heads"] == 8
    points, share = sp.attention_points(s)
    # Alone 20 us, shared 10 us: the ratio alone/shared is 0.5, clamped to 1.
    assert share == 1.0
    assert len(points) == 1
    assert points[0]["tflops"] == pytest.approx(flops / 20e-6 / 1e12)
    mem = sp.memory_samples(pairs)
    assert mem["merge"] == [(5000, pytest.approx(5000 / 5e-6 / 1e9))]
    # The prediction starts op 2 right after op 1 and op 3 after op 2: gaps 3 us and 2 us.
    streams = [list(zip(sp.slices_by_stream(measured)[(0, 0)],
                        sp.slices_by_stream(predicted)[(0, 0)]))]
    assert sp.launch_gaps(streams) == [3, 2]
    # Different op lists do not pair.
    predicted["traceEvents"].pop()
    assert sp.pair_trace(measured, predicted) is None


def test_share_factor_from_shapes_measured_both_ways():
    base = {"mask": "full", "head_dim": 16, "gqa": 1, "heads": 8, "sq": 64, "sk": 64}
    s = [dict(base, shared=False, flops=1e12, seconds=1.0),
         dict(base, shared=True, flops=1e12, seconds=1.25),
         dict(base, sq=128, shared=True, flops=1e12, seconds=2.5)]
    points, share = sp.attention_points(s)
    assert share == pytest.approx(1.25)
    by = {p["sq"]: p["tflops"] for p in points}
    assert by[64] == pytest.approx(1.0)
    assert by[128] == pytest.approx(0.4 * 1.25)  # seen only shared: inferred alone rate


def test_nccl_curves_convert_to_bytes_sent():
    bench = {"benchmarks": [
        {"name": "nccl/sendrecv/gpus:4/bytes:1000", "gpus": 4, "bytes": 1000, "real_time": 5,
         "time_unit": "us"},
        {"name": "nccl/alltoall/gpus:4/bytes:4000", "gpus": 4, "bytes": 4000, "real_time": 1,
         "time_unit": "ms"},
        {"name": "nccl/all_gather/gpus:4/bytes:8000", "gpus": 4, "bytes": 8000,
         "real_time": 7, "time_unit": "us"},
        {"name": "nccl/all_gather/gpus:4/bytes:1", "error_occurred": True}]}
    ranks, c = sp.nccl_curves(bench)
    assert ranks == 4
    assert c["sendrecv"] == ([1000], [5.0])
    assert c["all_to_all"] == ([3000], [1000.0])
    assert c["all_gather"] == ([6000], [7.0])


def rec(pid, t, status="ok", **cfg):
    return {"point_id": pid, "status": status, "index": int(pid), "time": {"median": t},
            "config": dict({"preset": "p", "new_tokens": 32768, "cp": 4,
                            "strategy": "ring_pass_kv", "layout": "zigzag"}, **cfg)}


def test_validation_pairs_and_summarizes():
    measured = [rec("0", 1.0), rec("1", 2.0), rec("2", 4.0, status="error"), rec("3", 1.0)]
    predicted = [rec("0", 1.02), rec("1", 1.8), rec("2", 4.0), rec("3", 1.0, status="error")]
    rows = sv.pair_records(measured, predicted)
    assert [r["index"] for r in rows] == [0, 1]
    assert rows[0]["error"] == pytest.approx(0.02)
    assert rows[1]["error"] == pytest.approx(-0.1)
    assert rows[0]["point"] == "p 32K cp4 ring_pass_kv zigzag"
    s = sv.summarize(rows)
    assert s["median_abs_error"] == pytest.approx(0.06)
    assert s["max_abs_error"] == pytest.approx(0.1)
    assert s["met"] is False  # median 6% > 5%
    assert s["worst"][0]["index"] == 1
    assert sv.summarize(rows, 0.1, 0.15)["met"] is True
    assert sv.summarize([])["met"] is False
    md = sv.markdown(rows, s, "t")
    assert "| 1 | p 32K cp4 ring_pass_kv zigzag | 2000.000 | 1800.000 | -10.0% |" in md
    assert "not met" in md
