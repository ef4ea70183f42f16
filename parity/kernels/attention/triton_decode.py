"""Split-KV ("flash-decoding") attention in Triton, for a few query tokens against a long KV cache.

With one query token per head, the prefill kernel has only batch x heads programs and reads each KV
head once per query head. Decoding is memory-bound, so this kernel instead gives one program to a
(KV head, slice of the keys) pair: its tile's rows are all the query rows that share the KV head
(group x seq_q of them), so K and V are read once, and the slices spread a long cache over the whole
GPU. A second kernel merges the slices' partial outputs by their log-sum-exps (Dao et al.,
"Flash-Decoding for long-context inference", 2023). The causal mask is bottom-right aligned, as in
`triton_attention`; with one query token it masks nothing.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from parity.kernels.attention import configs
from parity.kernels.attention.tiles import LOG2E, LOW_PRECISION, _block_d, _check, _strides
from parity.kernels.attention.triton_attention import _fwd_blocks
from parity.kernels.launch import Launcher, as_config

MAX_ROWS = 128  # group x seq_q rows in one tile; more is prefill, for triton_attention.forward
SPLIT_QUANTUM = 256  # slice lengths are multiples of this, so any BLOCK_N up to it divides them
PROGRAMS_PER_MULTIPROCESSOR = 2
INTERPRETER_CONFIG = {"BLOCK_N": 64, "num_warps": 4, "num_stages": 1}


@triton.jit
def _decode_split(Q, K, V, PO, PL,
                  stride_qb, stride_qh, stride_qm, stride_qd,
                  stride_kb, stride_kh, stride_kn, stride_kd,
                  stride_vb, stride_vh, stride_vn, stride_vd,
                  kv_heads, group, seq_q, seq_k, head_dim, split_len, splits, qk_scale,
                  CAUSAL: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                  PAD_D: tl.constexpr, UPCAST: tl.constexpr):
    """One slice of the keys for every query row of one KV head: partial output (normalized by the
    slice's own softmax sum) and the slice's log-sum-exp (base 2)."""
    split = tl.program_id(0)
    bkv = tl.program_id(1)
    b = (bkv // kv_heads).to(tl.int64)
    kvh = (bkv % kv_heads).to(tl.int64)
    r = tl.arange(0, BLOCK_R)
    head = kvh * group + r // seq_q
    pos = r % seq_q
    valid = r < group * seq_q
    offs_d = tl.arange(0, BLOCK_D)
    q = tl.load(Q + b * stride_qb + head[:, None] * stride_qh + pos[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=valid[:, None] & (offs_d[None, :] < head_dim), other=0.0)
    k_base = K + b * stride_kb + kvh * stride_kh
    v_base = V + b * stride_vb + kvh * stride_vh
    lo = split * split_len
    hi = tl.minimum(lo + split_len, seq_k)
    m_i = tl.full([BLOCK_R], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_R], dtype=tl.float32)
    acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)
    # Every block masked against the slice's end: decoding is memory-bound, the mask is free.
    acc, l_i, m_i = _fwd_blocks(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                                pos, offs_d, lo, hi, hi, head_dim, seq_k - seq_q, qk_scale, 1.0, 0.0,
                                BLOCK_N, True, CAUSAL, PAD_D, UPCAST, False)
    row = bkv.to(tl.int64) * splits * BLOCK_R + split * BLOCK_R + r
    tl.store(PO + row[:, None] * BLOCK_D + offs_d[None, :], acc / l_i[:, None])
    tl.store(PL + row, m_i + tl.math.log2(l_i))


@triton.jit
def _decode_merge(PO, PL, O, stride_ob, stride_oh, stride_om, stride_od,
                  kv_heads, group, seq_q, seq_k, head_dim, splits,
                  CAUSAL: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    """Output row = sum_s w_s o_s / sum_s w_s with w_s = 2^(lse_s - max lse): the softmax over all
    keys, rebuilt from the slices'."""
    bkv = tl.program_id(0)
    r = tl.program_id(1)
    b = (bkv // kv_heads).to(tl.int64)
    kvh = (bkv % kv_heads).to(tl.int64)
    s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    rows = bkv.to(tl.int64) * splits * BLOCK_R + s * BLOCK_R + r
    lse = tl.load(PL + rows, mask=s < splits, other=float("-inf"))
    w = tl.math.exp2(lse - tl.max(lse, 0))
    o = tl.load(PO + rows[:, None] * BLOCK_D + offs_d[None, :], mask=(s < splits)[:, None], other=0.0)
    out = tl.sum(o * w[:, None], 0) / tl.sum(w, 0)
    pos = r % seq_q
    if CAUSAL:
        out = tl.where(pos + seq_k - seq_q < 0, 0.0, out)  # a row that sees no key (seq_q > seq_k)
    head = kvh * group + r // seq_q
    tl.store(O + b * stride_ob + head * stride_oh + pos * stride_om + offs_d * stride_od,
             out.to(O.dtype.element_ty), mask=offs_d < head_dim)


_LAUNCHERS = {block_d: Launcher(_decode_split, {"cuda": configs.lists("decode", "cuda", block_d),
                                                "hip": configs.lists("decode", "hip", block_d),
                                                "interpret": [as_config(INTERPRETER_CONFIG)]},
                                key=["seq_q", "seq_k", "head_dim", "group", "split_len"])
              for block_d in configs.BLOCK_DS}


def best_config(head_dim: int = 128) -> str | None:
    return _LAUNCHERS[_block_d(head_dim)].best_config()


def split_length(batch: int, kv_heads: int, seq_k: int, device: torch.device, splits: int | None = None) -> int:
    """Keys per slice: enough slices for about two programs per multiprocessor, in multiples of
    SPLIT_QUANTUM. On the CPU (or with `splits` given) the count is the caller's."""
    if splits is None:
        if device.type == "cpu":
            splits = 4
        else:
            sms = torch.cuda.get_device_properties(device).multi_processor_count
            splits = max(1, math.ceil(PROGRAMS_PER_MULTIPROCESSOR * sms / (batch * kv_heads)))
    length = math.ceil(seq_k / max(1, splits))
    return max(SPLIT_QUANTUM, math.ceil(length / SPLIT_QUANTUM) * SPLIT_QUANTUM)


def decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
           sm_scale: float | None = None, split_len: int | None = None, config: dict | None = None) -> torch.Tensor:
    """Attention of a few query tokens (group x seq_q <= MAX_ROWS per KV head) against a KV cache.

    Shapes as in `triton_attention.forward`; `split_len` (a multiple of BLOCK_N) fixes the slice
    length, `config` (BLOCK_N, num_warps, num_stages) the tiling instead of autotuning.
    """
    _check(q, k, v)
    if q.dtype not in LOW_PRECISION:
        raise ValueError(f"decode takes bf16 or fp16, not {q.dtype}")
    batch, heads, seq_q, head_dim = q.shape
    kv_heads, seq_k = k.shape[1], k.shape[2]
    group = heads // kv_heads
    if group * seq_q > MAX_ROWS:
        raise ValueError(f"{group} heads x {seq_q} tokens per KV head is prefill, not decoding "
                         f"(at most {MAX_ROWS} rows): use triton_attention.forward")
    sm_scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else sm_scale
    split_len = split_len or split_length(batch, kv_heads, seq_k, q.device)
    splits = triton.cdiv(seq_k, split_len)  # no empty slice: each holds at least one key
    block_r = max(16, triton.next_power_of_2(group * seq_q))
    block_d = _block_d(head_dim)
    partial_o = torch.empty((batch * kv_heads * splits * block_r, block_d), dtype=torch.float32, device=q.device)
    partial_lse = torch.empty((batch * kv_heads * splits * block_r,), dtype=torch.float32, device=q.device)
    out = torch.empty_like(q)
    interpreting = q.device.type == "cpu"
    args = (q, k, v, partial_o, partial_lse, *_strides(q), *_strides(k), *_strides(v),
            kv_heads, group, seq_q, seq_k, head_dim, split_len, splits, sm_scale * LOG2E)
    kwargs = dict(CAUSAL=bool(causal), BLOCK_R=block_r, BLOCK_D=block_d, PAD_D=block_d != head_dim,
                  UPCAST=interpreting)
    if config is not None and split_len % config["BLOCK_N"]:
        raise ValueError(f"split_len {split_len} is not a multiple of BLOCK_N {config['BLOCK_N']}")
    _LAUNCHERS[block_d](lambda meta: (splits, batch * kv_heads), *args, like=q, cfg=config, **kwargs)
    _decode_merge[(batch * kv_heads, group * seq_q)](
        partial_o, partial_lse, out, *_strides(out), kv_heads, group, seq_q, seq_k, head_dim, splits,
        CAUSAL=bool(causal), BLOCK_R=block_r, BLOCK_S=max(2, triton.next_power_of_2(splits)), BLOCK_D=block_d)
    return out
