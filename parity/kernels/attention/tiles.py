"""What the flash-attention kernels share (forward, backward, TMA forward, decode): the dtypes and
constants, the program's heads and visible key range (both `triton.jit`), and the launchers' checks
of q, k and v. The algorithm and its conventions are triton_attention.py's docstring.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


MAX_HEAD_DIM = 256


LOW_PRECISION = (torch.bfloat16, torch.float16)


# FP8 attention takes e4m3 (FA3's format): OCP, or FNUZ on gfx942. Smallest normal exponent of each:
FP8_MIN_EXPONENT = {getattr(torch, name): e for name, e in (("float8_e4m3fn", -6), ("float8_e4m3fnuz", -7))
                    if hasattr(torch, name)}


FP8 = tuple(FP8_MIN_EXPONENT)


# The one configuration the interpreter runs (no autotuning there: every config would be a slow
# interpreted run, and its timings mean nothing).
INTERPRETER_CONFIG = {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 1}


@triton.jit
def _heads(bh, heads, group):
    """Batch, query head and KV head of program bh (GQA: `group` query heads share a KV head),
    as int64 so that offsets into long sequences cannot overflow."""
    b = (bh // heads).to(tl.int64)
    h = bh % heads
    kvh = (h // group).to(tl.int64)
    return b, h.to(tl.int64), kvh


@triton.jit
def _key_range(start_m, seq_q, seq_k, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """(full, hi) for query tile start_m: key blocks below `full` are visible to every row of the
    tile and need no mask; keys from `hi` on are visible to none. Bottom-right causal alignment:
    row i sees keys j <= i + (seq_k - seq_q)."""
    diag = seq_k - seq_q
    whole = seq_k // BLOCK_N * BLOCK_N  # key blocks that lie wholly inside seq_k
    if CAUSAL:
        # Keys every row sees: j <= first row + diag; keys any row sees: j <= last row + diag.
        full = tl.minimum(tl.maximum(start_m * BLOCK_M + diag + 1, 0) // BLOCK_N * BLOCK_N, whole)
        hi = tl.minimum(tl.maximum((start_m + 1) * BLOCK_M + diag, 0), seq_k)
    else:
        full = whole
        hi = seq_k
    return full, hi


def _check(q, k, v):
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k and v must be 4-D: (batch, heads, seq, head_dim)")
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        raise ValueError(f"shapes do not match: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"{q.shape[1]} query heads are not a multiple of {k.shape[1]} KV heads")
    if not 1 <= q.shape[3] <= MAX_HEAD_DIM:
        raise ValueError(f"head_dim {q.shape[3]} is outside 1..{MAX_HEAD_DIM}")
    if q.shape[2] < 1 or k.shape[2] < 1:
        raise ValueError("sequence lengths must be at least 1")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in LOW_PRECISION + FP8:
        raise ValueError(f"q, k, v must share one dtype among bf16, fp16 and fp8 e4m3 (got {q.dtype}, {k.dtype}, {v.dtype})")


def _block_d(head_dim: int) -> int:
    return max(16, triton.next_power_of_2(head_dim))  # tl.dot needs K >= 16


def _strides(t):
    return tuple(t.stride())
