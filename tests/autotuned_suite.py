"""A plugin suite of user kernels the way users write them, for tests/test_autotuned.py: each Triton
decoration an outside kernel comes with, on tiny shapes.

- add: `@triton.autotune` over two configs, keyed on n (impl "autotune"); and the same kernel with a
  deliberately wrong second config, which adds 1 (impl "wrong-config");
- scale: `@triton.heuristics` alone, choosing BLOCK and EVEN from n (impl "heuristics"); and
  `@triton.autotune` over `@triton.heuristics`, EVEN from the config's BLOCK (impl "both");
- sum: an atomic reduction into one element, `reset_to_zero` on it, and a `prune_configs_by` that
  drops blocks wider than n (impl "pruned");
- axpy: x += a*y in place, `restore_value` on x (impl "restore");
- scale again: `@triton.heuristics` ABOVE `@triton.autotune`, EVEN from n (impl "above"), on a
  `do_not_specialize` kernel; and sum with a config `pre_hook` that zeroes the output (impl "prehook").
Broken on purpose, for the error lines: `scale_above_wrong` (a heuristic above the autotuner reads the
config's BLOCK, which it cannot see) and `add_bad_block` (a config whose BLOCK is no power of 2).

Every output is checked against a float64 reference on random inputs. Loaded through an entry point
that the tests write (tests/test_autotuned.py, tests/background.py): no parity import is needed by
the kernels themselves.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import triton
import triton.language as tl

from parity.harness.core.model import Check, Impl, Op, Suite, Work

N = 48  # a multiple of 16 and not of 32: EVEN is True for one config and False for the other
A = 0.5
TWO = [triton.Config({"BLOCK": 16}, num_warps=1), triton.Config({"BLOCK": 32}, num_warps=2)]
WRONG = [triton.Config({"BLOCK": 16, "BUG": 0}, num_warps=1), triton.Config({"BLOCK": 32, "BUG": 1}, num_warps=2)]
THREE = TWO + [triton.Config({"BLOCK": 64}, num_warps=2)]


@triton.jit
def _add(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr, BUG: tl.constexpr = 0):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    y = tl.load(y_ptr + offs, mask=mask)
    tl.store(out_ptr + offs, x + y + BUG, mask=mask)


add_autotuned = triton.autotune(configs=TWO, key=["n"])(_add)
add_wrong = triton.autotune(configs=WRONG, key=["n"])(_add)


@triton.jit
def _scale(x_ptr, out_ptr, n, factor, BLOCK: tl.constexpr, EVEN: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if EVEN:  # n is a multiple of BLOCK: no mask
        tl.store(out_ptr + offs, tl.load(x_ptr + offs) * factor)
    else:
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) * factor, mask=mask)


def _even(args) -> bool:
    return args["n"] % args["BLOCK"] == 0


scale_heuristics = triton.heuristics({"BLOCK": lambda a: min(64, triton.next_power_of_2(a["n"])),
                                      "EVEN": _even})(_scale)
scale_both = triton.autotune(configs=TWO, key=["n"])(triton.heuristics({"EVEN": _even})(_scale))


def _fits(configs, named, **kwargs):
    """prune_configs_by's early_config_prune: no block wider than the problem (at least one kept)."""
    kept = [c for c in configs if c.kwargs["BLOCK"] <= max(16, named["n"])]
    return kept or configs[:1]


@triton.autotune(configs=THREE, key=["n"], prune_configs_by={"early_config_prune": _fits}, reset_to_zero=["out_ptr"])
@triton.jit
def sum_pruned(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    tl.atomic_add(out_ptr, tl.sum(x, axis=0))


@triton.autotune(configs=TWO, key=["n"], restore_value=["x_ptr"])
@triton.jit
def axpy_inplace(x_ptr, y_ptr, n, a, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=mask) + a * tl.load(y_ptr + offs, mask=mask), mask=mask)


@triton.jit(do_not_specialize=["n"])
def _scale_dns(x_ptr, out_ptr, n, factor, BLOCK: tl.constexpr, EVEN: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) * factor, mask=mask)


scale_above = triton.heuristics({"EVEN": lambda a: a["n"] % 16 == 0})(triton.autotune(configs=TWO, key=["n"])(_scale_dns))
scale_above_wrong = triton.heuristics({"EVEN": _even})(triton.autotune(configs=TWO, key=["n"])(_scale_dns))
add_bad_block = triton.autotune(configs=[TWO[0], triton.Config({"BLOCK": 24})], key=["n"])(_add)


def _zero_out(nargs):
    nargs["out_ptr"].zero_()  # a run-time hook on memory: parity inspect's stand-ins have none


@triton.autotune(configs=[triton.Config({"BLOCK": 16}, pre_hook=_zero_out),
                          triton.Config({"BLOCK": 32}, num_warps=2, maxnreg=128, pre_hook=_zero_out)], key=["n"])
@triton.jit
def sum_prehook(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.atomic_add(out_ptr, tl.sum(tl.load(x_ptr + offs, mask=offs < n, other=0.0), axis=0))


def blocks(n: int):
    return lambda meta: (triton.cdiv(n, meta["BLOCK"]),)


def add(kernel, x, y, out):
    kernel[blocks(x.numel())](x, y, out, x.numel())
    return out


def scale(kernel, x, out, factor=A):
    kernel[blocks(x.numel())](x, out, x.numel(), factor)
    return out


def total(x, out):
    sum_pruned[blocks(x.numel())](x, out, x.numel())
    return out


def axpy(x, y, a=A):
    axpy_inplace[blocks(x.numel())](x, y, x.numel(), a)
    return x


# --- the suite -----------------------------------------------------------------------------------


def _inputs(params: Mapping[str, Any], device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(22)
    dev = "cpu" if device.backend == "cpu" else f"cuda:{device.index}"
    out = {k: torch.randn(params["n"], generator=gen).to(dev) for k in ("x", "y", "out", "x0")}
    out["x"] = out["x0"].clone()  # axpy works on x in place: x0 keeps what it started from
    return out


def _work(params) -> Work:
    return Work(flops=params["n"], bytes_read=8 * params["n"], bytes_written=4 * params["n"], math_dtype="fp32")


def _check(output, expected, arrays, params) -> Check:
    # fp32 sums of at most N terms of |x| < 6: a few ulps of fp32 (2^-23) on the sum's size
    err = float((output.double() - expected).abs().max())
    bound = 1e-5 * max(1.0, float(expected.abs().max()))
    return Check(err <= bound, err, {"abs": bound}, None if err <= bound else f"max abs error {err:.3g} > {bound:.3g}")


def _op(name, reference) -> Op:
    return Op(name, _inputs, _work, reference, _check, description=name, cache="warm", metric="GB/s")


OPS = (
    _op("add", lambda a, p: a["x"].double() + a["y"].double()),
    _op("scale", lambda a, p: A * a["x"].double()),
    _op("sum", lambda a, p: a["x"].double().sum().reshape(1)),
    _op("axpy", lambda a, p: a["x0"].double() + A * a["y"].double()),
)
IMPLS = (
    Impl("autotune", "add", "triton", lambda a, p: lambda: add(add_autotuned, a["x"], a["y"], a["out"])),
    Impl("wrong-config", "add", "triton", lambda a, p: lambda: add(add_wrong, a["x"], a["y"], a["out"])),
    Impl("heuristics", "scale", "triton", lambda a, p: lambda: scale(scale_heuristics, a["x"], a["out"])),
    Impl("both", "scale", "triton", lambda a, p: lambda: scale(scale_both, a["x"], a["out"])),
    Impl("pruned", "sum", "triton", lambda a, p: lambda: total(a["x"], a["out"][:1])),
    Impl("restore", "axpy", "triton", lambda a, p: lambda: axpy(a["x"], a["y"])),
    Impl("above", "scale", "triton", lambda a, p: lambda: scale(scale_above, a["x"], a["out"])),
    Impl("prehook", "sum", "triton", lambda a, p: lambda: sum_prehook[blocks(N)](a["x"], a["out"], N) or a["out"][:1]),
)
SUITE = Suite(name="autotuned", description="user kernels with triton.autotune and triton.heuristics (tests)",
              ops=OPS, impls=IMPLS, presets=("smoke",), dtypes=("fp32",),
              params_for=lambda preset, device, dtypes, sizes: [(op.name, {"dtype": "fp32", "n": N}) for op in OPS])
