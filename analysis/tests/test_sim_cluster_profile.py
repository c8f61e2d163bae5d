"""The multi-node profile generator (analysis/sim_cluster_profile.py): YAML block splitting, the
latency + bandwidth curves, the TP all-reduce derived from the all-gather curve, and that the
committed profiles are what the script writes today, with every number's kind named."""

import pytest

from analysis import sim_cluster_profile as scp

TEXT = """# comment
name: x
peak_tflops: 600
attention:
  - {mask: full, head_dim: 128, sq: 8, sk: 8, tflops: 1}
links:
  nvlink:
    ranks: 4
    all_gather: {bytes: [700, 1400], us: [10, 20.5]}
copy: {bytes: [1], gbps: [2]}
"""


def test_top_level_blocks_and_curves():
    b = scp.top_level_blocks(TEXT)
    assert list(b) == ["name", "peak_tflops", "attention", "links", "copy"]
    assert len(b["attention"]) == 2 and len(b["links"]) == 4
    assert scp.scalar(b, "peak_tflops") == 600
    assert scp.curve(b["links"], "all_gather") == ([700, 1400], [10, 20.5])
    with pytest.raises(ValueError):
        scp.curve(b["links"], "sendrecv")


def test_link_curve_is_latency_plus_bytes_over_bandwidth():
    xs, ys = scp.link_curve(50.0, 10.0)
    assert xs[0] == 4096 and xs[-1] == 4 * 2**30
    for x, y in zip(xs, ys):
        assert y == pytest.approx(10.0 + x / 50e9 * 1e6)
    assert all(b / a == 4 for a, b in zip(xs, xs[1:]))


def test_allreduce_is_two_all_gathers_of_the_ring_share():
    # A rank of an 8-way all-reduce of S bytes sends 7/8 S in the reduce-scatter and 7/8 S in
    # the all-gather; the all-gather curve's x is what a rank sends.
    xs, ys = scp.allreduce_curve(([700, 1400], [10, 20.5]), ranks=8)
    assert xs == [800, 1600]
    assert ys == [20, 41]


def test_committed_profiles_are_the_scripts_output(tmp_path):
    assert scp.main(["--out-dir", str(tmp_path)]) == 0
    for name in scp.PROFILES:
        committed = (scp.REPO / "results" / "profiles" / f"{name}.yaml").read_text()
        assert (tmp_path / f"{name}.yaml").read_text() == committed, (
            f"{name}.yaml is stale: rerun python3 -m analysis.sim_cluster_profile")


def test_another_base_profile_names_itself_and_keeps_the_default_after(tmp_path):
    base = "results/profiles/h200x8-calibrated.yaml"
    assert scp.main(["--out-dir", str(tmp_path / "x8"), "--base", base]) == 0
    text = (tmp_path / "x8" / "yang2024-h200-rdma.yaml").read_text()
    assert f"intra-node: {base}" in text and "links.nvlink" in text
    assert "ranks: 8" in text  # the NVLink curves measured on 8 ranks come along
    # The provenance describes that base, not the default one.
    extra = scp.read_extra(tmp_path / "x8" / "yang2024-h200-rdma.yaml")
    assert "(8x NVIDIA H200, NVLink NV18)" in extra["provenance"]["attention"]
    assert "measured on 8 ranks" in extra["model"]["tp_allreduce"]["source"]
    assert scp.main(["--out-dir", str(tmp_path / "default")]) == 0
    assert scp.DEFAULT_BASE in (tmp_path / "default" / "yang2024-h200-rdma.yaml").read_text()


def test_every_number_says_measured_published_or_assumed():
    for name, (gpu, link_key) in scp.PROFILES.items():
        inter = scp.LINKS[link_key]["class"]
        path = scp.REPO / "results" / "profiles" / f"{name}.yaml"
        extra = scp.read_extra(path)
        for what, src in extra["provenance"].items():
            assert src.split(":")[0] in ("measured (ours)", "published", "published (achieved)",
                                         "assumed"), (name, what)
        assert f"links.{inter} latency" in extra["provenance"]
        kind = "published (achieved)" if link_key.endswith("achieved") else "assumed"
        assert extra["provenance"][f"links.{inter} latency"].startswith(kind)
        assert extra["provenance"][f"links.{inter} bandwidth"].startswith("published")
        model = extra["model"]
        assert model["matmul_source"].startswith("measured (ours)")
        assert 600 < model["matmul_tflops"] < 800  # an H100/H200 bf16 GEMM
        ar = model["tp_allreduce"]
        assert ar["ranks"] == 8 and len(ar["bytes"]) == len(ar["us"])
        text = path.read_text()
        assert "tensor_parallel: 8" in text and f"inter_node: {inter}" in text
        if gpu == "h100":
            assert extra["provenance"]["attention"].startswith("published")
            assert "tflops: 540" in text
        else:
            assert extra["provenance"]["attention"].startswith("measured (ours)")


def test_table5_fit_recovers_the_papers_sendrecv():
    gbps, lat = scp.table5_fit()
    assert 25 < gbps < 32 and 30 < lat < 80  # about half the nominal 50 GB/s
    # The fit passes within 10% of each published row (Table 5).
    for nbytes, us in ((16777216, 627), (3355443.2, 166), (13421772.8, 544)):
        assert lat + nbytes / (gbps * 1e3) == pytest.approx(us, rel=0.1)
