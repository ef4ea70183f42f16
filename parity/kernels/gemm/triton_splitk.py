"""Split-K Triton GEMM for small M (decode: M = 1-64 tokens against a weight of N x K).

At M = 1 a 128-row tile wastes 127 rows and N / BLOCK_N tiles cannot fill the GPU (24 programs on
132 SMs at N = 6144 with 256-wide tiles). Here tiles are 16, 32 or 64 rows (the M of the MMA
instruction: mma.sync m16 on NVIDIA, 16x16 MFMA on AMD, wgmma's m64 for 33-64 rows; FP8 on NVIDIA
keeps 64, see CONFIGS_FP8) and K is split across programs so that about two programs run per SM:

1. `splitk_kernel`, grid (tiles, SPLIT): program (t, s) sums K in [s * k_split, (s + 1) * k_split)
   into an fp32 tile of the workspace, partials[s] (M x N).
2. `splitk_reduce_kernel` adds the SPLIT partials in a fixed order (no atomics, so the result is
   deterministic), applies FP8 scales, rounds to C's dtype and stores.

The workspace is SPLIT x M x N fp32: at M <= 64 it is small (3 x 64 x 6144 x 4 B = 4.5 MiB).
BF16/FP16 and FP8 (tensor-wise or row-wise scales, fast or accurate accumulation, as in
`triton_persistent`) share the kernels.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from parity.kernels.gemm import triton_fp8, triton_persistent
from parity.kernels.gemm.common import check_index_range, config, grouped_tile
from parity.kernels.gemm.triton_gemm import NO_SCALES, check_operands
from parity.kernels.gemm.triton_persistent import mma_step, scale_tile
from parity.kernels.launch import INTERPRET, Launcher, vector_aligned

MAX_M = 64  # the decode range this kernel serves; larger M goes to the persistent kernel
K_GRANULE = 256  # each split's K range is a multiple of this, so of every config's BLOCK_K
PROGRAMS_PER_SM = 2

CONFIGS_HALF = {
    # 16 and 32 rows run on mma.sync (m16n8k16), 64 on wgmma (sm_90) or tcgen05 (sm_100). Offline
    # compile, Triton 3.9: 64-96 registers (32x128x64 over 4 warps spilled 4 B: left out). The lead
    # (what runs untuned, and what `parity inspect --lead-only` holds to no spill) is 32x64x128: at
    # the llama preset's decode shapes it spills on neither triton 3.6 nor 3.9, while 16x64x128
    # spills 8 B on sm_90a and sm_100a with 3.9 (0 with 3.6) and 16x128x128 16 B on sm_90a with 3.9
    # (issue 24, measured offline). The autotuner still tries every config.
    "cuda": [
        config(32, 64, 128, 1, 4, 4),
        config(16, 64, 128, 1, 4, 4),
        config(16, 128, 128, 1, 4, 4),
        config(64, 64, 64, 1, 4, 4),
        config(64, 128, 64, 1, 4, 4),
    ],
    # AMD's guide for skinny GEMMs: the 16x16 MFMA, 2 stages, small tiles, more waves per EU.
    "hip": [
        config(16, 64, 128, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(16, 128, 128, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(32, 64, 128, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(32, 128, 64, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(64, 64, 64, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
    ],
    "interpret": [config(16, 32, 32, 1, 4, 1)],
}
CONFIGS_FP8 = {
    # NVIDIA's FP8 MMAs are wgmma (sm_90) and tcgen05 (sm_100), 64 rows at least: a 16- or 32-row
    # tile compiles to an FP16 mma.sync after an upcast (offline compile, Triton 3.9), which would
    # make an "FP8" record measure FP16. So FP8 tiles keep 64 rows; at decode sizes the kernel is
    # bound by reading the weight, which split-K spreads over the SMs.
    "cuda": [
        config(64, 64, 128, 1, 4, 4),
        config(64, 128, 128, 1, 4, 4),
        config(64, 64, 256, 1, 4, 3),
        config(64, 32, 256, 1, 4, 4),
    ],
    "hip": [
        config(16, 64, 256, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(16, 128, 128, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(32, 64, 256, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(32, 128, 128, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(64, 64, 128, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
    ],
    "interpret": [config(16, 32, 32, 1, 4, 1)],
}
# BF16/FP16 operands without 16-byte vector loads on NVIDIA (odd strides, e.g. 17x33x65): scalar
# loads hold 32x64x128 at 255 registers, and with triton 3.6 its TN case spills 116 B on sm_90a;
# 16x64x128 spills nothing on sm_90a or sm_100a with 3.6 or 3.9 for those shapes (offline compile,
# `parity inspect --suite gemm`). AMD's half list does not spill there and stays the only one.
CONFIGS_HALF_NARROW = {
    "cuda": [config(16, 64, 128, 1, 4, 4), config(32, 64, 128, 1, 4, 4), config(64, 64, 64, 1, 4, 4)],
}
# FP8 operands without 16-byte vector loads (triton_gemm.NARROW says why): 64x64x128 over 4 warps
# spilled 0.9-1.2 KB on sm_90a/sm_100a and 16x64x256 76-196 B on gfx942/gfx950. 64x64x128 over 8
# warps halves each thread's scalar loads (32 a K step): 194-218 registers; AMD 16x64x128:
# 146-210 VGPRs; no spill with triton 3.6 or 3.9 (offline compile, issue 24).
CONFIGS_FP8_NARROW = {
    "cuda": [config(64, 64, 128, 1, 8, 4), config(64, 64, 32, 1, 4, 4), config(64, 32, 64, 1, 4, 4)],
    "hip": [config(16, 64, 128, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
            config(32, 64, 64, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
            config(16, 64, 64, 1, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2)],
}
REDUCE_CONFIGS = {
    "cuda": [config(16, 256, 1, 1, 4, 1)],
    "hip": [config(16, 256, 1, 1, 4, 1)],
    "interpret": [config(16, 32, 1, 1, 4, 1)],
}


@triton.jit
def splitk_kernel(a_ptr, b_ptr, ws_ptr, M, N, K, k_split, stride_am, stride_ak, stride_bk, stride_bn,
                  UPCAST: tl.constexpr, PROMOTE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """partials[s] = A[:, Ks] @ B[Ks, :] for this program's K range Ks, in fp32."""
    pid_m, pid_n = grouped_tile(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    split = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_am = offs_m % M
    # No max_contiguous/multiple_of hint on the wrap (Triton's tutorial has one): past N the indices
    # restart at 0, so where N is not a multiple of the vector width and B's row stride is (a column
    # slice) the hint makes 16-byte loads start off alignment (a fault on NVIDIA) and read past N.
    # Triton's own analysis of `% N` gives the same vectors wherever N is a multiple of 16.
    offs_bn = offs_n % N
    k_start = split * k_split
    offs_k = k_start + tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_end = tl.minimum(k_start + k_split, K)
    for kk in range(0, tl.cdiv(k_end - k_start, BLOCK_K)):
        k_left = k_end - k_start - kk * BLOCK_K
        a = tl.load(a_ptrs, mask=tl.arange(0, BLOCK_K)[None, :] < k_left, other=0.0)
        b = tl.load(b_ptrs, mask=tl.arange(0, BLOCK_K)[:, None] < k_left, other=0.0)
        acc = mma_step(a, b, acc, UPCAST, PROMOTE, BLOCK_K)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    ws_ptrs = ws_ptr + split * M * N + offs_m[:, None] * N + offs_n[None, :]
    tl.store(ws_ptrs, acc, mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


@triton.jit
def splitk_reduce_kernel(ws_ptr, c_ptr, sa_ptr, sb_ptr, M, N, splits, stride_cm, stride_cn, SCALES: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """C = sum over s of partials[s], in order, [* scales], rounded to C's dtype."""
    pid_m, pid_n = grouped_tile(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    ws_ptrs = ws_ptr + offs_m[:, None] * N + offs_n[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for s in range(0, splits):
        acc += tl.load(ws_ptrs + s * M * N, mask=mask, other=0.0)
    acc = scale_tile(acc, sa_ptr, sb_ptr, offs_m, offs_n, M, N, SCALES)
    tl.store(c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn, acc.to(c_ptr.dtype.element_ty),
             mask=mask)


_KEY = ["M", "N", "K", "k_split", "stride_am", "stride_ak", "stride_bk", "stride_bn", "PROMOTE"]
_half = Launcher(splitk_kernel, CONFIGS_HALF, key=_KEY, narrow=CONFIGS_HALF_NARROW)
_fp8 = Launcher(splitk_kernel, CONFIGS_FP8, key=_KEY, narrow=CONFIGS_FP8_NARROW)
_reduce = Launcher(splitk_reduce_kernel, REDUCE_CONFIGS, key=["M", "N"])


def plan(m: int, n: int, k: int, sms: int, split: int | None = None) -> tuple[int, int]:
    """(splits, k_split): enough K splits that tiles x splits is about PROGRAMS_PER_SM per SM,
    counted with 64-wide tiles, each split a whole number of K_GRANULE; `split` forces a count."""
    granules = triton.cdiv(k, K_GRANULE)
    if split is None:
        tiles = triton.cdiv(m, 16) * triton.cdiv(n, 64)
        split = triton.cdiv(PROGRAMS_PER_SM * sms, tiles)
    split = max(1, min(split, granules))
    k_split = triton.cdiv(granules, split) * K_GRANULE
    return triton.cdiv(k, k_split), k_split


def workspace(m: int, n: int, k: int, like: torch.Tensor, split: int | None = None) -> torch.Tensor:
    """The fp32 partials buffer a call needs; allocate it once, outside any timed region."""
    splits, _ = plan(m, n, k, triton_persistent.num_sms(like), split)
    return torch.empty((splits, m, n), dtype=torch.float32, device=like.device)


def _run(launcher, a, b, out, sa, sb, scales, promote, ws, split, cfg):
    m, k = a.shape
    n = b.shape[1]
    check_index_range(a=a, b=b, out=out)
    splits, k_split = plan(m, n, k, triton_persistent.num_sms(a), split)
    if ws is None:
        ws = torch.empty((splits, m, n), dtype=torch.float32, device=a.device)
    if ws.dtype != torch.float32 or ws.numel() < splits * m * n or not ws.is_contiguous():
        raise ValueError(f"workspace must be contiguous fp32 with at least {splits} x {m} x {n} elements")
    check_index_range(ws=ws)
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]), splits)
    launcher(grid, a, b, ws, m, n, k, k_split, a.stride(0), a.stride(1), b.stride(0), b.stride(1),
             UPCAST=INTERPRET, PROMOTE=promote, like=a, cfg=cfg, narrow=not vector_aligned(a, b))
    rgrid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)
    _reduce(rgrid, ws, out, sa, sb, m, n, splits, out.stride(0), out.stride(1), SCALES=scales, like=a)
    return out


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None, workspace: torch.Tensor | None = None,
           split: int | None = None, cfg=None) -> torch.Tensor:
    """out = a @ b for bf16/fp16 a (M, K), b (K, N), any strides; meant for M <= MAX_M."""
    check_operands(a, b, triton_persistent.HALF_DTYPES, "matmul takes bf16 or fp16 operands")
    if a.dtype != b.dtype:
        raise ValueError(f"matmul takes operands of one dtype, got {a.dtype} and {b.dtype}")
    if out is None:
        out = torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device=a.device)
    return _run(_half, a, b, out, None, None, NO_SCALES, False, workspace, split, cfg)


def scaled_matmul(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
                  out: torch.Tensor | None = None, accum: str = "fast", workspace: torch.Tensor | None = None,
                  split: int | None = None, out_dtype: torch.dtype = torch.bfloat16, cfg=None) -> torch.Tensor:
    """out = (a @ b) * scale_a * scale_b for FP8 a, b (as `triton_persistent.scaled_matmul`)."""
    scales = triton_fp8.check_scaled(a, b, scale_a, scale_b, accum)
    if out is None:
        out = torch.empty((a.shape[0], b.shape[1]), dtype=out_dtype, device=a.device)
    return _run(_fp8, a, b, out, scale_a.contiguous(), scale_b.contiguous(), scales, accum == "accurate",
                workspace, split, cfg)


def best_config(like: torch.Tensor, fp8: bool = False) -> str | None:
    return (_fp8 if fp8 else _half).best_config(like)
