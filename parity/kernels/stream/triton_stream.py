"""Triton streaming kernels: copy, scale, add, triad, dot, read (a sum) and write (a fill).

The operations are BabelStream's (UoB-HPC/BabelStream `src/*Stream.*`) plus a read-only and a
write-only kernel (gpu-benches' `read` and `init`), which bound a device's achievable bandwidth
from both sides. Each launcher takes tensors on any device; on a machine without a GPU the caller
sets TRITON_INTERPRET=1 before importing this module.

Arithmetic is done in fp32 and rounded once to the output dtype: that is what a bf16 streaming
kernel does on a GPU, and the CPU interpreter computes bf16 arithmetic wrongly otherwise.
Offsets are 64-bit so that arrays over 2**31 elements work.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# One program moves BLOCK elements; 4096 elements over 8 warps gives every lane several 16-byte
# accesses in flight, which streaming needs to cover HBM latency on both vendors.
DEFAULT_BLOCK = 4096
DEFAULT_WARPS = 8
# Reductions run persistent programs, a few per multiprocessor, each adding a strided share.
PROGRAMS_PER_MULTIPROCESSOR = 4
CPU_REDUCTION_PROGRAMS = 8  # the interpreter runs programs one after another


@triton.jit
def _copy_kernel(src_ptr, dst_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=mask), mask=mask)


@triton.jit
def _scale_kernel(src_ptr, dst_ptr, scalar, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(src_ptr + offs, mask=mask).to(tl.float32)
    tl.store(dst_ptr + offs, (x * scalar).to(dst_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _add_kernel(a_ptr, b_ptr, dst_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    a = tl.load(a_ptr + offs, mask=mask).to(tl.float32)
    b = tl.load(b_ptr + offs, mask=mask).to(tl.float32)
    tl.store(dst_ptr + offs, (a + b).to(dst_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _triad_kernel(b_ptr, c_ptr, dst_ptr, scalar, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    b = tl.load(b_ptr + offs, mask=mask).to(tl.float32)
    c = tl.load(c_ptr + offs, mask=mask).to(tl.float32)
    tl.store(dst_ptr + offs, (b + scalar * c).to(dst_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _fill_kernel(dst_ptr, value, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tile = tl.zeros([BLOCK], dtype=tl.float32) + value
    tl.store(dst_ptr + offs, tile.to(dst_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _partial_sums_kernel(a_ptr, b_ptr, partial_ptr, n, HAS_B: tl.constexpr, BLOCK: tl.constexpr):
    """Each program adds a[i] (or a[i]*b[i]) over a grid-strided share, in fp32, into one partial."""
    pid = tl.program_id(0).to(tl.int64)
    stride = tl.num_programs(0).to(tl.int64) * BLOCK
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(pid * BLOCK, n, stride):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(a_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_B:
            x = x * tl.load(b_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        acc += x
    tl.store(partial_ptr + pid, tl.sum(acc, axis=0))


@triton.jit
def _sum_partials_kernel(partial_ptr, out_ptr, n, BLOCK: tl.constexpr):
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        acc += tl.load(partial_ptr + offs, mask=offs < n, other=0.0)
    tl.store(out_ptr, tl.sum(acc, axis=0))


def _launch(kernel, n: int, *args, block: int | None = None, num_warps: int | None = None):
    block = block or DEFAULT_BLOCK
    kernel[(triton.cdiv(n, block),)](*args, BLOCK=block, num_warps=num_warps or DEFAULT_WARPS)


def copy(a: torch.Tensor, c: torch.Tensor, **cfg) -> torch.Tensor:
    """c = a"""
    _launch(_copy_kernel, a.numel(), a, c, a.numel(), **cfg)
    return c


def scale(c: torch.Tensor, b: torch.Tensor, scalar: float, **cfg) -> torch.Tensor:
    """b = scalar * c"""
    _launch(_scale_kernel, c.numel(), c, b, scalar, c.numel(), **cfg)
    return b


def add(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, **cfg) -> torch.Tensor:
    """c = a + b"""
    _launch(_add_kernel, a.numel(), a, b, c, a.numel(), **cfg)
    return c


def triad(b: torch.Tensor, c: torch.Tensor, a: torch.Tensor, scalar: float, **cfg) -> torch.Tensor:
    """a = b + scalar * c"""
    _launch(_triad_kernel, b.numel(), b, c, a, scalar, b.numel(), **cfg)
    return a


def fill(a: torch.Tensor, value: float, **cfg) -> torch.Tensor:
    """a[:] = value (write-only)"""
    _launch(_fill_kernel, a.numel(), a, value, a.numel(), **cfg)
    return a


def reduction_buffers(a: torch.Tensor, block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Partial sums and the fp32 result of `dot`/`total`, allocated once, outside any timed region."""
    block = block or DEFAULT_BLOCK
    if a.is_cuda:
        most = PROGRAMS_PER_MULTIPROCESSOR * torch.cuda.get_device_properties(a.device).multi_processor_count
    else:
        most = CPU_REDUCTION_PROGRAMS
    programs = max(1, min(triton.cdiv(a.numel(), block), most))
    return (torch.empty(programs, dtype=torch.float32, device=a.device),
            torch.empty((), dtype=torch.float32, device=a.device))


def _reduce(a, b, partials, out, block, num_warps) -> torch.Tensor:
    block = block or DEFAULT_BLOCK
    n = a.numel()
    _partial_sums_kernel[(partials.numel(),)](a, a if b is None else b, partials, n, HAS_B=b is not None,
                                              BLOCK=block, num_warps=num_warps or DEFAULT_WARPS)
    _sum_partials_kernel[(1,)](partials, out, partials.numel(), BLOCK=1024, num_warps=4)
    return out


def dot(a: torch.Tensor, b: torch.Tensor, partials: torch.Tensor, out: torch.Tensor,
        block: int | None = None, num_warps: int | None = None) -> torch.Tensor:
    """out = sum(a * b), accumulated in fp32"""
    return _reduce(a, b, partials, out, block, num_warps)


def total(a: torch.Tensor, partials: torch.Tensor, out: torch.Tensor,
          block: int | None = None, num_warps: int | None = None) -> torch.Tensor:
    """out = sum(a), accumulated in fp32 (read-only)"""
    return _reduce(a, None, partials, out, block, num_warps)
