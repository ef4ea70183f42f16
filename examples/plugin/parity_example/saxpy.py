"""The saxpy suite: out = a*x + y over a sweep of lengths, in Triton and PyTorch, fp32 and bf16.

Declares what parity needs (inputs, work, reference, check, presets) and binds the two kernels to
it; parity validates, times and normalizes it like a built-in suite. Work follows BabelStream's
bytes: x and y read once, out written once.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from parity.harness.core.model import Check, Impl, Op, Suite, UsageError, Work
from parity_example.kernels import saxpy_torch, saxpy_triton

ALPHA = 0.7
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Lengths that are not multiples of the kernel's block, so the masked last block is exercised.
PRESETS = {"smoke": (1000, 4099), "quick": (4099, 65537, 1 << 20), "full": (65537, 1 << 20, 1 << 24, 1 << 26)}


def _device(device) -> str:
    return "cpu" if device.backend == "cpu" else f"cuda:{device.index}"


def inputs(params: Mapping[str, Any], device) -> dict[str, torch.Tensor]:
    # Random normal values everywhere, the output too: a kernel that writes nothing cannot pass.
    gen = torch.Generator(device=_device(device)).manual_seed(15)
    dtype = DTYPES[params["dtype"]]
    return {k: torch.randn(params["n"], generator=gen, dtype=dtype, device=_device(device)) for k in ("x", "y", "out")}


def work(params: Mapping[str, Any]) -> Work:
    n, size = params["n"], DTYPES[params["dtype"]].itemsize
    return Work(flops=2 * n, bytes_read=2 * n * size, bytes_written=n * size, math_dtype=params["dtype"])


def reference(arrays, params):
    return ALPHA * arrays["x"].double() + arrays["y"].double()


def check(output, expected, arrays, params) -> Check:
    # One fp32 multiply-add (at most two roundings of 2^-24 relative each, counted as 4 eps32 with
    # the float64 reference's own rounding of ALPHA) and one rounding to the output dtype: per
    # element, |error| <= (eps(out) + 4 eps32) * (|a x| + |y|).
    eps_out, eps32 = torch.finfo(output.dtype).eps, torch.finfo(torch.float32).eps
    terms = (ALPHA * arrays["x"].double()).abs() + arrays["y"].double().abs()
    err = (output.double() - expected).abs()
    bad = int((~(err <= (eps_out + 4 * eps32) * terms)).sum())  # NaN is never within tolerance
    worst = float(err.max())
    return Check(passed=bad == 0, max_abs_error=worst, tolerance={"rtol_of_abs_terms": eps_out + 4 * eps32},
                 error=None if bad == 0 else f"{bad} of {err.numel()} elements outside tolerance (max {worst:.3g})")


def params_for(preset: str, device, dtypes, sizes) -> list[tuple[str, dict[str, Any]]]:
    lengths = [s // (3 * 4) for s in sizes] if sizes else PRESETS[preset]
    return [("saxpy", {"dtype": d, "n": n}) for d in dtypes for n in lengths]


def check_sizes(sizes: list[int], device) -> None:
    if min(sizes) < 3 * 4:
        raise UsageError("a saxpy working set holds three arrays: give at least 12 bytes")


def _prepare(kernel):
    def prepare(arrays, params):
        x, y, out = arrays["x"], arrays["y"], arrays["out"]
        return lambda: kernel(ALPHA, x, y, out)

    return prepare


SUITE = Suite(
    name="saxpy",
    description="out = a*x + y (an example plugin suite: Triton and PyTorch)",
    ops=(Op("saxpy", inputs, work, reference, check, description="out = a*x + y", cache="warm", metric="GB/s"),),
    impls=(Impl("triton", "saxpy", "triton", _prepare(saxpy_triton)),
           Impl("torch", "saxpy", "torch", _prepare(saxpy_torch))),
    presets=tuple(PRESETS),
    dtypes=tuple(DTYPES),
    params_for=params_for,
    check_sizes=check_sizes,
    size_help="--size sets working sets (bytes of x, y and out), e.g. 64KiB,1GiB",
)
