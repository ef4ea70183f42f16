"""One case, end to end: supports -> inputs -> prepare -> validate -> time -> its record.

Below the runner (which walks a plan) and the case supervisor (whose worker runs cases one by one),
so that neither imports the other.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

from parity.harness.core.model import MEASURE_IN_STEP, REASON_CHARS, TIMING_INTERPRET, Case, Suite, one_line
from parity.harness.core.results import Measurement
from parity.harness.measurement import autotuning, telemetry, threads
from parity.harness.measurement.flush import Flush
from parity.harness.measurement.instep import measure_in_step
from parity.harness.measurement.plan import RunPlan
from parity.harness.measurement.timing import Policy, measure


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _synchronize(device) -> None:
    if device.is_gpu:
        import torch

        torch.cuda.synchronize()


def prepare_checked(op, impl, case: Case, device, tuning: autotuning.Tuning | None = None):
    """Random inputs, the implementation's thunk, one call of it checked against the reference:
    (thunk, Check). Nothing here is timed; exceptions are the caller's to turn into a record.
    With `tuning` in the interpreter, every config of its autotuners is checked too, one call each
    (autotuning.validate_each_config), and the tuning is left on the first config."""
    inputs = op.inputs(case.params, device)
    thunk = impl.prepare(inputs, case.params)
    output = thunk()
    _synchronize(device)
    expected = op.reference(inputs, case.params)
    check = op.check(output, expected, inputs, case.params)
    if tuning is not None:
        def call():
            out = thunk()
            _synchronize(device)
            return out

        check = autotuning.validate_each_config(tuning, call, lambda out: op.check(out, expected, inputs,
                                                                                   case.params), first=check)
    return thunk, check


def make_record(suite: Suite, case: Case, device, status: str, reason: str | None, started_at: str,
                duration_s: float, **extra) -> Measurement:
    """The record of one case: what it is (its work, timing kind, path) and what happened to it."""
    impl, op = suite.impl_for(case), suite.op(case.op)
    work = op.work(case.params)
    path = impl.path(device, case.params)
    if path == "emulated" and op.emulated_math_dtype:
        work = dataclasses.replace(work, math_dtype=op.emulated_math_dtype)
    return Measurement(suite=case.suite, op=case.op, impl=case.impl, backend=impl.backend,
                       params=dict(case.params), status=status, reason=reason, timing=impl.timing(device),
                       key=case.key, device=device.name, cache=op.cache, work=work.to_dict(),
                       started_at=started_at, duration_s=round(duration_s, 6), metric=op.metric, path=path,
                       extra=_details(impl, device, case.params) if status in ("ok", "invalid") else {}, **extra)


def failed_record(suite: Suite, case: Case, device, reason: str, started_at: str, duration_s: float) -> Measurement:
    """A case that ended outside run_case (timed out, its worker died): failed, with that reason."""
    return make_record(suite, case, device, "failed", reason[:REASON_CHARS], started_at, duration_s)


def run_case(suite: Suite, case: Case, device, plan: RunPlan, flush: Flush | None, reader=None) -> Measurement:
    """One case's record. On the CPU it runs with the plan's PyTorch thread count (threads.py);
    Triton autotuners run as autotuning.Tuning says, and the record's `extra.autotune` names the
    config that was timed and how it was chosen."""
    if device.is_gpu:
        return _run_case(suite, case, device, plan, flush, reader)
    count = plan.cpu_threads or threads.default_threads()
    with threads.using(count):
        return _run_case(suite, case, device, plan, flush, reader, count)


def _run_case(suite: Suite, case: Case, device, plan: RunPlan, flush: Flush | None, reader=None,
              cpu_threads: int | None = None) -> Measurement:
    impl, op = suite.impl_for(case), suite.op(case.op)
    timing = impl.timing(device)
    start, started_at = time.perf_counter(), now_iso()
    tuning = autotuning.Tuning()

    def record(status: str, reason: str | None = None, **extra) -> Measurement:
        rec = make_record(suite, case, device, status, reason, started_at, time.perf_counter() - start, **extra)
        if tuning.record():
            rec = dataclasses.replace(rec, extra={**rec.extra, "autotune": tuning.record()})
        return rec

    try:
        reason = impl.skip_reason(device, case.params)
    except Exception as exc:  # noqa: BLE001 - a broken predicate fails its case, not the run
        return record("failed", one_line(exc))
    if reason:
        return record("skipped", reason)
    try:
        with tuning:
            thunk, check = prepare_checked(op, impl, case, device, tuning)
    except Exception as exc:  # noqa: BLE001 - any failure of one case is that case's record
        return record("failed", one_line(exc))
    if not check.passed:
        return record("invalid", check.error, validation=check.to_dict())
    if tuning.interpret and tuning.record():
        thunk = tuning.wrap(thunk)  # the interpreter's autotuners run their first config while timed
    try:
        cold = op.cache == "cold" and flush is not None and timing != TIMING_INTERPRET
        policy = Policy.for_timing(timing, plan.time_cap_s, plan.min_time_s)
        if case.policy:
            policy = dataclasses.replace(policy, **case.policy)
        # let the last case's heat and power drain before a compute case
        time.sleep(telemetry.settle_seconds(plan.settle_s, device, op.metric))
        sampler = telemetry.Sampler(reader or telemetry.Unavailable("no telemetry reader was opened for this case"))
        sampler_fn = measure_in_step if impl.measure == MEASURE_IN_STEP else (impl.measure or measure)
        stats = sampler_fn(thunk, timing, policy, flush.evict if cold else None, window=sampler)
        if cpu_threads is not None:
            stats = dataclasses.replace(stats, threads=cpu_threads)
    except Exception as exc:  # noqa: BLE001
        return record("failed", one_line(exc), validation=check.to_dict())
    return record("ok", None, validation=check.to_dict(), time_ms=stats.to_dict(), telemetry=sampler.summary)


def _details(impl, device, params) -> dict[str, Any]:
    """The implementation's account of what ran; a broken one is noted, never fatal."""
    if impl.details is None:
        return {}
    try:
        return dict(impl.details(device, params))
    except Exception as exc:  # noqa: BLE001
        return {"details_error": one_line(exc)}


def release(device) -> None:
    """Return a case's arrays to the device so the next (perhaps larger) case has room."""
    if device.is_gpu:
        import torch

        torch.cuda.empty_cache()
