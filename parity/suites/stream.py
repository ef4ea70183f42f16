"""The HBM streaming suite: copy, scale, add, triad, dot, read and write, in Triton and PyTorch.

Bytes follow BabelStream (`src/benchmark.h`): all array traffic, each array read or written once
per call, write-allocate traffic not counted; rates are decimal GB/s in the report. The sweep is
over the working set (the bytes of all arrays one call touches) from 64 KiB to at least four times
the last-level cache, so the L2, Infinity Cache (MALL) and HBM plateaus show. Because the sweep is
about caches, samples are taken warm (no flush between them): with a flush every small working set
would come from HBM. Sizes four times the LLC and above cannot stay in cache, so their numbers are
the HBM ones.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from parity.harness.core.model import Check, Impl, Op, Work
from parity.kernels.stream import torch_stream, triton_stream
# The ops, dtype names, memory bound and --size check are light metadata, read before torch is imported.
from parity.suites._meta.stream import DTYPES as DTYPE_NAMES
from parity.suites._meta.stream import MEMORY_FRACTION, META, STREAM_OPS, StreamOp, check_sizes  # noqa: F401

SCALAR = 0.4  # BabelStream's scalar
DTYPES = {name: getattr(torch, attr) for name, (attr, _) in DTYPE_NAMES.items()}
MIN_WORKING_SET_BYTES = 64 << 10
INTERPRETER_QUICK_TOP_BYTES = 4 << 20  # the Triton interpreter moves a few MB/s
SMOKE_ELEMENTS = (1000, 5003)  # not multiples of any block size


def _elements(spec: StreamOp, working_set_bytes: int, dtype: str) -> int:
    return working_set_bytes // (spec.arrays * DTYPES[dtype].itemsize)


def _params(spec: StreamOp, dtype: str, n: int) -> dict[str, Any]:
    return {"dtype": dtype, "n": n, "working_set_bytes": n * spec.arrays * DTYPES[dtype].itemsize}


def sweep_bytes(preset: str, device) -> list[int]:
    """Working-set sizes: powers of 4 (quick) or 2 (full) from 64 KiB to at least 4x the LLC."""
    llc = device.llc_bytes or 0
    if preset == "quick":
        step, top = 4, max(4 * llc, 1 << 30)
        if device.interpreter:
            top = INTERPRETER_QUICK_TOP_BYTES
    else:
        step, top = 2, max(4 * llc, 4 << 30)
    sizes = [MIN_WORKING_SET_BYTES]
    while sizes[-1] < top:
        sizes.append(sizes[-1] * step)
    return sizes


def params_for(preset: str, device, dtypes, sizes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for spec in STREAM_OPS:
        for dtype in dtypes:
            if sizes:
                counts = [_elements(spec, size, dtype) for size in sizes]
            elif preset == "smoke":
                counts = list(SMOKE_ELEMENTS)
            else:
                counts = [_elements(spec, size, dtype) for size in sweep_bytes(preset, device)]
            out.extend((spec.name, _params(spec, dtype, n)) for n in counts)
    return out


def _supports(device, params: Mapping[str, Any]) -> str | None:
    need = params["working_set_bytes"]
    if device.memory_bytes and need > MEMORY_FRACTION * device.memory_bytes:
        return (f"working set {need / 2**30:.1f} GiB exceeds {MEMORY_FRACTION:.0%} of the "
                f"{device.memory_bytes / 2**30:.1f} GiB on {device.name}")
    return None


def _torch_device(device) -> str:
    return "cpu" if device.backend == "cpu" else f"cuda:{device.index}"


def _make_op(spec: StreamOp) -> Op:
    def inputs(params, device):
        # Random normal values everywhere, outputs too: a kernel that writes nothing cannot pass.
        gen = torch.Generator(device=_torch_device(device)).manual_seed(20261121)
        names = dict.fromkeys(spec.reads + spec.writes)
        return {name: torch.randn(params["n"], generator=gen, dtype=DTYPES[params["dtype"]],
                                  device=_torch_device(device)) for name in names}

    def work(params) -> Work:
        n, size = params["n"], DTYPES[params["dtype"]].itemsize
        return Work(flops=spec.flops_per_element * n, bytes_read=len(spec.reads) * n * size,
                    bytes_written=len(spec.writes) * n * size, math_dtype=params["dtype"])

    def reference(arrays, params):
        # Elementwise: fp32 arithmetic on the (exactly upcast) inputs, which is what the kernels
        # compute. Reductions: fp64, against which fp32 accumulation is judged.
        x = {k: v.double() if spec.reduces else v.float() for k, v in arrays.items() if k in spec.reads}
        return {
            "copy": lambda: x["a"],
            "scale": lambda: SCALAR * x["c"],
            "add": lambda: x["a"] + x["b"],
            "triad": lambda: x["b"] + SCALAR * x["c"],
            "dot": lambda: torch.dot(x["a"], x["b"]),
            "read": lambda: x["a"].sum(),
            "write": lambda: torch.full((params["n"],), SCALAR, dtype=torch.float32,
                                        device=arrays["a"].device),
        }[spec.name]()

    def check(output, expected, arrays, params) -> Check:
        return _check_reduction(spec, output, expected, arrays, params) if spec.reduces \
            else _check_elementwise(spec, output, expected, arrays)

    return Op(name=spec.name, inputs=inputs, work=work, reference=reference, check=check,
              description=spec.description, cache="warm", metric="GB/s")


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def _abs_terms(spec: StreamOp, arrays) -> torch.Tensor:
    """Per element, the sum of the absolute values of the addends of the op's expression."""
    x = {k: arrays[k].float().abs() for k in spec.reads}
    return {
        "copy": lambda: x["a"],
        "scale": lambda: abs(SCALAR) * x["c"],
        "add": lambda: x["a"] + x["b"],
        "triad": lambda: x["b"] + abs(SCALAR) * x["c"],
        "write": lambda: torch.full_like(arrays["a"], abs(SCALAR), dtype=torch.float32),
    }[spec.name]()


def _check_elementwise(spec, output, expected, arrays) -> Check:
    # An expression evaluated in fp32 and rounded to the output dtype, perhaps with intermediate
    # results rounded too (PyTorch rounds s*c to bf16 before the add on the CPU): each rounding
    # errs by at most eps(out) (the interpreter truncates) times a value no larger than the sum
    # of the absolute addends, so |error| <= (eps(out) + 4 eps(fp32)) * sum|addends| per element.
    rtol = _eps(output.dtype) + 4 * _eps(torch.float32)
    err = (output.float() - expected).abs()
    worst = float(err.max())
    bad = int((~(err <= rtol * _abs_terms(spec, arrays))).sum())  # a NaN is never within tolerance
    return Check(passed=bad == 0, max_abs_error=worst, tolerance={"rtol_of_abs_terms": rtol},
                 error=None if bad == 0 else f"{bad} of {err.numel()} elements outside tolerance "
                                             f"(max abs error {worst:.3g})")


def _check_reduction(spec, output, expected, arrays, params) -> Check:
    # Summation error bound (Higham, Accuracy and Stability of Numerical Algorithms, ch. 4):
    # |error| <= c * eps * sum|terms| with c the depth of the summation, ~log2(n) for the blocked
    # tree sums used here; the result's own rounding adds eps(out) * |sum|.
    terms = arrays["a"].double().abs()
    if spec.name == "dot":
        terms = terms * arrays["b"].double().abs()
    depth = math.log2(max(params["n"], 2)) + 8
    atol = depth * _eps(torch.float32) * float(terms.sum())
    rtol = _eps(output.dtype)
    err = abs(float(output) - float(expected))
    ok = err <= atol + rtol * abs(float(expected))
    return Check(passed=ok, max_abs_error=err, tolerance={"rtol": rtol, "atol": atol},
                 error=None if ok else f"sum {float(output):.6g} differs from {float(expected):.6g} "
                                       f"by {err:.3g}")


def _triton_prepare(spec: StreamOp):
    fn = getattr(triton_stream, spec.fn)

    def prepare(arrays, params):
        args = [arrays[k] for k in spec.reads + spec.writes] + ([SCALAR] if spec.scalar else [])
        if spec.reduces:
            args += list(triton_stream.reduction_buffers(arrays["a"]))
        return lambda: fn(*args)

    return prepare


def _triton_details(device, params) -> dict[str, Any]:
    """The block the launcher picks for this size on this device (the interpreter: the largest)."""
    block = triton_stream.pick_block(params["n"], device.multiprocessors if device.is_gpu else None)
    return {"block": block, "num_warps": max(1, block // triton_stream.ELEMENTS_PER_WARP)}


def _torch_prepare(spec: StreamOp):
    fn = getattr(torch_stream, spec.fn)

    def prepare(arrays, params):
        args = [arrays[k] for k in spec.reads + spec.writes] + ([SCALAR] if spec.scalar else [])
        return lambda: fn(*args)

    return prepare


SUITE = META.suite(
    description="HBM streaming (BabelStream bytes: all array traffic), working-set sweep over the caches",
    ops=tuple(_make_op(spec) for spec in STREAM_OPS),
    impls=tuple(impl for spec in STREAM_OPS for impl in (
        Impl("triton", spec.name, "triton", _triton_prepare(spec), _supports, details=_triton_details),
        Impl("torch", spec.name, "torch", _torch_prepare(spec), _supports),
    )),
    params_for=params_for,
    size_help="--size sets working sets (bytes of all arrays of one call), e.g. 64KiB,1GiB",
)
