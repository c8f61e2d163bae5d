#!/usr/bin/env python3
"""One launch of our attention kernel and one of PyTorch SDPA's cuDNN backend on the same
inputs, between cudaProfilerStart and cudaProfilerStop, for Nsight Compute:

  ncu --profile-from-start off --clock-control none --metrics ... \
      python3 benchmarks/profile_attention.py --lib build/benchmarks/libcpbench_attention_capi.so

(scripts/kernel_profile.sh does that with the metrics this machine's ncu knows). Both are warmed
up first, so only the two measured kernels fall inside the profiled range. Inputs are random
bf16, [B, S, H, d] token-major; batch 1, 32 query heads, 8 KV heads by default."""
import argparse
import ctypes
import math
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lib", required=True)
    p.add_argument("--seq", type=int, default=16384)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--mask", choices=["full", "causal"], default="full")
    a = p.parse_args(argv)

    lib = ctypes.CDLL(a.lib)
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    lib.cpb_attention.argtypes = [ctypes.c_int, ctypes.c_int, vp, vp, vp, vp, vp, i64, i64, i64,
                                  i64, i64, i64, ctypes.c_int, i64, ctypes.c_float, ctypes.c_int,
                                  vp]
    lib.cpb_attention.restype = ctypes.c_int
    torch.manual_seed(0)
    s, h, hk, d = a.seq, a.heads, a.kv_heads, a.head_dim
    q = torch.randn(1, s, h, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, s, hk, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, s, hk, d, device="cuda", dtype=torch.bfloat16)
    o = torch.empty(1, s, h, d, device="cuda", dtype=torch.float32)
    lse = torch.empty(1, s, h, device="cuda", dtype=torch.float32)
    causal = a.mask == "causal"
    scale = 1.0 / math.sqrt(d)
    stream = torch.cuda.current_stream().cuda_stream

    def ours():
        rc = lib.cpb_attention(0, 0, q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(),
                               lse.data_ptr(), 1, s, s, h, hk, d, 2 if causal else 1, 0, scale,
                               0, stream)
        if rc != 0:
            raise RuntimeError(f"cpb_attention failed: CUDA error {rc}")

    def cudnn():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal,
                enable_gqa=True)

    for _ in range(3):
        ours()
        cudnn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    ours()
    cudnn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    print(f"profiled: ours and cuDNN, S={s} d={d} H={h}/{hk} {a.mask}")


if __name__ == "__main__":
    main(sys.argv[1:])
