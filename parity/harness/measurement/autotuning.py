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
            self._entry(tuner, len(tuner.configs), CHOICE_TUNED)["config"] = None if best is None else str(best)
            return out
        tuner.nargs = dict(zip(tuner.arg_names, args))
        configs = list(tuner.configs)
        if tuner.early_config_prune and len(configs) > 1:
            configs = list(tuner.early_config_prune(configs, tuner.nargs, **kwargs)) or configs
        pick = min(self.index, len(configs) - 1)
        config = configs[pick]
        entry = self._entry(tuner, len(configs), CHOICE_FIRST)
        entry["config"] = str(configs[0])
        full = {**tuner.nargs, **kwargs, **config.all_kwargs()}
        if self.validating:
            entry["validated"] = max(entry["validated"], pick + 1)
            if tuner.reset_to_zero:
                tuner.pre_hook(full, reset_only=True)
        tuner.best_config = config
        if config.pre_hook is not None:
            config.pre_hook(full)
        try:
            return tuner.fn.run(*args, **kwargs, **config.all_kwargs())
        finally:
            tuner.nargs = None
