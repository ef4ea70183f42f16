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
import triton
import triton.language as tl

from parity.kernels.gemm.common import check_index_range, config, grouped_tile, store_tile, tile_grid
from parity.kernels.launch import INTERPRET, Launcher, vector_aligned

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
    # CDNA (MI300X, MI355X): 2 stages, 8 warps, the 16x16 MFMA, BLOCK_K 64 (tutorial 03's HIP list),
    # without its 256x256 tile: that needs all 64 KiB of gfx942's LDS and spills 128 B there (12 B
    # on gfx950), offline compile with Triton 3.9.
    "hip": [
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

# Operands without 16-byte vector loads (`launch.vector_aligned` False: K, a stride or the address
# not a multiple of 16, e.g. the smoke preset's 17x33x65). Each element is then loaded alone, its
# 64-bit address and predicate in registers, and no async copy can stage it (nothing is pipelined:
# shared memory stays one stage). Per thread, 128x128x32 over 8 warps holds the fp32 accumulator
# (128 * 128 / 256 = 64 registers) and 16 + 16 scalar loads a K step (2 registers of address each,
# 64): 185-206 registers on sm_90a, 127-144 on sm_100a with triton 3.6 and 3.9, no spill, while
# the aligned lead 128x256x64 spills 0.4-2.4 KB there (offline compile, issue 24). AMD: 128x128x64
# over 8 waves needs 166-223 VGPRs on gfx942/gfx950 (256x128x64 spilled 16-360 B).
NARROW = {
    "cuda": [config(128, 128, 32, 8, 8, 3), config(128, 64, 32, 8, 4, 4), config(64, 128, 32, 8, 4, 4),
             config(64, 32, 32, 8, 2, 5)],
    "hip": [config(128, 128, 64, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
            config(128, 128, 32, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
            config(128, 64, 64, 4, 8, 2, matrix_instr_nonkdim=16),
            config(64, 64, 64, 6, 4, 2, matrix_instr_nonkdim=16)],
}


# SCALES: how the fp32 product is scaled before it is stored (the FP8 GEMM of `triton_fp8` shares
# this kernel): not at all, by one scale each for A and B, or by one per row of A and column of B.
NO_SCALES, TENSOR_SCALES, ROW_SCALES = 0, 1, 2


@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, sa_ptr, sb_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn,
                  stride_cm, stride_cn, SCALES: tl.constexpr, UPCAST: tl.constexpr, PROMOTE: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """C = (A @ B) [* scales]; PROMOTE adds each K block's tensor-core sum to the fp32 accumulator
    (`max_num_imprecise_acc = BLOCK_K`, for FP8 on Hopper; see `triton_fp8`)."""
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
        if PROMOTE:
            acc = tl.dot(a, b, acc, max_num_imprecise_acc=BLOCK_K)
        else:
            acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    if SCALES == 2:
        acc = acc * tl.load(sa_ptr + offs_am)[:, None] * tl.load(sb_ptr + offs_bn)[None, :]
    elif SCALES == 1:
        acc = acc * (tl.load(sa_ptr) * tl.load(sb_ptr))
    store_tile(c_ptr, acc, pid_m, pid_n, M, N, stride_cm, stride_cn, BLOCK_M, BLOCK_N)


# Strides are part of the key: a row-major and a column-major B are different tuning problems.
TUNING_KEY = ["M", "N", "K", "stride_am", "stride_ak", "stride_bk", "stride_bn", "SCALES"]
_launch = Launcher(matmul_kernel, CONFIGS, key=TUNING_KEY, narrow=NARROW)


def check_operands(a: torch.Tensor, b: torch.Tensor, dtypes, what: str) -> None:
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"cannot multiply {tuple(a.shape)} by {tuple(b.shape)}")
    if a.dtype not in dtypes or b.dtype not in dtypes:
        raise ValueError(f"{what}, got {a.dtype} and {b.dtype}")


def launch(launcher: Launcher, a, b, out, scale_a, scale_b, scales: int, promote: bool, cfg) -> torch.Tensor:
    """Run `matmul_kernel` through `launcher` (its config list) on checked operands."""
    m, k = a.shape
    n = b.shape[1]
    check_index_range(a=a, b=b, out=out)
    launcher(tile_grid(m, n), a, b, out, scale_a, scale_b, m, n, k, a.stride(0), a.stride(1), b.stride(0),
             b.stride(1), out.stride(0), out.stride(1), SCALES=scales, UPCAST=INTERPRET and not promote,
             PROMOTE=promote, like=a, cfg=cfg, narrow=not vector_aligned(a, b))
    return out


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None, cfg=None) -> torch.Tensor:
    """out = a @ b for 2-D bf16 or fp16 a (M, K) and b (K, N) of any strides; out is (M, N)."""
    check_operands(a, b, (torch.bfloat16, torch.float16), "matmul takes bf16 or fp16 operands")
    if b.dtype != a.dtype:
        raise ValueError(f"matmul takes operands of one dtype, got {a.dtype} and {b.dtype}")
    if out is None:
        out = torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device=a.device)
    return launch(_launch, a, b, out, None, None, NO_SCALES, False, cfg)


def best_config(like: torch.Tensor) -> str | None:
    return _launch.best_config(like)
