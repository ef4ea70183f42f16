"""PyTorch attention: `scaled_dot_product_attention` with one backend forced, and FlexAttention.

`sdpa_kernel([backend])` enables that backend alone, so PyTorch either runs it or raises ("No
available kernel"); it never falls back silently (reference: stream-and-attention.md B.6). The aten
op each backend dispatches to is in `SDPA_OPS`; on the CPU build only MATH and FLASH exist, FLASH
being `_scaled_dot_product_flash_attention_for_cpu`, a blocked C++ kernel.

SDPA's `is_causal` aligns the mask top-left; it equals the bottom-right convention of the other
kernels only when seq_q == seq_k, so `sdpa` refuses a causal call with unequal lengths.
"""
from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F

from parity.kernels.versions import TORCH_VERSION

SDPA_BACKENDS = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION",
                 "math": "MATH"}
SDPA_OPS = {  # (CPU op, GPU op) each forced backend runs
    "flash": ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_flash_attention"),
    "efficient": (None, "aten::_scaled_dot_product_efficient_attention"),
    "cudnn": (None, "aten::_scaled_dot_product_cudnn_attention"),
    "math": ("aten::_scaled_dot_product_attention_math", "aten::_scaled_dot_product_attention_math"),
}
_PROBES = {"flash": "can_use_flash_attention", "efficient": "can_use_efficient_attention",
           "cudnn": "can_use_cudnn_attention"}


def has_gqa() -> bool:
    """`enable_gqa=` arrived in torch 2.5 (SDPA and FlexAttention)."""
    return TORCH_VERSION >= (2, 5)


def sdpa_op(backend: str, device_type: str) -> str | None:
    """The aten op a forced backend runs on this kind of device; None where the build has none."""
    cpu, gpu = SDPA_OPS[backend]
    return cpu if device_type == "cpu" else gpu


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, backend: str = "flash",
         scale: float | None = None) -> torch.Tensor:
    """SDPA on (batch, heads, seq, head_dim) tensors with `backend` forced; GQA when k has fewer heads."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if causal and q.shape[2] != k.shape[2]:
        raise ValueError("SDPA's is_causal is top-left aligned: with seq_q != seq_k it is not the "
                         "bottom-right causal mask of the other kernels")
    gqa = {"enable_gqa": True} if q.shape[1] != k.shape[1] else {}
    with sdpa_kernel([getattr(SDPBackend, SDPA_BACKENDS[backend])]):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, **gqa)


def sdpa_problem(backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> str | None:
    """Why PyTorch's own eligibility check refuses `backend` for these GPU tensors, or None.

    Uses torch.backends.cuda.can_use_*(params, debug=True), whose warnings carry the reasons
    (requires_grad on the inputs makes it check the backward's constraints too).
    """
    if backend == "math":
        return None
    probe = getattr(torch.backends.cuda, _PROBES[backend], None)
    if probe is None:
        return f"this torch ({torch.__version__}) has no torch.backends.cuda.{_PROBES[backend]}"
    try:
        params = torch.backends.cuda.SDPAParams(q, k, v, None, 0.0, causal, q.shape[1] != k.shape[1])
    except TypeError:  # torch < 2.5: no enable_gqa argument
        params = torch.backends.cuda.SDPAParams(q, k, v, None, 0.0, causal)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = probe(params, debug=True)
    if ok:
        return None
    said = "; ".join(dict.fromkeys(str(w.message).strip().replace("\n", " ") for w in caught))
    return f"PyTorch refuses the {backend} backend here: {said or 'no reason given'}"


# Every shape of a sweep is one compilation of flex_attention. Past dynamo's recompile limit (8 by
# default) torch.compile would silently run the unfused eager path: raise it for the sweep.
FLEX_RECOMPILE_LIMIT = 4096


@functools.cache
def _compiled_flex():
    import torch._dynamo.config as dynamo
    from torch.nn.attention.flex_attention import flex_attention

    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(dynamo, name):
            setattr(dynamo, name, max(getattr(dynamo, name), FLEX_RECOMPILE_LIMIT))
    return torch.compile(flex_attention, dynamic=False)


def has_flex() -> bool:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def flex_block_mask(seq_q: int, seq_k: int, causal: bool, device):
    """FlexAttention's block mask for the bottom-right causal mask; None (no mask) if not causal."""
    if not causal:
        return None
    from torch.nn.attention.flex_attention import create_block_mask

    offset = seq_k - seq_q

    def bottom_right(b, h, q_idx, kv_idx):
        return kv_idx <= q_idx + offset

    return create_block_mask(bottom_right, B=None, H=None, Q_LEN=seq_q, KV_LEN=seq_k, device=device)


def flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask=None, scale: float | None = None,
         compiled: bool = True) -> torch.Tensor:
    """FlexAttention, compiled by inductor (the way it is meant to run) unless `compiled` is False
    (PyTorch's unfused eager path, for checking the mask only)."""
    if compiled:
        fn = _compiled_flex()
    else:
        from torch.nn.attention.flex_attention import flex_attention as fn
    gqa = {"enable_gqa": True} if q.shape[1] != k.shape[1] else {}
    return fn(q, k, v, block_mask=block_mask, scale=scale, **gqa)
