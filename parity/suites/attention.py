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
"""
from __future__ import annotations

import math
import os
import shutil
from typing import Any, Mapping

import torch

from parity.harness.core import capability
from parity.harness.core.model import Check, Impl, Op, Suite, Work
from parity.kernels.attention import (fp8, reference, torch_attention, triton_attention, triton_attention_tma,
                                      triton_decode)

DTYPES = ("bf16", "fp16", "fp8")
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
OUT_BYTES = 2  # O is BF16/FP16, FP8's included (its output is BF16)

# Sweeps on a GPU, after FlashAttention's benchmarks: 16k tokens (batch x seq) and a model width of
# heads x head_dim = 2048, so every point does comparable work.
TOKENS = 16384
MODEL_DIM = 2048
SEQS_FULL = (512, 1024, 2048, 4096, 8192, 16384)
SEQS_QUICK = (512, 2048, 4096, 8192, 16384)
GQA_RATIOS = (1, 4, 8)
DECODE_BATCH, DECODE_HEADS = 4, 32
DECODE_SEQS_QUICK = (4096, 16384, 65536)
DECODE_SEQS_FULL = (1024, 4096, 16384, 65536, 131072)

# The Triton interpreter needs ~5 ms per 64x64 tile step, and FlexAttention compiles each shape on
# the CPU (~7 s): these caps keep the CPU's quick preset to a minute or two on two cores.
CPU_TOKENS, CPU_MODEL_DIM, CPU_HEAD_DIM = 256, 128, 64
CPU_SEQS = (64, 256)
CPU_DECODE = dict(batch=1, heads=8, kv_heads=2, seq_k=1000, head_dim=64)
SMOKE_TOKENS, SMOKE_MODEL_DIM = 128, 128
SMOKE_SEQS = (100,)  # not a multiple of any block: one whole 64-block and a partial one
SMOKE_DECODE = dict(batch=1, heads=4, kv_heads=1, seq_k=333, head_dim=64)  # two KV slices of 256

MATH_MAX_SCORES = 1 << 28  # SDPA math materializes batch x heads x seq_q x seq_k scores: 1 GiB in fp32
ROUNDING_SAFETY = 2.0  # the interpreter truncates instead of rounding: up to one unit, not half

# Unit roundoff of the formats P, dS and outputs are rounded to (half the spacing at 1.0).
UNIT_ROUNDOFF = {"bf16": 2.0 ** -8, "fp16": 2.0 ** -11, "e4m3": 2.0 ** -4}
# Half the subnormal spacing of e4m3 (OCP: 2^-9 apart; FNUZ, exponent bias 8: 2^-10 apart).
E4M3_HALF_SUBNORMAL = {"float8_e4m3fn": 2.0 ** -10, "float8_e4m3fnuz": 2.0 ** -11}


def params(batch: int, heads: int, kv_heads: int, seq_q: int, seq_k: int, head_dim: int, causal: bool,
           dtype: str, direction: str = "fwd") -> dict[str, Any]:
    """One case's parameters, under the names every attention table and plot uses."""
    return {"batch": batch, "heads": heads, "kv_heads": kv_heads, "seq_q": seq_q, "seq_k": seq_k,
            "head_dim": head_dim, "causal": causal, "dtype": dtype, "direction": direction}


# --- work -----------------------------------------------------------------------------------------


def visible_pairs(seq_q: int, seq_k: int, causal: bool) -> int:
    """(query, key) pairs the mask leaves visible, per head. Bottom-right causal: row i sees
    min(seq_k, max(0, i + seq_k - seq_q + 1)) keys; summed, seq_q·seq_k - seq_q(seq_q-1)/2 when
    seq_q <= seq_k, and seq_k(seq_k+1)/2 when seq_q > seq_k (the first seq_q - seq_k rows see none)."""
    if not causal:
        return seq_q * seq_k
    if seq_q <= seq_k:
        return seq_q * seq_k - seq_q * (seq_q - 1) // 2
    return seq_k * (seq_k + 1) // 2


def _matmuls(p: Mapping[str, Any]) -> int:
    return 2 if p["direction"] == "fwd" else 5


def exact_flops(p: Mapping[str, Any]) -> int:
    return _matmuls(p) * 2 * p["head_dim"] * p["batch"] * p["heads"] * visible_pairs(p["seq_q"], p["seq_k"], p["causal"])


def fa_flops(p: Mapping[str, Any]) -> int:
    """FlashAttention's convention: 4·B·H·Sq·Sk·D, halved if causal, 2.5x for the backward."""
    fwd = 4 * p["batch"] * p["heads"] * p["seq_q"] * p["seq_k"] * p["head_dim"]
    fwd = fwd // 2 if p["causal"] else fwd
    return fwd if p["direction"] == "fwd" else fwd * 5 // 2


def traffic_bytes(p: Mapping[str, Any]) -> tuple[int, int]:
    """(read, written): the compulsory bytes, see the module's docstring."""
    elem = 1 if p["dtype"] == "fp8" else 2
    q = p["batch"] * p["heads"] * p["seq_q"] * p["head_dim"]
    kv = p["batch"] * p["kv_heads"] * p["seq_k"] * p["head_dim"]
    if p["direction"] == "fwd":
        return (q + 2 * kv) * elem, q * OUT_BYTES
    return (3 * q + 2 * kv) * elem, (q + 2 * kv) * elem


def work(p: Mapping[str, Any]) -> Work:
    read, written = traffic_bytes(p)
    return Work(flops=exact_flops(p), bytes_read=read, bytes_written=written, math_dtype=p["dtype"],
                flops_fa=fa_flops(p))


# --- sweeps ---------------------------------------------------------------------------------------


def _prefill_cases(seqs, head_dims, ratios, causals, dtypes, directions, tokens, model_dim):
    out = []
    for head_dim in head_dims:
        heads = max(1, model_dim // head_dim)
        for seq in seqs:
            batch = max(1, tokens // seq)
            for ratio in ratios:
                if heads % ratio:
                    continue
                for causal in causals:
                    for dtype in dtypes:
                        for direction in directions:
                            if dtype == "fp8" and direction == "bwd":
                                continue  # FP8 is forward-only (issue scope; FA3 likewise)
                            out.append(("prefill", params(batch, heads, heads // ratio, seq, seq, head_dim,
                                                          causal, dtype, direction)))
    return out


def _decode_cases(seqs, ratios, dtypes, batch=DECODE_BATCH, heads=DECODE_HEADS, head_dim=128):
    return [("decode", params(batch, heads, heads // r, 1, seq, head_dim, False, d))
            for seq in seqs for r in ratios for d in dtypes if d != "fp8"]


def params_for(preset: str, device, dtypes, sizes) -> list[tuple[str, dict[str, Any]]]:
    dtypes = [d for d in DTYPES if d in dtypes]
    if preset != "full" and set(dtypes) == set(DTYPES):
        dtypes = ["bf16", "fp8"]  # smoke and quick leave FP16 to `full` unless it is asked for
    low = [d for d in dtypes if d != "fp8"]  # backward, GQA and decode points
    both, dirs = (False, True), ("fwd", "bwd")
    if preset == "smoke":
        s = SMOKE_DECODE
        return (_prefill_cases(SMOKE_SEQS, (64,), (2,), both, dtypes, dirs, SMOKE_TOKENS, SMOKE_MODEL_DIM)
                + [("decode", params(s["batch"], s["heads"], s["kv_heads"], 1, s["seq_k"], s["head_dim"], False, d))
                   for d in low])
    if device.interpreter:
        # The interpreter is for correctness: a few small shapes, GQA and decode included.
        s = CPU_DECODE
        return (_prefill_cases(CPU_SEQS, (CPU_HEAD_DIM,), (1,), both, dtypes, dirs, CPU_TOKENS, CPU_MODEL_DIM)
                + _prefill_cases(CPU_SEQS[:1], (CPU_HEAD_DIM,), (2,), (True,), low, dirs, CPU_TOKENS, CPU_MODEL_DIM)
                + [("decode", params(s["batch"], s["heads"], s["kv_heads"], 1, s["seq_k"], s["head_dim"], False, d))
                   for d in low])
    if preset == "quick":
        # The targets' region (head_dim 128, 4k-16k) in full; head_dim 64 and GQA at a few points.
        return (_prefill_cases(SEQS_QUICK, (128,), (1,), both, dtypes, dirs, TOKENS, MODEL_DIM)
                + _prefill_cases((2048, 16384), (64,), (1,), both, dtypes, dirs, TOKENS, MODEL_DIM)
                + _prefill_cases((4096,), (128,), (4, 8), both, low, dirs, TOKENS, MODEL_DIM)
                + _decode_cases(DECODE_SEQS_QUICK, GQA_RATIOS, low))
    return (_prefill_cases(SEQS_FULL, (64, 128, 256), (1,), both, dtypes, dirs, TOKENS, MODEL_DIM)
            + _prefill_cases(SEQS_FULL, (128,), (4, 8), both, dtypes, dirs, TOKENS, MODEL_DIM)
            + _decode_cases(DECODE_SEQS_FULL, GQA_RATIOS, low))


# --- inputs, reference, check ---------------------------------------------------------------------


def _torch_device(device) -> str:
    return "cpu" if device.backend == "cpu" else f"cuda:{device.index}"


def _e4m3(device) -> torch.dtype:
    return capability.torch_fp8_dtypes(device)[0]


def inputs(p: Mapping[str, Any], device) -> dict[str, Any]:
    """Random normal q, k, v (and dO for the backward): scores ~ N(0, 1) after the 1/sqrt(D) scale.
    FP8 cases quantize per tensor to the architecture's e4m3, with V's sequence dimension
    contiguous (Hopper's FP8 dot takes its second operand K-major; the tutorial does the same)."""
    where = _torch_device(device)
    gen = torch.Generator(device=where).manual_seed(20261121)
    q_shape = (p["batch"], p["heads"], p["seq_q"], p["head_dim"])
    kv_shape = (p["batch"], p["kv_heads"], p["seq_k"], p["head_dim"])
    dtype = TORCH_DTYPES.get(p["dtype"], torch.bfloat16)
    out = {name: torch.randn(shape, generator=gen, dtype=dtype, device=where)
           for name, shape in (("q", q_shape), ("k", kv_shape), ("v", kv_shape))}
    if p["dtype"] == "fp8":
        e4m3 = _e4m3(device)
        scales = []
        for name in ("q", "k", "v"):
            out[name], scale = fp8.quantize(out[name], e4m3)
            scales.append(scale)
        out["v"] = out["v"].transpose(-1, -2).contiguous().transpose(-1, -2)
        out["descale"] = tuple(scales)
    if p["direction"] == "bwd":
        out["do"] = torch.randn(q_shape, generator=gen, dtype=dtype, device=where)
    return out


def _real(x: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The values the kernels compute with: FP8 tensors dequantized."""
    if "descale" not in x:
        return x["q"], x["k"], x["v"]
    return tuple(fp8.dequantize(x[n], s) for n, s in zip(("q", "k", "v"), x["descale"]))


def _reference(x: Mapping[str, Any], p: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    q, k, v = _real(x)
    if p["direction"] == "fwd":
        return reference.forward(q, k, v, p["causal"])
    return reference.backward(q, k, v, x["do"], p["causal"])


def _within(name: str, got: torch.Tensor, want: torch.Tensor, bound: torch.Tensor):
    err = (got.float() - want).abs()
    bad = int((~(err <= bound)).sum())  # a NaN is never within its bound
    worst = float(err.max()) if err.numel() else 0.0
    return bad, worst, f"{name}: {bad} of {err.numel()} elements outside their bound (max abs error {worst:.3g})"


def _check(output, expected, x, p) -> Check:
    """Per element, |kernel - fp32 reference| <= c·bound with c = ROUNDING_SAFETY (a truncating
    interpreter errs by a whole unit) and bounds from first-order error analysis of what a
    correct kernel rounds (u the unit roundoff of the input dtype; inputs are exact in it):

    forward (BF16/FP16): P rounded before PV (u·sum p|v|), the output (u·|o|), and the scores if a
    backend scales or rounds them (p_j changes by a factor 1 ± u|s_j|, and its normalization by as
    much again: 2u·sum p|s||v|).
    forward (FP8 e4m3): P rounded to e4m3 after scaling by the format's max (2^-4·sum p|v|, plus
    half a subnormal step per key: h·sum|v|/l), the BF16 output (2^-8·|o|); q, k, v are compared as
    the dequantized values the kernel sees.
    backward: dV from rounded P (u·(P(1+|S|))^T|dO|), dQ and dK from rounded P, dS and Delta
    (u·scale·G|K| and its transpose with |Q|, G from reference.backward), and the gradient's own
    rounding (u·|grad|).
    """
    u = UNIT_ROUNDOFF.get(p["dtype"], UNIT_ROUNDOFF["bf16"])
    c = ROUNDING_SAFETY
    if p["direction"] == "fwd":
        if p["dtype"] == "fp8":
            half_subnormal = E4M3_HALF_SUBNORMAL[str(x["q"].dtype).removeprefix("torch.")]
            largest = torch.finfo(x["q"].dtype).max
            bound = c * (UNIT_ROUNDOFF["e4m3"] * expected["p_abs_v"]
                         + half_subnormal / largest * expected["abs_v_over_l"]
                         + UNIT_ROUNDOFF["bf16"] * expected["o"].abs())
            rule = "2*(2^-4*sum p|v| + h/max*sum|v|/l + 2^-8*|o|)"
        else:
            bound = c * u * (expected["o"].abs() + expected["p_abs_v"] + 2 * expected["p_abs_s_abs_v"])
            rule = "2u*(|o| + sum p|v| + 2 sum p|s||v|)"
        results = [_within("o", output, expected["o"], bound)]
    else:
        names = ("dq", "dk", "dv")
        results = [_within(n, got, expected[n], c * u * (expected[f"{n}_terms"] + expected[n].abs()))
                   for n, got in zip(names, output)]
        rule = "2u*(terms + |grad|), per gradient"
    bad = [text for count, _, text in results if count]
    return Check(passed=not bad, max_abs_error=max(worst for _, worst, _ in results),
                 tolerance={"rule": rule, "u": u, "safety": c}, error="; ".join(bad) or None)


# --- implementations ------------------------------------------------------------------------------


def _fp8_capability(device, backend: str):
    return capability.resolve(device, "fp8", backend)


def _triton_supports(device, p) -> str | None:
    if p["dtype"] == "fp8":
        if p["direction"] == "bwd":
            return "the FP8 path is forward-only"
        cap = _fp8_capability(device, "triton")
        if not cap.runnable:
            return cap.reason
    if p["head_dim"] > triton_attention.MAX_HEAD_DIM:
        return f"head_dim {p['head_dim']} > {triton_attention.MAX_HEAD_DIM}"
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
    if p["head_dim"] > triton_attention.MAX_HEAD_DIM:
        return f"head_dim {p['head_dim']} > {triton_attention.MAX_HEAD_DIM}"
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
                _torch_device(device), triton_attention._block_d(p["head_dim"])),
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


SUITE = Suite(
    name="attention",
    description="flash attention: Triton vs SDPA backends and FlexAttention (exact mask-aware FLOPs)",
    ops=(
        Op("prefill", inputs, work, _reference, _check, description="softmax(QK^T/sqrt(D))V, fwd/bwd",
           cache="cold", metric="TFLOPS"),
        Op("decode", inputs, work, _reference, _check, description="few queries vs a KV cache",
           cache="cold", metric="GB/s"),
    ),
    impls=_impls("prefill") + _impls("decode"),
    presets=("smoke", "quick", "full"),
    dtypes=DTYPES,
    params_for=params_for,
)
