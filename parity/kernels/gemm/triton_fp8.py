"""Triton FP8 GEMM with tensor-wise or row-wise scales and a BF16 output.

out = (A_q @ B_q) * scale_a * scale_b, where A_q (M, K) and B_q (K, N) are FP8 (OCP e4m3fn/e5m2 or
FNUZ e4m3fnuz/e5m2fnuz: the pointer's dtype picks Triton's fp8e4nv/fp8e5 or fp8e4b8/fp8e5b16) and
the scales are fp32: one each ("tensor"), or one per row of A and one per column of B ("row"), as
`torch._scaled_mm` takes them. The scales are applied once, to the fp32 accumulator, after the K
loop: the dot itself runs on the FP8 tensor cores.

Accumulation on Hopper: its FP8 tensor cores add products with reduced precision (about 14 bits,
DeepSeek-V3 report, arXiv 2412.19437, section 3.3.2), and Triton by default lets the whole K loop
accumulate that way on sm_90 (`max_num_imprecise_acc_default = 2**30`). Here the partial sum of each
K block is promoted to the fp32 accumulator (`max_num_imprecise_acc = BLOCK_K`) in the accurate
mode, the counterpart of `torch._scaled_mm(..., use_fast_accum=False)`; the fast mode does not
promote, the counterpart of `use_fast_accum=True`. Each pair computes the same thing. Promotion
keeps a second accumulator live: in an offline compile for sm_90a (Triton 3.9) the 128x256x128
tile over 8 warps then needs 255 registers and spills 420 B (0 B unpromoted), 64x256 and 256x64
over 4 warps spill 612 and 84 B; the accurate mode has its own list without them. Other targets
accumulate in fp32 and ignore the setting.

For speed give B column-major (B = W.t() for a row-major W of shape (N, K)): FP8 tensor-core
instructions want both operands K-major.
"""
from __future__ import annotations

import torch

from parity.kernels.gemm import triton_gemm
from parity.kernels.gemm.common import config
from parity.kernels.launch import Launcher

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
        config(256, 128, 128, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=0),
        config(128, 256, 128, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(128, 128, 128, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(128, 64, 128, 4, 4, 2, matrix_instr_nonkdim=16),
        config(64, 64, 128, 6, 4, 2, matrix_instr_nonkdim=16),
    ],
    "interpret": [config(64, 64, 64, 4, 4, 1)],
}


# Accurate mode (promotion): the configs of CONFIGS that do not spill with a second accumulator.
CONFIGS_ACCURATE = {
    "cuda": [
        config(128, 128, 128, 8, 8, 4),  # 164 registers
        config(256, 128, 128, 8, 8, 3),  # 255 registers, no spill
        config(128, 128, 128, 8, 4, 4),
        config(128, 64, 64, 8, 4, 4),
        config(64, 128, 64, 8, 4, 4),
    ],
    "hip": CONFIGS["hip"],  # MFMA accumulates in fp32: promotion changes nothing there
    "interpret": CONFIGS["interpret"],
}
ACCUM_MODES = ("fast", "accurate")

# Operands without 16-byte vector loads (triton_gemm.NARROW says why): every config above spills
# there on sm_90a/sm_100a (0.5-8 KB, both accumulation modes, triton 3.6 and 3.9). 128x128x32 over
# 8 warps (BLOCK_K 32: one wgmma K step for 8-bit operands) holds 64 accumulator registers and
# 16 + 16 scalar loads a step: 173-226 registers, no spill, promoted or not. AMD: 128x128x64 over
# 8 waves, 176-223 VGPRs (256x128x128 spilled 0.5-1.3 KB).
NARROW = {
    "cuda": [config(128, 128, 32, 8, 8, 3), config(128, 64, 64, 8, 8, 3), config(64, 128, 32, 8, 4, 3),
             config(128, 64, 32, 8, 4, 3)],
    "hip": [config(128, 128, 64, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
            config(128, 64, 64, 4, 4, 2, matrix_instr_nonkdim=16),
            config(64, 64, 128, 6, 4, 2, matrix_instr_nonkdim=16)],
}

# The kernel is `triton_gemm.matmul_kernel`, with its scaled epilogue and K-block promotion.
_launch = Launcher(triton_gemm.matmul_kernel, CONFIGS, key=triton_gemm.TUNING_KEY, narrow=NARROW)
_launch_accurate = Launcher(triton_gemm.matmul_kernel, CONFIGS_ACCURATE, key=triton_gemm.TUNING_KEY, narrow=NARROW)


def check_scaled(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
                 accum: str) -> int:
    """Refuse what no FP8 kernel here computes; the SCALES mode (tensor- or row-wise) of the scales.
    Shared by every Triton FP8 GEMM (this one, `triton_persistent`, `triton_splitk`)."""
    if accum not in ACCUM_MODES:
        raise ValueError(f"accum must be one of {ACCUM_MODES}, got {accum!r}")
    triton_gemm.check_operands(a, b, FP8_DTYPES, "scaled_matmul takes FP8 operands")
    if ("fnuz" in str(a.dtype)) != ("fnuz" in str(b.dtype)):
        raise ValueError(f"operands mix OCP and FNUZ FP8: {a.dtype} and {b.dtype}")
    m, n = a.shape[0], b.shape[1]
    if scale_a.numel() == 1 and scale_b.numel() == 1:
        scales = triton_gemm.TENSOR_SCALES
    elif scale_a.numel() == m and scale_b.numel() == n:
        scales = triton_gemm.ROW_SCALES
    else:
        raise ValueError(f"scales of {scale_a.numel()} and {scale_b.numel()} elements fit neither tensor-wise "
                         f"(1 and 1) nor row-wise ({m} and {n}) scaling")
    if scale_a.dtype != torch.float32 or scale_b.dtype != torch.float32:
        raise ValueError("scales must be fp32")
    return scales


def scaled_matmul(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
                  out: torch.Tensor | None = None, out_dtype: torch.dtype = torch.bfloat16, cfg=None,
                  accum: str = "accurate") -> torch.Tensor:
    """out = (a @ b) * scale_a * scale_b for FP8 a (M, K), b (K, N) of one FP8 family; `accum` is
    "accurate" (promote each K block) or "fast" (module docstring).

    Scales are fp32: both with one element (tensor-wise), or scale_a with M and scale_b with N
    elements (row-wise: shaped (M, 1) and (1, N) as for `torch._scaled_mm`, or flat).
    """
    scales = check_scaled(a, b, scale_a, scale_b, accum)
    m, n = a.shape[0], b.shape[1]
    if out is None:
        out = torch.empty((m, n), dtype=out_dtype, device=a.device)
    promote = accum == "accurate"
    return triton_gemm.launch(_launch_accurate if promote else _launch, a, b, out, scale_a.contiguous(),
                              scale_b.contiguous(), scales, promote, cfg)


def best_config(like: torch.Tensor, accum: str = "accurate") -> str | None:
    return (_launch_accurate if accum == "accurate" else _launch).best_config(like)
