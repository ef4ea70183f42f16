"""C = A @ B in Triton, autotuned per vendor with parity's Launcher. No harness import but Launcher.

The kernel is a plain tiled matmul (one BLOCK_M x BLOCK_N tile of C per program, K walked in BLOCK_K
steps, fp32 accumulation), written as in Triton's matmul tutorial. `triton.heuristics` sets EVEN_K
(K a multiple of BLOCK_K: no mask on the K loads) from each config's BLOCK_K.

The config lists differ by vendor: NVIDIA's are Hopper-sized tiles with 3-4 pipeline stages (shared
memory 227 KiB a block); AMD's stay within gfx942's 64 KiB of LDS, use `num_stages=2` (the AMD
backend's stream pipeliner) and name `waves_per_eu` and `matrix_instr_nonkdim`, options only the AMD
backend takes. The interpreter gets two small configs, each validated once.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from parity.kernels.launch import Launcher


@triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})
@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EVEN_K: tl.constexpr):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    a = a_ptr + rm[:, None] * stride_am + rk[None, :] * stride_ak
    b = b_ptr + rk[:, None] * stride_bk + rn[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if EVEN_K:
            x = tl.load(a, mask=rm[:, None] < M, other=0.0)
            y = tl.load(b, mask=rn[None, :] < N, other=0.0)
        else:
            left = K - k * BLOCK_K
            x = tl.load(a, mask=(rm[:, None] < M) & (rk[None, :] < left), other=0.0)
            y = tl.load(b, mask=(rk[:, None] < left) & (rn[None, :] < N), other=0.0)
        acc = tl.dot(x, y, acc)
        a += BLOCK_K * stride_ak
        b += BLOCK_K * stride_bk
    c = c_ptr + rm[:, None] * stride_cm + rn[None, :] * stride_cn
    tl.store(c, acc.to(c_ptr.dtype.element_ty), mask=(rm[:, None] < M) & (rn[None, :] < N))


def _c(m, n, k, warps, stages, **extra):
    return triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, **extra}, num_warps=warps, num_stages=stages)


CONFIGS = {
    "cuda": [_c(128, 128, 64, 8, 3), _c(128, 64, 64, 4, 4), _c(64, 64, 32, 4, 4)],
    "hip": [_c(128, 128, 32, 8, 2, waves_per_eu=2, matrix_instr_nonkdim=16),
            _c(64, 64, 64, 4, 2, waves_per_eu=0, matrix_instr_nonkdim=16)],
    "interpret": [_c(16, 16, 16, 1, 1), _c(32, 32, 16, 1, 1)],
}
launch = Launcher(matmul_kernel, CONFIGS, key=["M", "N", "K"])


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """a (M x K) @ b (K x N) into `out` (M x N, a's dtype where not given)."""
    (m, k), n = a.shape, b.shape[1]
    out = torch.empty((m, n), dtype=a.dtype, device=a.device) if out is None else out
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(n, meta["BLOCK_N"]))  # noqa: E731
    launch(grid, a, b, out, m, n, k, a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0),
           out.stride(1), like=a)
    return out
