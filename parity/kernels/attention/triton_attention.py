"""Flash attention in Triton: forward (BF16, FP16, FP8) and backward, causal or not, with GQA.

The algorithm is FlashAttention-2's (Dao, 2023), as in Triton's fused-attention tutorial
(`python/tutorials/06-fused-attention.py`): the forward keeps an online softmax in base 2 (scores
pre-multiplied by sm_scale·log2(e)) and saves the row log-sum-exp for the backward; the backward
computes Delta = rowsum(O·dO), then dK and dV per key block (looping over the query heads that share
the KV head, so grouped-query attention needs no atomics) and dQ per query block.

Layout and conventions:
- q is (batch, heads, seq_q, head_dim); k and v are (batch, kv_heads, seq_k, head_dim), with heads a
  multiple of kv_heads: query head h reads KV head h // (heads // kv_heads). Any strides.
- The causal mask is bottom-right aligned, FlashAttention's convention since 2.1 and the one a KV
  cache needs: query i sees key j iff j <= i + seq_k - seq_q. With seq_q == seq_k it is the usual
  lower triangle. Query rows that see no key (seq_q > seq_k) give zeros, as in FlashAttention.
- Masked scores get -1e6 rather than -inf (the tutorial's choice): no inf - inf = NaN in the
  running maximum, and a later visible key makes every masked weight exactly zero.
- FP8 (e4m3, OCP or FNUZ: the caller picks the architecture's dtype) takes per-tensor descales.
  Both products run in FP8: P is multiplied by the format's largest value before it is cast, so its
  [0, 1] range uses the whole exponent range, and the output (BF16) is divided back.

Each block loop is split into blocks every row sees in full (no mask) and the few blocks on the
causal diagonal or past the end of the keys (masked), so the common path carries no mask work.

On a machine without a GPU the caller sets TRITON_INTERPRET=1 before importing this module; the
interpreter computes BF16 arithmetic wrongly, so there operands are converted to fp32 before each
product (UPCAST), after the same rounding the GPU path does.

The shared constants, checks and tile helpers are tiles.py; the backward kernels triton_attention_bwd.py.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from parity.kernels.attention import configs
from parity.kernels.attention.tiles import (
    FP8,
    FP8_MIN_EXPONENT,
    INTERPRETER_CONFIG,
    LOG2E,
    LOW_PRECISION,
    _block_d,
    _check,
    _heads,
    _key_range,
    _strides,
)
from parity.kernels.attention.triton_attention_bwd import _attn_bwd_dkdv, _attn_bwd_dq, _bwd_delta
from parity.kernels.launch import Launcher, as_config


@triton.jit
def _fwd_blocks(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                rows, offs_d, lo, hi, seq_k, head_dim, diag, qk_scale, p_scale, p_emin,
                BLOCK_N: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr, PAD_D: tl.constexpr,
                UPCAST: tl.constexpr, FP8: tl.constexpr):
    """Online softmax over key blocks [lo, hi). `rows` are the query positions of the tile's rows
    (for the causal test); MASK adds the key-end and causal masks."""
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        kt_ptrs = k_base + offs_d[:, None] * stride_kd + offs_n[None, :] * stride_kn
        v_ptrs = v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd
        if MASK:
            kt = tl.load(kt_ptrs, mask=(offs_n[None, :] < seq_k) & (offs_d[:, None] < head_dim), other=0.0)
            v = tl.load(v_ptrs, mask=(offs_n[:, None] < seq_k) & (offs_d[None, :] < head_dim), other=0.0)
        elif PAD_D:
            kt = tl.load(kt_ptrs, mask=offs_d[:, None] < head_dim, other=0.0)
            v = tl.load(v_ptrs, mask=offs_d[None, :] < head_dim, other=0.0)
        else:
            kt = tl.load(kt_ptrs)
            v = tl.load(v_ptrs)
        if UPCAST:
            qk = tl.dot(q.to(tl.float32), kt.to(tl.float32))
        else:
            qk = tl.dot(q, kt)
        qk = qk * qk_scale
        if MASK:
            visible = offs_n[None, :] < seq_k
            if CAUSAL:
                visible = visible & (offs_n[None, :] <= rows[:, None] + diag)
            qk = qk + tl.where(visible, 0.0, -1.0e6)
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        if FP8:
            p = p * p_scale
            if UPCAST:
                # The interpreter's fp32 -> fp8 cast drops the carry when rounding up crosses a power
                # of two (127.9 -> 64, triton 3.9): round to the e4m3 grid (3 mantissa bits, normal
                # exponents from p_emin) first, so that its cast is exact. A GPU rounds in hardware.
                step = tl.math.exp2(tl.math.floor(tl.math.log2(tl.maximum(p, tl.math.exp2(p_emin)))) - 3.0)
                p = tl.math.floor(p / step + 0.5) * step
        p_low = p.to(v.dtype)
        if UPCAST:
            acc = tl.dot(p_low.to(tl.float32), v.to(tl.float32), acc)
        else:
            acc = tl.dot(p_low, v, acc)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attn_fwd(Q, K, V, O, LSE,
              stride_qb, stride_qh, stride_qm, stride_qd,
              stride_kb, stride_kh, stride_kn, stride_kd,
              stride_vb, stride_vh, stride_vn, stride_vd,
              stride_ob, stride_oh, stride_om, stride_od,
              heads, group, seq_q, seq_k, head_dim, qk_scale, p_scale, p_emin, o_scale,
              CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
              PAD_D: tl.constexpr, UPCAST: tl.constexpr, FP8: tl.constexpr):
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b, h, kvh = _heads(bh, heads, group)
    rows = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q_ptrs = Q + b * stride_qb + h * stride_qh + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=(rows[:, None] < seq_q) & (offs_d[None, :] < head_dim), other=0.0)
    k_base = K + b * stride_kb + kvh * stride_kh
    v_base = V + b * stride_vb + kvh * stride_vh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    diag = seq_k - seq_q  # bottom-right alignment: row i sees keys j <= i + diag
    full, hi = _key_range(start_m, seq_q, seq_k, CAUSAL, BLOCK_M, BLOCK_N)
    acc, l_i, m_i = _fwd_blocks(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                                rows, offs_d, 0, full, seq_k, head_dim, diag, qk_scale, p_scale, p_emin,
                                BLOCK_N, False, CAUSAL, PAD_D, UPCAST, FP8)
    acc, l_i, m_i = _fwd_blocks(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                                rows, offs_d, full, hi, seq_k, head_dim, diag, qk_scale, p_scale, p_emin,
                                BLOCK_N, True, CAUSAL, PAD_D, UPCAST, FP8)

    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc * (o_scale / l_safe)[:, None]
    lse = m_i + tl.math.log2(l_safe)
    if CAUSAL:
        empty = rows + diag < 0  # rows that see no key at all (seq_q > seq_k)
        out = tl.where(empty[:, None], 0.0, out)
        lse = tl.where(empty, float("inf"), lse)
    o_ptrs = O + b * stride_ob + h * stride_oh + rows[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=(rows[:, None] < seq_q) & (offs_d[None, :] < head_dim))
    tl.store(LSE + bh.to(tl.int64) * seq_q + rows, lse, mask=rows < seq_q)


DELTA_TILE = 4096  # elements of O (and of dO) one program of `_bwd_delta` reads


_KERNELS = {"fwd": _attn_fwd, "dkdv": _attn_bwd_dkdv, "dq": _attn_bwd_dq}


_TUNING_KEYS = ["seq_q", "seq_k", "head_dim", "group", "CAUSAL", "FP8"]


# One launcher per kernel and BLOCK_D: each head_dim bucket has its own list (`configs.py`), so no
# config that cannot load at that head_dim is ever tried.
_LAUNCHERS = {(name, block_d): Launcher(kernel, {"cuda": configs.lists(name, "cuda", block_d),
                                                 "hip": configs.lists(name, "hip", block_d),
                                                 "interpret": [as_config(INTERPRETER_CONFIG)]},
                                        key=[k for k in _TUNING_KEYS if k != "FP8" or name == "fwd"])
              for name, kernel in _KERNELS.items() for block_d in configs.BLOCK_DS}


def best_config(kernel: str = "fwd", head_dim: int = 128) -> str | None:
    """The configuration the autotuner chose at its last call ("fwd", "dkdv", "dq") at this
    head_dim; None before."""
    return _LAUNCHERS[(kernel, _block_d(head_dim))].best_config()


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
            sm_scale: float | None = None, descale: tuple[float, float, float] | None = None,
            out_dtype: torch.dtype | None = None, config: dict | None = None):
    """Attention output and the row log-sum-exp (base 2, fp32, (batch, heads, seq_q)).

    For FP8 inputs, `descale` holds the per-tensor factors that turn q, k, v back into real values
    (x_real = x_fp8 * descale); the output is BF16 unless `out_dtype` says otherwise. On Hopper
    the FP8 product P·V wants V's sequence dimension contiguous (`v.transpose(-1, -2).contiguous()
    .transpose(-1, -2)`, as Triton's tutorial does); strides are taken as given. `config`
    (BLOCK_M, BLOCK_N, num_warps, num_stages) fixes the tiling instead of autotuning.
    """
    _check(q, k, v)
    batch, heads, seq_q, head_dim = q.shape
    kv_heads, seq_k = k.shape[1], k.shape[2]
    fp8 = q.dtype in FP8
    if fp8 and descale is None:
        raise ValueError("fp8 inputs need descale=(q, k, v) factors")
    sm_scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else sm_scale
    dq_, dk_, dv_ = descale if fp8 else (1.0, 1.0, 1.0)
    p_scale = torch.finfo(v.dtype).max if fp8 else 1.0
    out = torch.empty(q.shape, dtype=out_dtype or (torch.bfloat16 if fp8 else q.dtype), device=q.device)
    lse = torch.empty((batch, heads, seq_q), dtype=torch.float32, device=q.device)
    block_d = _block_d(head_dim)
    interpreting = q.device.type == "cpu"
    args = (q, k, v, out, lse, *_strides(q), *_strides(k), *_strides(v), *_strides(out),
            heads, heads // kv_heads, seq_q, seq_k, head_dim,
            sm_scale * LOG2E * dq_ * dk_, p_scale, float(FP8_MIN_EXPONENT.get(v.dtype, 0)), dv_ / p_scale)
    kwargs = dict(CAUSAL=bool(causal), BLOCK_D=block_d, PAD_D=block_d != head_dim, UPCAST=interpreting, FP8=fp8)
    grid = lambda meta: (triton.cdiv(seq_q, meta["BLOCK_M"]), batch * heads)  # noqa: E731
    _LAUNCHERS[("fwd", block_d)](grid, *args, like=q, cfg=config, **kwargs)
    return out, lse


def backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
             lse: torch.Tensor, causal: bool = False, sm_scale: float | None = None,
             config: dict | None = None, dkdv_config: dict | None = None):
    """dQ, dK, dV of `forward` (BF16/FP16) given its output `o` and log-sum-exp `lse`.

    `config` fixes the dQ kernel's tiling and `dkdv_config` the dK/dV kernel's (default: the same).
    """
    _check(q, k, v)
    if q.dtype not in LOW_PRECISION:
        raise ValueError(f"the backward takes bf16 or fp16, not {q.dtype}")
    if do.shape != q.shape or o.shape != q.shape or lse.shape != q.shape[:3]:
        raise ValueError("do and o must have q's shape and lse (batch, heads, seq_q)")
    batch, heads, seq_q, head_dim = q.shape
    kv_heads, seq_k = k.shape[1], k.shape[2]
    group = heads // kv_heads
    sm_scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else sm_scale
    block_d = _block_d(head_dim)
    interpreting = q.device.type == "cpu"
    lse = lse.contiguous()
    delta = torch.empty_like(lse)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    # Delta's tile is 4096 elements of O and dO over 8 warps at every head_dim (16 of each a thread,
    # 14-78 registers): 64 rows over 4 warps reached 48-118 registers and ptxas for sm_100a spilled
    # 28-144 B at head_dim 64-256 (triton 3.6 and 3.9, offline compile, issue 24).
    pre_block = DELTA_TILE // block_d
    _bwd_delta[(triton.cdiv(seq_q, pre_block), batch * heads)](
        o, do, delta, *_strides(o), *_strides(do), heads, seq_q, head_dim, BLOCK_M=pre_block, BLOCK_D=block_d,
        num_warps=8)
    common = dict(CAUSAL=bool(causal), BLOCK_D=block_d, PAD_D=block_d != head_dim, UPCAST=interpreting)
    _LAUNCHERS[("dkdv", block_d)](lambda meta: (triton.cdiv(seq_k, meta["BLOCK_N"]), batch * kv_heads),
                       q, k, v, do, dk, dv, lse, delta, *_strides(q), *_strides(k), *_strides(v), *_strides(do),
                       *_strides(dk), *_strides(dv), heads, kv_heads, group, seq_q, seq_k, head_dim, sm_scale,
                       sm_scale * LOG2E, like=q, cfg=dkdv_config or config, **common)
    _LAUNCHERS[("dq", block_d)](lambda meta: (triton.cdiv(seq_q, meta["BLOCK_M"]), batch * heads),
                     q, k, v, do, dq, lse, delta, *_strides(q), *_strides(k), *_strides(v), *_strides(do),
                     *_strides(dq), heads, group, seq_q, seq_k, head_dim, sm_scale, sm_scale * LOG2E,
                     like=q, cfg=config, **common)
    return dq, dk, dv


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, sm_scale):
        o, lse = forward(q, k, v, causal, sm_scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal, ctx.sm_scale = causal, sm_scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = backward(do, q, k, v, o, lse, ctx.causal, ctx.sm_scale)
        return dq, dk, dv, None, None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
              sm_scale: float | None = None) -> torch.Tensor:
    """Differentiable flash attention (BF16/FP16): `forward` and `backward` under autograd."""
    return _FlashAttention.apply(q, k, v, causal, sm_scale)
