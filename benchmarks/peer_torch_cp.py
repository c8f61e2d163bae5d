#!/usr/bin/env python3
"""The peer runner: PyTorch's `context_parallel` on the same GPUs, in cpbench's results schema.

    torchrun --standalone --nproc_per_node=N benchmarks/peer_torch_cp.py --out DIR \
        [--seq 32768,131072,262144] [--backends flash,cudnn] [--rotate allgather,alltoall] \
        [--heads 32] [--head-dim 128] [--batch 1] [--warmup 2] [--iterations 5] [--dry-run]
    python3 benchmarks/peer_torch_cp.py --single-gpu --out DIR ...   # plain SDPA, cp = 1

For every (seq, SDPA backend, rotate method): q, k, v [B, H, S, d] bf16 (torch.randn, fixed
seed, made on every rank; a checksum proves they agree, else rank 0's are broadcast), causal,
MHA (context_parallel has no GQA: kv_heads = heads); sharded by
`context_parallel(mesh, buffers=[q, k, v], buffer_seq_dims=[2, 2, 2])` with its default causal
load balancer (head-tail, i.e. zigzag), `set_rotate_method(method)` and `sdpa_kernel(backend)`
around `F.scaled_dot_product_attention(q, k, v, is_causal=True)`.
Timing: `--warmup` then `--iterations` iterations, each after `dist.barrier()` and a device
synchronisation, between two CUDA events on the current stream; per iteration the max over
ranks (all_reduce MAX). Verification, once per point: the sharded output is gathered back
(`context_parallel_unshard`) and compared on rank 0 with single-GPU SDPA of the same backend on
the same inputs, made again from the seed (max |O - ref| / max |ref|, cpbench's max_rel_err),
or, where that whole problem is too large (`--verify-full-max-flops`) or does not fit, with an
fp32 reference on random query rows. `--single-gpu` times plain SDPA on one GPU (strategy
`torch_sdpa`, verified against the fp32 row reference), for the peer's per-GPU efficiency.

Memory: q, k, v are passed as `no_restore_buffers` too (nothing to restore: rank 0 makes them
again for the check), which spares context_parallel's three full copies. Its ranks allocate
different temporaries, so near the memory limit one rank alone can run out while the others
wait for it inside a collective until `--timeout-s`; a point whose estimated per-rank memory
(`cp_bytes_estimate`) exceeds the free memory of the tightest rank is therefore recorded as an
error without running (`--no-memory-guard` runs it anyway). Out-of-memory and other errors that
hit every rank alike are recorded and the sweep goes on.

Rank 0 writes DIR/manifest.json (atomically) and DIR/results.jsonl (one cpbench.result/1
record per point, appended and flushed as the point ends; analysis/load.py reads it). A point
that fails (out of memory, an API error) becomes a record with status `error` and the run goes
on; a point whose check fails gets status `wrong`, as in cpbench. Exit 0 when every point is
`ok`, 1 when some point failed, 2 on bad arguments (one line on stderr, nothing written).

`--dry-run` lists the points and writes nothing; it imports no torch and touches no GPU (the
CP degree is WORLD_SIZE, or `--world-size`, or 1).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

# cpbench's record and manifest schemas (harness/runner/record.hpp kRecordSchema; the manifest
# written by harness/runner/sweep.cpp) and FLOP convention (harness/core/workload.cpp
# workload_flops, harness/runner/record.cpp).
RECORD_SCHEMA = "cpbench.result/1"
MANIFEST_SCHEMA = "cpbench.manifest/1"
FLOP_CONVENTION = "4*B*H*d per visible (query, key) pair; masked work not counted"
TOLERANCE = 1e-2  # cpbench's tolerance for bf16 on a GPU backend (runner.cpp tolerance_for)
PEER_NAME = "PyTorch context_parallel"
TOOL = "benchmarks/peer_torch_cp.py"
GQA_NOTE = ("MHA only: torch context_parallel does not support grouped-query attention, so "
            "kv_heads = heads")
# --backends name -> torch.nn.attention.SDPBackend member
BACKENDS = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION",
            "efficient": "EFFICIENT_ATTENTION"}
ROTATE_METHODS = ("allgather", "alltoall")
# Where set_rotate_method, context_parallel and context_parallel_unshard have lived: the
# _context_parallel package (torch >= 2.9, 2.11 included), then the older single module.
CP_MODULES = ("torch.distributed.tensor.experimental._context_parallel",
              "torch.distributed.tensor.experimental._context_parallel._attention",
              "torch.distributed.tensor.experimental._attention")
ENV_KNOBS = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_MAX_CONNECTIONS", "CUDA_LAUNCH_BLOCKING",
             "OMP_NUM_THREADS", "PYTORCH_CUDA_ALLOC_CONF", "TORCH_CUDNN_SDPA_DEPRIORITIZED",
             "WORLD_SIZE", "LOCAL_WORLD_SIZE")


class UsageError(Exception):
    """Bad arguments or environment: one line, exit 2, nothing written."""


# --- arguments and points: pure Python (the dry run needs no torch) ------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(message)


def _positive_ints(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        scale = 1024 if part.endswith("k") else 1
        try:
            n = int(part[:-1] if scale > 1 else part) * scale
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{part}' is not an integer") from None
        if n <= 0:
            raise argparse.ArgumentTypeError(f"{n} is not positive")
        out.append(n)
    if not out:
        raise argparse.ArgumentTypeError("expected at least one value")
    return out


def _positive_int(text: str) -> int:
    values = _positive_ints(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"'{text}': expected one integer")
    return values[0]


def _names(allowed):
    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"{','.join(bad) or 'nothing'}: expected a comma-separated list of "
                f"{', '.join(allowed)}")
        return list(dict.fromkeys(names))
    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _Parser(prog="peer_torch_cp.py",
                description="PyTorch context_parallel (or single-GPU SDPA) timed and checked, "
                            "written as a cpbench run folder.")
    p.add_argument("--out", help="the run folder to write (manifest.json, results.jsonl)")
    p.add_argument("--seq", type=_positive_ints, default=[32768, 131072, 262144],
                   help="sequence lengths S (suffix k = 1024)")
    p.add_argument("--backends", type=_names(tuple(BACKENDS)), default=["flash", "cudnn"],
                   help="SDPA backends")
    p.add_argument("--rotate", type=_names(ROTATE_METHODS), default=list(ROTATE_METHODS),
                   help="context_parallel rotate methods (ignored with --single-gpu)")
    p.add_argument("--heads", type=_positive_int, default=32, help="query (= key/value) heads")
    p.add_argument("--head-dim", type=_positive_int, default=128)
    p.add_argument("--batch", type=_positive_int, default=1)
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations (>= 0)")
    p.add_argument("--iterations", type=_positive_int, default=5, help="timed iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--single-gpu", action="store_true",
                   help="plain SDPA on one GPU (cp 1, strategy torch_sdpa); no torchrun")
    p.add_argument("--no-verify", action="store_true", help="skip the correctness check")
    p.add_argument("--verify-full-max-flops", type=float, default=2e15,
                   help="above this many FLOPs the check uses random query rows against an "
                        "fp32 reference instead of the whole problem on one GPU")
    p.add_argument("--verify-rows", type=_positive_int, default=64,
                   help="query rows of the fp32 row reference")
    p.add_argument("--no-memory-guard", action="store_true",
                   help="run points whose estimated memory exceeds the free memory (an "
                        "out-of-memory on one rank then hangs the others until --timeout-s)")
    p.add_argument("--timeout-s", type=_positive_int, default=600,
                   help="process-group timeout: a rank waiting longer in a collective aborts")
    p.add_argument("--world-size", type=_positive_int, default=None,
                   help="CP degree for --dry-run without torchrun (default WORLD_SIZE, else 1); "
                        "under torchrun it must equal WORLD_SIZE")
    p.add_argument("--dry-run", action="store_true",
                   help="list the points and exit; no torch, no GPU, nothing written")
    a = p.parse_args(argv)
    if a.warmup < 0:
        raise UsageError(f"--warmup: expected an integer >= 0 (got {a.warmup})")
    if a.verify_full_max_flops < 0:
        raise UsageError("--verify-full-max-flops: expected a number >= 0")
    env_world = os.environ.get("WORLD_SIZE")
    try:
        env_world = int(env_world) if env_world else None
    except ValueError:
        raise UsageError(f"WORLD_SIZE={env_world!r} is not an integer") from None
    if a.single_gpu:
        if (env_world or 1) > 1:
            raise UsageError(f"--single-gpu runs one process, but WORLD_SIZE is {env_world}: "
                             "run it with python3, not torchrun")
        if a.world_size not in (None, 1):
            raise UsageError("--single-gpu means cp 1: drop --world-size")
        a.cp = 1
    else:
        if env_world and a.world_size and env_world != a.world_size:
            raise UsageError(f"--world-size {a.world_size} but torchrun started {env_world} "
                             "processes (WORLD_SIZE)")
        a.cp = a.world_size or env_world or 1
        if not a.dry_run and env_world is None:
            raise UsageError("run under torchrun (torchrun --standalone --nproc_per_node=N "
                             f"{TOOL} ...), or pass --single-gpu")
        bad = [s for s in a.seq if s % (2 * a.cp)]
        if bad:
            raise UsageError(f"--seq: {','.join(map(str, bad))} not divisible by 2*cp = "
                             f"{2 * a.cp} (the causal load balancer cuts the sequence into "
                             "2*cp chunks)")
    if not a.dry_run and not a.out:
        raise UsageError("--out DIR is required (or --dry-run)")
    return a


@dataclass
class Point:
    index: int
    seq: int
    backend: str
    rotate: str | None  # None: single-GPU SDPA
    cp: int
    batch: int
    heads: int
    head_dim: int
    seed: int

    @property
    def strategy(self) -> str:
        return "torch_sdpa" if self.rotate is None else "torch_context_parallel"

    def config(self) -> dict:
        return {"strategy": self.strategy, "cp": self.cp, "new_tokens": self.seq,
                "heads": self.heads, "kv_heads": self.heads, "head_dim": self.head_dim,
                "mask": "causal", "dtype": "bf16", "batch": self.batch,
                "peer_backend": self.backend, "rotate_method": self.rotate, "seed": self.seed}

    @property
    def point_id(self) -> str:
        """Stable: the config's keys in order, as cpbench writes its ids."""
        return ",".join(f"{k}={'none' if v is None else v}"
                        for k, v in sorted(self.config().items()))

    def flops(self) -> float:
        """cpbench's workload_flops for full prefill, causal: S(S+1)/2 visible pairs."""
        return 4.0 * self.batch * self.heads * self.head_dim * (self.seq * (self.seq + 1) // 2)

    def workload(self) -> dict:
        """The keys of cpbench's workload_json (harness/runner/record.cpp)."""
        return {"batch": self.batch, "heads": self.heads, "kv_heads": self.heads,
                "head_dim": self.head_dim, "gqa_ratio": 1, "dtype": "bf16", "mask": "causal",
                "new_tokens": self.seq, "cached_tokens": 0, "context": self.seq,
                "miss_rate": 1.0, "phase": "full_prefill"}

    def describe(self) -> str:
        how = "single GPU" if self.rotate is None else f"cp {self.cp} {self.rotate}"
        return f"seq {self.seq} {self.backend} {how}"


def cp_bytes_estimate(p: Point, restore: bool = False) -> int:
    """Rough peak bytes of one context_parallel rank, E = one full bf16 tensor: q, k, v stay
    allocated at full size while sharded (3E; 3E more when context_parallel keeps copies to
    restore them), the all-gathered K/V (2E), and about 13E/N of shards, concatenated K/V,
    fp32 partial outputs and merges. Measured at cp 4 on H200 with torch 2.11 (allgather, the
    larger): 8.26E on the fullest rank without the copies, 11.26E with them (this gives 8.25E
    and 11.25E). Single-GPU SDPA: q, k, v and the output (4E)."""
    e = p.batch * p.heads * p.seq * p.head_dim * 2
    if p.rotate is None:
        return 4 * e
    return int((3 + (3 if restore else 0) + 2 + 13 / p.cp) * e)


def make_points(a) -> list[Point]:
    rotates = [None] if a.single_gpu else a.rotate
    pts = []
    for seq in a.seq:
        for backend in a.backends:
            for rot in rotates:
                pts.append(Point(len(pts), seq, backend, rot, a.cp, a.batch, a.heads,
                                 a.head_dim, a.seed))
    return pts


def repro_command(a, p: Point) -> str:
    """The command that reruns exactly this point, into a folder of its own."""
    args = [TOOL, "--out", f"{a.out}-p{p.index}", "--seq", str(p.seq), "--backends", p.backend,
            "--heads", str(p.heads), "--head-dim", str(p.head_dim), "--batch", str(p.batch),
            "--warmup", str(a.warmup), "--iterations", str(a.iterations), "--seed", str(p.seed)]
    if a.no_verify:
        args.append("--no-verify")
    if p.rotate is None:
        return shlex.join(["python3", *args, "--single-gpu"])
    return shlex.join(["torchrun", "--standalone", f"--nproc_per_node={p.cp}", *args,
                       "--rotate", p.rotate])


def summarize(samples: list[float]) -> dict:
    """harness/runner/stats.cpp summarize: linear-interpolated quantiles (numpy's default),
    two-pass mean and sample standard deviation; NaN everywhere if a sample is NaN."""
    n = len(samples)
    out = {"median": 0.0, "min": 0.0, "p10": 0.0, "p90": 0.0, "max": 0.0, "mean": 0.0,
           "stdev": 0.0, "n": n}
    if not n:
        return out
    if any(math.isnan(x) for x in samples):
        return {**{k: math.nan for k in out}, "n": n}
    s = sorted(samples)

    def q(frac):
        pos = frac * (n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        t = pos - lo
        return s[lo] if t == 0 else s[lo] + (s[hi] - s[lo]) * t

    mean = sum(s) / n
    out.update(median=q(0.5), min=s[0], p10=q(0.1), p90=q(0.9), max=s[-1], mean=mean,
               stdev=math.sqrt(sum((x - mean) ** 2 for x in s) / (n - 1)) if n >= 2 else 0.0)
    return out


def base_record(a, p: Point, status: str, error: str | None, provenance: dict,
                versions: dict) -> dict:
    peer = {"name": PEER_NAME if p.rotate else "PyTorch SDPA (single GPU)",
            "torch": versions.get("torch"), "sdpa_backend": p.backend,
            "sdpa_backend_enum": f"SDPBackend.{BACKENDS[p.backend]}",
            "rotate_method": p.rotate, "note": GQA_NOTE}
    if p.rotate:
        peer["load_balancer"] = versions.get("load_balancer", "default (causal head-tail)")
        peer["api"] = versions.get("cp_module")
    return {"schema": RECORD_SCHEMA, "point_id": p.point_id, "index": p.index,
            "status": status, "error": error, "config": p.config(), "strategy": p.strategy,
            "layout": "torch_load_balanced" if p.rotate else "single_gpu", "cp": p.cp,
            "backend": "torch", "peer": peer, "workload": p.workload(),
            "provenance": provenance, "repro": repro_command(a, p)}


def finish_record(rec: dict, p: Point, samples: list[float], peak_bytes: list[int],
                  verify: dict) -> dict:
    t = summarize(samples)
    t.update(clock="cuda_event", unit="s",
             reduction="max over ranks per iteration" if p.cp > 1 else "one rank",
             samples=samples)
    rec["time"] = t
    flops = p.flops()
    rec["flops"] = {"total": flops, "convention": FLOP_CONVENTION}
    rec["tflops_per_gpu"] = flops / p.cp / t["median"] / 1e12 if t["median"] > 0 else 0.0
    # Not measurable from outside torch's implementation: null, never estimated (as cpbench).
    rec["comm"] = {"max_bytes_sent_per_rank": None, "exposed_comm_s": None,
                   "overlap_fraction": None}
    rec["memory"] = {"peak_bytes_per_rank": peak_bytes,
                     "note": "torch.cuda.max_memory_allocated per rank from the inputs' "
                             "creation to the end of the timed iterations (the check is not "
                             "counted); q, k, v keep their full-size storage while "
                             "context_parallel shards them in place"}
    rec["verify"] = verify
    if verify.get("ran") and not verify.get("passed"):
        rec["status"] = "wrong"
        rec["error"] = (f"verification failed: max_rel_err {verify.get('max_rel_err'):.3g} > "
                        f"{verify.get('tolerance'):.3g}")
    return rec


def print_points(a, points: list[Point]) -> None:
    kind = "single-GPU SDPA (torch_sdpa)" if a.single_gpu else \
        f"torch context_parallel at cp {a.cp}"
    print(f"{len(points)} points, {kind}, B={a.batch} H={a.heads} Hkv={a.heads} "
          f"d={a.head_dim} bf16 causal; warmup {a.warmup}, iterations {a.iterations}")
    for p in points:
        print(f"{p.index:4d}  seq={p.seq:<7d} backend={p.backend:<9} "
              f"rotate={p.rotate or '-':<9} {p.flops() / 1e12:10.1f} TFLOP "
              f"~{cp_bytes_estimate(p) / 2**30:7.1f} GiB/rank  {p.point_id}")


# --- run folder ----------------------------------------------------------------------------------

def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json_atomic(path: str, doc: dict) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_record(path: str, rec: dict) -> None:
    line = json.dumps(rec, sort_keys=True, default=str, allow_nan=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def check_out_dir(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: exists and is not a folder")
    res = os.path.join(out, "results.jsonl")
    if os.path.exists(res) and os.path.getsize(res) > 0:
        raise UsageError(f"--out {out}: already holds results.jsonl; give a new folder")


def _quiet(cmd: list[str]) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None


def git_provenance() -> dict:
    """The commit: CPBENCH_GIT_SHA (a copied tree without .git), else git in the source tree."""
    sha = os.environ.get("CPBENCH_GIT_SHA")
    if sha:
        g = {"sha": sha, "sha_from": "CPBENCH_GIT_SHA", "dirty": "unknown"}
        if os.environ.get("CPBENCH_GIT_DIRTY"):
            g["dirty"] = os.environ["CPBENCH_GIT_DIRTY"] != "0"
        return g
    here = os.path.dirname(os.path.abspath(__file__))
    sha = _quiet(["git", "-C", here, "rev-parse", "HEAD"])
    if not sha:
        return {"sha": "unknown", "dirty": "unknown"}
    status = _quiet(["git", "-C", here, "status", "--porcelain"])
    return {"sha": sha, "sha_from": "git", "dirty": bool(status)}


def env_knobs() -> dict:
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith(("NCCL_", "CPBENCH_", "TORCH_NCCL_")) or k in ENV_KNOBS}


# --- torch side (imported lazily: the dry run needs none of it) ----------------------------------

class Torch:
    """torch, its functional and distributed modules and the context-parallel API, resolved
    once. The CP names moved between versions: `_context_parallel` (2.9+) and `_attention`."""

    def __init__(self):
        try:
            import torch
            import torch.distributed as dist
            import torch.nn.functional as F  # noqa: N812
            from torch.nn.attention import SDPBackend, sdpa_kernel
        except ImportError as e:
            raise UsageError(f"torch is not importable ({e}): the peer runner needs torch "
                             "(2.11) with CUDA") from None
        self.torch, self.dist, self.F = torch, dist, F
        self.SDPBackend, self.sdpa_kernel = SDPBackend, sdpa_kernel
        self.context_parallel = self.set_rotate_method = self.unshard = None
        self.cp_module = None
        self.cp_no_restore = False
        tried = []
        import importlib
        for name in CP_MODULES:
            try:
                mod = importlib.import_module(name)
            except ImportError as e:
                tried.append(f"{name} ({e})")
                continue
            cp, rot = getattr(mod, "context_parallel", None), getattr(mod, "set_rotate_method",
                                                                       None)
            if cp is None or rot is None:
                tried.append(f"{name} (no context_parallel / set_rotate_method)")
                continue
            self.context_parallel, self.set_rotate_method = cp, rot
            self.unshard = getattr(mod, "context_parallel_unshard", None)
            self.default_balancer = getattr(mod, "_create_default_load_balancer", None)
            if self.default_balancer is None:  # the package re-exports less than the module
                try:
                    lb = importlib.import_module(
                        "torch.distributed.tensor.experimental._context_parallel._load_balancer")
                    self.default_balancer = getattr(lb, "_create_default_load_balancer", None)
                except ImportError:
                    pass
            self.cp_module = name
            try:
                import inspect
                self.cp_no_restore = "no_restore_buffers" in inspect.signature(cp).parameters
            except (TypeError, ValueError):
                self.cp_no_restore = False
            break
        self.cp_error = None if self.context_parallel else (
            f"torch {torch.__version__}: context_parallel and set_rotate_method not found in "
            + "; ".join(tried))

    def backend(self, name: str):
        return getattr(self.SDPBackend, BACKENDS[name])

    def sdpa(self, q, k, v):
        # Looked up on the module at every call: context_parallel monkey-patches
        # torch.nn.functional.scaled_dot_product_attention while its context is open.
        return self.F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def versions(self) -> dict:
        torch = self.torch
        nccl = None
        try:
            v = torch.cuda.nccl.version()
            nccl = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
        except Exception:  # noqa: BLE001 - a version string must never stop a run
            pass
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn,
                "nccl": nccl, "cp_module": self.cp_module}


def short_error(e: BaseException, limit: int = 400) -> str:
    text = " ".join(str(e).split()) or repr(e)
    return f"{type(e).__name__}: {text}"[:limit]


def max_rel_err(t: Torch, out, ref, chunk_heads: int = 4) -> tuple[float, float, bool]:
    """(max |out - ref|, max |ref|, finite) in fp32, a few heads at a time ([B, H, S, d])."""
    torch = t.torch
    err = refmax = 0.0
    finite = True
    for h0 in range(0, out.shape[1], chunk_heads):
        o = out[:, h0:h0 + chunk_heads].float()
        r = ref[:, h0:h0 + chunk_heads].float()
        finite = finite and bool(torch.isfinite(o).all())
        err = max(err, float((o - r).abs().max()))
        refmax = max(refmax, float(r.abs().max()))
        del o, r
    return err, refmax, finite


def row_reference(t: Torch, q, k, v, rows, chunk_heads: int = 4):
    """fp32 causal attention of the query rows `rows` (sorted positions) over keys 0..row,
    all heads: [B, H, len(rows), d]."""
    torch = t.torch
    B, H, _, d = q.shape
    m = int(rows[-1]) + 1
    idx = torch.as_tensor(rows, device=q.device)
    hidden = torch.arange(m, device=q.device)[None, :] > idx[:, None]  # [r, m]
    out = torch.empty(B, H, len(rows), d, dtype=torch.float32, device=q.device)
    scale = 1.0 / math.sqrt(d)
    for b in range(B):
        for h0 in range(0, H, chunk_heads):
            h1 = min(H, h0 + chunk_heads)
            qs = q[b, h0:h1].index_select(1, idx).float()               # [c, r, d]
            ks = k[b, h0:h1, :m].float()                                # [c, m, d]
            s = torch.matmul(qs, ks.transpose(1, 2)) * scale            # [c, r, m]
            s.masked_fill_(hidden, float("-inf"))
            p = torch.softmax(s, dim=-1)
            del s, ks
            out[b, h0:h1] = torch.matmul(p, v[b, h0:h1, :m].float())
            del p, qs
    return out


def check_rows(t: Torch, out, q, k, v, n_rows: int, seed: int, why: str) -> dict:
    torch = t.torch
    S = q.shape[2]
    g = torch.Generator(device="cpu").manual_seed(seed + 1)
    n = min(n_rows, S)
    rows = sorted(torch.randperm(S, generator=g)[:n].tolist())
    ref = row_reference(t, q, k, v, rows)
    got = out.index_select(2, torch.as_tensor(rows, device=out.device))
    err, refmax, finite = max_rel_err(t, got, ref)
    rel = err / refmax if refmax > 0 else err
    return {"ran": True, "passed": bool(finite and rel <= TOLERANCE), "finite": finite,
            "max_abs_err": err, "max_rel_err": rel, "tolerance": TOLERANCE,
            "reference": f"fp32 attention (torch) of {n} random query rows x all heads of the "
                         f"unsharded problem on one GPU ({why})", "rows": n}


def check_full(t: Torch, out, q, k, v, backend: str) -> dict:
    with t.sdpa_kernel(t.backend(backend)):
        ref = t.sdpa(q, k, v)
    err, refmax, finite = max_rel_err(t, out, ref)
    del ref
    rel = err / refmax if refmax > 0 else err
    return {"ran": True, "passed": bool(finite and rel <= TOLERANCE), "finite": finite,
            "max_abs_err": err, "max_rel_err": rel, "tolerance": TOLERANCE,
            "reference": f"torch SDPA ({backend}) of the unsharded problem on one GPU (rank 0), "
                         "same inputs"}


def verify_output(t: Torch, a, p: Point, out, q, k, v) -> dict:
    """Rank 0: the gathered output against single-GPU SDPA, or rows against fp32."""
    if p.rotate is None:
        return check_rows(t, out, q, k, v, a.verify_rows, a.seed,
                          "independent of the SDPA backend under test")
    if p.flops() > a.verify_full_max_flops:
        return check_rows(t, out, q, k, v, a.verify_rows, a.seed,
                          f"the whole problem, {p.flops():.3g} FLOPs, is above "
                          f"--verify-full-max-flops")
    try:
        return check_full(t, out, q, k, v, p.backend)
    except t.torch.cuda.OutOfMemoryError as e:
        t.torch.cuda.empty_cache()
        return check_rows(t, out, q, k, v, a.verify_rows, a.seed,
                          f"the whole problem did not fit on one GPU: {short_error(e, 120)}")


class Session:
    """Device, process group and mesh of this process; the rank-0 writer."""

    def __init__(self, a, t: Torch):
        self.a, self.t = a, t
        torch, dist = t.torch, t.dist
        if not torch.cuda.is_available():
            raise UsageError("no CUDA device visible to torch")
        self.rank = int(os.environ.get("RANK", 0))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.world = a.cp
        if self.local_rank >= torch.cuda.device_count():
            raise UsageError(f"LOCAL_RANK {self.local_rank} but only "
                             f"{torch.cuda.device_count()} GPU(s) visible")
        torch.cuda.set_device(self.local_rank)
        self.device = torch.device("cuda", self.local_rank)
        self.mesh = None
        if not a.single_gpu:
            if t.cp_error:
                raise UsageError(t.cp_error)
            timeout = datetime.timedelta(seconds=a.timeout_s)
            try:
                dist.init_process_group("nccl", timeout=timeout, device_id=self.device)
            except TypeError:  # a torch without device_id
                dist.init_process_group("nccl", timeout=timeout)
            from torch.distributed.device_mesh import init_device_mesh
            self.mesh = init_device_mesh("cuda", (self.world,), mesh_dim_names=("cp",))

    @property
    def root(self) -> bool:
        return self.rank == 0

    def gpus(self) -> list[dict]:
        torch = self.t.torch
        pr = torch.cuda.get_device_properties(self.device)
        me = {"rank": self.rank, "index": self.local_rank, "name": pr.name,
              "memory_bytes": pr.total_memory, "sm": f"{pr.major}.{pr.minor}",
              "uuid": str(getattr(pr, "uuid", "")) or None, "host": socket.gethostname()}
        if self.mesh is None:
            return [me]
        everyone = [None] * self.world
        self.t.dist.all_gather_object(everyone, me)
        return everyone

    def close(self):
        if self.mesh is not None:
            try:
                self.t.dist.barrier()
                self.t.dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - shutting down: nothing left to save
                pass


def _randn_qkv(s: Session, p: Point) -> list:
    """q, k, v [B, H, S, d] bf16 from torch.randn with the point's seed: the same on every
    call, so rank 0 can make them again for the check."""
    torch = s.t.torch
    shape = (p.batch, p.heads, p.seq, p.head_dim)
    g = torch.Generator(device=s.device).manual_seed(p.seed)
    return [torch.randn(shape, generator=g, device=s.device, dtype=torch.bfloat16)
            for _ in range(3)]


def _same_everywhere(s: Session, qkv: list) -> None:
    """context_parallel shards with src_data_rank=None: every rank must hold the same q, k, v.
    Each rank made them itself (the same memory on every rank, so that an out-of-memory hits
    all alike); a checksum proves they agree, else rank 0's are broadcast."""
    torch, dist = s.t.torch, s.t.dist
    sums = torch.stack([x.sum(dtype=torch.float64) for x in qkv])
    lo, hi = sums.clone(), sums.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        for x in qkv:
            dist.broadcast(x, src=0)


def _memory_guard(s: Session, p: Point) -> None:
    """Refuses a point whose estimated per-rank memory exceeds the free memory of the tightest
    rank: context_parallel's ranks allocate different temporaries, so near the limit one rank
    alone may run out while the others wait for it in a collective until the timeout."""
    torch, dist = s.t.torch, s.t.dist
    need = cp_bytes_estimate(p, restore=not s.t.cp_no_restore) + (1 << 30)
    free = torch.tensor([torch.cuda.mem_get_info(s.device)[0]], dtype=torch.int64,
                        device=s.device)
    dist.all_reduce(free, op=dist.ReduceOp.MIN)
    if need > free.item():
        raise MemoryError(f"skipped: needs about {need / 2**30:.0f} GiB per rank (estimate), "
                          f"{free.item() / 2**30:.0f} GiB free on the tightest rank; an "
                          "out-of-memory on one rank would leave the others waiting in a "
                          "collective (--no-memory-guard runs it anyway)")


def _timed_loop(s: Session, p: Point, q, k, v):
    """(local per-iteration seconds, last output)."""
    torch, dist = s.t.torch, s.t.dist
    times, out = [], None
    with s.t.sdpa_kernel(s.t.backend(p.backend)):
        for it in range(s.a.warmup + s.a.iterations):
            if s.mesh is not None:
                dist.barrier()
            torch.cuda.synchronize(s.device)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            out = None  # the previous output is freed before the next one is made
            start.record()
            out = s.t.sdpa(q, k, v)
            end.record()
            torch.cuda.synchronize(s.device)
            if it >= s.a.warmup:
                times.append(start.elapsed_time(end) * 1e-3)
    return times, out


def _manual_unshard(s: Session, out_local):
    """All-gather along the sequence and undo the head-tail order (rank r holds chunks r and
    2N-1-r of 2N): used only where context_parallel_unshard is missing."""
    torch, dist = s.t.torch, s.t.dist
    n = s.world
    parts = [torch.empty_like(out_local) for _ in range(n)]
    dist.all_gather(parts, out_local.contiguous())
    c = out_local.shape[2] // 2
    order = []
    for r in range(n):
        order += [(r, 0, r), (r, 1, 2 * n - 1 - r)]  # (rank, half, global chunk)
    chunks = [None] * (2 * n)
    for r, half, gidx in order:
        chunks[gidx] = parts[r][:, :, half * c:(half + 1) * c]
    return torch.cat(chunks, dim=2)


def run_point(s: Session, p: Point):
    """(samples max over ranks, peak bytes per rank, verify dict), or raises (every rank the
    same way where the memory guard holds: the shapes are the same on every rank)."""
    torch, dist, a = s.t.torch, s.t.dist, s.a
    torch.cuda.empty_cache()
    if s.mesh is not None and not a.no_memory_guard:
        _memory_guard(s, p)
    torch.cuda.reset_peak_memory_stats(s.device)
    qkv = _randn_qkv(s, p)
    err: BaseException | None = None
    out_local = None
    times: list[float] = []
    with torch.no_grad():
        if s.mesh is None:
            try:
                times, out_local = _timed_loop(s, p, *qkv)
            except Exception as e:  # noqa: BLE001 - recorded as the point's error
                err = e
        else:
            _same_everywhere(s, qkv)
            s.t.set_rotate_method(p.rotate)
            # The context shards q, k, v in place. They are not restored on exit (rank 0 makes
            # them again for the check), which spares the 3 full copies context_parallel would
            # keep. An exception is caught inside the context so that it always exits normally
            # (which restores torch.nn.functional.scaled_dot_product_attention).
            kw = {"no_restore_buffers": set(qkv)} if s.t.cp_no_restore else {}
            with s.t.context_parallel(s.mesh, buffers=qkv, buffer_seq_dims=[2, 2, 2], **kw):
                try:
                    times, out_local = _timed_loop(s, p, *qkv)
                except Exception as e:  # noqa: BLE001
                    err = e
            kw = None  # its set held q, k, v
            flag = torch.tensor([0.0 if err is None else 1.0], device=s.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if err is None and flag.item() > 0:
                err = RuntimeError("failed on another rank (its error is in its log)")
        if err is not None:
            raise err
        # The peak of the timed run, before the check adds its reference on rank 0.
        peak = torch.tensor([torch.cuda.max_memory_allocated(s.device)], dtype=torch.int64,
                            device=s.device)
        samples = torch.tensor(times, dtype=torch.float64, device=s.device)
        if s.mesh is not None:
            dist.all_reduce(samples, op=dist.ReduceOp.MAX)
        samples = samples.tolist()

        verify = {"ran": False, "reason": "--no-verify"}
        if not a.no_verify:
            if s.mesh is None:
                full = out_local
            else:
                full = (s.t.unshard(s.mesh, [out_local], [2])[0] if s.t.unshard is not None
                        else _manual_unshard(s, out_local))
                del qkv[:]  # the shards (full-size storage): rank 0 makes q, k, v again
                if s.root:
                    qkv = _randn_qkv(s, p)
            del out_local
            if s.root:
                try:
                    verify = verify_output(s.t, a, p, full, *qkv)
                    if s.mesh is not None and s.t.unshard is None:
                        verify["reference"] += "; gathered by hand (no context_parallel_unshard)"
                except Exception as e:  # noqa: BLE001 - the timings stand without the check
                    verify = {"ran": False, "reason": f"the check failed: {short_error(e)}"}
            del full
        del qkv
        if s.mesh is not None:
            peaks = [torch.empty_like(peak) for _ in range(s.world)]
            dist.all_gather(peaks, peak)
            peak_list = [int(x.item()) for x in peaks]
        else:
            peak_list = [int(peak.item())]
    return samples, peak_list, verify


def load_balancer_name(s: Session, p: Point) -> str:
    mk = getattr(s.t, "default_balancer", None)
    if mk is None or s.mesh is None:
        return "default (causal head-tail)"
    try:
        lb = mk(p.seq, s.world, s.device)
        return f"{type(lb).__name__} (context_parallel's default)" if lb is not None else \
            "none (load balancing disabled)"
    except Exception:  # noqa: BLE001 - only a label
        return "default (causal head-tail)"


def launch_command(a, argv: list[str]) -> str:
    """How this run was started: torchrun's form under torchrun (WORLD_SIZE set)."""
    if "WORLD_SIZE" in os.environ and not a.single_gpu:
        return shlex.join(["torchrun", "--standalone", f"--nproc_per_node={a.cp}", *argv])
    return shlex.join(["python3", *argv])


def manifest_doc(a, s: Session, versions: dict, gpus: list[dict], argv: list[str],
                 started: str, points: list[Point], counts: dict, finished: str | None) -> dict:
    git = git_provenance()
    driver = _quiet(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return {
        "schema": MANIFEST_SCHEMA,
        "name": "peer-torch-sdpa" if a.single_gpu else f"peer-torch-cp{s.world}",
        "tool": {"name": TOOL, "peer": PEER_NAME if not a.single_gpu else "PyTorch SDPA"},
        "description": ("PyTorch context_parallel (default causal load balancer) timed on the "
                        "same GPUs as cpbench, in cpbench's results schema"
                        if not a.single_gpu else "PyTorch SDPA on one GPU, cpbench's schema"),
        "command": launch_command(a, argv),
        "backend": "torch", "backend_reason": f"peer runner ({versions.get('cp_module')})",
        "world_size": s.world, "iterations": a.iterations, "warmup": a.warmup,
        "verify": not a.no_verify, "settings": {k: v for k, v in sorted(vars(a).items())},
        "started": started, "finished": finished,
        "status": "complete" if finished else "running",
        "points_total": len(points), "points_run": sum(counts.values()),
        "points_failed": sum(v for k, v in counts.items() if k != "ok"), "counts": counts,
        "machine": {"backend": "torch", "gpus": gpus,
                    "driver": (driver or "").splitlines()[0] if driver else None,
                    "cuda_runtime": versions.get("cuda"), "nccl": versions.get("nccl"),
                    "cudnn": versions.get("cudnn"), "torch": versions.get("torch")},
        "provenance": {"git": git, "host": socket.gethostname(), "argv": [sys.executable, *argv],
                       "repro": shlex.join([sys.executable, *argv]), "env": env_knobs(),
                       "python": platform.python_version(),
                       "os": {"sysname": platform.system(), "release": platform.release(),
                              "machine": platform.machine()},
                       "time_utc": started},
    }


def run(a, argv: list[str]) -> int:
    # NVLink multicast (NVLS) is off on the lent machines unless the caller says otherwise,
    # as in cpbench's benchmarks; it must be set before NCCL initialises.
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    check_out_dir(a.out)
    t = Torch()
    s = Session(a, t)
    points = make_points(a)
    versions = t.versions()
    gpus = s.gpus()
    started = utc_now()
    counts: dict[str, int] = {}
    res_path = os.path.join(a.out, "results.jsonl")
    man_path = os.path.join(a.out, "manifest.json")
    if s.root:
        os.makedirs(a.out, exist_ok=True)
        write_json_atomic(man_path, manifest_doc(a, s, versions, gpus, argv, started, points,
                                                 counts, None))
        print(f"{TOOL}: {len(points)} points on {s.world} x {gpus[0]['name']} "
              f"(torch {versions['torch']}, {versions['cp_module'] or 'SDPA only'}), writing "
              f"{a.out}", flush=True)
    prov = {"git": git_provenance(), "host": socket.gethostname(),
            "torch": versions.get("torch"), "tool": TOOL}
    t0 = time.time()
    for p in points:
        tp = time.time()
        if p.rotate:
            versions["load_balancer"] = load_balancer_name(s, p)
        try:
            samples, peaks, verify = run_point(s, p)
            rec = finish_record(base_record(a, p, "ok", None, prov, versions), p, samples,
                                peaks, verify)
        except Exception as e:  # noqa: BLE001 - one point's failure, the sweep goes on
            rec = base_record(a, p, "error", short_error(e), prov, versions)
        if rec["status"] == "error":  # after the except block: its traceback held the tensors
            gc.collect()
            t.torch.cuda.empty_cache()
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
        if s.root:
            append_record(res_path, rec)
            if rec["status"] == "error":
                line = f"ERROR {rec['error']}"
            else:
                v = rec["verify"]
                check = (f"rel err {v['max_rel_err']:.2g} {'ok' if v['passed'] else 'WRONG'}"
                         if v.get("ran") else "not verified")
                line = (f"{rec['time']['median'] * 1e3:.3f} ms, {rec['tflops_per_gpu']:.1f} "
                        f"TF/s/GPU, {check}")
            print(f"[{p.index + 1}/{len(points)}] {p.describe()}: {line}  "
                  f"({time.time() - tp:.1f} s, total {time.time() - t0:.0f} s)", flush=True)
    if s.root:
        write_json_atomic(man_path, manifest_doc(a, s, versions, gpus, argv, started, points,
                                                 counts, utc_now()))
    s.close()
    return 0 if counts.get("ok", 0) == len(points) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        a = parse_args(argv)
        if a.dry_run:
            print_points(a, make_points(a))
            return 0
        return run(a, [sys.argv[0], *argv])
    except UsageError as e:
        print(f"peer_torch_cp.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
