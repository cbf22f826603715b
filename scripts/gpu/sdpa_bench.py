#!/usr/bin/env python3
"""sdpa_bench.py — PyTorch's scaled_dot_product_attention on the shapes of
`osprey-gpu-tests --bench`'s prefill rows (one causal request of L tokens, 32 heads, 8 KV
heads, head_dim 64, bf16), for docs/BENCHMARKS.md. Prints TFLOP/s; asserts nothing."""
import torch
import torch.nn.functional as F

H, KVH, D = 32, 8, 64
for L in (512, 1024, 2048, 4096, 8192):
    q = torch.randn(1, H, L, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, KVH, L, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, KVH, L, D, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    iters = 20
    start.record()
    for _ in range(iters):
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    end.record()
    torch.cuda.synchronize()
    s = start.elapsed_time(end) / 1e3 / iters
    flops = 4.0 * H * D * (L * (L + 1) / 2)
    print(f"torch sdpa 1 x {L:5d} causal: {s * 1e6:8.1f} us, {flops / s / 1e12:6.1f} TFLOP/s")
