"""Which Triton kernels an implementation launches, with which arguments, without running them.

`capture(thunk)` runs the thunk with the three launch paths of Triton code intercepted: parity's
`Launcher` (its per-target config lists come along), `triton.autotune` (its one list, every config
of it: `early_config_prune` and `perf_model` choose among them at run time) and a plain
`kernel[grid](...)`, any of them through `triton.heuristics`, whose values are computed here per
config as Triton computes them at launch. Nothing is compiled or launched; each launch is recorded as a `Launch`, with
every tensor argument replaced by a `PointerArg` that keeps only what Triton specializes on (the
dtype and the address's alignment), so inputs built under torch's FakeTensorMode (shapes, dtypes
and strides, no memory) serve as well as real ones.

So any kernel a suite reaches through these paths is found without a hook of its own: a new
implementation shows up in `parity inspect` once its `prepare` thunk launches it.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from triton.runtime.autotuner import Autotuner, Heuristics
from triton.runtime.jit import JITFunction

from parity.harness.measurement.autotuning import heuristic_value
from parity.kernels.launch import Launcher

# Device allocations are aligned to at least 256 bytes; only a view's offset can misalign it.
ALLOCATION_ALIGNMENT = 256


@dataclass(frozen=True)
class PointerArg:
    """A tensor argument as Triton's specialization sees it: a dtype and an address."""

    dtype: torch.dtype
    address: int

    def data_ptr(self) -> int:
        return self.address


@dataclass(frozen=True)
class Launch:
    """One kernel launch: the kernel, its arguments, and its configs.

    `configs` maps a target ("cuda", "hip") to the configs the kernel
    may run with there (a Launcher's lists, or an autotuner's one list under "*"); None for a plain
    launch, whose meta-parameters are among `kwargs`.
    """

    kernel: JITFunction
    args: tuple
    kwargs: Mapping[str, Any]
    configs: Mapping[str, Sequence[Any]] | None = None
    via: str = "jit"  # "launcher" | "autotune" | "jit"
    arg_names: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.kernel.fn.__name__


def pointer_arg(t: torch.Tensor) -> PointerArg:
    return PointerArg(t.dtype, ALLOCATION_ALIGNMENT + t.storage_offset() * t.element_size())


def _strip(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return pointer_arg(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # TensorDescriptor and the like: the same object, its tensors replaced.
        changes = {f.name: _strip(getattr(value, f.name)) for f in dataclasses.fields(value)
                   if isinstance(getattr(value, f.name), torch.Tensor)}
        return dataclasses.replace(value, **changes) if changes else value
    if isinstance(value, (tuple, list)):
        return type(value)(_strip(v) for v in value)
    return value


def _jit_of(fn) -> JITFunction:
    while not isinstance(fn, JITFunction):
        fn = fn.fn
    return fn


def _heuristics_of(fn) -> list[Heuristics]:
    """The `triton.heuristics` layers between a wrapper and its JITFunction, outermost first."""
    out = []
    while not isinstance(fn, JITFunction):
        if isinstance(fn, Heuristics):
            out.append(fn)
        fn = fn.fn
    return out


def with_heuristics(fn, configs: Mapping[str, Sequence[Any]], args, kwargs) -> dict[str, list]:
    """Each config with the values of the heuristics under `fn` added to its kwargs, computed from
    the call's arguments and the config's meta-parameters as Heuristics.run computes them (in order,
    each seeing those before it)."""
    layers = _heuristics_of(fn)
    if not layers:
        return {where: list(cs) for where, cs in configs.items()}
    named = dict(zip(_jit_of(fn).arg_names, args))
    out: dict[str, list] = {}
    for where, cs in configs.items():
        out[where] = []
        for config in cs:
            seen = {**named, **kwargs, **config.all_kwargs()}
            values = {}
            for layer in layers:
                for name, heuristic in layer.values.items():
                    values[name] = seen[name] = heuristic_value(layer, name, heuristic, seen)
            done = copy.copy(config)
            done.kwargs = {**config.kwargs, **values}
            out[where].append(done)
    return out


def _record(out: list, kernel, args, kwargs, configs, via) -> None:
    jit = _jit_of(kernel)
    if configs is not None:
        configs = with_heuristics(kernel, configs, args, kwargs)
    out.append(Launch(jit, tuple(_strip(a) for a in args), {k: _strip(v) for k, v in kwargs.items()},
                      configs, via, tuple(jit.arg_names)))


@contextlib.contextmanager
def intercepted(out: list):
    """Within: every launch is appended to `out` instead of running."""
    def launcher_call(self, grid, *args, like, cfg=None, narrow=False, **kwargs):
        _record(out, self.kernel, args, kwargs, self.lists(narrow), "launcher")

    def autotune_run(self, *args, **kwargs):
        # kernel[grid](...) passes grid and warmup to the autotuner's run: launch options, not arguments
        kwargs = {k: v for k, v in kwargs.items() if k not in ("grid", "warmup")}
        _record(out, self.fn, args, kwargs, {"*": list(self.configs)}, "autotune")

    def jit_run(self, *args, grid, warmup, **kwargs):
        _record(out, self, args, kwargs, None, "jit")

    def heuristics_run(self, *args, **kwargs):
        # Heuristics.run as Triton's, a heuristic that raises named (a launch above an autotuner)
        for name, fn in self.values.items():
            kwargs[name] = heuristic_value(self, name, fn, {**dict(zip(self.arg_names, args)), **kwargs})
        return self.fn.run(*args, **kwargs)

    saved = (Launcher.__call__, Autotuner.run, JITFunction.run, Heuristics.run)
    Launcher.__call__, Autotuner.run, JITFunction.run, Heuristics.run = launcher_call, autotune_run, jit_run, heuristics_run
    try:
        yield out
    finally:
        Launcher.__call__, Autotuner.run, JITFunction.run, Heuristics.run = saved


def capture(thunk: Callable[[], Any]) -> list[Launch]:
    """The launches `thunk` makes, in order, with nothing launched."""
    with intercepted([]) as out:
        thunk()
    return out
