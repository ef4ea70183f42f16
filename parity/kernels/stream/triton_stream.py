"""Triton streaming kernels: copy, scale, add, triad, dot, read (a sum) and write (a fill).

The operations are BabelStream's (UoB-HPC/BabelStream `src/*Stream.*`) plus a read-only and a
write-only kernel (gpu-benches' `read` and `init`), which bound a device's achievable bandwidth
from both sides. Each launcher takes tensors on any device; on a machine without a GPU the caller
sets TRITON_INTERPRET=1 before importing this module.

Vector accesses at every size: a mask `offs < n` that Triton cannot prove uniform over a vector
(n is rarely a multiple of 16: n = working_set // (3 x itemsize)) makes every load and store scalar
(`ld.global.b32`). So each program checks whether its block is whole: whole blocks (all but the
last) load and store without a mask, 16 bytes at a time; only the last, partial block is masked.
The reductions do the same: their grid-strided loop covers whole blocks, one program adds the tail.

Grids that fill the GPU: a block is 512 elements per warp (16 per lane on 32-lane NVIDIA warps,
8 on 64-lane AMD wavefronts: 16 bytes of bf16 either way, 64 of fp32) and the launcher picks the
largest block of `CONFIGS` that still gives every multiprocessor `PROGRAMS_PER_MULTIPROCESSOR`
programs, so a 64 KiB working set is spread over the GPU instead of two 4096-element programs.

Arithmetic is done in fp32 and rounded once to the output dtype: that is what a bf16 streaming
kernel does on a GPU, and the CPU interpreter computes bf16 arithmetic wrongly otherwise.
Offsets are 64-bit so that arrays over 2**31 elements work.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from parity.kernels.launch import Launcher, as_config

ELEMENTS_PER_WARP = 512
BLOCKS = (4096, 2048, 1024, 512)  # largest first: the launcher takes the first that fills the GPU
DEFAULT_BLOCK = BLOCKS[0]
PROGRAMS_PER_MULTIPROCESSOR = 4
CPU_REDUCTION_PROGRAMS = 8  # the interpreter runs programs one after another
SUM_BLOCK = 1024  # the partial sums are padded with zeros to a multiple of this


def _config(block: int) -> triton.Config:
    return as_config({"BLOCK": block, "num_warps": block // ELEMENTS_PER_WARP, "num_stages": 1})


# One list for both vendors: BLOCK / num_warps is the same per warp, and the lane count per warp
# (32 or 64) only changes how many elements each lane holds. The interpreter runs programs one
# after another, so it takes the largest block (fewest programs).
CONFIGS = {"cuda": [_config(b) for b in BLOCKS], "hip": [_config(b) for b in BLOCKS],
           "interpret": [_config(DEFAULT_BLOCK)]}

COPY, SCALE, ADD, TRIAD, FILL = 0, 1, 2, 3, 4


@triton.jit
def _load(ptr, offs, n, MASKED: tl.constexpr):
    if MASKED:
        return tl.load(ptr + offs, mask=offs < n, other=0.0).to(tl.float32)
    return tl.load(ptr + offs).to(tl.float32)


@triton.jit
def _map_block(x_ptr, y_ptr, dst_ptr, scalar, offs, n, OP: tl.constexpr, MASKED: tl.constexpr,
               BLOCK: tl.constexpr):
    if OP == 4:  # FILL
        out = tl.zeros([BLOCK], dtype=tl.float32) + scalar
    elif OP == 0:  # COPY
        out = _load(x_ptr, offs, n, MASKED)
    elif OP == 1:  # SCALE
        out = _load(x_ptr, offs, n, MASKED) * scalar
    elif OP == 2:  # ADD
        out = _load(x_ptr, offs, n, MASKED) + _load(y_ptr, offs, n, MASKED)
    else:  # TRIAD
        out = _load(x_ptr, offs, n, MASKED) + scalar * _load(y_ptr, offs, n, MASKED)
    if MASKED:
        tl.store(dst_ptr + offs, out.to(dst_ptr.dtype.element_ty), mask=offs < n)
    else:
        tl.store(dst_ptr + offs, out.to(dst_ptr.dtype.element_ty))


@triton.jit
def _map_kernel(x_ptr, y_ptr, dst_ptr, scalar, n, OP: tl.constexpr, BLOCK: tl.constexpr):
    """dst = OP(x, y, scalar) elementwise; every whole block unmasked, the partial one masked."""
    start = tl.program_id(0).to(tl.int64) * BLOCK
    offs = start + tl.arange(0, BLOCK)
    if start + BLOCK <= n:
        _map_block(x_ptr, y_ptr, dst_ptr, scalar, offs, n, OP, False, BLOCK)
    else:
        _map_block(x_ptr, y_ptr, dst_ptr, scalar, offs, n, OP, True, BLOCK)


@triton.jit
def _product(a_ptr, b_ptr, offs, n, HAS_B: tl.constexpr, MASKED: tl.constexpr):
    x = _load(a_ptr, offs, n, MASKED)
    if HAS_B:
        x = x * _load(b_ptr, offs, n, MASKED)
    return x


@triton.jit
def _partial_sums_kernel(a_ptr, b_ptr, partial_ptr, n, HAS_B: tl.constexpr, BLOCK: tl.constexpr):
    """Each program adds a[i] (or a[i]*b[i]) over a grid-strided share of the whole blocks, in fp32,
    into one partial; the program after the last whole block's owner also adds the partial block."""
    pid = tl.program_id(0).to(tl.int64)
    programs = tl.num_programs(0).to(tl.int64)
    whole = n // BLOCK
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for blk in range(pid, whole, programs):
        acc += _product(a_ptr, b_ptr, blk * BLOCK + tl.arange(0, BLOCK), n, HAS_B, False)
    if pid == whole % programs:
        acc += _product(a_ptr, b_ptr, whole * BLOCK + tl.arange(0, BLOCK), n, HAS_B, True)
    tl.store(partial_ptr + pid, tl.sum(acc, axis=0))


@triton.jit
def _sum_partials_kernel(partial_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """out = sum(partials); n is a multiple of BLOCK (the buffer is padded with zeros)."""
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n, BLOCK):
        acc += tl.load(partial_ptr + start + tl.arange(0, BLOCK))
    tl.store(out_ptr, tl.sum(acc, axis=0))


_MAP = Launcher(_map_kernel, CONFIGS, key=["n"])
_PARTIALS = Launcher(_partial_sums_kernel, CONFIGS, key=["n"])
_SUM = Launcher(_sum_partials_kernel, {k: [_config(SUM_BLOCK)] for k in CONFIGS}, key=["n"])


@functools.lru_cache(maxsize=None)
def _multiprocessors(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_properties(device).multi_processor_count


def pick_block(n: int, multiprocessors: int | None) -> int:
    """The largest block that gives every multiprocessor PROGRAMS_PER_MULTIPROCESSOR programs, else
    the smallest; on the CPU (multiprocessors None) the largest: fewer interpreted programs."""
    if multiprocessors is None:
        return DEFAULT_BLOCK
    for block in BLOCKS:
        if triton.cdiv(n, block) >= PROGRAMS_PER_MULTIPROCESSOR * multiprocessors:
            return block
    return BLOCKS[-1]


def _cfg(n: int, like: torch.Tensor, block: int | None, num_warps: int | None) -> dict:
    block = block or pick_block(n, _multiprocessors(like.device))
    return {"BLOCK": block, "num_warps": num_warps or max(1, block // ELEMENTS_PER_WARP), "num_stages": 1}


def _map(op: int, x, y, dst, scalar: float, n: int, block=None, num_warps=None) -> None:
    _MAP(lambda meta: (triton.cdiv(n, meta["BLOCK"]),), x, y, dst, scalar, n, OP=op, like=dst,
         cfg=_cfg(n, dst, block, num_warps))


def copy(a: torch.Tensor, c: torch.Tensor, **cfg) -> torch.Tensor:
    """c = a"""
    _map(COPY, a, a, c, 0.0, a.numel(), **cfg)
    return c


def scale(c: torch.Tensor, b: torch.Tensor, scalar: float, **cfg) -> torch.Tensor:
    """b = scalar * c"""
    _map(SCALE, c, c, b, scalar, c.numel(), **cfg)
    return b


def add(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, **cfg) -> torch.Tensor:
    """c = a + b"""
    _map(ADD, a, b, c, 0.0, a.numel(), **cfg)
    return c


def triad(b: torch.Tensor, c: torch.Tensor, a: torch.Tensor, scalar: float, **cfg) -> torch.Tensor:
    """a = b + scalar * c"""
    _map(TRIAD, b, c, a, scalar, b.numel(), **cfg)
    return a


def fill(a: torch.Tensor, value: float, **cfg) -> torch.Tensor:
    """a[:] = value (write-only)"""
    _map(FILL, a, a, a, value, a.numel(), **cfg)
    return a


def reduction_programs(n: int, device: torch.device, block: int | None = None) -> int:
    """Programs of the persistent partial-sum grid: one per block, at most a few per multiprocessor."""
    sms = _multiprocessors(device)
    block = block or pick_block(n, sms)
    most = CPU_REDUCTION_PROGRAMS if sms is None else PROGRAMS_PER_MULTIPROCESSOR * sms
    return max(1, min(triton.cdiv(n, block), most))


def reduction_buffers(a: torch.Tensor, block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Partial sums (zeros, padded to a multiple of SUM_BLOCK so the final sum loads whole vectors)
    and the fp32 result of `dot`/`total`, allocated once, outside any timed region."""
    programs = reduction_programs(a.numel(), a.device, block)
    return (torch.zeros(triton.cdiv(programs, SUM_BLOCK) * SUM_BLOCK, dtype=torch.float32, device=a.device),
            torch.empty((), dtype=torch.float32, device=a.device))


def _reduce(a, b, partials, out, block, num_warps) -> torch.Tensor:
    n = a.numel()
    cfg = _cfg(n, a, block, num_warps)
    programs = reduction_programs(n, a.device, cfg["BLOCK"])
    if partials.numel() < programs or partials.numel() % SUM_BLOCK:
        raise ValueError(f"partials hold {partials.numel()} sums; {programs} programs need the buffer "
                         f"of reduction_buffers")
    _PARTIALS(lambda meta: (programs,), a, a if b is None else b, partials, n, HAS_B=b is not None, like=a, cfg=cfg)
    _SUM(lambda meta: (1,), partials, out, partials.numel(), like=a,
         cfg={"BLOCK": SUM_BLOCK, "num_warps": SUM_BLOCK // ELEMENTS_PER_WARP, "num_stages": 1})
    return out


def dot(a: torch.Tensor, b: torch.Tensor, partials: torch.Tensor, out: torch.Tensor,
        block: int | None = None, num_warps: int | None = None) -> torch.Tensor:
    """out = sum(a * b), accumulated in fp32"""
    return _reduce(a, b, partials, out, block, num_warps)


def total(a: torch.Tensor, partials: torch.Tensor, out: torch.Tensor,
          block: int | None = None, num_warps: int | None = None) -> torch.Tensor:
    """out = sum(a), accumulated in fp32 (read-only)"""
    return _reduce(a, None, partials, out, block, num_warps)
