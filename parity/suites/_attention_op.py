"""The attention problem: its sweeps (prefill, decode, GQA), inputs, work (FLOPs and bytes), reference
and the error bounds a result is checked against. The implementations that compute it are attention.py.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from parity.harness.core import capability
from parity.harness.core.model import Check, Work
from parity.kernels.attention import fp8, reference
from parity.suites._meta.attention import DTYPES  # light metadata, read before torch is imported


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
