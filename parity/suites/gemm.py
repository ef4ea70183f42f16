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

The problem itself (sweeps, inputs, work, reference, checks) is _gemm_op.py.
"""
from __future__ import annotations

import functools
from typing import Any

import torch

from parity.harness.core import capability, roofline
from parity.harness.core.model import TIMING_INTERPRET, Case, Impl, Op
from parity.kernels.gemm import torch_gemm, triton_fp8, triton_gemm, triton_mxfp4, triton_persistent, triton_splitk
from parity.kernels.versions import TORCH_VERSION
from parity.suites._meta.gemm import META  # presets, dtypes, implementation names, --shape check
from parity.suites._gemm_op import (
    HALF,
    MAMF_RETIME_POLICY,
    NAME,
    _fp8_inputs,
    _fp8_reference,
    _half_inputs,
    _half_reference,
    _memory_problem,
    _mxfp4_inputs,
    _mxfp4_reference,
    _torch_device,
    check,
    fp8_dtype_name,
    params_for,
    work,
)


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


SUITE = META.suite(
    description="GEMM, flops 2MNK: BF16/FP16, FP8 (tensor/row scales), MXFP4; square, Llama-3 and mamf shapes",
    ops=OPS,
    impls=IMPLS,
    params_for=params_for,
    shape_help="--shape MxNxK replaces the preset's shapes, e.g. 4096x4096x4096 (repeat or comma-separate)",
    followup=mamf_followup,
)
