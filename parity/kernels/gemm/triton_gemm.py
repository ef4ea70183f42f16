"""Triton GEMM in BF16 or FP16: C = A @ B with fp32 accumulation, the baseline of the suite.

The kernel is Triton tutorial 03's (grouped tile order, a K loop of `tl.dot` into an fp32
accumulator) with masks on every edge, so any M, N and K work, and with operand strides, so any
layout does: A may be row- or column-major, so may B. Rows of A and columns of B beyond M and N are
wrapped (`% M`, `% N`) rather than masked, as in the tutorial: their results are never stored.

Under the CPU interpreter the operands are cast to fp32 before `tl.dot`: the interpreter computes
bf16 dots wrongly otherwise. On a GPU they go to the tensor cores as they are.
"""
from __future__ import annotations

import torch
import triton.language as tl
import triton

from parity.kernels.gemm.common import INTERPRET, Launcher, check_index_range, config, grouped_tile, tile_grid

CONFIGS = {
    # Tutorial 03's CUDA list, led by the large tiles that suit Hopper (8 warps, 3-4 stages).
    "cuda": [
        config(128, 256, 64, 8, 8, 3),
        config(256, 128, 64, 8, 8, 3),
        config(128, 128, 64, 8, 8, 4),
        config(64, 256, 32, 8, 4, 4),
        config(128, 128, 32, 8, 4, 4),
        config(128, 64, 32, 8, 4, 4),
        config(64, 128, 32, 8, 4, 4),
        config(64, 32, 32, 8, 2, 5),
    ],
    # CDNA (MI300X, MI355X): 2 stages, 8 warps, the 16x16 MFMA, BLOCK_K 64 (tutorial 03's HIP list).
    "hip": [
        config(256, 256, 64, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=0),
        config(256, 128, 64, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(128, 256, 64, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(128, 128, 64, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(128, 64, 64, 4, 8, 2, matrix_instr_nonkdim=16),
        config(64, 128, 64, 4, 8, 2, matrix_instr_nonkdim=16),
        config(64, 64, 64, 6, 4, 2, matrix_instr_nonkdim=16),
    ],
    # The interpreter runs programs one after another: large tiles mean fewer of them.
    "interpret": [config(64, 64, 64, 4, 4, 1)],
}


@triton.jit
def _matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                   UPCAST: tl.constexpr):
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
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    offs_cm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_cn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + offs_cm[:, None] * stride_cm + offs_cn[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(offs_cm[:, None] < M) & (offs_cn[None, :] < N))


# Strides are part of the key: a row-major and a column-major B are different tuning problems.
_launch = Launcher(_matmul_kernel, CONFIGS,
                   key=["M", "N", "K", "stride_am", "stride_ak", "stride_bk", "stride_bn"])


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None, cfg=None) -> torch.Tensor:
    """out = a @ b for 2-D bf16 or fp16 a (M, K) and b (K, N) of any strides; out is (M, N)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"cannot multiply {tuple(a.shape)} by {tuple(b.shape)}")
    if a.dtype not in (torch.bfloat16, torch.float16) or b.dtype != a.dtype:
        raise ValueError(f"matmul takes bf16 or fp16 operands of one dtype, got {a.dtype} and {b.dtype}")
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = torch.empty((m, n), dtype=a.dtype, device=a.device)
    check_index_range(a=a, b=b, out=out)
    _launch(tile_grid(m, n), a, b, out, m, n, k, a.stride(0), a.stride(1), b.stride(0), b.stride(1),
            out.stride(0), out.stride(1), UPCAST=INTERPRET, like=a, cfg=cfg)
    return out


def best_config(like: torch.Tensor) -> str | None:
    return _launch.best_config(like)
