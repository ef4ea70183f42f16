"""Triton's autotuner (and `triton.heuristics`) inside a validated, timed case.

On a GPU the autotuner runs as Triton runs it: the first call with a new key, which is the
harness's validation call outside the timed region, benchmarks every config, and the config it
chose is recorded. Triton's CPU interpreter has no benchmarker (the autotuner asks the GPU driver for
one: "0 active drivers"), and its times measure Python, not the kernel, so there is nothing to tune.
There the harness makes the choice itself, and says so: every config of each autotuner's list (after
its `early_config_prune`; a `perf_model` needs a GPU and is not consulted) is validated once, config
i on validation call i, and the case is timed with the first config, the one the list leads with.
`Tuning.record()` is what a record keeps of either.
"""
from __future__ import annotations

from typing import Any

CHOICE_TUNED = "tuned by Triton's autotuner"
CHOICE_FIRST = "first config (interpreter: no tuning; every config validated)"
HIDDEN = ("num_ctas", "maxnreg", "ir_override")  # Config fields left out of a label where unset or default


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


class Tuning:
    """A context manager: within it every `triton.autotune` launch goes through `_run`.

    In the interpreter each autotuner runs config `index` of its list (its last where the list is
    shorter) and nothing is benchmarked; while `validating`, its `reset_to_zero` arguments are zeroed
    first, as Triton zeroes them before a tuning run. On a GPU Triton's own `run` runs and the config
    it chose is noted. `configs` is the longest list seen; `launches` counts the interpreter's launches.
    """

    def __init__(self, interpret: bool | None = None):
        self.interpret = interpreting() if interpret is None else interpret
        self.index = 0
        self.validating = True
        self.launches = 0
        self._seen: dict[int, dict[str, Any]] = {}
        self._saved: list = []

    @property
    def configs(self) -> int:
        return max((s["configs"] for s in self._seen.values()), default=0)

    def record(self) -> list[dict[str, Any]]:
        """Per autotuner that ran: its kernel, how many configs, the config used and how it was chosen."""
        return [{k: v for k, v in s.items() if not k.startswith("_")} for s in self._seen.values()]

    def describe(self, index: int) -> str:
        """The config each autotuner ran at `index`, for a message: "kernel: BLOCK_M=16, ..."."""
        return "; ".join(f"{s['kernel']}: {s['_texts'][min(index, len(s['_texts']) - 1)]}"
                         for s in self._seen.values() if s.get("_texts"))

    def __enter__(self) -> "Tuning":
        from triton.runtime.autotuner import Autotuner

        original = Autotuner.run
        tuning = self

        def run(tuner, *args, **kwargs):
            return tuning._run(original, tuner, args, kwargs)

        self._saved.append((Autotuner, "run", original))
        Autotuner.run = run
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
        while self._saved:
            owner, name, value = self._saved.pop()
            setattr(owner, name, value)

    def _entry(self, tuner, configs: int, choice: str) -> dict[str, Any]:
        fn = getattr(tuner, "base_fn", None)
        entry = self._seen.setdefault(id(tuner), {"kernel": getattr(fn, "__name__", type(tuner).__name__),
                                                  "configs": configs, "validated": 0, "config": None,
                                                  "choice": choice})
        entry["configs"] = max(entry["configs"], configs)
        return entry

    def _run(self, original, tuner, args, kwargs):
        if not self.interpret:
            out = original(tuner, *args, **kwargs)
            best = getattr(tuner, "best_config", None)
            self._entry(tuner, len(tuner.configs), CHOICE_TUNED)["config"] = None if best is None else config_text(best)
            return out
        tuner.nargs = dict(zip(tuner.arg_names, args))
        configs = list(tuner.configs)
        if tuner.early_config_prune and len(configs) > 1:
            configs = list(tuner.early_config_prune(configs, tuner.nargs, **kwargs)) or configs
        pick = min(self.index, len(configs) - 1)
        config = configs[pick]
        entry = self._entry(tuner, len(configs), CHOICE_FIRST)
        entry["config"] = config_text(configs[0])
        entry["_texts"] = [config_text(c) for c in configs]
        full = {**tuner.nargs, **kwargs, **config.all_kwargs()}
        if self.validating:
            entry["validated"] = max(entry["validated"], pick + 1)
            # as before a tuning run; a restore_value argument is left as the call leaves it
            if tuner.reset_to_zero:
                tuner.pre_hook(full, reset_only=True)
        tuner.best_config = config
        if config.pre_hook is not None:
            config.pre_hook(full)
        try:
            return tuner.fn.run(*args, **kwargs, **config.all_kwargs())
        finally:
            tuner.nargs = None


def validate_each_config(tuning: Tuning, call, check) -> Any:
    """In the interpreter: call i with config i of every autotuner (the first call, config 0, has
    been made and checked by the caller) and check each; the first failing check, its message
    naming the configs, else the last passing one. Leaves the tuning on config 0 for the timing.
    `call()` returns the output, `check(output)` a model.Check."""
    import dataclasses

    verdict = None
    index = 1
    while tuning.interpret and index < tuning.configs:
        tuning.index = index
        verdict = check(call())
        if not verdict.passed:
            verdict = dataclasses.replace(verdict, error=f"config {index + 1} of {tuning.configs} "
                                                        f"({tuning.describe(index)}): {verdict.error}")
            break
        index += 1
    tuning.index, tuning.validating = 0, False
    return verdict
