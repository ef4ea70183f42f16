"""The GEMM problem: its sweeps (square, Llama-3 projections, MAMF), inputs, work, references and the
error bounds a result is checked against. The implementations that compute it are gemm.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from parity.harness.core import capability
from parity.harness.core.model import Check, UsageError, Work
from parity.kernels.gemm import quant
# The name, dtypes, memory bound and --shape check are light metadata, read before torch is imported.
from parity.suites._meta.gemm import DTYPES, MEMORY_FRACTION, NAME, check_shapes  # noqa: F401
from parity.suites._meta.gemm import memory_problem as _memory_problem  # noqa: F401


SEED = 20261121


HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


OP_OF = {"bf16": "gemm", "fp16": "gemm", "fp8": "gemm_fp8", "mxfp4": "gemm_mxfp4"}


LAYOUTS = ("NN", "NT", "TN")


WEIGHT_LAYOUT = "NT"


FP8_SCALINGS = ("tensor", "row")


# FP8 accumulation, in like-for-like pairs: "fast" (Hopper's tensor cores sum the whole K loop in
# their reduced-precision accumulator; torch: `_scaled_mm(use_fast_accum=True)`) and "accurate"
# (each K block's sum promoted to fp32; torch: `use_fast_accum=False`). Each record's params say
# which (`accum`); torch's records also name the flag (`use_fast_accum` in the details).
FP8_ACCUMS = ("fast", "accurate")


MAMF_FP8_ACCUM = "accurate"  # mamf-finder calls _scaled_mm with its default, use_fast_accum=False


MX_SCALING = "block32"


# Square sweeps: 256 to 16384 (full), three sizes (quick). Without a GPU the Triton interpreter
# runs a 256^3 GEMM in about 0.2 s, a 512^3 one in about 1 s: the CPU presets stop at 256 (quick)
# and 512 (full) so `parity run` finishes the suite in well under a minute.
SQUARE_QUICK = (1024, 4096, 8192)


SQUARE_FULL = (256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384)


CPU_SQUARE_QUICK = (128, 256)


CPU_SQUARE_FULL = (128, 192, 256, 384, 512)


SMOKE_SHAPES = ((17, 33, 65), (1, 48, 96))  # odd (no dimension a multiple of a block) and M = 1


# Llama 3: "The Llama 3 Herd of Models" (arXiv 2407.21783), Table 3, and the published
# config.json of meta-llama/Meta-Llama-3-8B, Meta-Llama-3-70B and Llama-3.1-405B:
# model dimension, FFN dimension, attention heads, key/value heads (head dimension 128 in all).
LLAMA3 = {
    "llama3-8b": (4096, 14336, 32, 8),
    "llama3-70b": (8192, 28672, 64, 8),
    "llama3-405b": (16384, 53248, 128, 8),
}


LLAMA_TOKENS = tuple(4**i for i in range(8))  # 1 ... 16384


LLAMA_TOKENS_FULL = tuple(2**i for i in range(15))  # 1 ... 16384


CPU_LLAMA = (("llama3-8b",), (1, 16))  # the interpreter cannot carry 405B's 1.7e9-element weights


# mamf-finder (stas00/ml-engineering, compute/accelerator/benchmarks/mamf-finder.py) times a grid of
# shapes briefly and reports the best; we then re-time the best shape per implementation and dtype
# at length (its 50 warm-ups and 100 iterations become a 2 s warm-up and at least 100 samples), so
# the reported maximum is not merely the luckiest of many short measurements. The grid mixes the
# best shapes published for H100, H200, B200 and MI300X (M from 1024, K up to 13312, reference/
# gemm.md 2.1); a user can search their own grid with --shape.
MAMF_M = (1024, 2048, 4096, 8192, 16384)


MAMF_N = (4096, 8192, 16384)


MAMF_K = (4096, 8192, 13312)


CPU_MAMF = ((64, 128), (64, 128), (64, 96))


MAMF_RETIME_POLICY = {"warmup_ms": 2000.0, "min_samples": 100, "time_cap_s": 15.0}


# Validation (see _tolerance).
LAMBDA = 10.0


U32 = 2.0**-24  # unit roundoff of fp32


HOPPER_FP8_U = 2.0**-13  # about 14 bits kept in FP8 tensor-core sums (DeepSeek-V3, arXiv 2412.19437, 3.3.2)


FP8_MMA_K = 32  # products per FP8 tensor-core instruction on Hopper (wgmma k32)


FP8_PROMOTION_K = 128  # products summed before promotion to fp32: BLOCK_K <= 128 (Triton), 4 MMAs (CUTLASS)


CHECK_CHUNK_ELEMENTS = 1 << 26  # the check runs over row blocks to bound its memory


def llama_projections(model: str) -> list[tuple[str, int, int]]:
    """(projection, N, K) of one transformer layer: fused QKV, attention output, fused MLP
    up/gate (as serving stacks fuse them), MLP down. M is the number of tokens."""
    hidden, ffn, heads, kv_heads = LLAMA3[model]
    head_dim = hidden // heads
    return [("qkv", (heads + 2 * kv_heads) * head_dim, hidden),
            ("attn_out", hidden, heads * head_dim),
            ("mlp_up_gate", 2 * ffn, hidden),
            ("mlp_down", hidden, ffn)]


def _llama_shapes(models, tokens) -> list[tuple[tuple[int, int, int], dict[str, Any]]]:
    return [((m, n, k), {"model": model, "proj": proj})
            for model in models for proj, n, k in llama_projections(model) for m in tokens]


def _shapes(preset: str, device, shapes) -> list[tuple[tuple[int, int, int], dict[str, Any]]]:
    """The (M, N, K) of a preset on this device, each with its tags."""
    tags = {"mamf": "search"} if preset == "mamf" else {}
    if shapes:
        return [(tuple(s), dict(tags)) for s in shapes]
    cpu = device.interpreter
    if preset == "smoke":
        return [(s, {}) for s in SMOKE_SHAPES]
    if preset == "quick":
        return [((s, s, s), {}) for s in (CPU_SQUARE_QUICK if cpu else SQUARE_QUICK)]
    if preset == "llama":
        return _llama_shapes(*CPU_LLAMA) if cpu else _llama_shapes(LLAMA3, LLAMA_TOKENS)
    if preset == "full":
        square = [((s, s, s), {}) for s in (CPU_SQUARE_FULL if cpu else SQUARE_FULL)]
        return square + (_llama_shapes(*CPU_LLAMA) if cpu else _llama_shapes(LLAMA3, LLAMA_TOKENS_FULL))
    if preset == "mamf":
        ms, ns, ks = CPU_MAMF if cpu else (MAMF_M, MAMF_N, MAMF_K)
        return [((m, n, k), dict(tags)) for m in ms for n in ns for k in ks]
    raise UsageError(f"suite {NAME} has no preset {preset!r}")


def _variants(preset: str, dtype: str, tags: Mapping[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(layout, scaling, accum): every layout for BF16 (FP16 in `full`) on square and user shapes,
    the weight layout for model shapes and elsewhere; FP8 tensor-wise and row-wise, each with fast
    and accurate accumulation (mamf: tensor-wise and accurate, as mamf-finder)."""
    if dtype in HALF:
        every = preset in ("smoke", "quick", "full") if dtype == "bf16" else preset == "full"
        every = every and "model" not in tags
        return [(layout, None, None) for layout in (LAYOUTS if every else (WEIGHT_LAYOUT,))]
    if dtype == "fp8":
        if preset == "mamf":
            return [(WEIGHT_LAYOUT, "tensor", MAMF_FP8_ACCUM)]
        return [(WEIGHT_LAYOUT, s, accum) for s in FP8_SCALINGS for accum in FP8_ACCUMS]
    return [(WEIGHT_LAYOUT, MX_SCALING, None)]


def fp8_dtype_name(device) -> str | None:
    """The torch FP8 (e4m3) dtype of this device's architecture, None where it has no FP8."""
    cap = capability.resolve(device, "fp8", "torch")
    return capability.FP8_TORCH_NAMES[cap.fp8_format]["e4m3"] if cap.runnable else None


def params_for(preset: str, device, dtypes, sizes, shapes=None) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for dtype in dtypes:
        if preset == "mamf" and dtype == "mxfp4" and not capability.fp4_hardware(device.backend, device.arch):
            continue  # an emulated format has no maximum of its own to find
        for (m, n, k), tags in _shapes(preset, device, shapes):
            for layout, scaling, accum in _variants(preset, dtype, tags):
                params: dict[str, Any] = {"m": m, "n": n, "k": k, "dtype": dtype, "layout": layout}
                if scaling:
                    params["scaling"] = scaling
                if accum:
                    params["accum"] = accum
                if dtype == "fp8":
                    params["fp8_dtype"] = fp8_dtype_name(device)
                out.append((OP_OF[dtype], {**params, **tags}))
    return out


def _kp(k: int) -> int:
    return -(-k // quant.MX_BLOCK) * quant.MX_BLOCK


def work(params: Mapping[str, Any]) -> Work:
    m, n, k, dtype = params["m"], params["n"], params["k"], params["dtype"]
    flops = 2 * m * n * k
    if dtype in HALF:
        return Work(flops, 2 * (m * k + k * n), 2 * m * n, dtype)
    if dtype == "fp8":
        scales = 2 if params["scaling"] == "tensor" else m + n
        return Work(flops, m * k + k * n + 4 * scales, 2 * m * n, "fp8")
    kp = _kp(k)
    return Work(flops, (m + n) * kp // 2 + (m + n) * kp // quant.MX_BLOCK, 2 * m * n, "mxfp4")


def _torch_device(device) -> str:
    return "cpu" if device.backend == "cpu" else f"cuda:{device.index}"


def _random(params, device):
    """fp32 A (M, K), W (N, K) = B^T and an output prefilled with random values (so a kernel that
    writes nothing fails), all random normal from one seeded generator."""
    dev = _torch_device(device)
    gen = torch.Generator(device=dev).manual_seed(SEED)
    m, n, k = params["m"], params["n"], params["k"]
    a = torch.randn(m, k, generator=gen, device=dev)
    w = torch.randn(n, k, generator=gen, device=dev)
    out_dtype = HALF.get(params["dtype"], torch.bfloat16)
    return a, w, torch.randn(m, n, generator=gen, device=dev).to(out_dtype)


def _half_inputs(params, device):
    a32, w32, out = _random(params, device)
    dt, layout = HALF[params["dtype"]], params["layout"]
    a = a32.to(dt) if layout[0] == "N" else a32.t().contiguous().to(dt).t()
    b = w32.t().contiguous().to(dt) if layout[1] == "N" else w32.to(dt).t()
    return {"a": a, "b": b, "out": out}


def _fp8_inputs(params, device):
    if params.get("fp8_dtype") is None:
        raise ValueError(f"{device.arch} has no FP8 dtype")
    a32, w32, out = _random(params, device)
    fp8 = getattr(torch, params["fp8_dtype"])
    qa, sa = quant.quantize_fp8(a32, fp8, params["scaling"])
    qw, sw = quant.quantize_fp8(w32, fp8, params["scaling"])
    sb = sw.reshape(1, -1) if params["scaling"] == "row" else sw
    return {"a": qa, "b": qw.t(), "scale_a": sa, "scale_b": sb, "out": out}


def _mxfp4_inputs(params, device):
    a32, w32, out = _random(params, device)
    pa, sa = quant.quantize_mxfp4(a32)
    pw, sw = quant.quantize_mxfp4(w32)
    return {"a": pa, "a_scales": sa, "w": pw, "w_scales": sw, "out": out}


@dataclass(frozen=True)
class Expected:
    """The fp32 product of the dequantized inputs, and the 2-norms of A's rows and B's columns
    that bound each element's rounding error (Cauchy-Schwarz: sum_k |a_ik b_kj| <= |a_i| |b_j|)."""

    c: torch.Tensor
    a_norms: torch.Tensor
    b_norms: torch.Tensor


def _expected(a: torch.Tensor, b: torch.Tensor) -> Expected:
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # fp32, never TF32, whatever the user set
    try:
        c = a @ b
    finally:
        torch.set_float32_matmul_precision(before)
    return Expected(c, a.norm(dim=1), b.norm(dim=0))


def _half_reference(inputs, params) -> Expected:
    return _expected(inputs["a"].float(), inputs["b"].float())


def _fp8_reference(inputs, params) -> Expected:
    return _expected(quant.dequantize_fp8(inputs["a"], inputs["scale_a"]),
                     quant.dequantize_fp8(inputs["b"], inputs["scale_b"]))


def _mxfp4_reference(inputs, params) -> Expected:
    return _expected(quant.dequantize_mxfp4(inputs["a"], inputs["a_scales"]),
                     quant.dequantize_mxfp4(inputs["w"], inputs["w_scales"]).t())


def _reduced_precision_fp8(output: torch.Tensor) -> bool:
    """Ada and Hopper FP8 tensor cores sum with about 14 bits (DeepSeek-V3, section 3.3.2)."""
    return (output.is_cuda and not torch.version.hip
            and torch.cuda.get_device_capability(output.device) in ((8, 9), (9, 0)))


def _tolerance(params: Mapping[str, Any], output: torch.Tensor) -> dict[str, float]:
    """Per element |c_out - c_ref| <= acc * |a_i| |b_j| + out * |c_ref|, from an error bound:

    - fp32 accumulation over K, in the kernel and in the reference: Higham and Mary's probabilistic
      bound ("A New Approach to Probabilistic Rounding Error Analysis", SIAM J. Sci. Comput. 41(5),
      2019, Thm 2.4): a sum of K products errs by at most lambda*sqrt(K)*u*sum|a_ik b_kj| except with
      probability below 2K*exp(-lambda^2/2); lambda = 10 makes that under 1e-17 per element. The
      worst-case bound K*u would accept errors of 10 % of |c| at K = 16384.
    - FP8 on Ada/Hopper tensor cores: each instruction of 32 products adds to its accumulator with
      about 14 bits (u = 2^-13, DeepSeek-V3, arXiv 2412.19437, section 3.3.2), twice per instruction
      (aligning the products, adding them), over at most 128 products before the sum is promoted
      to fp32 (the accurate mode: our Triton kernels and `_scaled_mm(use_fast_accum=False)`): a
      worst-case 2 * (128 / 32) * 2^-13 of sum|a_ik b_kj| on top; in the fast mode nothing is
      promoted, so over all K products: 2 * (K / 32) * 2^-13.
    - the output's rounding: eps(out) * |c| (eps, not eps/2, so truncating conversions are
      covered), plus 4 fp32 roundings for FP8's scale multiplications.
    """
    k = params["k"]
    acc = 2 * LAMBDA * math.sqrt(k) * U32
    out_rtol = torch.finfo(output.dtype).eps
    if params["dtype"] == "fp8":
        out_rtol += 4 * U32
        if _reduced_precision_fp8(output):
            summed = k if params.get("accum") == "fast" else min(k, FP8_PROMOTION_K)
            acc += 2 * (summed / FP8_MMA_K) * HOPPER_FP8_U
    return {"lambda": LAMBDA, "acc_rtol_of_norms": acc, "out_rtol": out_rtol}


def check(output: torch.Tensor, expected: Expected, inputs, params) -> Check:
    tol = _tolerance(params, output)
    m, n = params["m"], params["n"]
    if tuple(output.shape) != (m, n):
        return Check(False, math.inf, tol, f"output is {tuple(output.shape)}, expected ({m}, {n})")
    worst, bad = 0.0, 0
    rows = max(1, CHECK_CHUNK_ELEMENTS // max(n, 1))
    for r in range(0, m, rows):
        c = expected.c[r:r + rows]
        err = (output[r:r + rows].float() - c).abs()
        bound = tol["acc_rtol_of_norms"] * expected.a_norms[r:r + rows, None] * expected.b_norms[None, :] \
            + tol["out_rtol"] * c.abs()
        bad += int((~(err <= bound)).sum())  # a NaN is never within tolerance
        top = float(err.max())
        worst = top if math.isnan(top) or top > worst else worst
    return Check(passed=bad == 0, max_abs_error=worst, tolerance=tol,
                 error=None if bad == 0 else f"{bad} of {m * n} elements outside tolerance "
                                             f"(max abs error {worst:.3g})")
