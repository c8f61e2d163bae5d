#!/usr/bin/env python3
"""Our attention forward kernels next to PyTorch's SDPA, in one run, on one GPU (issue #5).

For each shape the script draws fresh random bf16 Q, K, V on GPU 0 and runs, on those same
tensors: ours through the C ABI of libcpbench_attention_capi.so (ctypes; kernel `automatic`, and
each kernel named in --kernels), and torch.nn.functional.scaled_dot_product_attention restricted
to the FLASH_ATTENTION (FlashAttention-2) and to the CUDNN_ATTENTION backend. Every
implementation is checked before it is timed: ours against the SDPA output (cuDNN's where it
ran, else flash's) and, for small shapes, against a float64 reference computed here in torch;
ours is poisoned with NaN before its checked launch and non-finite outputs are counted. A wrong
answer is never reported as a speed only: the row says `wrong` and the exit code is 1.

Timing: warm-up, then N reps, each preceded by an L2 flush
(overwriting a 256 MiB buffer), each bracketed by CUDA events on the current stream (ours is
launched on that stream); median and p10/p90 are reported. The two ceilings are measured in the
same run (a bf16 8192^3 matrix product through torch.matmul and a 4 GiB device-to-device copy)
and give each shape's floor: max(FLOPs / matmul rate, bytes / copy bandwidth).

FLOPs: 4 * B * H * d per visible (query, key) pair (FlashAttention's convention, DESIGN.md):
Sq * Sk pairs for the full mask; for the causal mask with lower-right alignment (our
diag = Sk - Sq; key j visible to row i iff j <= i + diag) the sum over rows of
clamp(i + diag + 1, 0, Sk). Bytes of the floor: Q, K, V read once in bf16, O (fp32) and LSE
(fp32) written once: our output format, used for every implementation's floor of a shape.

Writes into --out: sdpa_side_by_side.csv (one row per shape x implementation),
sdpa_side_by_side.md (the table, also printed last), sdpa_side_by_side.png (TF/s against S)
and manifest.json (GPU, driver, versions, git sha, command, time, ceilings, counts).
Exit codes: 0 every one of our rows correct; 1 some row of ours wrong or failed (everything is
still written); 2 bad arguments or no usable GPU / library (nothing measured).

--dry-run prints the plan (shapes, FLOPs, bytes) and needs neither torch nor a GPU.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass

# Imported in main() once the plan is known, so that --dry-run runs without them.
torch = None
F = None
np = None

REL_TOL = 2e-2  # ||ours - other|| / ||other||: bf16 operands land between 1e-3 and 1e-2
LSE_TOL = 1e-2  # max |lse - lse_ref| (natural log); fp32 softmax statistics land far below
CUDA_ERROR_NOT_SUPPORTED = 801  # cudaErrorNotSupported: hopper asked for where it cannot run

CSV_COLUMNS = [
    "impl", "kernel", "head_dim", "heads", "kv_heads", "sq", "sk", "mask", "diag",
    "ms_median", "ms_p10", "ms_p90", "tflops", "floor_ms", "rel_err_vs_sdpa", "rel_err_vs_ref",
    "lse_max_abs_err", "nonfinite", "status", "note",
    # beyond the list: provenance of each number
    "batch", "reps", "flops", "bytes", "floor_frac", "rerun_max_abs_diff",
]

IMPL_LABEL = {"ours": "ours", "sdpa-flash": "FA2", "sdpa-cudnn": "cuDNN",
              "ours-portable": "ours (portable)", "ours-hopper": "ours (hopper)"}
KERNEL_ID = {"auto": 0, "portable": 1, "hopper": 2}


# --- the plan: pure Python -----------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    head_dim: int
    sq: int
    sk: int
    mask: str  # "full" | "causal" (lower-right aligned: diag = sk - sq)
    diag: int

    def key(self):
        return (self.head_dim, self.sq, self.sk, self.mask, self.diag)


def visible_pairs(s: Shape) -> int:
    """(query, key) pairs one head computes; masked pairs are never counted."""
    if s.mask == "full":
        return s.sq * s.sk
    return sum(min(max(i + s.diag + 1, 0), s.sk) for i in range(s.sq))


def shape_flops(s: Shape, a) -> int:
    return 4 * a.batch * a.heads * s.head_dim * visible_pairs(s)


def shape_bytes(s: Shape, a) -> int:
    q = a.batch * s.sq * a.heads * s.head_dim * 2
    kv = 2 * a.batch * s.sk * a.kv_heads * s.head_dim * 2
    o = a.batch * s.sq * a.heads * s.head_dim * 4
    lse = a.batch * s.sq * a.heads * 4
    return q + kv + o + lse


def build_plan(a):
    """Ordered shapes (ascending length inside each group, so that measured rates predict the
    next shape's time) and, per shape, the groups it belongs to ("d128 full", "ring", ...)."""
    plan = {}

    def add(s, group):
        plan.setdefault(s.key(), (s, []))[1].append(group)

    for d in a.head_dims:
        for mask in a.masks:
            for n in a.seqs:
                add(Shape(d, n, n, mask, 0), f"d{d} {mask}")
    for sq in a.ring_sq:
        for f in a.ring_factors:
            sk = sq * f
            add(Shape(a.ring_head_dim, sq, sk, "causal", sk - sq), "ring")
    return list(plan.values())


# --- arguments -----------------------------------------------------------------------------------

def int_list(text):
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1
        if part.endswith("k"):
            mult, part = 1024, part[:-1]
        out.append(int(part) * mult)
    return out


def name_list(allowed):
    def parse(text):
        names = [t.strip() for t in text.split(",") if t.strip()]
        bad = [n for n in names if n not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{bad}: expected some of {sorted(allowed)}")
        return names
    return parse


QUICK_DEFAULTS = dict(seqs=[2048, 4096, 8192], head_dims=[128], ring_sq=[2048, 4096],
                      min_time=0.05, min_reps=5, max_reps=50, warmup=2)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Time cpbench's attention forward next to PyTorch SDPA (flash, cuDNN) "
                    "on the same tensors and GPU; check every result.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--lib", default=os.environ.get(
        "CPBENCH_CAPI_LIB", "/tmp/cpbench-kbench/benchmarks/libcpbench_attention_capi.so"),
        help="path of libcpbench_attention_capi.so (env CPBENCH_CAPI_LIB)")
    p.add_argument("--out", default="out-sdpa", help="folder for the csv, md, png and manifest")
    p.add_argument("--quick", action="store_true",
                   help="smoke: S up to 8K, head_dim 128 only, ring Sq 2K/4K, fewer reps "
                        "(explicit flags still win)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (shapes, FLOPs, bytes) and exit; needs no torch or GPU")
    g = p.add_argument_group("shapes")
    g.add_argument("--batch", type=int, default=1)
    g.add_argument("--heads", type=int, default=32, help="query heads")
    g.add_argument("--kv-heads", type=int, default=8, help="K/V heads (GQA group = heads/kv)")
    g.add_argument("--head-dims", type=int_list, default=[128, 64])
    g.add_argument("--seqs", type=int_list, default=[2048, 4096, 8192, 16384, 32768, 65536],
                   help="self-attention lengths, Sq = Sk (suffix k = 1024)")
    g.add_argument("--masks", type=name_list({"full", "causal"}), default=["full", "causal"])
    g.add_argument("--ring-sq", type=int_list, default=[2048, 4096, 8192],
                   help="ring-step blocks: query lengths (empty string: none)")
    g.add_argument("--ring-factors", type=int_list, default=[1, 2],
                   help="ring-step blocks: Sk = factor * Sq, causal lower-right")
    g.add_argument("--ring-head-dim", type=int, default=128)
    g = p.add_argument_group("implementations")
    g.add_argument("--kernels", type=name_list({"portable", "hopper"}), default=[],
                   help="also time these of our kernels explicitly (ours = automatic always)")
    g.add_argument("--sdpa", type=name_list({"flash", "cudnn"}), default=["flash", "cudnn"],
                   help="SDPA backends to run")
    g = p.add_argument_group("timing")
    g.add_argument("--min-time", type=float, default=0.2,
                   help="seconds of timed GPU work per implementation and shape")
    g.add_argument("--min-reps", type=int, default=10)
    g.add_argument("--max-reps", type=int, default=200)
    g.add_argument("--warmup", type=int, default=3, help="untimed launches before timing")
    g.add_argument("--budget-s", type=float, default=15.0,
                   help="cap on one implementation's timed seconds per shape (reps are cut, "
                        "never below 3, and the row says so)")
    g.add_argument("--max-launch-s", type=float, default=2.0,
                   help="skip an implementation at a shape where its last measured rate "
                        "predicts a launch longer than this (the portable kernel at 64K)")
    g.add_argument("--flush-mib", type=int, default=256, help="L2 flush buffer written before "
                   "each timed rep")
    g = p.add_argument_group("checks and ceilings")
    g.add_argument("--ref-max-seq", type=int, default=4096,
                   help="float64 reference where Sq * Sk <= this squared")
    g.add_argument("--matmul-n", type=int, default=8192, help="bf16 n^3 matmul ceiling")
    g.add_argument("--copy-gib", type=float, default=4.0, help="device copy ceiling size")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-kernel-names", action="store_true",
                   help="do not profile one call per row to record which GPU kernels ran")

    first, _ = p.parse_known_args(argv)
    if first.quick:
        p.set_defaults(**QUICK_DEFAULTS)
    a = p.parse_args(argv)
    if a.heads <= 0 or a.kv_heads <= 0 or a.heads % a.kv_heads:
        p.error("--heads must be a positive multiple of --kv-heads")
    if a.batch <= 0 or any(x <= 0 for x in a.seqs + a.ring_sq + a.ring_factors + a.head_dims):
        p.error("lengths, head dims, factors and batch must be positive")
    if a.min_reps < 1 or a.max_reps < a.min_reps or a.warmup < 1:
        p.error("need 1 <= --min-reps <= --max-reps and --warmup >= 1")
    return a


# --- GPU helpers ---------------------------------------------------------------------------------

class CapiError(RuntimeError):
    def __init__(self, code, what, lib):
        msg = lib.cpb_error_string(code).decode()
        super().__init__(f"{what}: CUDA error {code} ({msg})")
        self.code = code


def load_lib(path):
    lib = ctypes.CDLL(path)
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    lib.cpb_attention.argtypes = [ctypes.c_int, ctypes.c_int, vp, vp, vp, vp, vp, i64, i64, i64,
                                  i64, i64, i64, ctypes.c_int, i64, ctypes.c_float, ctypes.c_int,
                                  vp]
    lib.cpb_attention.restype = ctypes.c_int
    lib.cpb_resolve_kernel.argtypes = [i64, i64, i64, vp, vp, vp]
    lib.cpb_resolve_kernel.restype = ctypes.c_int
    lib.cpb_hopper_unsupported_reason.argtypes = [i64, i64, i64, vp, vp, vp]
    lib.cpb_hopper_unsupported_reason.restype = ctypes.c_char_p
    lib.cpb_kernel_name.argtypes = [ctypes.c_int]
    lib.cpb_kernel_name.restype = ctypes.c_char_p
    lib.cpb_error_string.argtypes = [ctypes.c_int]
    lib.cpb_error_string.restype = ctypes.c_char_p
    return lib


def time_reps(fn, flush, reps):
    """`reps` calls of fn, each after an L2 flush, each between two events on the current
    stream; one synchronisation at the end. Returns the times in ms."""
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for s, e in zip(starts, ends):
        flush()
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(starts, ends)]


def measure(fn, flush, a):
    """Warm up, size the rep count to --min-time within [--min-reps, --max-reps] and
    --budget-s, time. Returns (samples_ms, note)."""
    warm = time_reps(fn, flush, 1)  # the first call also pays module load and plan creation
    if a.warmup > 1 and warm[0] * (a.warmup - 1) < a.budget_s * 1e3 / 4:
        warm = time_reps(fn, flush, a.warmup - 1)
    est = max(float(np.median(warm)), 1e-3)
    reps = min(max(math.ceil(a.min_time * 1e3 / est), a.min_reps), a.max_reps)
    note = ""
    if reps * est > a.budget_s * 1e3:
        reps = max(3, int(a.budget_s * 1e3 // est))
        note = f"reps cut to {reps} by --budget-s"
    return time_reps(fn, flush, reps), note


def kernel_names(fn, limit=4):
    """Names of the GPU kernels one call runs (one profiled call, outside the timing), so that
    each row says what actually ran, e.g. that the cuDNN row ran a cuDNN kernel."""
    try:
        from torch.profiler import ProfilerActivity, profile
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        total_us = {}  # kernel name -> GPU time in this call, longest first below
        for ev in prof.events():
            if not str(getattr(ev, "device_type", "")).endswith("CUDA"):
                continue
            n = ev.name[5:] if ev.name.startswith("void ") else ev.name
            n = n.split("(")[0].split("<")[0][:60]
            try:
                us = float(ev.time_range.elapsed_us())
            except Exception:
                us = 0.0
            total_us[n] = total_us.get(n, 0.0) + us
        names = sorted(total_us, key=lambda n: -total_us[n])
        return names[:limit] if names else ["(no kernel seen)"]
    except Exception as e:  # the profiler is a convenience: never fail a row for it
        return [f"(profiler failed: {type(e).__name__})"]


def rel_err(a, b):
    a = a.float()
    b = b.float()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def reference(q, k, v, s: Shape, scale):
    """O and LSE in float64 from the bf16 inputs, with an explicit softmax; heads in chunks so
    that one chunk's score matrix stays near 1 GiB."""
    B, Sq, H, d = q.shape
    Sk, Hkv = k.shape[1], k.shape[2]
    group = H // Hkv
    dev = q.device
    o = torch.empty(B, Sq, H, d, dtype=torch.float64, device=dev)
    lse = torch.empty(B, Sq, H, dtype=torch.float64, device=dev)
    hidden = None
    if s.mask == "causal":
        i = torch.arange(Sq, device=dev)[:, None]
        j = torch.arange(Sk, device=dev)[None, :]
        hidden = j > i + s.diag
    chunk = max(1, (1 << 30) // (Sq * Sk * 8))
    for b in range(B):
        for h0 in range(0, H, chunk):
            h1 = min(H, h0 + chunk)
            hk = torch.arange(h0, h1, device=dev) // group  # query head h reads K/V head h/group
            qh = q[b, :, h0:h1].permute(1, 0, 2).double()                # [c, Sq, d]
            kh = k[b].index_select(1, hk).permute(1, 0, 2).double()      # [c, Sk, d]
            vh = v[b].index_select(1, hk).permute(1, 0, 2).double()
            sc = torch.matmul(qh, kh.transpose(1, 2)) * scale            # [c, Sq, Sk]
            if hidden is not None:
                sc.masked_fill_(hidden, float("-inf"))
            m = sc.amax(dim=-1, keepdim=True)
            p = torch.exp(sc - m)
            l = p.sum(dim=-1, keepdim=True)
            o[b, :, h0:h1] = (torch.matmul(p, vh) / l).permute(1, 0, 2)
            lse[b, :, h0:h1] = (m + torch.log(l)).squeeze(-1).transpose(0, 1)
            del sc, p
    return o, lse


def gpu_healthy():
    try:
        torch.cuda.synchronize()
        return True
    except Exception:
        return False


def first_line(e, n=300):
    text = " ".join(str(e).split())
    return text[:n]


# --- one shape -----------------------------------------------------------------------------------

class Runner:
    def __init__(self, a, lib):
        self.a = a
        self.lib = lib
        self.dev = torch.device("cuda", 0)
        self.flush_buf = torch.empty(a.flush_mib << 20, dtype=torch.uint8, device=self.dev)
        self.rates = {}  # impl -> last measured FLOPs per ms, to predict the next shape
        self.profiled = set()  # (impl, head_dim, mask, square) whose kernels were recorded
        self.dead = None  # set when the CUDA context became unusable

    def flush(self):
        self.flush_buf.zero_()

    def base_row(self, impl, s: Shape, flops, nbytes, floor_ms):
        a = self.a
        return dict(impl=impl, kernel="", head_dim=s.head_dim, heads=a.heads,
                    kv_heads=a.kv_heads, sq=s.sq, sk=s.sk, mask=s.mask, diag=s.diag,
                    ms_median=None, ms_p10=None, ms_p90=None, tflops=None, floor_ms=floor_ms,
                    rel_err_vs_sdpa=None, rel_err_vs_ref=None, lse_max_abs_err=None,
                    nonfinite=None, status="", note="", batch=a.batch, reps=None, flops=flops,
                    bytes=nbytes, floor_frac=None, rerun_max_abs_diff=None)

    def want_kernel_names(self, impl, s: Shape):
        """Once per implementation and kind of shape: what runs does not change with the length,
        and each profiler session costs time (it runs after the timing, never inside it)."""
        key = (impl, s.head_dim, s.mask, s.sq == s.sk)
        if self.a.no_kernel_names or key in self.profiled:
            return False
        self.profiled.add(key)
        return True

    def predicted_too_slow(self, impl, flops):
        rate = self.rates.get(impl)
        return rate is not None and flops / rate > self.a.max_launch_s * 1e3

    def fill_timing(self, row, impl, samples, flops):
        med = float(np.median(samples))
        row.update(ms_median=med, ms_p10=float(np.percentile(samples, 10)),
                   ms_p90=float(np.percentile(samples, 90)), reps=len(samples),
                   tflops=flops / (med * 1e-3) / 1e12)
        if row["floor_ms"]:
            row["floor_frac"] = row["floor_ms"] / med
        self.rates[impl] = flops / med

    # SDPA wants [B, H, S, d]: views of our [B, S, H, d] tensors. GQA through enable_gqa; where a
    # backend refuses, K/V heads repeated; where that is refused too, contiguous copies.
    def sdpa_variants(self, q, k, v):
        a = self.a
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        if a.heads == a.kv_heads:
            yield qt, kt, vt, {}, ""
        else:
            yield qt, kt, vt, {"enable_gqa": True}, ""
            g = a.heads // a.kv_heads
            kr, vr = kt.repeat_interleave(g, dim=1), vt.repeat_interleave(g, dim=1)
            yield qt, kr, vr, {}, f"K/V heads repeated x{g} (enable_gqa refused)"
            del kr, vr
        g = a.heads // a.kv_heads
        yield (qt.contiguous(), kt.repeat_interleave(g, dim=1).contiguous(),
               vt.repeat_interleave(g, dim=1).contiguous(), {},
               "contiguous [B,H,S,d] copies" + (f", K/V heads repeated x{g}" if g > 1 else "")
               + " (strided views refused)")

    def run_sdpa(self, which, s, q, k, v, scale, flops, nbytes, floor_ms):
        """Returns (row, output as [B, Sq, H, d] or None)."""
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.attention.bias import causal_lower_right
        impl = f"sdpa-{which}"
        backend = SDPBackend.FLASH_ATTENTION if which == "flash" else SDPBackend.CUDNN_ATTENTION
        row = self.base_row(impl, s, flops, nbytes, floor_ms)
        row["kernel"] = backend.name
        if self.predicted_too_slow(impl, flops):
            row.update(status="skipped", note="predicted launch over --max-launch-s")
            return row, None
        mask_kw = {}
        notes = []
        if s.mask == "causal":
            # Lower-right alignment; for Sq == Sk this is is_causal=True. cuDNN has no
            # lower-right flag in SDPA: CausalBias then builds a dense [Sq, Sk] mask per call.
            mask_kw["attn_mask"] = causal_lower_right(s.sq, s.sk)
            if which == "cudnn" and s.sq != s.sk:
                notes.append("lower-right mask materialised per call (in the timing)")
        refusals = []
        with sdpa_kernel([backend]):
            for qq, kk, vv, kw, why in self.sdpa_variants(q, k, v):
                def fn(qq=qq, kk=kk, vv=vv, kw=kw):
                    return F.scaled_dot_product_attention(qq, kk, vv, scale=scale, **mask_kw,
                                                          **kw)
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        out = fn()
                        torch.cuda.synchronize()
                except Exception as e:  # the backend refused this variant (or failed)
                    # torch warns why each backend was not taken; keep the informative ones
                    reasons = [first_line(w.message, 160) for w in caught
                               if "not used because" not in str(w.message)
                               and "runtime disabled" not in str(w.message)]
                    refusals.append(first_line(e, 160) + (" | " + "; ".join(reasons[:4])
                                                          if reasons else ""))
                    if not gpu_healthy():
                        self.dead = f"{impl}: {first_line(e)}"
                        break
                    continue
                if why:
                    notes.append(why)
                out_bshd = out.transpose(1, 2)
                row["nonfinite"] = int((~torch.isfinite(out_bshd)).sum())
                samples, tnote = measure(fn, self.flush, self.a)
                if tnote:
                    notes.append(tnote)
                self.fill_timing(row, impl, samples, flops)
                if self.want_kernel_names(impl, s):
                    names = kernel_names(fn)
                    notes.append("kernels: " + ", ".join(names))
                    # cuDNN's own kernels may say "flash" too; FA2's is pytorch_flash::flash_fwd*
                    if which == "cudnn" and any("flash_fwd" in n for n in names) and \
                            not any("cudnn" in n.lower() for n in names):
                        notes.append("WARNING: FA2 kernel seen in the cuDNN row")
                row["status"] = "ok"
                row["note"] = "; ".join(notes)
                return row, out_bshd
        # Every variant raised: the backend does not take this shape (the note has torch's
        # message and reasons), unless the raise left the CUDA context unusable.
        row.update(status="unsupported" if self.dead is None else "error",
                   note="; ".join(notes + refusals)[:600])
        return row, None

    def run_ours(self, kernel, s, q, k, v, scale, flops, nbytes, floor_ms):
        """Returns (row, o, lse); o and lse None unless the checked launch completed."""
        a, lib = self.a, self.lib
        impl = "ours" if kernel == "auto" else f"ours-{kernel}"
        row = self.base_row(impl, s, flops, nbytes, floor_ms)
        ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr())
        shape_args = (a.heads, a.kv_heads, s.head_dim) + ptrs
        kid = KERNEL_ID[kernel]
        notes = []
        if kernel == "auto":
            resolved = lib.cpb_resolve_kernel(*shape_args)
            row["kernel"] = lib.cpb_kernel_name(resolved).decode() if resolved >= 0 else "?"
            if resolved == KERNEL_ID["portable"]:
                why = lib.cpb_hopper_unsupported_reason(*shape_args)
                notes.append("automatic took portable: " + (
                    why.decode() if why is not None else "CPBENCH_ATTENTION_KERNEL override"))
        else:
            row["kernel"] = kernel
        if kernel == "hopper":
            why = lib.cpb_hopper_unsupported_reason(*shape_args)
            if why is not None:
                row.update(status="unsupported", note=why.decode())
                return row, None, None
        if self.predicted_too_slow(impl, flops):
            row.update(status="skipped", note="predicted launch over --max-launch-s")
            return row, None, None
        o = torch.empty(a.batch, s.sq, a.heads, s.head_dim, dtype=torch.float32, device=self.dev)
        lse = torch.empty(a.batch, s.sq, a.heads, dtype=torch.float32, device=self.dev)
        mask_kind = 1 if s.mask == "full" else 2
        stream = torch.cuda.current_stream().cuda_stream
        cargs = (0, kid, *ptrs, o.data_ptr(), lse.data_ptr(), a.batch, s.sq, s.sk, a.heads,
                 a.kv_heads, s.head_dim, mask_kind, s.diag, scale, 0, stream)

        def fn():
            rc = lib.cpb_attention(*cargs)
            if rc != 0:
                raise CapiError(rc, f"cpb_attention({impl})", lib)

        try:
            o.fill_(float("nan"))
            lse.fill_(float("nan"))
            fn()
            torch.cuda.synchronize()
        except CapiError as e:
            status = "unsupported" if e.code == CUDA_ERROR_NOT_SUPPORTED and kernel == "hopper" \
                else "error"
            row.update(status=status, note="; ".join(notes + [first_line(e)]))
            if not gpu_healthy():
                self.dead = f"{impl}: {first_line(e)}"
            return row, None, None
        except Exception as e:  # an asynchronous fault surfaces at the synchronisation
            row.update(status="error", note="; ".join(notes + [first_line(e)]))
            if not gpu_healthy():
                self.dead = f"{impl}: {first_line(e)}"
            return row, None, None
        row["nonfinite"] = int((~torch.isfinite(o)).sum()) + int((~torch.isfinite(lse)).sum())
        checked_o, checked_lse = o.clone(), lse.clone()
        try:
            samples, tnote = measure(fn, self.flush, a)
        except Exception as e:
            row.update(status="error", note="; ".join(notes + [first_line(e)]))
            if not gpu_healthy():
                self.dead = f"{impl}: {first_line(e)}"
            return row, checked_o, checked_lse
        if tnote:
            notes.append(tnote)
        self.fill_timing(row, impl, samples, flops)
        # The same inputs must give the same output every launch; a difference is a race.
        row["rerun_max_abs_diff"] = float((o - checked_o).abs().nan_to_num(float("inf")).max())
        if self.want_kernel_names(impl, s):
            notes.append("kernels: " + ", ".join(kernel_names(fn)))
        row["note"] = "; ".join(notes)
        return row, checked_o, checked_lse

    def run_shape(self, s: Shape, index):
        a = self.a
        flops, nbytes = shape_flops(s, a), shape_bytes(s, a)
        floor_ms = max(flops / self.ceil["matmul_flops_per_ms"],
                       nbytes / self.ceil["copy_bytes_per_ms"])
        scale = 1.0 / math.sqrt(s.head_dim)
        gen = torch.Generator(device=self.dev)
        gen.manual_seed(a.seed * 1_000_003 + index)
        # Fresh random inputs per shape; never zeros (they hide unwritten outputs and run fast).
        q = torch.randn(a.batch, s.sq, a.heads, s.head_dim, generator=gen, device=self.dev,
                        dtype=torch.bfloat16)
        k = torch.randn(a.batch, s.sk, a.kv_heads, s.head_dim, generator=gen, device=self.dev,
                        dtype=torch.bfloat16)
        v = torch.randn(a.batch, s.sk, a.kv_heads, s.head_dim, generator=gen, device=self.dev,
                        dtype=torch.bfloat16)
        ref_o = ref_lse = None
        if s.sq * s.sk <= a.ref_max_seq ** 2:
            ref_o, ref_lse = reference(q, k, v, s, scale)

        rows, sdpa_out = [], {}
        for which in sorted(a.sdpa, key=lambda w: 0 if w == "cudnn" else 1):
            if self.dead:
                break
            row, out = self.run_sdpa(which, s, q, k, v, scale, flops, nbytes, floor_ms)
            rows.append(row)
            if out is not None:
                sdpa_out[which] = out
        for row in rows:  # SDPA rows against the reference: a wrong one is no comparison
            out = sdpa_out.get(row["impl"][5:])
            if out is None:
                continue
            if ref_o is not None:
                row["rel_err_vs_ref"] = rel_err(out, ref_o)
            if row["nonfinite"] > 0 or (row["rel_err_vs_ref"] is not None
                                        and not row["rel_err_vs_ref"] <= REL_TOL):
                row["status"] = "wrong"
                del sdpa_out[row["impl"][5:]]
        cmp_name = "cudnn" if "cudnn" in sdpa_out else ("flash" if "flash" in sdpa_out else None)
        cmp_out = sdpa_out.get(cmp_name)
        for row in rows:  # and flash against cuDNN, a cross-check of the comparison itself
            out = sdpa_out.get(row["impl"][5:])
            if out is not None and cmp_out is not None and row["impl"] != f"sdpa-{cmp_name}":
                row["rel_err_vs_sdpa"] = rel_err(out, cmp_out)

        for kernel in ["auto"] + list(a.kernels):
            if self.dead:
                break
            row, o, lse = self.run_ours(kernel, s, q, k, v, scale, flops, nbytes, floor_ms)
            if o is not None:
                checks = []
                if cmp_out is not None:
                    row["rel_err_vs_sdpa"] = rel_err(o, cmp_out)
                    checks.append(f"vs sdpa-{cmp_name}")
                if ref_o is not None:
                    row["rel_err_vs_ref"] = rel_err(o, ref_o)
                    row["lse_max_abs_err"] = float((lse.double() - ref_lse).abs()
                                                   .nan_to_num(float("inf")).max())
                    checks.append("vs float64 reference")
                wrong = (row["nonfinite"] > 0
                         or (row["rel_err_vs_sdpa"] is not None
                             and not row["rel_err_vs_sdpa"] <= REL_TOL)
                         or (row["rel_err_vs_ref"] is not None
                             and not row["rel_err_vs_ref"] <= REL_TOL)
                         or (row["lse_max_abs_err"] is not None
                             and not row["lse_max_abs_err"] <= LSE_TOL)
                         # the same inputs gave another output on a timed launch: a race
                         or (row["rerun_max_abs_diff"] is not None
                             and row["rerun_max_abs_diff"] != 0))
                if not row["status"]:
                    row["status"] = "wrong" if wrong else "ok"
                elif wrong:  # timing failed after a wrong checked launch
                    row["status"] = "wrong"
                if not checks:
                    row["note"] = "; ".join(filter(None, [row["note"],
                                                          "UNCHECKED: no SDPA output, no ref"]))
            rows.append(row)
            del o, lse
        del q, k, v, ref_o, ref_lse, sdpa_out, cmp_out
        torch.cuda.empty_cache()
        return rows


def measure_ceilings(runner, a):
    """bf16 n^3 matmul rate and device-to-device copy bandwidth, on random data (zeros can run
    faster). Each operand lives only inside its helper, so the memory is free afterwards."""
    dev = runner.dev
    n = a.matmul_n
    numel = int(a.copy_gib * (1 << 30)) // 2  # bf16 elements

    def matmul_samples():
        x = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        y = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        z = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
        return measure(lambda: torch.matmul(x, y, out=z), runner.flush, a)[0]

    def copy_samples():
        src = torch.empty(numel, device=dev, dtype=torch.bfloat16).uniform_(-1, 1)
        dst = torch.empty_like(src)
        return measure(lambda: dst.copy_(src), runner.flush, a)[0]

    mm = matmul_samples()
    cp = copy_samples()
    torch.cuda.empty_cache()
    mm_ms, cp_ms = float(np.median(mm)), float(np.median(cp))
    flops, nbytes = 2 * n ** 3, 2 * numel * 2
    return {
        "matmul_n": n, "matmul_ms_median": mm_ms, "matmul_tflops": flops / mm_ms / 1e9,
        "matmul_reps": len(mm),
        "copy_bytes_read_plus_written": nbytes, "copy_ms_median": cp_ms,
        "copy_gbps": nbytes / cp_ms / 1e6, "copy_reps": len(cp),
        "matmul_flops_per_ms": flops / mm_ms, "copy_bytes_per_ms": nbytes / cp_ms,
    }


# --- outputs -------------------------------------------------------------------------------------

def fmt(x, spec=".4g"):
    if x is None:
        return ""
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow([fmt(r[c], ".6g") for c in CSV_COLUMNS])


def seq_label(n):
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def render_markdown(rows, plan, manifest, a):
    by = {}
    for r in rows:
        by[(r["head_dim"], r["sq"], r["sk"], r["mask"], r["diag"], r["impl"])] = r
    extra = [f"ours-{k}" for k in a.kernels]
    g = manifest["gpu"]
    c = manifest["ceilings"]
    lines = [
        "# Attention forward: cpbench next to PyTorch SDPA",
        "",
        f"{g.get('name')} (cc {g.get('compute_capability')}, {g.get('sm_count')} SMs), driver "
        f"{g.get('driver')}; torch {manifest['torch']}, CUDA {manifest['cuda']}, cuDNN "
        f"{manifest['cudnn']}; git {manifest['git_sha']}; {manifest['utc']}.",
        f"Batch {a.batch}, {a.heads} query heads, {a.kv_heads} KV heads, bf16 inputs, scale "
        "1/sqrt(d); ours writes fp32 O and LSE, SDPA bf16 O. Causal is lower-right aligned "
        "(diag = Sk - Sq).",
        f"Ceilings measured in this run: bf16 {c['matmul_n']}^3 matmul "
        f"**{c['matmul_tflops']:.0f} TF/s**, device copy **{c['copy_gbps']:.0f} GB/s** (read + "
        "written). Floor = max(FLOPs / matmul rate, bytes / copy rate); '% floor' = floor / "
        "ours' median time.",
        "TF/s = 4·B·H·d·(visible pairs) / median time. 'err' = ‖ours − SDPA‖/‖SDPA‖ "
        "(cuDNN's O where it ran, else flash's).",
        "",
    ]
    head = ["d", "mask", "Sq", "Sk", "kernel", "ours TF/s", "FA2 TF/s", "cuDNN TF/s",
            "ours÷cuDNN", "ours÷FA2"] + [f"{IMPL_LABEL.get(e, e)} TF/s" for e in extra] + \
           ["ours ms", "% floor", "err", "status"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")

    def tf(r):
        if r is None:
            return "—"
        if r["status"] in ("ok", "wrong") and r["tflops"] is not None:
            return f"{r['tflops']:.1f}" + (" (wrong)" if r["status"] == "wrong" else "")
        return r["status"] or "—"

    def ratio(x, y):
        if x is None or y is None or x["tflops"] is None or y["tflops"] is None:
            return "—"
        if x["status"] != "ok" or y["status"] != "ok":
            return "—"
        return f"{x['tflops'] / y['tflops']:.2f}"

    for s, groups in plan:
        key = s.key()
        ours = by.get(key + ("ours",))
        if ours is None:
            continue
        fa, cu = by.get(key + ("sdpa-flash",)), by.get(key + ("sdpa-cudnn",))
        cells = [str(s.head_dim), s.mask + (" (ring)" if "ring" in groups else ""),
                 seq_label(s.sq), seq_label(s.sk), ours["kernel"], tf(ours), tf(fa), tf(cu),
                 ratio(ours, cu), ratio(ours, fa)]
        cells += [tf(by.get(key + (e,))) for e in extra]
        cells += [fmt(ours["ms_median"], ".3f") or "—",
                  f"{100 * ours['floor_frac']:.0f}%" if ours["floor_frac"] else "—",
                  fmt(ours["rel_err_vs_sdpa"], ".1e") or "—", ours["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    counts = manifest["counts"]
    lines += ["", "Rows by status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
              + "."]
    if manifest["failures"]:
        lines.append("Failures of ours: " + "; ".join(manifest["failures"]))
    return "\n".join(lines) + "\n"


def render_plot(path, rows, plan, manifest, a):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(d, m) for d in a.head_dims for m in a.masks]
    if not panels:
        return
    ncols = len(a.masks)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 4.2 * nrows), squeeze=False)
    impls = ["ours", "sdpa-flash", "sdpa-cudnn"] + [f"ours-{k}" for k in a.kernels]
    styles = {"ours": dict(color="C3", marker="o", lw=2.2),
              "sdpa-flash": dict(color="C0", marker="s"),
              "sdpa-cudnn": dict(color="C2", marker="^"),
              "ours-portable": dict(color="C7", marker="x", ls="--"),
              "ours-hopper": dict(color="C1", marker="d", ls="--")}
    mm = manifest["ceilings"]["matmul_tflops"]
    for ax, (d, mask) in zip(axes.flat, panels):
        group = f"d{d} {mask}"
        shapes = [s for s, groups in plan if group in groups]
        for impl in impls:
            pts = [(r["sq"], r["tflops"]) for r in rows
                   if r["impl"] == impl and r["status"] == "ok" and r["tflops"] is not None
                   and any(r["head_dim"] == s.head_dim and r["sq"] == s.sq and r["sk"] == s.sk
                           and r["mask"] == s.mask for s in shapes)]
            if pts:
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=IMPL_LABEL.get(impl, impl),
                        **styles.get(impl, {}))
        ax.axhline(mm, ls="--", color="k", lw=1, label=f"bf16 matmul {mm:.0f} TF/s")
        ax.set_xscale("log", base=2)
        xs = [s.sq for s in shapes]
        if xs:
            ax.set_xticks(xs)
            ax.set_xticklabels([seq_label(x) for x in xs])
        ax.set_ylim(0, mm * 1.08)
        ax.set_title(f"head_dim {d}, {mask}")
        ax.set_xlabel("S (Sq = Sk)")
        ax.set_ylabel("TF/s")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    g = manifest["gpu"]
    fig.suptitle(f"Attention forward, bf16, B={a.batch} H={a.heads} Hkv={a.kv_heads} — "
                 f"{g.get('name')}, torch {manifest['torch']}, git {manifest['git_sha']}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def driver_version():
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader",
                            "-i", "0"], capture_output=True, text=True, timeout=30)
        return r.stdout.strip() or None
    except Exception:
        return None


def git_sha():
    sha = os.environ.get("CPBENCH_GIT_SHA")
    if sha:
        return sha
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        r = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or None
    except Exception:
        return None


def gpu_info():
    p = torch.cuda.get_device_properties(0)
    return {"index": 0, "name": p.name, "compute_capability": f"{p.major}.{p.minor}",
            "sm_count": p.multi_processor_count, "memory_bytes": p.total_memory,
            "l2_bytes": getattr(p, "L2_cache_size", None), "driver": driver_version(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


# --- main ----------------------------------------------------------------------------------------

def print_plan(plan, a):
    print(f"{'group':<16} {'d':>4} {'mask':<7} {'Sq':>6} {'Sk':>6} {'diag':>6} "
          f"{'GFLOP':>10} {'MB':>9}")
    for s, groups in plan:
        print(f"{','.join(groups):<16} {s.head_dim:>4} {s.mask:<7} {s.sq:>6} {s.sk:>6} "
              f"{s.diag:>6} {shape_flops(s, a) / 1e9:>10.1f} {shape_bytes(s, a) / 1e6:>9.1f}")
    impls = ["ours"] + [f"ours-{k}" for k in a.kernels] + [f"sdpa-{b}" for b in a.sdpa]
    print(f"{len(plan)} shapes x {len(impls)} implementations ({', '.join(impls)})")


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    plan = build_plan(a)
    if a.dry_run:
        print_plan(plan, a)
        return 0

    global torch, F, np
    try:
        import numpy as np  # noqa: F811
        import torch  # noqa: F811
        import torch.nn.functional as F  # noqa: F811
    except ImportError as e:
        print(f"error: {e}: this script needs torch and numpy (and matplotlib for the plot)",
              file=sys.stderr)
        return 2

    if not torch.cuda.is_available():
        print("error: no CUDA device visible to torch", file=sys.stderr)
        return 2
    torch.cuda.set_device(0)
    torch.cuda.init()
    # After torch: libcudart.so.13 then resolves to the copy torch already loaded.
    try:
        lib = load_lib(a.lib)
    except OSError as e:
        print(f"error: cannot load {a.lib}: {e} (build target cpbench_attention_capi, or pass "
              "--lib)", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    runner = Runner(a, lib)
    manifest = {
        "tool": "benchmarks/attention_vs_sdpa.py",
        "command": shlex.join([sys.executable] + sys.argv),
        "utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_sha": git_sha(),
        "gpu": gpu_info(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": sys.version.split()[0],
        "lib": os.path.abspath(a.lib),
        # every CPBENCH_* knob (kernel choice, Hopper variant, ...) and the few others that
        # change what runs
        "env": {k: v for k, v in sorted(os.environ.items())
                if k.startswith("CPBENCH_") or k in ("NCCL_NVLS_ENABLE", "CUDA_VISIBLE_DEVICES",
                                                     "TORCH_CUDNN_SDPA_DEPRIORITIZED")},
        "settings": {k: v for k, v in vars(a).items()},
        "conventions": {
            "flops": "4*B*H*d per visible (query,key) pair; causal lower-right: sum_i "
                     "clamp(i+diag+1, 0, Sk), diag = Sk-Sq",
            "bytes": "q,k,v bf16 read once + o fp32 + lse fp32 written once",
            "floor_ms": "max(flops / matmul rate, bytes / copy rate)",
            "timing": "CUDA events on the current stream, L2 flush before each rep, median",
            "rel_err": "||a-b||_2/||b||_2 over the whole O",
            "tolerances": {"rel_err": REL_TOL, "lse_max_abs_err": LSE_TOL},
        },
    }
    print(f"GPU 0: {manifest['gpu']['name']} cc {manifest['gpu']['compute_capability']}, torch "
          f"{manifest['torch']}, CUDA {manifest['cuda']}, cuDNN {manifest['cudnn']}", flush=True)
    manifest["ceilings"] = ceil = measure_ceilings(runner, a)
    runner.ceil = ceil
    print(f"ceilings: bf16 matmul {ceil['matmul_tflops']:.0f} TF/s, copy "
          f"{ceil['copy_gbps']:.0f} GB/s", flush=True)

    rows = []
    for index, (s, groups) in enumerate(plan):
        if runner.dead:
            for impl in ["ours"] + [f"ours-{k}" for k in a.kernels]:
                r = runner.base_row(impl, s, shape_flops(s, a), shape_bytes(s, a), None)
                r.update(status="skipped", note=f"CUDA context unusable after: {runner.dead}")
                rows.append(r)
            continue
        t = time.time()
        try:
            shape_rows = runner.run_shape(s, index)
        except Exception as e:  # a harness fault (out of memory, a bug): one row, then go on
            traceback.print_exc()
            r = runner.base_row("ours", s, shape_flops(s, a), shape_bytes(s, a), None)
            r.update(status="error", note=f"harness: {type(e).__name__}: {first_line(e)}")
            shape_rows = [r]
            torch.cuda.empty_cache()
            if not gpu_healthy():
                runner.dead = f"harness: {first_line(e)}"
        rows += shape_rows
        summary = "  ".join(f"{r['impl']} {fmt(r['tflops'], '.1f') or r['status']}"
                            + ("" if r["status"] in ("ok", "") else f"[{r['status']}]")
                            for r in shape_rows)
        print(f"[{index + 1}/{len(plan)}] d{s.head_dim} {s.mask} Sq {s.sq} Sk {s.sk}: {summary}"
              f"  ({time.time() - t:.1f} s)", flush=True)

    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    failures = [f"{r['impl']} d{r['head_dim']} {r['mask']} Sq {r['sq']} Sk {r['sk']}: "
                f"{r['status']} {r['note'][:160]}"
                for r in rows if r["impl"].startswith("ours") and r["status"] in ("wrong", "error")]
    if runner.dead:
        failures.append(f"CUDA context unusable: {runner.dead}")
    manifest["counts"] = counts
    manifest["failures"] = failures
    manifest["wall_s"] = round(time.time() - t0, 1)
    manifest["exit_code"] = 1 if failures else 0
    manifest["files"] = ["sdpa_side_by_side.csv", "sdpa_side_by_side.md",
                         "sdpa_side_by_side.png", "manifest.json"]

    write_csv(os.path.join(a.out, "sdpa_side_by_side.csv"), rows)
    md = render_markdown(rows, plan, manifest, a)
    with open(os.path.join(a.out, "sdpa_side_by_side.md"), "w") as f:
        f.write(md)
    try:
        render_plot(os.path.join(a.out, "sdpa_side_by_side.png"), rows, plan, manifest, a)
    except Exception as e:  # a plot is rendered from the CSV; it never decides the result
        manifest["plot_error"] = first_line(e)
        print(f"warning: plot not written: {first_line(e)}", file=sys.stderr)
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, default=str)
        f.write("\n")
    print()
    print(md, end="")
    return manifest["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
