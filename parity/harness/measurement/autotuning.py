"""Triton's autotuner (and `triton.heuristics`) inside a validated, timed case.

On a GPU the autotuner runs as Triton runs it: the first call with a new key, which is the
harness's validation call outside the timed region, benchmarks every config, and the config it
chose (with each config's time, where Triton kept them) is recorded. Triton's CPU interpreter has
no benchmarker (the autotuner asks the GPU driver for one: "0 active drivers"), and its times
measure Python, not the kernel, so there is nothing to tune. There the harness makes the choice
itself, and says so: every config of each autotuner's list (after its `early_config_prune`; a
`perf_model` needs a GPU and is not consulted) is validated once, config i on validation call i,
and the case is timed with the first config, the one the list leads with. A config that raises or
fails the check is named in the error. The values `triton.heuristics` computed at the last call are
recorded too. `Tuning.record()` is what a record keeps of all of it (`extra.autotune`).
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from parity.harness.core.model import one_line

CHOICE_TUNED = "tuned by Triton's autotuner"
CHOICE_FIRST = "first config (interpreter: no tuning; every config validated)"
HIDDEN = ("num_ctas", "maxnreg", "ir_override")  # Config fields left out of a label where unset or default


class ConfigError(RuntimeError):
    """One config of an autotuner raised in the interpreter: the message names the kernel and config."""


class HeuristicError(RuntimeError):
    """A `triton.heuristics` function raised: the message names it, its kernel and, where it asked
    for a meta-parameter it cannot see, why (Triton raises the bare KeyError at the same launch)."""


def gpu_path(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) is Triton asking for a GPU driver with no GPU there
    ("0 active drivers"): the kernel took the compile path, not the interpreter's."""
    modules, seen = set(), set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            modules.add(str(tb.tb_frame.f_globals.get("__name__", "")))
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__
    return "triton.runtime.driver" in modules and not any(m.startswith("triton.runtime.interpreter") for m in modules)


def heuristic_value(heur, name: str, fn, named: dict[str, Any]) -> Any:
    """One heuristic's value, or a HeuristicError that names it. A KeyError for a config's
    meta-parameter means the heuristic sits above @triton.autotune, which has not chosen the config
    yet; one for another heuristic's value, that the other sits below it (the outer one runs first)."""
    try:
        return fn(named)
    except Exception as exc:  # noqa: BLE001 - the user's function: named, with the cause where known
        why = ""
        missing = exc.args[0] if isinstance(exc, KeyError) and exc.args else None
        below, configs = heur.fn, set()
        while not inspect.isfunction(below) and hasattr(below, "fn"):
            configs |= {k for c in getattr(below, "configs", None) or () for k in c.kwargs}
            if missing in (getattr(below, "values", None) or {}):
                why = (f": {missing} is computed by a @triton.heuristics below this one, and the outer one runs "
                       "first (put the heuristic that reads it below the one that computes it)")
            below = below.fn
        if missing in configs and not why:
            why = (f": {missing} is a meta-parameter of the @triton.autotune configs below it, chosen after the "
                   "heuristics above run (put @triton.heuristics below @triton.autotune to see it)")
        raise HeuristicError(f"{_kernel_name(heur)}: the triton.heuristics value {name} raised "
                             f"{one_line(exc)}{why}") from exc


def config_text(config) -> str:
    """A triton.Config as "BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3"."""
    meta = config.all_kwargs()
    shown = {k: v for k, v in meta.items() if v is not None and not (k in HIDDEN and (v is None or v == 1))}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter in this process."""
    try:
        from triton import knobs
    except Exception:  # noqa: BLE001 - no triton: nothing is interpreted
        return False
    return bool(knobs.runtime.interpret)


def _plain(value: Any) -> Any:
    """A heuristic's value as a record keeps it (JSON: numbers, strings, booleans; others as text)."""
    return value if isinstance(value, (bool, int, float, str)) or value is None else repr(value)


def _kernel_name(wrapper) -> str:
    fn = wrapper
    while not inspect.isfunction(fn) and hasattr(fn, "fn"):  # Autotuner -> Heuristics -> JITFunction -> def
        fn = fn.fn
    return getattr(fn, "__name__", type(wrapper).__name__)


class Tuning:
    """A context manager: within it every `triton.autotune` launch goes through `_run`, and every
    `triton.heuristics` launch has its values noted.

    In the interpreter each autotuner runs config `index` of its list (its last where the list is
    shorter) and nothing is benchmarked; while `validating`, its `reset_to_zero` arguments are zeroed
    first and its `restore_value` arguments put back as the first call found them, as Triton does
    around each config it benchmarks, so every config is checked against the same reference. On a GPU Triton's own `run` runs and the config
    it chose is noted. `configs` is the longest list seen; `launches` counts the interpreter's
    launches. Entering it again while inside is allowed (the patches are made once).
    """

    def __init__(self, interpret: bool | None = None):
        self.interpret = interpreting() if interpret is None else interpret
        self.index = 0
        self.validating = True
        self.launches = 0
        self._seen: dict[int, dict[str, Any]] = {}
        self._saved: list = []
        self._depth = 0

    @property
    def configs(self) -> int:
        return max((s.get("configs", 0) for s in self._seen.values()), default=0)

    def record(self) -> list[dict[str, Any]]:
        """Per autotuner that ran: its kernel, how many configs, the config used and how it was chosen;
        per `triton.heuristics`: its kernel and the values of its last call."""
        return [{k: v for k, v in s.items() if not k.startswith("_")} for s in self._seen.values()]

    def describe(self, index: int) -> str:
        """The config each autotuner ran at `index`, for a message: "kernel: BLOCK_M=16, ..."."""
        return "; ".join(f"{s['kernel']}: {s['_texts'][min(index, len(s['_texts']) - 1)]}"
                         for s in self._seen.values() if s.get("_texts"))

    def wrap(self, fn):
        """`fn` made to run inside this tuning, each call (what is validated and timed)."""
        def tuned():
            with self:
                return fn()

        return tuned

    def __enter__(self) -> "Tuning":
        self._depth += 1
        if self._depth > 1:
            return self
        from triton.runtime.autotuner import Autotuner, Heuristics

        tuning, original, heuristic = self, Autotuner.run, Heuristics.run

        def run(tuner, *args, **kwargs):
            return tuning._run(original, tuner, args, kwargs)

        def heuristics_run(heur, *args, **kwargs):
            named, values = {**dict(zip(heur.arg_names, args)), **kwargs}, {}
            for v, f in heur.values.items():  # in order, each seeing those before it, as Heuristics.run
                named[v] = heuristic_value(heur, v, f, named)
                values[v] = _plain(named[v])
            tuning._seen.setdefault(id(heur), {"kernel": _kernel_name(heur)})["heuristics"] = values
            return heuristic(heur, *args, **kwargs)

        self._saved += [(Autotuner, "run", original), (Heuristics, "run", heuristic)]
        Autotuner.run, Heuristics.run = run, heuristics_run
        if self.interpret:
            from triton.runtime.interpreter import InterpretedFunction

            launch = InterpretedFunction.run

            def counted(fn, *args, **kwargs):
                tuning.launches += 1
                return launch(fn, *args, **kwargs)

            self._saved.append((InterpretedFunction, "run", launch))
            InterpretedFunction.run = counted
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        while self._saved:
            owner, name, value = self._saved.pop()
            setattr(owner, name, value)

    def _entry(self, tuner, configs: int, choice: str) -> dict[str, Any]:
        entry = self._seen.setdefault(id(tuner), {"kernel": _kernel_name(tuner), "configs": configs,
                                                  "validated": 0, "config": None, "choice": choice})
        entry["configs"] = max(entry["configs"], configs)
        return entry

    def _run(self, original, tuner, args, kwargs):
        if not self.interpret:
            out = original(tuner, *args, **kwargs)
            best = getattr(tuner, "best_config", None)
            entry = self._entry(tuner, len(tuner.configs), CHOICE_TUNED)
            entry["config"] = None if best is None else config_text(best)
            timings = getattr(tuner, "configs_timings", None) or {}
            if timings:  # Triton keeps (median, p20, p80) ms per config benchmarked at the last tuning
                entry["timings_ms"] = {config_text(c): _median(t) for c, t in timings.items()}
            return out
        tuner.nargs = dict(zip(tuner.arg_names, args))
        configs = list(tuner.configs)
        if tuner.early_config_prune and len(configs) > 1:
            configs = list(tuner.early_config_prune(configs, tuner.nargs, **kwargs)) or configs
        pick = min(self.index, len(configs) - 1)
        config = configs[pick]
        entry = self._entry(tuner, len(configs), CHOICE_FIRST)
        if len(configs) < len(tuner.configs):
            entry["pruned_from"] = len(tuner.configs)  # early_config_prune kept `configs` of these
        entry["config"] = config_text(configs[0])
        entry["_texts"] = [config_text(c) for c in configs]
        full = {**tuner.nargs, **kwargs, **config.all_kwargs()}
        if self.validating:
            entry["validated"] = max(entry["validated"], pick + 1)
            # Each config is validated from the state the first call started from, as Triton
            # benchmarks each config: `restore_value` arguments put back, `reset_to_zero` ones zeroed.
            saved = entry.setdefault("_restore", {})  # (name, address, shape) -> its value at config 0
            for n in (n for n in tuner.restore_value if full.get(n) is not None):
                where = (n, full[n].data_ptr(), tuple(full[n].shape))
                if where in saved and pick > 0:
                    full[n].copy_(saved[where])
                elif pick == 0:
                    saved[where] = full[n].clone()
            if tuner.reset_to_zero:
                tuner.pre_hook(full, reset_only=True)
        tuner.best_config = config
        try:
            if config.pre_hook is not None:
                config.pre_hook(full)
            return tuner.fn.run(*args, **kwargs, **config.all_kwargs())
        except (ConfigError, HeuristicError):
            raise
        except Exception as exc:
            if gpu_path(exc):  # the kernel was decorated before the interpreter was on: no config's fault
                raise
            raise ConfigError(f"{entry['kernel']} config {pick + 1} of {len(configs)} ({entry['_texts'][pick]}): "
                              f"{one_line(exc)}") from exc
        finally:
            tuner.nargs = None


def _median(timing) -> float | None:
    value = timing[0] if isinstance(timing, (list, tuple)) and timing else timing
    return float(value) if isinstance(value, (int, float)) else None


def validate_each_config(tuning: Tuning, call, check, first=None) -> Any:
    """In the interpreter: call i with config i of every autotuner (the first call, config 0, has
    been made by the caller; its verdict, where given as `first`, is named after config 1 if it
    failed) and check each; the first failing check, its message naming the configs, else `first`
    (or, without it, the last passing check; None where nothing was checked). `check` None: each config is only run (a
    config that raises is still caught, named). Leaves the tuning on config 0 for the timing.
    `call()` returns the output, `check(output)` a model.Check."""
    if first is not None and not first.passed:
        if tuning.interpret and tuning.configs > 1:
            first = _named(first, tuning, 0)
        tuning.index, tuning.validating = 0, False
        return first
    verdict = first
    index = 1
    try:
        while tuning.interpret and index < tuning.configs:
            tuning.index = index
            output = call()
            if check is not None:
                verdict = check(output)
                if not verdict.passed:
                    verdict = _named(verdict, tuning, index)
                    break
            index += 1
    finally:
        tuning.index, tuning.validating = 0, False
    return first if first is not None and verdict.passed else verdict


def _named(verdict, tuning: Tuning, index: int):
    return dataclasses.replace(verdict, error=f"config {index + 1} of {tuning.configs} "
                                              f"({tuning.describe(index)}): {verdict.error}")
