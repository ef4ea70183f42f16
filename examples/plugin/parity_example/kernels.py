"""y_out = a * x + y: a Triton kernel and its PyTorch twin. No parity import: a kernel stands alone."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _saxpy_kernel(x_ptr, y_ptr, out_ptr, a, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n  # the last block is partial: n need not be a multiple of BLOCK
    x = tl.load(x_ptr + offsets, mask=mask).to(tl.float32)
    y = tl.load(y_ptr + offsets, mask=mask).to(tl.float32)
    tl.store(out_ptr + offsets, (a * x + y).to(out_ptr.dtype.element_ty), mask=mask)


def saxpy_triton(a: float, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    n = x.numel()
    _saxpy_kernel[(triton.cdiv(n, block),)](x, y, out, a, n, BLOCK=block)
    return out


def saxpy_torch(a: float, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.add(y, x, alpha=a, out=out)
