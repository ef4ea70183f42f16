"""Triton MXFP4 GEMM through `tl.dot_scaled`: e2m1 values, e8m0 scales per block of 32 along K.

out = A @ B^T in BF16, where A is (M, K) and W = B^T is (N, K), both MXFP4 as `quant.quantize_mxfp4`
makes them: uint8 codes packed two a byte along K (the first value in the low nibble), shape
(rows, Kp // 2), and uint8 e8m0 scales, shape (rows, Kp // 32), with K padded with zeros to Kp, a
multiple of 32. Loading W's tile transposed gives `tl.dot_scaled` the (K, N) right operand it wants,
packed along K, with its scales left untransposed (N, K // 32), as the Triton docs ask.

Hardware: `tl.dot_scaled` is native on CUDA capability 10.x/11.x and on gfx950 only; elsewhere Triton
upcasts the operands to BF16 (FP16 on CDNA 3) and runs a BF16 dot without saying so (Triton docs,
triton#7550). The caller labels that path emulated; this kernel computes the same result either way.
The scales here are in plain row-major layout, not the pre-shuffled layouts of Triton tutorial 10,
which are faster but tied to one target's instructions.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from parity.kernels.gemm.common import check_index_range, config, grouped_tile, store_tile, tile_grid
from parity.kernels.gemm.quant import MX_BLOCK
from parity.kernels.launch import Launcher

CONFIGS = {
    # BLOCK_K counts e2m1 values (BLOCK_K // 2 bytes); tutorial 10 uses 128x256x256 on Blackwell.
    # BLOCK_M stays at 128 or more: with 64 Triton 3.9 lowers dot_scaled on sm_100 to a BF16
    # tcgen05 MMA (kind::f16), i.e. silently emulated; 128 gives the block-scaled kind::mxf4.
    "cuda": [
        config(128, 256, 256, 8, 8, 3),
        config(128, 128, 256, 8, 4, 4),
        config(256, 128, 256, 8, 8, 3),
        config(128, 128, 128, 8, 4, 4),
        config(128, 64, 256, 8, 4, 4),
    ],
    # Hopper runs dot_scaled emulated: the operands are upcast to BF16 in registers, and every
    # config above spills there (508-1440 B in an offline compile with Triton 3.9). These do not
    # (154-234 registers, 0 B spilled, sm_90a).
    "cuda:sm_90": [
        config(128, 128, 128, 8, 8, 4),
        config(128, 128, 128, 8, 8, 3),
        config(64, 128, 256, 8, 8, 3),
        config(128, 64, 128, 8, 8, 3),
        config(128, 128, 64, 8, 8, 4),
    ],
    # gfx942 has no scaled MFMA: emulated (FP16 upcast), and the tiles below spill there (572-5060 B)
    # or, at 256x256, exceed its 64 KiB of LDS. These compile without spills (169-274 VGPRs).
    "hip:gfx942": [
        config(128, 128, 128, 4, 8, 2, matrix_instr_nonkdim=16),
        config(128, 64, 128, 4, 8, 2, matrix_instr_nonkdim=16),
        config(128, 128, 64, 4, 8, 2, matrix_instr_nonkdim=16),
        config(64, 128, 128, 4, 4, 2, matrix_instr_nonkdim=16),
        config(64, 64, 256, 4, 4, 2, matrix_instr_nonkdim=16),
    ],
    # Tutorial 10's CDNA 4 kernel: 128x128x256 tiles, 8 warps, 2 stages, the 16x16 scaled MFMA.
    # 256x256 (140 KiB of LDS) fits gfx950's 160 KiB but needs more than 256 VGPRs (spills 616 B).
    "hip": [
        config(128, 128, 256, 4, 8, 2, matrix_instr_nonkdim=16),
        config(256, 128, 256, 4, 8, 2, matrix_instr_nonkdim=16),
        config(128, 256, 256, 4, 8, 2, matrix_instr_nonkdim=16),
        config(64, 64, 256, 4, 4, 2, matrix_instr_nonkdim=16),
    ],
    "interpret": [config(64, 64, 64, 4, 4, 1)],
}


@triton.jit
def _mxfp4_matmul_kernel(a_ptr, as_ptr, w_ptr, ws_ptr, c_ptr, M, N, KP,
                         stride_am, stride_ak, stride_asm, stride_ask, stride_wn, stride_wk, stride_wsn, stride_wsk,
                         stride_cm, stride_cn, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                         GROUP_M: tl.constexpr, SCALE_BLOCK: tl.constexpr):
    pid_m, pid_n = grouped_tile(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    offs_am = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_wn = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_kb = tl.arange(0, BLOCK_K // 2)  # bytes of packed values along K
    offs_ks = tl.arange(0, BLOCK_K // SCALE_BLOCK)  # scales along K
    a_ptrs = a_ptr + offs_am[:, None] * stride_am + offs_kb[None, :] * stride_ak
    w_ptrs = w_ptr + offs_kb[:, None] * stride_wk + offs_wn[None, :] * stride_wn  # W^T tile: (K/2, N)
    as_ptrs = as_ptr + offs_am[:, None] * stride_asm + offs_ks[None, :] * stride_ask
    ws_ptrs = ws_ptr + offs_wn[:, None] * stride_wsn + offs_ks[None, :] * stride_wsk
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(KP, BLOCK_K)):
        k_left = KP - k * BLOCK_K  # a multiple of SCALE_BLOCK, so whole scale blocks are masked
        a = tl.load(a_ptrs, mask=offs_kb[None, :] < k_left // 2, other=0)
        w = tl.load(w_ptrs, mask=offs_kb[:, None] < k_left // 2, other=0)
        sa = tl.load(as_ptrs, mask=offs_ks[None, :] < k_left // SCALE_BLOCK, other=127)
        sw = tl.load(ws_ptrs, mask=offs_ks[None, :] < k_left // SCALE_BLOCK, other=127)
        acc = tl.dot_scaled(a, sa, "e2m1", w, sw, "e2m1", acc)
        a_ptrs += (BLOCK_K // 2) * stride_ak
        w_ptrs += (BLOCK_K // 2) * stride_wk
        as_ptrs += (BLOCK_K // SCALE_BLOCK) * stride_ask
        ws_ptrs += (BLOCK_K // SCALE_BLOCK) * stride_wsk
    store_tile(c_ptr, acc, pid_m, pid_n, M, N, stride_cm, stride_cn, BLOCK_M, BLOCK_N)


_launch = Launcher(_mxfp4_matmul_kernel, CONFIGS, key=["M", "N", "KP"])


def mxfp4_matmul(a: torch.Tensor, a_scales: torch.Tensor, w: torch.Tensor, w_scales: torch.Tensor,
                 out: torch.Tensor | None = None, out_dtype: torch.dtype = torch.bfloat16, cfg=None) -> torch.Tensor:
    """out (M, N) = A @ W^T for MXFP4 A (packed (M, Kp/2), scales (M, Kp/32)) and W (packed (N, Kp/2),
    scales (N, Kp/32)), all uint8, as `quant.quantize_mxfp4` returns them."""
    for name, t in (("a", a), ("a_scales", a_scales), ("w", w), ("w_scales", w_scales)):
        if t.dtype != torch.uint8 or t.dim() != 2:
            raise ValueError(f"{name} must be a 2-D uint8 tensor, got {t.dtype} of {t.dim()} dims")
    m, half = a.shape
    n = w.shape[0]
    kp = 2 * half
    if w.shape[1] != half or kp % MX_BLOCK:
        raise ValueError(f"packed operands {tuple(a.shape)} and {tuple(w.shape)} need one K, a multiple of "
                         f"{MX_BLOCK // 2} bytes")
    if a_scales.shape != (m, kp // MX_BLOCK) or w_scales.shape != (n, kp // MX_BLOCK):
        raise ValueError(f"scales must be ({m}, {kp // MX_BLOCK}) and ({n}, {kp // MX_BLOCK}), got "
                         f"{tuple(a_scales.shape)} and {tuple(w_scales.shape)}")
    if out is None:
        out = torch.empty((m, n), dtype=out_dtype, device=a.device)
    check_index_range(a=a, w=w, out=out)
    _launch(tile_grid(m, n), a, a_scales, w, w_scales, out, m, n, kp,
            a.stride(0), a.stride(1), a_scales.stride(0), a_scales.stride(1), w.stride(0), w.stride(1),
            w_scales.stride(0), w_scales.stride(1), out.stride(0), out.stride(1), SCALE_BLOCK=MX_BLOCK,
            like=a, cfg=cfg)
    return out


def best_config(like: torch.Tensor) -> str | None:
    return _launch.best_config(like)
