"""The GEMM suite: C = A @ B in BF16/FP16, FP8 (tensor-wise or row-wise scales) and MXFP4, in
Triton and PyTorch, on square sweeps, Llama-3 projection shapes and a mamf-finder-style search.

What every case gets right (reference/gemm.md, sections 0 and 8):
- Inputs are random normal (never zeros: zeros raise the clock of AMD parts by half), quantized
  with real amax-based scales in `Op.inputs`, before anything is timed; only the GEMM is timed.
- The FP8 dtype follows the architecture (`capability.resolve`): FNUZ e4m3fnuz on gfx942, OCP
  e4m3fn elsewhere; each record names the torch dtype that ran (`fp8_dtype`).
- Every record says `native`, `emulated` or `unsupported`; an emulated MXFP4 record declares the
  BF16 it really runs as its math dtype, so the report holds it to the BF16 peak, never FP4's.
- Outputs are checked against an fp32 product of the dequantized inputs with a tolerance derived
  from an error bound (`_tolerance`). Samples are cold: the LLC is flushed before each.

Work: flops = 2*M*N*K; bytes = A, B and C as stored, plus the scales. Layouts name how A and B are
stored, in row-major terms: "N" stores an operand in its math shape (A as M x K, B as K x N), "T"
stores its transpose (A as K x M, B as N x K). "NT" is nn.Linear's x @ W.t() with W of shape
(N, K), the layout `torch._scaled_mm` requires, and the one mamf-finder times.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from parity.harness.core import capability, roofline
from parity.harness.core.model import TIMING_INTERPRET, Case, Check, Impl, Op, Suite, UsageError, Work
from parity.kernels.gemm import (quant, torch_gemm, triton_fp8, triton_gemm, triton_mxfp4, triton_persistent,
                                 triton_splitk)
from parity.kernels.versions import TORCH_VERSION

NAME = "gemm"
SEED = 20261121
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
DTYPES = ("bf16", "fp16", "fp8", "mxfp4")
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
MEMORY_FRACTION = 0.8  # of device memory, for the operands, the output and the fp32 reference

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


# --- shapes and parameters -------------------------------------------------------------------


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


def _peak_bytes(m: int, n: int, k: int) -> int:
    """Device memory one case needs at most: fp32 operands while quantizing (4 B an element) and
    dequantized for the reference (4), the stored operands (up to 2); the output (2), the fp32
    reference (4) and the check's working rows."""
    return 10 * (m * k + n * k) + 8 * m * n


def check_shapes(shapes: list[tuple[int, ...]], device) -> None:
    for shape in shapes:
        text = "x".join(map(str, shape))
        if len(shape) != 3:
            raise UsageError(f"gemm shape {text} needs three dimensions: MxNxK, e.g. 4096x4096x4096")
        reason = _memory_problem(*shape, device)
        if reason:
            raise UsageError(f"gemm shape {text} {reason}")


def _memory_problem(m: int, n: int, k: int, device) -> str | None:
    need = _peak_bytes(m, n, k)
    if device.memory_bytes and need > MEMORY_FRACTION * device.memory_bytes:
        return (f"needs about {need / 2**30:.1f} GiB with its fp32 reference; {device.name} has "
                f"{device.memory_bytes / 2**30:.1f} GiB")
    return None


# --- work, inputs, reference, check --------------------------------------------------------------


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


# --- implementations -----------------------------------------------------------------------------


def _triton_range(params) -> str | None:
    m, n, k = params["m"], params["n"], params["k"]
    if max(m * k, n * k, m * n) > 2**31 - 1:
        return f"{m}x{n}x{k} has operands beyond the Triton kernels' 32-bit offsets"
    return None


def _fp8_problem(device, params, backend: str) -> str | None:
    cap = capability.resolve(device, "fp8", backend)
    if not cap.runnable:
        return cap.reason
    wanted = fp8_dtype_name(device)
    if device.is_gpu and params.get("fp8_dtype") != wanted:
        return f"{params.get('fp8_dtype')} is not the FP8 of {device.arch} ({wanted})"
    return None


def _supports(fmt: str, backend: str):
    def supports(device, params) -> str | None:
        problem = _memory_problem(params["m"], params["n"], params["k"], device)
        if problem:
            return f"{params['m']}x{params['n']}x{params['k']} {problem}"
        cap = capability.resolve(device, fmt, backend)  # e.g. MXFP4 that this Triton cannot compile here
        if not cap.runnable:
            return cap.reason
        problem = _fp8_problem(device, params, backend) if fmt == "fp8" else None
        if problem:
            return problem
        if backend == "triton":
            return _triton_range(params)
        if fmt in ("fp8", "mxfp4"):
            return _torch_scaled_problem(device, fmt, params)
        return None

    return supports


def _torch_scaled_problem(device, fmt: str, params) -> str | None:
    problem = capability.torch_scaled_mm_problem(device, fmt, params["scaling"], TORCH_VERSION,
                                                 torch.version.hip)
    if problem:
        return problem
    if fmt == "mxfp4":
        problem = torch_gemm.mx_available()
        if problem or not device.is_gpu:
            return problem
        # The MX GEMMs of cuBLAS and hipBLASLt take whole 32-wide scale blocks along K and, like
        # every _scaled_mm, N in multiples of 16: an odd smoke shape is a skip, not a failure.
        if params["k"] % 32 or params["n"] % 16:
            return f"torch's MX scaled_mm needs K % 32 == 0 and N % 16 == 0 (K={params['k']}, N={params['n']})"
        return None
    if device.is_gpu and (params["k"] % 16 or params["n"] % 16):
        return f"torch._scaled_mm needs K and N multiples of 16 (K={params['k']}, N={params['n']})"
    if not device.is_gpu:
        return _cpu_scaled_mm_problem(params["fp8_dtype"], params["scaling"])
    return None


@functools.lru_cache(maxsize=None)
def _cpu_scaled_mm_problem(fp8_dtype: str, scaling: str) -> str | None:
    """Whether this torch build's CPU `_scaled_mm` takes the format: tried once on 16x16."""
    fp8 = getattr(torch, fp8_dtype)
    a = torch.ones(16, 16).to(fp8)
    scale_a, scale_b = (torch.ones(16, 1), torch.ones(1, 16)) if scaling == "row" else (torch.ones(()),) * 2
    try:
        torch_gemm.scaled_mm(a, a.t(), scale_a, scale_b)
    except Exception as exc:  # noqa: BLE001 - any refusal is the reason to skip
        return f"torch {torch.__version__} has no CPU _scaled_mm for {fp8_dtype} {scaling}-wise ({type(exc).__name__})"
    return None


def _path(fmt: str, backend: str):
    return lambda device, params: capability.resolve(device, fmt, backend).path


def _triton_half(inputs, params):
    a, b, out = inputs["a"], inputs["b"], inputs["out"]
    return lambda: triton_gemm.matmul(a, b, out)


def _torch_half(inputs, params):
    a, b, out = inputs["a"], inputs["b"], inputs["out"]
    return lambda: torch_gemm.matmul(a, b, out)


def _accum(params) -> str:
    return params.get("accum", "accurate")  # records from before the pairs were accurate


def _triton_fp8(inputs, params):
    x, accum = inputs, _accum(params)
    return lambda: triton_fp8.scaled_matmul(x["a"], x["b"], x["scale_a"], x["scale_b"], x["out"], accum=accum)


def _torch_fp8(inputs, params):
    x, fast = inputs, _accum(params) == "fast"
    return lambda: torch_gemm.scaled_mm(x["a"], x["b"], x["scale_a"], x["scale_b"], out_dtype=torch.bfloat16,
                                        fast_accum=fast)


def _torch_fp8_details(device, params) -> dict[str, Any]:
    return {"accum": _accum(params), "use_fast_accum": _accum(params) == "fast"}


def _triton_fp8_details(device, params) -> dict[str, Any]:
    like = _like(device)
    return {"accum": _accum(params), "config": triton_fp8.best_config(like, _accum(params))}


# The persistent implementations: the TMA kernel on Hopper and Blackwell where the operands are
# 16-byte aligned, the pointer kernel elsewhere, and for M <= triton_splitk.MAX_M (decode) split-K
# with 16- and 32-row tiles. Which one ran, and why, is in the record's details.


def _like(device) -> torch.Tensor:
    return torch.empty(0, device=_torch_device(device))


def _stored(rows: int, cols: int, transposed: bool, dtype: torch.dtype) -> torch.Tensor:
    """A meta tensor with the strides an operand of the suite's layout has: (rows, cols), stored
    row-major or, when `transposed`, as its contiguous transpose."""
    strides = (1, rows) if transposed else (cols, 1)
    return torch.empty_strided((rows, cols), strides, dtype=dtype, device="meta")


def persistent_route(device, params) -> dict[str, Any]:
    """Which kernel the persistent implementation runs on this case, and why."""
    m, n, k = params["m"], params["n"], params["k"]
    if m <= triton_splitk.MAX_M:
        return {"kernel": "splitk", "why": f"M = {m} <= {triton_splitk.MAX_M}: split-K with small-M tiles",
                "split_k": triton_splitk.plan(m, n, k, device.multiprocessors if device.is_gpu
                                              else triton_persistent.INTERPRET_SMS)[0]}
    if params["dtype"] in HALF:
        dt = HALF[params["dtype"]]
    else:
        dt = getattr(torch, params.get("fp8_dtype") or "float8_e4m3fn")
    layout = params["layout"]
    a = _stored(m, k, layout[0] == "T", dt)
    b = _stored(k, n, layout[1] == "T", dt)
    out = _stored(m, n, False, HALF.get(params["dtype"], torch.bfloat16))
    where = "interpret" if device.interpreter else ("hip" if device.backend == "rocm" else "cuda")
    major = int(device.arch.removeprefix("sm_")) // 10 if where == "cuda" and device.arch.startswith("sm_") else None
    problem = triton_persistent.tma_problem(a, b, out, where, major)
    return {"kernel": "persistent-pointer" if problem else "persistent-tma", "why": problem or "TMA descriptors"}


def _persistent_half(inputs, params):
    a, b, out = inputs["a"], inputs["b"], inputs["out"]
    if params["m"] <= triton_splitk.MAX_M:
        ws = triton_splitk.workspace(params["m"], params["n"], params["k"], a)
        return lambda: triton_splitk.matmul(a, b, out, workspace=ws)
    return lambda: triton_persistent.matmul(a, b, out)


def _persistent_fp8(inputs, params):
    x, accum = inputs, _accum(params)
    if params["m"] <= triton_splitk.MAX_M:
        ws = triton_splitk.workspace(params["m"], params["n"], params["k"], x["a"])
        return lambda: triton_splitk.scaled_matmul(x["a"], x["b"], x["scale_a"], x["scale_b"], x["out"], accum=accum,
                                                   workspace=ws)
    return lambda: triton_persistent.scaled_matmul(x["a"], x["b"], x["scale_a"], x["scale_b"], x["out"], accum=accum)


def _persistent_details(device, params) -> dict[str, Any]:
    route = persistent_route(device, params)
    fp8, like = params["dtype"] == "fp8", _like(device)
    if route["kernel"] == "splitk":
        best = triton_splitk.best_config(like, fp8)
    else:
        best = triton_persistent.best_config(like, fp8, _accum(params), route["kernel"] == "persistent-tma")
    return {**route, **({"accum": _accum(params)} if fp8 else {}), "config": best}


def _triton_mxfp4(inputs, params):
    x = inputs
    return lambda: triton_mxfp4.mxfp4_matmul(x["a"], x["a_scales"], x["w"], x["w_scales"], x["out"])


def _torch_mxfp4(inputs, params):
    # cuBLAS takes swizzled scales, hipBLASLt plain ones; the swizzle is done here, not timed.
    swizzle = inputs["a"].is_cuda and not torch.version.hip
    a, sa = torch_gemm.mx_operands(inputs["a"], inputs["a_scales"], swizzle)
    w, sw = torch_gemm.mx_operands(inputs["w"], inputs["w_scales"], swizzle)
    return lambda: torch_gemm.mx_scaled_mm(a, sa, w, sw, swizzle)


# --- the mamf follow-up --------------------------------------------------------------------------


def mamf_followup(records: list[dict[str, Any]], device) -> list[Case]:
    """Re-time the best searched shape of each implementation, dtype and scaling at length.

    Best is the highest TFLOPS from the median time; interpreter times measure the interpreter,
    so those records have no best shape.
    """
    best: dict[tuple, tuple[float, dict[str, Any]]] = {}
    for rec in records:
        params = rec.get("params") or {}
        median = (rec.get("time_ms") or {}).get("median")
        if params.get("mamf") != "search" or rec.get("status") != "ok" or not median \
                or rec.get("timing") == TIMING_INTERPRET:
            continue
        _, tflops = roofline.rates(rec.get("work") or {}, median * 1e-3)
        group = (rec["op"], rec["impl"], params["dtype"], params.get("scaling"), params.get("accum"))
        if group not in best or tflops > best[group][0]:
            best[group] = (tflops, rec)
    return [Case(NAME, rec["op"], rec["impl"], {**rec["params"], "mamf": "retime"}, policy=MAMF_RETIME_POLICY)
            for _, rec in best.values()]


# --- the suite -----------------------------------------------------------------------------------

OPS = (
    Op("gemm", _half_inputs, work, _half_reference, check, "C = A B, BF16/FP16, fp32 accumulation"),
    Op("gemm_fp8", _fp8_inputs, work, _fp8_reference, check, "FP8 e4m3, tensor/row scales, BF16 out"),
    Op("gemm_mxfp4", _mxfp4_inputs, work, _mxfp4_reference, check, "MXFP4 e2m1, e8m0 per 32, BF16 out",
       emulated_math_dtype="bf16"),
)

IMPLS = (
    Impl("triton", "gemm", "triton", _triton_half, _supports("bf16", "triton"), _path("bf16", "triton")),
    Impl("torch", "gemm", "torch", _torch_half, _supports("bf16", "torch"), _path("bf16", "torch")),
    Impl("triton-persistent", "gemm", "triton", _persistent_half, _supports("bf16", "triton"), _path("bf16", "triton"),
         details=_persistent_details),
    Impl("triton", "gemm_fp8", "triton", _triton_fp8, _supports("fp8", "triton"), _path("fp8", "triton"),
         details=_triton_fp8_details),
    Impl("triton-persistent", "gemm_fp8", "triton", _persistent_fp8, _supports("fp8", "triton"),
         _path("fp8", "triton"), details=_persistent_details),
    Impl("torch", "gemm_fp8", "torch", _torch_fp8, _supports("fp8", "torch"), _path("fp8", "torch"),
         details=_torch_fp8_details),
    Impl("triton", "gemm_mxfp4", "triton", _triton_mxfp4, _supports("mxfp4", "triton"), _path("mxfp4", "triton")),
    Impl("torch", "gemm_mxfp4", "torch", _torch_mxfp4, _supports("mxfp4", "torch"), _path("mxfp4", "torch")),
)

SUITE = Suite(
    name=NAME,
    description="GEMM, flops 2MNK: BF16/FP16, FP8 (tensor/row scales), MXFP4; square, Llama-3 and mamf shapes",
    ops=OPS,
    impls=IMPLS,
    presets=("smoke", "quick", "full", "llama", "mamf"),
    dtypes=DTYPES,
    params_for=params_for,
    check_shapes=check_shapes,
    shape_help="--shape MxNxK replaces the preset's shapes, e.g. 4096x4096x4096 (repeat or comma-separate)",
    followup=mamf_followup,
)
