"""Attention written out in fp32 (scores, masked softmax, weighted sum), the reference for every
implementation, with the magnitudes that bound a low-precision kernel's error.

The causal mask is bottom-right aligned (FlashAttention's convention; query i sees key j iff
j <= i + seq_k - seq_q); a query row that sees no key gives zeros. Work is split over chunks of query
rows so that a 16k x 16k case needs a few hundred MiB, not tens of GiB. Gradients come from fp32
autograd through the same code. Matmuls run at full fp32 precision (no TF32) whatever the caller
has set.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch

CHUNK_ELEMENTS = 1 << 25  # score elements per chunk (128 MiB in fp32; a few copies are alive at once)


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """fp32 matmuls without TF32 for the duration."""
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved)


def visible(seq_q: int, seq_k: int, rows: slice, device) -> torch.Tensor:
    """Bottom-right causal mask of query rows `rows`: (rows, seq_k) booleans."""
    i = torch.arange(seq_q, device=device)[rows, None]
    j = torch.arange(seq_k, device=device)[None, :]
    return j <= i + (seq_k - seq_q)


def _chunks(batch: int, heads: int, seq_q: int, seq_k: int) -> Iterator[slice]:
    step = max(1, CHUNK_ELEMENTS // max(1, batch * heads * seq_k))
    for start in range(0, seq_q, step):
        yield slice(start, min(start + step, seq_q))


def _expand(x: torch.Tensor, heads: int) -> torch.Tensor:
    """KV heads repeated for the query heads that share them (GQA); autograd sums them back."""
    return x.repeat_interleave(heads // x.shape[1], dim=1) if x.shape[1] != heads else x


def _masked_softmax(s: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    any_seen = seen.any(dim=-1, keepdim=True)
    filled = s.masked_fill(~seen, float("-inf")).masked_fill(~any_seen, 0.0)  # empty rows: no NaN
    return torch.softmax(filled, dim=-1) * any_seen


def _row_probabilities(q, k, causal: bool, rows: slice, seq_q: int, scale: float):
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if not causal:
        return s, torch.softmax(s, dim=-1)
    return s, _masked_softmax(s, visible(seq_q, k.shape[-2], rows, q.device))


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
            scale: float | None = None) -> dict[str, torch.Tensor]:
    """fp32 attention output `o` (inputs are upcast exactly) and, per output element, the sums an
    error bound needs: `p_abs_v` = sum_j p_j |v_j|, `p_abs_s_abs_v` = sum_j p_j |s_j| |v_j| (s the
    scaled score), and `abs_v_over_l` = sum_j |v_j| / sum_j exp(s_j - max s) over visible keys."""
    batch, heads, seq_q, head_dim = q.shape
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    keys, values = _expand(k.float(), heads), _expand(v.float(), heads)
    abs_v = values.abs()
    out = {name: torch.empty(q.shape, dtype=torch.float32, device=q.device)
           for name in ("o", "p_abs_v", "p_abs_s_abs_v", "abs_v_over_l")}
    with torch.no_grad(), full_fp32():
        for rows in _chunks(batch, heads, seq_q, k.shape[2]):
            s, p = _row_probabilities(q[:, :, rows].float(), keys, causal, rows, seq_q, scale)
            out["o"][:, :, rows] = torch.matmul(p, values)
            out["p_abs_v"][:, :, rows] = torch.matmul(p, abs_v)
            out["p_abs_s_abs_v"][:, :, rows] = torch.matmul(p * s.abs(), abs_v)
            seen = visible(seq_q, k.shape[2], rows, q.device) if causal else torch.ones_like(s, dtype=torch.bool)
            seen = seen.expand_as(s)
            peak = s.masked_fill(~seen, float("-inf")).amax(dim=-1, keepdim=True).nan_to_num(0.0, neginf=0.0)
            total = torch.exp(s - peak).masked_fill(~seen, 0.0).sum(dim=-1, keepdim=True).clamp_min(1.0)
            out["abs_v_over_l"][:, :, rows] = torch.matmul(seen.float(), abs_v) / total
    return out


def backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor, causal: bool = False,
             scale: float | None = None) -> dict[str, torch.Tensor]:
    """fp32 gradients `dq`, `dk`, `dv` of sum(o * do), by autograd, and the magnitudes bounding a
    kernel's rounding of P, dS, the scores and O (see the attention suite's check):

    `dq_terms` = scale * G |K|, `dk_terms` = scale * G^T |Q|, `dv_terms` = (P (1 + |S|))^T |dO|, with
    G = P (1 + |S|) (|dP| + sum_d |dO| (|O| + P|V|)) elementwise and dP = dO V^T.
    """
    batch, heads, seq_q, head_dim = q.shape
    kv_heads, seq_k = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    kf = k.detach().float().requires_grad_(True)
    vf = v.detach().float().requires_grad_(True)
    out = {"dq": torch.empty(q.shape, dtype=torch.float32, device=q.device),
           "dq_terms": torch.empty(q.shape, dtype=torch.float32, device=q.device)}
    dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
    dv, dk_terms, dv_terms = torch.zeros_like(dk), torch.zeros_like(dk), torch.zeros_like(dk)
    group = heads // kv_heads
    with full_fp32():
        for rows in _chunks(batch, heads, seq_q, seq_k):
            qc = q[:, :, rows].detach().float().requires_grad_(True)
            doc = do[:, :, rows].float()
            keys, values = _expand(kf, heads), _expand(vf, heads)
            s, p = _row_probabilities(qc, keys, causal, rows, seq_q, scale)
            o = torch.matmul(p, values)
            gq, gk, gv = torch.autograd.grad(o, (qc, kf, vf), doc)
            out["dq"][:, :, rows] = gq
            dk += gk
            dv += gv
            with torch.no_grad():
                s, p, o = s.detach(), p.detach(), o.detach()
                weight = p * (1.0 + s.abs())
                abs_do = doc.abs()
                delta_terms = (abs_do * (o.abs() + torch.matmul(p, values.detach().abs()))).sum(-1, keepdim=True)
                g = weight * (torch.matmul(abs_do, values.detach().transpose(-1, -2)).abs() + delta_terms)
                out["dq_terms"][:, :, rows] = scale * torch.matmul(g, keys.detach().abs())
                dk_part = scale * torch.matmul(g.transpose(-1, -2), qc.detach().abs())
                dv_part = torch.matmul(weight.transpose(-1, -2), abs_do)
                dk_terms += dk_part.view(batch, kv_heads, group, seq_k, head_dim).sum(2)
                dv_terms += dv_part.view(batch, kv_heads, group, seq_k, head_dim).sum(2)
    out.update(dk=dk, dv=dv, dk_terms=dk_terms, dv_terms=dv_terms)
    return out
