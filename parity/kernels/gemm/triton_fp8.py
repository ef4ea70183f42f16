"""Triton FP8 GEMM with tensor-wise or row-wise scales and a BF16 output.

out = (A_q @ B_q) * scale_a * scale_b, where A_q (M, K) and B_q (K, N) are FP8 (OCP e4m3fn/e5m2 or
FNUZ e4m3fnuz/e5m2fnuz: the pointer's dtype picks Triton's fp8e4nv/fp8e5 or fp8e4b8/fp8e5b16) and
the scales are fp32: one each ("tensor"), or one per row of A and one per column of B ("row"), as
`torch._scaled_mm` takes them. The scales are applied once, to the fp32 accumulator, after the K
loop: the dot itself runs on the FP8 tensor cores.

Accumulation on Hopper: its FP8 tensor cores add products with reduced precision (about 14 bits,
DeepSeek-V3 report, arXiv 2412.19437, section 3.3.2), and Triton by default lets the whole K loop
accumulate that way on sm_90 (`max_num_imprecise_acc_default = 2**30`). Here the partial sum of each
K block is promoted to the fp32 accumulator (`max_num_imprecise_acc = BLOCK_K`), the counterpart of
`torch._scaled_mm(..., use_fast_accum=False)` that the PyTorch path uses, so both compute the same
thing. Other targets accumulate in fp32 and ignore the setting.

For speed give B column-major (B = W.t() for a row-major W of shape (N, K)): FP8 tensor-core
instructions want both operands K-major.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from parity.kernels.gemm.common import Launcher, check_index_range, config, grouped_tile, tile_grid

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz)

CONFIGS = {
    # Tutorial 03's "good config for fp8 inputs" (BLOCK_K 128).
    "cuda": [
        config(128, 256, 128, 8, 8, 3),
        config(256, 128, 128, 8, 8, 3),
        config(256, 64, 128, 8, 4, 4),
        config(64, 256, 128, 8, 4, 4),
        config(128, 128, 128, 8, 4, 4),
        config(128, 128, 128, 8, 8, 4),
        config(128, 64, 64, 8, 4, 4),
        config(64, 128, 64, 8, 4, 4),
    ],
    "hip": [
        config(256, 256, 128, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=0),
        config(256, 128, 128, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(128, 256, 128, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(128, 128, 128, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(128, 64, 128, 4, 4, 2, matrix_instr_nonkdim=16),
        config(64, 64, 128, 6, 4, 2, matrix_instr_nonkdim=16),
    ],
    "interpret": [config(64, 64, 64, 4, 4, 1)],
}


@triton.jit
def _scaled_matmul_kernel(a_ptr, b_ptr, c_ptr, sa_ptr, sb_ptr, M, N, K,
                          stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                          ROW_SCALES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    pid_m, pid_n = grouped_tile(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    offs_am = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_bn = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
        b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        acc = tl.dot(a, b, acc, max_num_imprecise_acc=BLOCK_K)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    if ROW_SCALES:
        acc = acc * tl.load(sa_ptr + offs_am)[:, None] * tl.load(sb_ptr + offs_bn)[None, :]
    else:
        acc = acc * (tl.load(sa_ptr) * tl.load(sb_ptr))
    offs_cm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_cn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + offs_cm[:, None] * stride_cm + offs_cn[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(offs_cm[:, None] < M) & (offs_cn[None, :] < N))


_launch = Launcher(_scaled_matmul_kernel, CONFIGS,
                   key=["M", "N", "K", "stride_am", "stride_ak", "stride_bk", "stride_bn", "ROW_SCALES"])


def scaled_matmul(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
                  out: torch.Tensor | None = None, out_dtype: torch.dtype = torch.bfloat16, cfg=None) -> torch.Tensor:
    """out = (a @ b) * scale_a * scale_b for FP8 a (M, K), b (K, N) of one FP8 family.

    Scales are fp32: both with one element (tensor-wise), or scale_a with M and scale_b with N
    elements (row-wise: shaped (M, 1) and (1, N) as for `torch._scaled_mm`, or flat).
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"cannot multiply {tuple(a.shape)} by {tuple(b.shape)}")
    if a.dtype not in FP8_DTYPES or b.dtype not in FP8_DTYPES:
        raise ValueError(f"scaled_matmul takes FP8 operands, got {a.dtype} and {b.dtype}")
    if ("fnuz" in str(a.dtype)) != ("fnuz" in str(b.dtype)):
        raise ValueError(f"operands mix OCP and FNUZ FP8: {a.dtype} and {b.dtype}")
    m, k = a.shape
    n = b.shape[1]
    if scale_a.numel() == 1 and scale_b.numel() == 1:
        row = False
    elif scale_a.numel() == m and scale_b.numel() == n:
        row = True
    else:
        raise ValueError(f"scales of {scale_a.numel()} and {scale_b.numel()} elements fit neither tensor-wise "
                         f"(1 and 1) nor row-wise ({m} and {n}) scaling")
    if scale_a.dtype != torch.float32 or scale_b.dtype != torch.float32:
        raise ValueError("scales must be fp32")
    if out is None:
        out = torch.empty((m, n), dtype=out_dtype, device=a.device)
    check_index_range(a=a, b=b, out=out)
    _launch(tile_grid(m, n), a, b, out, scale_a.contiguous(), scale_b.contiguous(), m, n, k,
            a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1),
            ROW_SCALES=row, like=a, cfg=cfg)
    return out


def best_config(like: torch.Tensor) -> str | None:
    return _launch.best_config(like)
