"""Writes the sim's multi-node profiles of Yang et al. 2024's machines (one ring per KV head
across hosts, TP8 inside a host) from committed measurements and the paper's declared constants.

    python3 -m analysis.sim_cluster_profile --out-dir results/profiles

Every number is one of three kinds, and the profile says which in its comments and in
`extra.provenance`:

- measured (ours): the intra-node tables of results/profiles/h200x4.yaml (attention TF/s per
  block shape, launch cost, share factor, copy and merge throughput, the NVLink curves), copied
  as they are; the bf16 matmul rate of the single-GPU runs under results/gpu/ (the manifests'
  `ceilings.matmul_tflops`, an 8192^3 GEMM) for the model-level wrapper (analysis.model_ttft).
- published (Yang et al. 2024, arXiv 2411.01783): 400 Gb/s RDMA per GPU (50 GB/s); TCP/IP at
  about 3 GB/s per rank achieved; for the H100 machine, 540 TF/s of FlashAttention-3 causal at
  8K on one H100 (Appendix A) as its attention rate.
- published (achieved): `yang2024-h200-rdma-achieved` replaces the nominal 50 GB/s by a fit of
  latency + bandwidth to the paper's measured SendRecv times (Table 5: about 29 GB/s, 55 us).
- assumed: the latency of each nominal inter-node link (the paper gives none), that an all-to-all or an
  all-gather over the NIC costs one latency plus the bytes a rank sends at the link bandwidth,
  that a full-mask block runs at the causal rate on the H100 machine, and that a TP8 all-reduce
  costs a reduce-scatter plus an all-gather at the bus bandwidth measured on the base
  profile's ranks (4 for the default base; `--base` names another measured profile).

The inter-node curves are latency + bytes / bandwidth at sizes from 4 KiB to 4 GiB (the cost
model interpolates linearly between them and extends the last segment above).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

from analysis.sim_profile import flow_list, sig

REPO = Path(__file__).resolve().parent.parent
PAPER = "Yang et al. 2024 (arXiv 2411.01783)"
DEFAULT_BASE = "results/profiles/h200x4.yaml"  # the measured intra-node profile (main's --base)
MATMUL = {
    "h200": "results/gpu/2026-11-22-h200x1-attention/manifest.json",
    "h100": "results/gpu/2026-11-22-h100x1-attention-final/manifest.json",
}

# Inter-node links: (GB/s per rank, its kind and source; latency in us, its kind and source).
LINKS = {
    "rdma": {
        "class": "rdma",
        "gbps": 50.0,
        "gbps_source": f"published: {PAPER}, GTT hosts: 400 Gb/s RDMA per GPU = 50 GB/s",
        "latency_us": 10.0,
        "latency_source": "assumed: 10 us, the order of NCCL's inter-node point-to-point latency "
                          "over InfiniBand/RoCE; not measured by us, not given by the paper",
    },
    "tcp": {
        "class": "tcp",
        "gbps": 3.0,
        "gbps_source": f"published: {PAPER}, GTI hosts: TCP/IP 100 Gb/s per GPU nominal, about "
                       "3 GB/s per rank achieved",
        "latency_us": 50.0,
        "latency_source": "assumed: 50 us for a TCP round through the kernel's network stack; "
                          "not measured by us, not given by the paper",
    },
}
CURVE_BYTES = [4096 * 4**i for i in range(11)]  # 4 KiB .. 4 GiB
RING_ITERATION = "analysis/reference/yang2024_ring_iteration.csv"


def table5_fit(path: Path = REPO / RING_ITERATION) -> tuple[float, float]:
    """(GB/s, latency us): least squares of latency + bytes / bandwidth through the paper's
    measured per-iteration SendRecv times (Table 5, CP4, Llama3-405B TP8 per GPU: pass-KV sends
    the rank's K and V, context / 4 tokens x 1 KV head x 128 x 2 x 2 bytes; pass-Q its queries,
    miss rate x context / 4 tokens x 16 heads x 128 x 2 bytes)."""
    xs, ys = [], []
    with open(path) as f:
        for r in csv.DictReader(f):
            tokens = int(r["context"]) / int(r["cp"])
            if r["variant"] == "pass_kv":
                xs.append(tokens * 1 * 128 * 2 * 2)
            else:
                xs.append(float(r["miss_rate"]) * tokens * 16 * 128 * 2)
            ys.append(float(r["sendrecv_us"]))
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return 1e-3 / slope, my - slope * mx


_GBPS_T5, _LAT_T5 = table5_fit()
LINKS["rdma-achieved"] = {
    "class": "rdma",
    "gbps": round(_GBPS_T5, 3),
    "gbps_source": f"published (achieved): {PAPER} Table 5, the per-iteration SendRecv times at "
                   f"CP4 over 400 Gb/s RDMA ({RING_ITERATION}), fitted as latency + bytes / "
                   f"bandwidth: {_GBPS_T5:.1f} GB/s",
    "latency_us": round(_LAT_T5, 2),
    "latency_source": f"published (achieved): the same fit's intercept, {_LAT_T5:.0f} us",
}

# The paper's H100 (Grand Teton: 8x H100 96 GB HBM2e, 500 W, 800 TF/s bf16 peak).
H100_ATTENTION_TFLOPS = 540.0
H100_ATTENTION_SOURCE = (f"published: {PAPER}, Appendix A: FlashAttention-3 causal at 8K on one "
                         "H100, 540 TF/s; used for every block shape (full-mask blocks assumed at "
                         "the causal rate)")

TP = 8
GPUS_PER_NODE = 8


def top_level_blocks(text: str) -> dict[str, list[str]]:
    """The lines of each top-level key of a block-style YAML file (comments dropped)."""
    blocks: dict[str, list[str]] = {}
    key = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            key = line.split(":", 1)[0]
            blocks[key] = [line]
        elif key is not None:
            blocks[key].append(line)
    return blocks


def scalar(blocks: dict[str, list[str]], key: str) -> float:
    return float(blocks[key][0].split(":", 1)[1])


def curve(lines: list[str], name: str) -> tuple[list[float], list[float]]:
    """The (bytes, us) lists of `name: {bytes: [...], us: [...]}` among lines."""
    for line in lines:
        m = re.match(rf"\s*{name}: \{{bytes: \[([^\]]*)\], us: \[([^\]]*)\]\}}", line)
        if m:
            return ([float(v) for v in m.group(1).split(",")],
                    [float(v) for v in m.group(2).split(",")])
    raise ValueError(f"no {name} curve")


def link_curve(gbps: float, latency_us: float) -> tuple[list[int], list[float]]:
    return CURVE_BYTES, [latency_us + b / (gbps * 1e3) for b in CURVE_BYTES]


def allreduce_curve(all_gather: tuple[list[float], list[float]], ranks: int = TP):
    """TP all-reduce time against its buffer size S: a ring reduce-scatter plus an all-gather,
    each moving (R-1)/R S per rank, at the measured all-gather's time for those bytes (the
    all-gather curve's x is the bytes a rank sends, so S = x R / (R-1); time 2 y)."""
    xs, ys = all_gather
    return [round(x * ranks / (ranks - 1)) for x in xs], [2 * y for y in ys]


def matmul_rate(gpu: str) -> tuple[float, str]:
    path = MATMUL[gpu]
    m = json.loads((REPO / path).read_text())
    c = m["ceilings"]
    name = m.get("gpu", {}).get("name") or gpu.upper()
    return (c["matmul_tflops"],
            f"measured (ours): bf16 {c['matmul_n']}^3 matmul on one {name}, median of "
            f"{c['matmul_reps']} reps, {path} (ceilings.matmul_tflops)")


def base_machine(b: dict[str, list[str]]) -> tuple[str, int]:
    """The base profile's machine in words and the ranks its NVLink curves were measured on."""
    machine = json.loads(b["machine"][0].split(":", 1)[1]) if "machine" in b else "our GPUs"
    ranks = next((int(line.split(":", 1)[1]) for line in b.get("links", [])
                  if line.strip().startswith("ranks:")), 0)
    return machine, ranks


def render(name: str, gpu: str, link_key: str, base_text: str, base: str = DEFAULT_BASE) -> str:
    """One profile; `base_text` is the measured intra-node profile read from `base`."""
    b = top_level_blocks(base_text)
    base_desc, base_ranks = base_machine(b)
    link = LINKS[link_key]
    inter = link["class"]
    nv = b["links"]
    ag = curve(nv, "all_gather")
    ar_x, ar_y = allreduce_curve(ag)
    mm, mm_source = matmul_rate(gpu)
    measured_intra = f"measured (ours): copied from {base} ({base_desc}, NVLink NV18)"
    if gpu == "h200":
        machine = f"hosts of 8x NVIDIA H200 (NVLink) over {inter} (Yang et al.'s network" + (
            ", as achieved in their Table 5)" if link_key.endswith("achieved") else ")")
        peak = scalar(b, "peak_tflops")
        attention = b["attention"]
        attention_source = measured_intra
        intra_source = measured_intra
    else:
        machine = f"Yang et al.'s GT{'T' if inter == 'rdma' else 'I'} hosts: 8x H100 96 GB " \
                  f"(NVLink) over {inter}" + (" (as achieved in their Table 5)"
                                             if link_key.endswith("achieved") else "")
        peak = H100_ATTENTION_TFLOPS
        attention = ["attention:"] + [
            f"  - {{mask: {mask}, head_dim: 128, gqa: 16, heads: 16, sq: 8192, sk: 8192, "
            f"tflops: {sig(H100_ATTENTION_TFLOPS)}}}" for mask in ("causal", "full")]
        attention_source = H100_ATTENTION_SOURCE
        intra_source = (f"{measured_intra}; no published H100 figure: launch cost, share factor, "
                        "copy and merge are our H200's (the paper's H100 has half its HBM "
                        "bandwidth, 2.4 TB/s, so merges and copies, < 1% of the time here, are "
                        "underestimated); NVLink: H100 and H200 both have NVLink 4 (18 links)")
    provenance = {
        "attention": attention_source,
        "peak_tflops": attention_source if gpu == "h100" else
        f"{measured_intra}: mean attention rate of the calibration run",
        "launch_us, share_factor, copy, merge, links.nvlink": intra_source,
        f"links.{inter} bandwidth": link["gbps_source"],
        f"links.{inter} latency": link["latency_source"],
        f"links.{inter} collectives": "assumed: all_to_all and all_gather through the rank's NIC "
                                      "cost one latency + the bytes the rank sends at the link "
                                      "bandwidth (a ring all-gather's R-1 step latencies are "
                                      "not counted)",
        "topology": f"published: {PAPER}: TP8 inside a host, CP across hosts, one CP ring per KV "
                    "head, so each GPU's ring has one GPU per host",
    }
    model = {
        "matmul_tflops": round(mm, 2),
        "matmul_source": mm_source,
        "tp_allreduce": {
            "ranks": TP, "bytes": ar_x, "us": [round(y, 3) for y in ar_y],
            "source": f"assumed from measured: 2x the all_gather curve of links.nvlink at "
                      f"(R-1)/R of the buffer (ring reduce-scatter + all-gather at the bus "
                      f"bandwidth measured on {base_ranks} ranks, taken to hold on {TP})"},
    }
    xs, ys = link_curve(link["gbps"], link["latency_us"])
    lines = [
        "# Generated by analysis/sim_cluster_profile.py (do not edit: rerun the script).",
        "# Schema: harness/core/hardware_profile.hpp. Each number is measured (ours), published",
        "# (Yang et al. 2024) or assumed; `extra.provenance` says which, and where from.",
        f"name: {name}",
        "description: " + json.dumps(
            f"{machine}: TP{TP} inside a host, one CP ring per KV head across hosts (each CP "
            f"rank on its own host). Intra-node numbers {'measured on our H200' if gpu == 'h200' else 'published (H100 attention) and our H200 (the rest)'}; "
            f"{inter} {sig(link['gbps'])} GB/s per GPU ({link['gbps_source'].split(':')[0]}), "
            f"latency {sig(link['latency_us'])} us ({link['latency_source'].split(':')[0]})"),
        "machine: " + json.dumps(machine),
        "source: " + json.dumps(
            f"intra-node: {base if gpu == 'h200' else PAPER + ' Appendix A (attention) and ' + base}; "
            f"inter-node: {PAPER} ({inter} {sig(link['gbps'])} GB/s); matmul: {MATMUL[gpu]}"),
        f"peak_tflops: {sig(peak)}",
        f"bandwidth_gbps: {sig(link['gbps'])}",
        f"launch_us: {sig(scalar(b, 'launch_us'))}",
        f"share_factor: {sig(scalar(b, 'share_factor'))}",
        f"topology: {{gpus_per_node: {GPUS_PER_NODE}, tensor_parallel: {TP}, intra_node: nvlink, "
        f"inter_node: {inter}}}",
        *attention,
        *nv,
        f"  {inter}:  # {link['gbps_source'].split(':')[0]} bandwidth, "
        f"{link['latency_source'].split(':')[0]} latency",
        "    ranks: 16",
        *[f"    {k}: {{bytes: {flow_list(xs)}, us: {flow_list(ys)}}}"
          for k in ("sendrecv", "all_to_all", "all_gather")],
        *b["copy"],
        *b["merge"],
        "extra: " + json.dumps({"provenance": provenance, "model": model}),
    ]
    return "\n".join(lines) + "\n"


def read_extra(path: Path) -> dict:
    """The `extra:` map of a profile this script wrote (one JSON line)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith("extra: "):
            return json.loads(line[len("extra: "):])
    raise ValueError(f"{path}: no one-line `extra:` (was it written by sim_cluster_profile?)")


PROFILES = {
    "yang2024-h200-rdma": ("h200", "rdma"),
    "yang2024-h200-tcp": ("h200", "tcp"),
    "yang2024-h100-rdma": ("h100", "rdma"),
    "yang2024-h200-rdma-achieved": ("h200", "rdma-achieved"),
    "yang2024-h100-rdma-achieved": ("h100", "rdma-achieved"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", type=Path, default=REPO / "results" / "profiles")
    ap.add_argument("--base", default=DEFAULT_BASE,
                    help="the measured intra-node profile, relative to the repo (default "
                         f"{DEFAULT_BASE})")
    args = ap.parse_args(argv)
    base_text = (REPO / args.base).read_text()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, (gpu, inter) in PROFILES.items():
        out = args.out_dir / f"{name}.yaml"
        out.write_text(render(name, gpu, inter, base_text, args.base))
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
