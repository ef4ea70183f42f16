"""The backward kernels of triton_attention.py (whose docstring gives the algorithm): Delta =
rowsum(O·dO), then dK and dV per key block (looping over the query heads that share the KV head, so
grouped-query attention needs no atomics), and dQ per query block. Launched by `backward` there.
"""
from __future__ import annotations

import triton
import triton.language as tl

from parity.kernels.attention.tiles import _heads, _key_range


@triton.jit
def _bwd_delta(O, DO, DELTA, stride_ob, stride_oh, stride_om, stride_od,
               stride_dob, stride_doh, stride_dom, stride_dod, heads, seq_q, head_dim,
               BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """Delta = rowsum(O * dO) in fp32, one value per query row."""
    bh = tl.program_id(1)
    b = (bh // heads).to(tl.int64)
    h = (bh % heads).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (rows[:, None] < seq_q) & (offs_d[None, :] < head_dim)
    o = tl.load(O + b * stride_ob + h * stride_oh + rows[:, None] * stride_om + offs_d[None, :] * stride_od,
                mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + b * stride_dob + h * stride_doh + rows[:, None] * stride_dom + offs_d[None, :] * stride_dod,
                 mask=mask, other=0.0).to(tl.float32)
    tl.store(DELTA + bh.to(tl.int64) * seq_q + rows, tl.sum(o * do, 1), mask=rows < seq_q)


@triton.jit
def _dkdv_blocks(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qm, stride_qd, stride_dom, stride_dod,
                 cols, offs_d, lo, hi, seq_q, head_dim, diag, qk_scale,
                 BLOCK_M: tl.constexpr, MASK: tl.constexpr, PAD_D: tl.constexpr, UPCAST: tl.constexpr):
    """dV += P^T dO and dK += dS^T Q over query blocks [lo, hi) of one query head; P is recomputed
    from the saved log-sum-exp. MASK applies the causal mask (rows past seq_q have LSE = +inf, so
    their P is zero without one)."""
    offs_m0 = tl.arange(0, BLOCK_M)
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + offs_m0
        in_rows = rows < seq_q
        q = tl.load(q_base + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                    mask=in_rows[:, None] & (offs_d[None, :] < head_dim), other=0.0)
        do = tl.load(do_base + rows[:, None] * stride_dom + offs_d[None, :] * stride_dod,
                     mask=in_rows[:, None] & (offs_d[None, :] < head_dim), other=0.0)
        lse = tl.load(lse_base + rows, mask=in_rows, other=float("inf"))
        delta = tl.load(delta_base + rows, mask=in_rows, other=0.0)
        if UPCAST:
            qkt = tl.dot(k.to(tl.float32), tl.trans(q.to(tl.float32)))
        else:
            qkt = tl.dot(k, tl.trans(q))
        pt = tl.math.exp2(qkt * qk_scale - lse[None, :])
        if MASK:
            pt = tl.where(cols[:, None] <= rows[None, :] + diag, pt, 0.0)
        pt_low = pt.to(q.dtype)
        if UPCAST:
            dv = tl.dot(pt_low.to(tl.float32), do.to(tl.float32), dv)
            dpt = tl.dot(v.to(tl.float32), tl.trans(do.to(tl.float32)))
        else:
            dv = tl.dot(pt_low, do, dv)
            dpt = tl.dot(v, tl.trans(do))
        dst = (pt * (dpt - delta[None, :])).to(q.dtype)
        if UPCAST:
            dk = tl.dot(dst.to(tl.float32), q.to(tl.float32), dk)
        else:
            dk = tl.dot(dst, q, dk)
    return dk, dv


@triton.jit
def _attn_bwd_dkdv(Q, K, V, DO, DK, DV, LSE, DELTA,
                   stride_qb, stride_qh, stride_qm, stride_qd,
                   stride_kb, stride_kh, stride_kn, stride_kd,
                   stride_vb, stride_vh, stride_vn, stride_vd,
                   stride_dob, stride_doh, stride_dom, stride_dod,
                   stride_dkb, stride_dkh, stride_dkn, stride_dkd,
                   stride_dvb, stride_dvh, stride_dvn, stride_dvd,
                   heads, kv_heads, group, seq_q, seq_k, head_dim, sm_scale, qk_scale,
                   CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   PAD_D: tl.constexpr, UPCAST: tl.constexpr):
    start_n = tl.program_id(0) * BLOCK_N
    bkv = tl.program_id(1)
    b = (bkv // kv_heads).to(tl.int64)
    kvh = (bkv % kv_heads).to(tl.int64)
    cols = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    kv_mask = (cols[:, None] < seq_k) & (offs_d[None, :] < head_dim)
    k = tl.load(K + b * stride_kb + kvh * stride_kh + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                mask=kv_mask, other=0.0)
    v = tl.load(V + b * stride_vb + kvh * stride_vh + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                mask=kv_mask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    diag = seq_k - seq_q
    if CAUSAL:
        # Rows that see key j: i >= j - diag. Rows from `full` on see every key of the block.
        lo = tl.maximum(start_n - diag, 0) // BLOCK_M * BLOCK_M
        full = tl.minimum(tl.cdiv(tl.maximum(start_n + BLOCK_N - 1 - diag, 0), BLOCK_M) * BLOCK_M,
                          tl.cdiv(seq_q, BLOCK_M) * BLOCK_M)
        lo = tl.minimum(lo, full)
    else:
        lo = 0
        full = 0
    for j in range(0, group):
        h = kvh * group + j
        bh = b * heads + h
        q_base = Q + b * stride_qb + h * stride_qh
        do_base = DO + b * stride_dob + h * stride_doh
        lse_base = LSE + bh * seq_q
        delta_base = DELTA + bh * seq_q
        dk, dv = _dkdv_blocks(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qm, stride_qd,
                              stride_dom, stride_dod, cols, offs_d, lo, full, seq_q, head_dim, diag, qk_scale,
                              BLOCK_M, True, PAD_D, UPCAST)
        dk, dv = _dkdv_blocks(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qm, stride_qd,
                              stride_dom, stride_dod, cols, offs_d, full, seq_q, seq_q, head_dim, diag, qk_scale,
                              BLOCK_M, False, PAD_D, UPCAST)
    dk = dk * sm_scale
    tl.store(DK + b * stride_dkb + kvh * stride_dkh + cols[:, None] * stride_dkn + offs_d[None, :] * stride_dkd,
             dk.to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + b * stride_dvb + kvh * stride_dvh + cols[:, None] * stride_dvn + offs_d[None, :] * stride_dvd,
             dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _dq_blocks(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
               rows, offs_d, lo, hi, seq_k, head_dim, diag, qk_scale,
               BLOCK_N: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr, PAD_D: tl.constexpr,
               UPCAST: tl.constexpr):
    """dQ += dS K over key blocks [lo, hi); MASK applies the key-end and causal masks."""
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n0
        k_ptrs = k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd
        v_ptrs = v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd
        if MASK:
            kv_mask = (cols[:, None] < seq_k) & (offs_d[None, :] < head_dim)
            k = tl.load(k_ptrs, mask=kv_mask, other=0.0)
            v = tl.load(v_ptrs, mask=kv_mask, other=0.0)
        elif PAD_D:
            k = tl.load(k_ptrs, mask=offs_d[None, :] < head_dim, other=0.0)
            v = tl.load(v_ptrs, mask=offs_d[None, :] < head_dim, other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        if UPCAST:
            qk = tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)))
            dp = tl.dot(do.to(tl.float32), tl.trans(v.to(tl.float32)))
        else:
            qk = tl.dot(q, tl.trans(k))
            dp = tl.dot(do, tl.trans(v))
        p = tl.math.exp2(qk * qk_scale - lse[:, None])
        if MASK:
            visible = cols[None, :] < seq_k
            if CAUSAL:
                visible = visible & (cols[None, :] <= rows[:, None] + diag)
            p = tl.where(visible, p, 0.0)
        ds = (p * (dp - delta[:, None])).to(k.dtype)
        if UPCAST:
            dq = tl.dot(ds.to(tl.float32), k.to(tl.float32), dq)
        else:
            dq = tl.dot(ds, k, dq)
    return dq


@triton.jit
def _attn_bwd_dq(Q, K, V, DO, DQ, LSE, DELTA,
                 stride_qb, stride_qh, stride_qm, stride_qd,
                 stride_kb, stride_kh, stride_kn, stride_kd,
                 stride_vb, stride_vh, stride_vn, stride_vd,
                 stride_dob, stride_doh, stride_dom, stride_dod,
                 stride_dqb, stride_dqh, stride_dqm, stride_dqd,
                 heads, group, seq_q, seq_k, head_dim, sm_scale, qk_scale,
                 CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                 PAD_D: tl.constexpr, UPCAST: tl.constexpr):
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b, h, kvh = _heads(bh, heads, group)
    rows = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (rows[:, None] < seq_q) & (offs_d[None, :] < head_dim)
    q = tl.load(Q + b * stride_qb + h * stride_qh + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=mask, other=0.0)
    do = tl.load(DO + b * stride_dob + h * stride_doh + rows[:, None] * stride_dom + offs_d[None, :] * stride_dod,
                 mask=mask, other=0.0)
    lse = tl.load(LSE + bh.to(tl.int64) * seq_q + rows, mask=rows < seq_q, other=float("inf"))
    delta = tl.load(DELTA + bh.to(tl.int64) * seq_q + rows, mask=rows < seq_q, other=0.0)
    k_base = K + b * stride_kb + kvh * stride_kh
    v_base = V + b * stride_vb + kvh * stride_vh
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    diag = seq_k - seq_q
    full, hi = _key_range(start_m, seq_q, seq_k, CAUSAL, BLOCK_M, BLOCK_N)
    dq = _dq_blocks(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                    rows, offs_d, 0, full, seq_k, head_dim, diag, qk_scale, BLOCK_N, False, CAUSAL, PAD_D, UPCAST)
    dq = _dq_blocks(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                    rows, offs_d, full, hi, seq_k, head_dim, diag, qk_scale, BLOCK_N, True, CAUSAL, PAD_D, UPCAST)
    dq = dq * sm_scale
    tl.store(DQ + b * stride_dqb + h * stride_dqh + rows[:, None] * stride_dqm + offs_d[None, :] * stride_dqd,
             dq.to(DQ.dtype.element_ty), mask=mask)
