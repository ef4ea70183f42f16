"""parity's cases as pytest-benchmark benchmarks, for teams that already save and compare with it.

`python -m pytest --benchmark-only` runs every case of a preset (smoke by default) through the
`benchmark` fixture (tests/test_benchmarks.py holds the one parametrized test). Each case is
checked against its reference first, as in `parity run`; then pytest-benchmark times it with
`pedantic` rounds, on a GPU with a device-event timer, with the cache flush (for cold ops) in the
round's setup, outside the timed region. Each benchmark's `extra_info` carries what parity knows:
suite, op, impl, params, timing kind, status, work, validation, and the normalization (GB/s,
TFLOPS, bound, % of spec) that report.frame derives from pytest-benchmark's own median.

parity's own engine (`parity run`) stays the reference: the event timer here brackets a round
with events recorded after a synchronize, so a round also holds the launch latency, which matters
for kernels of a few microseconds. Environment variables choose the cases:
PARITY_BENCH_PRESET (smoke|quick|full), PARITY_BENCH_SUITES, PARITY_BENCH_IMPLS,
PARITY_BENCH_DTYPES (comma-separated) and PARITY_BENCH_TIME_CAP_S (the time budget of a case).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from parity.harness.core.model import UsageError

PREFIX = "PARITY_BENCH_"


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t.strip() for t in (text or "").split(",") if t.strip()))


@dataclass(frozen=True)
class Settings:
    preset: str = "smoke"
    suites: tuple[str, ...] = ()
    impls: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    time_cap_s: float | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        cap = env.get(PREFIX + "TIME_CAP_S")
        try:
            time_cap_s = float(cap) if cap else None
        except ValueError:
            raise UsageError(f"{PREFIX}TIME_CAP_S must be a number of seconds, not {cap!r}") from None
        return cls(preset=env.get(PREFIX + "PRESET") or "smoke", suites=_names(env.get(PREFIX + "SUITES")),
                   impls=_names(env.get(PREFIX + "IMPLS")), dtypes=_names(env.get(PREFIX + "DTYPES")),
                   time_cap_s=time_cap_s)


class EventTimer:
    """A pytest-benchmark timer in seconds read from device events: each call records an event,
    waits for it, and adds the time since the previous event to a running total kept in a Python
    float (CUDA reports a float32 of milliseconds, too coarse for hours since a fixed origin)."""

    def __init__(self):
        self._last = None
        self._total_s = 0.0

    def __call__(self) -> float:
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        event.synchronize()
        if self._last is not None:
            self._total_s += self._last.elapsed_time(event) / 1e3
        self._last = event
        return self._total_s


event_timer = EventTimer()


def collect(settings: Settings):
    """The device and every (suite, case) of the settings' plan, as `parity run` would walk them."""
    from parity.harness.core.device import detect
    from parity.harness.measurement import registry, runner
    from parity.harness.measurement.plan import RunPlan

    device = detect()
    problem = registry.triton_problem()
    if problem:
        raise UsageError(problem)
    every = tuple(suite.name for suite in registry.load_all())  # a plugin that does not load is left out
    plan = RunPlan(suites=settings.suites or every, preset=settings.preset,
                          impls=settings.impls, dtypes=settings.dtypes, time_cap_s=settings.time_cap_s)
    return device, runner.plan_cases(plan, device)


def params(settings: Settings) -> list:
    """pytest.param per case, grouped by suite and op, on a GPU with the event timer."""
    import pytest

    device, cases = collect(settings)
    out = []
    for suite, case in cases:
        options = {"group": f"{case.suite} {case.op}"}
        if device.is_gpu:
            options["timer"] = event_timer
        shown = "-".join(f"{k}={v}" for k, v in case.params.items())
        out.append(pytest.param((device, suite, case), id=f"{case.suite}-{case.op}-{case.impl}-{shown}",
                                marks=pytest.mark.benchmark(**options)))
    return out


def _plain(value: Any) -> Any:
    """JSON for extra_info: NaN and missing values become None, numpy scalars plain numbers."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


NORMALIZATION = ("gbps", "tflops", "spec_id", "bound", "roof", "roof_confidence", "pct_of_spec",
                 "pct_of_spec_at_clock", "flag")


def run(benchmark, item, settings: Settings) -> dict[str, Any]:
    """Validates one case, times it with `benchmark.pedantic`, fills `extra_info`; returns it."""
    import pytest

    from parity.harness.core.results import Measurement, Run
    from parity.harness.measurement import case as case_mod
    from parity.harness.measurement import flush as flush_mod
    from parity.harness.measurement import timing
    from parity.harness.reporting import report

    device, suite, case = item
    impl, op = suite.impl_for(case), suite.op(case.op)
    kind = impl.timing(device)
    work = op.work(case.params)
    info = benchmark.extra_info
    info.update(suite=case.suite, op=case.op, impl=case.impl, params=dict(case.params), key=case.key,
                device=device.name, backend=impl.backend, timing=kind, cache=op.cache, metric=op.metric,
                path=impl.path(device, case.params), work=work.to_dict())
    reason = impl.skip_reason(device, case.params)
    if reason:
        info["status"] = "skipped"
        pytest.skip(reason)
    thunk, check = case_mod.prepare_checked(op, impl, case, device)
    info["validation"] = check.to_dict()
    if not check.passed:
        info["status"] = "invalid"
        pytest.fail(f"invalid output: {check.error}")
    flush = flush_mod.Flush(device) if op.cache == "cold" and device.is_gpu else None
    policy = timing.Policy.for_timing(kind, settings.time_cap_s)
    estimate_ms = timing.warm_up(thunk, kind, policy)
    rounds = int(min(max(policy.time_cap_s * 1e3 / max(estimate_ms, 1e-3), policy.min_samples), policy.max_samples))
    def flush_cache() -> None:
        flush.evict()  # as `parity run` flushes (clean lines); returns None, which pytest-benchmark wants

    benchmark.pedantic(thunk, setup=flush_cache if flush is not None else None, rounds=rounds, iterations=1)
    samples_ms = [d * 1e3 for d in benchmark.stats.stats.data]
    stats = timing.summarize(samples_ms, "rounds").to_dict()
    stats.pop("samples")  # pytest-benchmark keeps the rounds itself
    info["status"] = "ok"
    info["time_ms"] = {k: _plain(v) for k, v in stats.items()}
    record = Measurement(suite=case.suite, op=case.op, impl=case.impl, backend=impl.backend,
                         params=dict(case.params), status="ok", reason=None, timing=kind, key=case.key,
                         device=device.name, cache=op.cache, metric=op.metric, path=info["path"],
                         time_ms=stats, work=work.to_dict(), validation=check.to_dict()).to_dict()
    meta = {"run_id": "pytest-benchmark", "device": device.to_dict()}
    row = report.frame([Run(path=Path("."), meta=meta, records=(record,))]).iloc[0]
    info["normalization"] = {k: _plain(row.get(k)) for k in NORMALIZATION}
    return info

