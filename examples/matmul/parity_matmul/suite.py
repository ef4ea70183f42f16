"""The `mymatmul` suite: the autotuned matmul (kernel.py) beside torch.matmul, checked against a
float64 reference on random inputs, so `parity run mymatmul` times it and `parity inspect --suite
mymatmul` compiles every config of its NVIDIA and AMD lists.

Work: 2*M*N*K flops; A and B read once, C written once. The check bounds each element's error by
K * 2 * eps(fp32) * sum_k |a_ik b_kj| (Higham's dot-product bound, fp32 accumulation) plus one
rounding to the output dtype.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from parity.harness.core.model import Check, Impl, Op, Suite, Work
from parity_matmul.kernel import matmul

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SHAPES = {"smoke": [(40, 24, 56)], "quick": [(1024, 1024, 1024), (4096, 4096, 4096)],
          "full": [(4096, 4096, 4096), (8192, 8192, 8192)]}


def inputs(params: Mapping[str, Any], device) -> dict[str, torch.Tensor]:
    dev = "cpu" if device.backend == "cpu" else f"cuda:{device.index}"
    gen = torch.Generator(device=dev).manual_seed(4)
    m, n, k, dtype = params["m"], params["n"], params["k"], DTYPES[params["dtype"]]
    return {"a": torch.randn(m, k, generator=gen, device=dev).to(dtype),
            "b": torch.randn(k, n, generator=gen, device=dev).to(dtype),
            "c": torch.randn(m, n, generator=gen, device=dev).to(dtype)}  # random: an unwritten C fails


def work(params) -> Work:
    m, n, k, size = params["m"], params["n"], params["k"], DTYPES[params["dtype"]].itemsize
    return Work(flops=2 * m * n * k, bytes_read=(m * k + k * n) * size, bytes_written=m * n * size,
                math_dtype=params["dtype"])


def reference(arrays, params):
    return arrays["a"].double() @ arrays["b"].double()


def check(output, expected, arrays, params) -> Check:
    eps32, eps_out = torch.finfo(torch.float32).eps, torch.finfo(output.dtype).eps
    terms = arrays["a"].double().abs() @ arrays["b"].double().abs()
    bound = (params["k"] * 2 * eps32 + eps_out) * terms
    err = (output.double() - expected).abs()
    bad = int((~(err <= bound)).sum())  # NaN is never within the bound
    worst = float(err.max())
    return Check(bad == 0, worst, {"k_2eps32_plus_eps_out": params["k"] * 2 * eps32 + eps_out},
                 None if bad == 0 else f"{bad} of {err.numel()} elements outside the bound (max {worst:.3g})")


def params_for(preset: str, device, dtypes, sizes) -> list[tuple[str, dict[str, Any]]]:
    return [("matmul", {"dtype": d, "m": m, "n": n, "k": k}) for d in dtypes for m, n, k in SHAPES[preset]]


def _prepare(fn):
    return lambda arrays, params: (lambda: fn(arrays["a"], arrays["b"], arrays["c"]))


SUITE = Suite(
    name="mymatmul",
    description="C = A @ B: an autotuned Triton matmul of one's own (per-vendor configs) and torch.matmul",
    ops=(Op("matmul", inputs, work, reference, check, description="C = A @ B", cache="cold"),),
    impls=(Impl("triton", "matmul", "triton", _prepare(matmul)),
           Impl("torch", "matmul", "torch", _prepare(lambda a, b, c: torch.matmul(a, b, out=c)))),
    presets=tuple(SHAPES),
    dtypes=tuple(DTYPES),
    params_for=params_for,
)
