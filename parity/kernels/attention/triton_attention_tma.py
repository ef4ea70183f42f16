"""Flash attention forward with TMA tensor descriptors, heaviest causal tiles first, and warp
specialization where the Triton version supports it (implementation `triton-tma`).

The algorithm and conventions are `triton_attention`'s (FlashAttention-2's online softmax in base 2,
bottom-right causal alignment, rows that see no key give zeros, GQA by head grouping); this kernel
differs in how it moves data and orders work, so the tutorial-style row stays comparable beside it:

- Q, K, V and O move through tensor descriptors (`tl.make_tensor_descriptor`), one per (batch, head)
  made on the device over that head's (seq, head_dim) matrix. On Hopper and Blackwell they lower to
  TMA bulk copies (`cp.async.bulk.tensor`) into shared memory, with no per-element addresses or
  masks in registers; rows past the sequence end and columns past head_dim read as zeros and are
  never written (the hardware clips), so odd lengths need no masked loads. Elsewhere (AMD, older
  NVIDIA) Triton lowers descriptors to ordinary loads. Device-made descriptors need a scratch
  allocator (`triton.set_allocator`), set at each launch on a GPU.
- Causal: tile i of n does about i/n of the work, so query tiles are issued last-first: the grid is
  (batch x heads, query tiles) and program (h, j) takes tile n-1-j. GPUs dispatch the grid's first
  axis fastest, so every head's heaviest tile starts before any light one (longest-processing-time
  order; FlashAttention-2 and FA3 schedule the same way), and the short tiles fill the tail.
- Warp specialization (`tl.range(..., warp_specialize=True)`: a producer warp issues the TMA
  copies while the others compute) is on for Blackwell up to head_dim 128, as in Triton's own
  fused-attention tutorial; off on Hopper (the tutorial turned it off there, Triton PR #7108).

TMA requires a contiguous head dimension and 16-byte aligned row strides and base addresses
(`check_layout`).
"""
from __future__ import annotations

import inspect
import math

import torch
import triton
import triton.language as tl

from parity.kernels.attention import configs
from parity.kernels.attention.tiles import LOG2E, LOW_PRECISION, _block_d, _check, _heads, _key_range
from parity.kernels.launch import Launcher, as_config

INTERPRETER_CONFIG = {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 1}
WS_MAX_BLOCK_D = 128
TMA_ALIGN_BYTES = 16  # cuTensorMapEncodeTiled: global address and every stride but the last, in bytes


@triton.jit
def _tma_blocks(acc, l_i, m_i, q, k_desc, v_desc, rows, lo, hi, seq_k, diag, qk_scale,
                BLOCK_N: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr, UPCAST: tl.constexpr,
                WARP_SPECIALIZE: tl.constexpr):
    """Online softmax over key blocks [lo, hi). Keys past seq_k load as zeros (TMA's out-of-bounds
    fill), so only the scores need the key-end mask (MASK), with the causal one."""
    offs_n0 = tl.arange(0, BLOCK_N)
    # The statement order is the one Triton's Blackwell warp-specialized tutorial uses (V loaded
    # after the softmax, l_i updated after P.V); triton 3.9's warp specializer fails on others.
    for start_n in tl.range(lo, hi, BLOCK_N, warp_specialize=WARP_SPECIALIZE):
        k = k_desc.load([start_n, 0])
        if UPCAST:
            qk = tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)))
        else:
            qk = tl.dot(q, tl.trans(k))
        if MASK:
            offs_n = start_n + offs_n0
            visible = offs_n[None, :] < seq_k
            if CAUSAL:
                visible = visible & (offs_n[None, :] <= rows[:, None] + diag)
            qk = qk * qk_scale + tl.where(visible, 0.0, -1.0e6)
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            qk = qk - m_new[:, None]
        else:
            m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
            qk = qk * qk_scale - m_new[:, None]
        p = tl.math.exp2(qk)
        alpha = tl.math.exp2(m_i - m_new)
        l_new = tl.sum(p, 1)
        acc = acc * alpha[:, None]
        v = v_desc.load([start_n, 0])
        p_low = p.to(v.dtype)
        if UPCAST:
            acc = tl.dot(p_low.to(tl.float32), v.to(tl.float32), acc)
        else:
            acc = tl.dot(p_low, v, acc)
        l_i = l_i * alpha + l_new
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attn_fwd_tma(Q, K, V, O, LSE,
                  stride_qb, stride_qh, stride_qm,
                  stride_kb, stride_kh, stride_kn,
                  stride_vb, stride_vh, stride_vn,
                  stride_ob, stride_oh, stride_om,
                  heads, group, seq_q, seq_k, head_dim, qk_scale,
                  CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                  UPCAST: tl.constexpr, WARP_SPECIALIZE: tl.constexpr):
    bh = tl.program_id(0)
    if CAUSAL:
        start_m = tl.num_programs(1) - 1 - tl.program_id(1)  # heaviest tile first
    else:
        start_m = tl.program_id(1)
    b, h, kvh = _heads(bh, heads, group)
    q_desc = tl.make_tensor_descriptor(Q + b * stride_qb + h * stride_qh, shape=[seq_q, head_dim],
                                       strides=[stride_qm, 1], block_shape=[BLOCK_M, BLOCK_D])
    k_desc = tl.make_tensor_descriptor(K + b * stride_kb + kvh * stride_kh, shape=[seq_k, head_dim],
                                       strides=[stride_kn, 1], block_shape=[BLOCK_N, BLOCK_D])
    v_desc = tl.make_tensor_descriptor(V + b * stride_vb + kvh * stride_vh, shape=[seq_k, head_dim],
                                       strides=[stride_vn, 1], block_shape=[BLOCK_N, BLOCK_D])
    o_desc = tl.make_tensor_descriptor(O + b * stride_ob + h * stride_oh, shape=[seq_q, head_dim],
                                       strides=[stride_om, 1], block_shape=[BLOCK_M, BLOCK_D])
    rows = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    q = q_desc.load([start_m * BLOCK_M, 0])

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    diag = seq_k - seq_q
    full, hi = _key_range(start_m, seq_q, seq_k, CAUSAL, BLOCK_M, BLOCK_N)
    acc, l_i, m_i = _tma_blocks(acc, l_i, m_i, q, k_desc, v_desc, rows, 0, full, seq_k, diag, qk_scale,
                                BLOCK_N, False, CAUSAL, UPCAST, WARP_SPECIALIZE)
    acc, l_i, m_i = _tma_blocks(acc, l_i, m_i, q, k_desc, v_desc, rows, full, hi, seq_k, diag, qk_scale,
                                BLOCK_N, True, CAUSAL, UPCAST, WARP_SPECIALIZE)

    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / l_safe[:, None]
    lse = m_i + tl.math.log2(l_safe)
    if CAUSAL:
        empty = rows + diag < 0  # rows that see no key at all (seq_q > seq_k)
        out = tl.where(empty[:, None], 0.0, out)
        lse = tl.where(empty, float("inf"), lse)
    o_desc.store([start_m * BLOCK_M, 0], out.to(O.dtype.element_ty))
    tl.store(LSE + bh.to(tl.int64) * seq_q + rows, lse, mask=rows < seq_q)


def _launcher(block_d: int) -> Launcher:
    return _LAUNCHERS[block_d]


_LAUNCHERS = {block_d: Launcher(_attn_fwd_tma, {"cuda": configs.lists("fwd_tma", "cuda", block_d),
                                                "hip": configs.lists("fwd_tma", "hip", block_d),
                                                "interpret": [as_config(INTERPRETER_CONFIG)]},
                                key=["seq_q", "seq_k", "head_dim", "group", "CAUSAL"])
              for block_d in configs.BLOCK_DS}


def best_config(head_dim: int) -> str | None:
    """The configuration the autotuner chose last for this head_dim; None before."""
    return _launcher(_block_d(head_dim)).best_config()


def check_layout(*tensors: torch.Tensor) -> None:
    """TMA's layout rules: a contiguous last dimension, 16-byte aligned base and strides."""
    for t in tensors:
        if t.stride(-1) != 1:
            raise ValueError(f"triton-tma needs a contiguous head_dim (stride 1), got strides {tuple(t.stride())}")
        item = t.element_size()
        if t.data_ptr() % TMA_ALIGN_BYTES or any(s * item % TMA_ALIGN_BYTES for s in t.stride()[:-1]):
            raise ValueError(f"triton-tma needs {TMA_ALIGN_BYTES}-byte aligned strides and base "
                             f"(strides {tuple(t.stride())} of {item}-byte elements)")


def warp_specialize(device, block_d: int) -> bool:
    """Warp specialization on Blackwell (compute capability 10+), as Triton's tutorial does, up to
    BLOCK_D 128: at 256 the specialized partitions' register budgets spill (triton 3.9, sm_100a)."""
    device = torch.device(device)
    return bool(device.type == "cuda" and not torch.version.hip and block_d <= WS_MAX_BLOCK_D
                and torch.cuda.get_device_capability(device)[0] >= 10)


def unavailable() -> str | None:
    """Why this Triton cannot build the kernel (device-made tensor descriptors and `tl.range`'s
    warp_specialize came in triton 3.3-3.4), or None."""
    if not hasattr(tl, "make_tensor_descriptor"):
        return f"triton {triton.__version__} has no tl.make_tensor_descriptor"
    if "warp_specialize" not in inspect.signature(tl.range).parameters:
        return f"triton {triton.__version__}'s tl.range has no warp_specialize"
    return None


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
            sm_scale: float | None = None, config: dict | None = None):
    """Attention output and row log-sum-exp (base 2), as `triton_attention.forward`, BF16/FP16 only.

    `config` (BLOCK_M, BLOCK_N, num_warps, num_stages) fixes the tiling instead of autotuning."""
    _check(q, k, v)
    if q.dtype not in LOW_PRECISION:
        raise ValueError(f"triton-tma takes bf16 or fp16, not {q.dtype}")
    batch, heads, seq_q, head_dim = q.shape
    kv_heads, seq_k = k.shape[1], k.shape[2]
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    check_layout(q, k, v, out)
    sm_scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else sm_scale
    lse = torch.empty((batch, heads, seq_q), dtype=torch.float32, device=q.device)
    block_d = _block_d(head_dim)
    if q.is_cuda:
        # Device-made descriptors live in global scratch memory, allocated per launch on q's device.
        triton.set_allocator(lambda size, alignment, stream: torch.empty(size, dtype=torch.int8, device=q.device))
    args = (q, k, v, out, lse, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3],
            heads, heads // kv_heads, seq_q, seq_k, head_dim, sm_scale * LOG2E)
    kwargs = dict(CAUSAL=bool(causal), BLOCK_D=block_d, UPCAST=q.device.type == "cpu",
                  WARP_SPECIALIZE=warp_specialize(q.device, block_d))
    grid = lambda meta: (batch * heads, triton.cdiv(seq_q, meta["BLOCK_M"]))  # noqa: E731
    _launcher(block_d)(grid, *args, like=q, cfg=config, **kwargs)
    return out, lse
