"""The attention suite: a Triton flash attention against PyTorch's SDPA backends and FlexAttention.

Ops:
- `prefill`: q (batch, heads, seq_q, head_dim) against k, v (batch, kv_heads, seq_k, head_dim),
  forward or backward, compute-bound, rated in TFLOPS with a cold cache.
- `decode`: a few query tokens against a long KV cache, memory-bound, rated in GB/s.

Work (reference: stream-and-attention.md, B.1). `Work.flops` is the exact, mask-aware count of the
two matmuls' FLOPs: 2·D per (query, key) pair per matmul over the pairs the mask leaves visible,
times the query heads (GQA: FLOPs follow the query heads, bytes the KV heads). The forward has two
matmuls (QK^T, PV): 4·D per pair. The backward counts five (QK^T recomputed, dV, dP, dQ, dK):
10·D per pair, 2.5x the forward, as FlashAttention and Triton count it ("2.0 bwd + 0.5
recompute"); an implementation that keeps P from the forward (SDPA math) does four of them, so its
rate is the FA-comparable one, not its hardware's. Beside it, `Work.flops_fa` is FlashAttention's
convention, 4·B·H·Sq·Sk·D, halved if causal, 2.5x for the backward, so published tables compare.
The causal mask is bottom-right aligned (FlashAttention's, a KV cache's): query i sees key j iff
j <= i + seq_k - seq_q; with seq_q == seq_k it is SDPA's is_causal too.

Bytes are the compulsory traffic: forward reads Q, K, V and writes O; backward reads Q, K, V, O, dO
and writes dQ, dK, dV (the saved log-sum-exp, 4 bytes a row, is left out: SDPA math saves P
instead). For decode this is tritonbench's count (Q + K cache + V cache read) plus O written.

One timed call: the forward, or the backward alone given a saved forward (FlashAttention's
benchmarks time `y.backward(grad, retain_graph=True)`): Triton's three backward kernels; SDPA's and
Flex's autograd backward through `torch.autograd.grad(..., retain_graph=True)`. Every call
allocates its outputs (PyTorch's caching allocator: no device allocation after the first).

Validation compares with fp32 attention written out (`kernels/attention/reference.py`), per
element, against a bound on the rounding a correct kernel does (see `_check`).

The problem itself (sweeps, inputs, work, reference, checks) is _attention_op.py.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

import torch

from parity.harness.core import capability
from parity.harness.core.model import Impl, Op
from parity.kernels.attention import tiles, torch_attention, triton_attention, triton_attention_tma, triton_decode
from parity.suites._meta.attention import META  # presets, dtypes, implementation names
from parity.suites._attention_op import (
    MATH_MAX_SCORES,
    TORCH_DTYPES,
    _check,
    _reference,
    _torch_device,
    inputs,
    params_for,
    work,
)


def _fp8_capability(device, backend: str):
    return capability.resolve(device, "fp8", backend)


def _triton_supports(device, p) -> str | None:
    if p["dtype"] == "fp8":
        if p["direction"] == "bwd":
            return "the FP8 path is forward-only"
        cap = _fp8_capability(device, "triton")
        if not cap.runnable:
            return cap.reason
    if p["head_dim"] > tiles.MAX_HEAD_DIM:
        return f"head_dim {p['head_dim']} > {tiles.MAX_HEAD_DIM}"
    return None


def _triton_path(device, p) -> str:
    return _fp8_capability(device, "triton").path if p["dtype"] == "fp8" else "native"


def _triton_prefill(x, p):
    q, k, v, causal = x["q"], x["k"], x["v"], p["causal"]
    if p["direction"] == "fwd":
        return lambda: triton_attention.forward(q, k, v, causal, descale=x.get("descale"))[0]
    o, lse = triton_attention.forward(q, k, v, causal)  # the saved forward, outside the timed call
    do = x["do"]
    return lambda: triton_attention.backward(do, q, k, v, o, lse, causal)


def _triton_decode(x, p):
    q, k, v, causal = x["q"], x["k"], x["v"], p["causal"]
    return lambda: triton_decode.decode(q, k, v, causal)


def _triton_details(device, p) -> dict[str, Any]:
    if device.interpreter:
        return {"config": str(triton_attention.INTERPRETER_CONFIG)}
    d = p["head_dim"]
    if p["direction"] == "bwd":
        return {"config_dkdv": triton_attention.best_config("dkdv", d), "config_dq": triton_attention.best_config("dq", d)}
    return {"config": triton_attention.best_config("fwd", d)}


def _tma_supports(device, p) -> str | None:
    if p["direction"] != "fwd":
        return "triton-tma is a forward kernel; the backward is the triton row's"
    reason = triton_attention_tma.unavailable()
    if reason:
        return reason
    if p["dtype"] not in TORCH_DTYPES:
        return f"triton-tma takes bf16 and fp16, not {p['dtype']} (FP8 runs in the triton row)"
    if p["head_dim"] > tiles.MAX_HEAD_DIM:
        return f"head_dim {p['head_dim']} > {tiles.MAX_HEAD_DIM}"
    if p["head_dim"] * 2 % triton_attention_tma.TMA_ALIGN_BYTES:
        return (f"a head_dim of {p['head_dim']} makes rows of {p['head_dim'] * 2} bytes; TMA needs "
                f"{triton_attention_tma.TMA_ALIGN_BYTES}-byte aligned strides")
    return None


def _triton_tma_prefill(x, p):
    q, k, v, causal = x["q"], x["k"], x["v"], p["causal"]
    return lambda: triton_attention_tma.forward(q, k, v, causal)[0]


def _triton_tma_details(device, p) -> dict[str, Any]:
    if device.interpreter:
        return {"config": str(triton_attention_tma.INTERPRETER_CONFIG), "tensor_descriptors": "interpreter"}
    hopper_up = device.backend == "cuda" and torch.cuda.get_device_capability(_torch_device(device))[0] >= 9
    return {"config": triton_attention_tma.best_config(p["head_dim"]),
            "tensor_descriptors": "TMA" if hopper_up else "lowered to loads",
            "warp_specialize": triton_attention_tma.warp_specialize(
                _torch_device(device), tiles._block_d(p["head_dim"])),
            "causal_order": "heaviest tile first" if p["causal"] else "row order"}


def _triton_decode_details(device, p) -> dict[str, Any]:
    config = triton_decode.INTERPRETER_CONFIG if device.interpreter else triton_decode.best_config(p["head_dim"])
    return {"config": str(config),
            "split_len": triton_decode.split_length(p["batch"], p["kv_heads"], p["seq_k"],
                                                     torch.device(_torch_device(device)))}


def _torch_supports(device, p, backend: str) -> str | None:
    """Reasons any torch path cannot run a case, before asking PyTorch itself."""
    if p["dtype"] == "fp8":
        return f"{backend} takes no FP8 inputs in torch {torch.__version__}"
    if p["heads"] != p["kv_heads"] and not torch_attention.has_gqa():
        return f"GQA needs enable_gqa= (torch 2.5+); this is torch {torch.__version__}"
    return None


def _torch_path(backend: str):
    """`unsupported` where the torch path has no kernel for the format or device at all (FP8 inputs;
    a backend the CPU build lacks; FlexAttention's CPU backward), else `native`. Narrower reasons
    to skip one case (memory, alignment, PyTorch's eligibility check) leave the path native."""
    def path(device, p) -> str:
        if p["dtype"] == "fp8":
            return "unsupported"
        if device.backend == "cpu":
            if backend == "flex":
                return "unsupported" if p["direction"] == "bwd" or not torch_attention.has_flex() else "native"
            if torch_attention.sdpa_op(backend, "cpu") is None:
                return "unsupported"
        return "native"

    return path


def _sdpa_supports(backend: str):
    def supports(device, p) -> str | None:
        reason = _torch_supports(device, p, f"SDPA {backend}")
        if reason:
            return reason
        if p["causal"] and p["seq_q"] != p["seq_k"]:
            return ("SDPA's is_causal is top-left aligned; this suite's causal mask is bottom-right "
                    "(they agree only when seq_q == seq_k)")
        if device.backend == "cpu" and torch_attention.sdpa_op(backend, "cpu") is None:
            return (f"PyTorch's CPU build has no {backend} SDPA kernel (it has math and flash, "
                    "the latter aten::_scaled_dot_product_flash_attention_for_cpu)")
        if backend == "math":
            scores = p["batch"] * p["heads"] * p["seq_q"] * p["seq_k"]
            if scores > MATH_MAX_SCORES:
                return (f"SDPA math materializes {scores:,} scores ({scores * 4 / 2**30:.0f} GiB in fp32, "
                        f"more for the backward); run only up to {MATH_MAX_SCORES:,}")
            return None
        if device.is_gpu:
            return _ask_torch(backend, device, p)
        return None

    return supports


def _ask_torch(backend: str, device, p) -> str | None:
    """PyTorch's own eligibility check, on empty tensors of the case's shapes."""
    where, dtype = _torch_device(device), TORCH_DTYPES[p["dtype"]]
    grad = p["direction"] == "bwd"
    q = torch.empty((p["batch"], p["heads"], p["seq_q"], p["head_dim"]), dtype=dtype, device=where,
                    requires_grad=grad)
    k, v = (torch.empty((p["batch"], p["kv_heads"], p["seq_k"], p["head_dim"]), dtype=dtype, device=where,
                        requires_grad=grad) for _ in range(2))
    return torch_attention.sdpa_problem(backend, q, k, v, p["causal"])


def _autograd_backward(fn, x):
    """The backward alone: a forward with grad enabled (untimed), then autograd.grad as the thunk."""
    q, k, v = (x[n].detach().requires_grad_(True) for n in ("q", "k", "v"))
    out = fn(q, k, v)
    do = x["do"]
    return lambda: torch.autograd.grad(out, (q, k, v), do, retain_graph=True)


def _sdpa_prepare(backend: str):
    def prepare(x, p):
        fn = lambda q, k, v: torch_attention.sdpa(q, k, v, p["causal"], backend)  # noqa: E731
        if p["direction"] == "bwd":
            return _autograd_backward(fn, x)
        q, k, v = x["q"], x["k"], x["v"]
        return lambda: fn(q, k, v)

    return prepare


def _sdpa_details(backend: str):
    def details(device, p) -> dict[str, Any]:
        out = {"sdpa_backend": torch_attention.SDPA_BACKENDS[backend],
               "aten_op": torch_attention.sdpa_op(backend, "cpu" if device.backend == "cpu" else "cuda")}
        library = getattr(torch.backends.cuda, "preferred_rocm_fa_library", None)
        if device.backend == "rocm" and backend in ("flash", "efficient") and library is not None:
            out["rocm_fa_library"] = str(library())  # AOTriton or CK
        return out

    return details


def _flex_supports(device, p) -> str | None:
    if not torch_attention.has_flex():
        return f"torch {torch.__version__} has no FlexAttention (2.5+)"
    reason = _torch_supports(device, p, "FlexAttention")
    if reason:
        return reason
    if device.backend == "cpu" and p["direction"] == "bwd":
        return f"FlexAttention has no backward on the CPU (torch {torch.__version__})"
    if device.backend == "cpu" and not any(shutil.which(c) for c in (os.environ.get("CXX") or "g++", "c++", "clang++")):
        return "compiled FlexAttention on the CPU needs a C++ compiler (inductor's CPU backend); none is on PATH"
    return None


def _flex_prepare(x, p):
    mask = torch_attention.flex_block_mask(p["seq_q"], p["seq_k"], p["causal"], x["q"].device)
    fn = lambda q, k, v: torch_attention.flex(q, k, v, block_mask=mask)  # noqa: E731
    if p["direction"] == "bwd":
        return _autograd_backward(fn, x)
    q, k, v = x["q"], x["k"], x["v"]
    return lambda: fn(q, k, v)


def _flex_details(device, p) -> dict[str, Any]:
    return {"flex": "torch.compile(flex_attention)",
            "mask": "bottom-right causal block mask" if p["causal"] else "none"}


def _impls(op: str) -> tuple[Impl, ...]:
    triton_impl = ((Impl("triton", op, "triton", _triton_prefill, _triton_supports, _triton_path,
                         details=_triton_details),
                    Impl("triton-tma", op, "triton", _triton_tma_prefill, _tma_supports, details=_triton_tma_details))
                   if op == "prefill" else
                   (Impl("triton", op, "triton", _triton_decode, _triton_supports, _triton_path,
                         details=_triton_decode_details),))
    sdpa = tuple(Impl(f"sdpa-{b}", op, "torch", _sdpa_prepare(b), _sdpa_supports(b), _torch_path(b),
                      details=_sdpa_details(b))
                 for b in torch_attention.SDPA_BACKENDS)
    return (*triton_impl, *sdpa,
            Impl("flex", op, "torch", _flex_prepare, _flex_supports, _torch_path("flex"), details=_flex_details))


SUITE = META.suite(
    description="flash attention: Triton vs SDPA backends and FlexAttention (exact mask-aware FLOPs)",
    ops=(
        Op("prefill", inputs, work, _reference, _check, description="softmax(QK^T/sqrt(D))V, fwd/bwd",
           cache="cold", metric="TFLOPS"),
        Op("decode", inputs, work, _reference, _check, description="few queries vs a KV cache",
           cache="cold", metric="GB/s"),
    ),
    impls=_impls("prefill") + _impls("decode"),
    params_for=params_for,
)
