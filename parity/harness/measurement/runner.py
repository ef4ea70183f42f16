"""Walks the cases of a run plan: supports -> inputs -> prepare -> validate -> time -> append.

Every case ends as exactly one record, appended to the run's file as soon as it is known; a skip,
a failure and an invalid output are records too, and the run goes on after each.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from parity.harness.core import device as device_mod
from parity.harness.core import provenance, registry, runlock
from parity.harness.measurement import supervisor, telemetry
from parity.harness.core.model import (REASON_CHARS, TIMING_EVENTS, TIMING_INTERPRET, TIMING_WALL, Case, Suite,
                                       UsageError, one_line)
from parity.harness.core.results import RUN_FILE, RUN_SCHEMA, Measurement, ResultsError, RunWriter, done_keys, read_run
from parity.harness.measurement.timing import Flush, Policy, measure



@dataclass(frozen=True)
class RunPlan:
    """What to run; built by the CLI (or a test) and recorded in run.json so a run can resume."""

    suites: tuple[str, ...]
    preset: str = "quick"
    impls: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    sizes_bytes: tuple[int, ...] = ()
    time_cap_s: float | None = None
    settle_s: float | None = None  # idle before each timed case; None: telemetry.settle_seconds decides
    ranks: int | None = None  # processes of a collective suite (None: one per GPU, 2 on the CPU)
    shapes: tuple[tuple[int, ...], ...] = ()  # e.g. GEMM (M, N, K), replacing a preset's shapes
    min_time_s: float | None = None  # least sampling time per case; None: the timing policy's (0.5 s on a GPU)
    case_timeout_s: float | None = None  # wall-clock limit of one case (None: supervisor's default here)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunPlan":
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["shapes"] = tuple(tuple(shape) for shape in fields.get("shapes", ()))
        return cls(**fields)

    @classmethod
    def recorded(cls, meta: dict[str, Any], path: Path) -> "RunPlan":
        """The plan a run folder's run.json recorded, checked field by field: a damaged one is a
        one-line ResultsError, not a traceback deep in the runner."""
        data = meta.get("plan")
        problem = None
        if not isinstance(data, dict) or not isinstance(data.get("suites"), list) or not data["suites"]:
            problem = "it names no suites"
        else:
            for name in ("suites", "impls", "dtypes"):
                if not all(isinstance(v, str) for v in data.get(name) or ()):
                    problem = f"its {name} are not names"
            if not all(isinstance(v, int) and v > 0 for v in data.get("sizes_bytes") or ()):
                problem = "its sizes are not byte counts"
            if not all(isinstance(v, list) and all(isinstance(d, int) and d > 0 for d in v)
                       for v in data.get("shapes") or ()):
                problem = "its shapes are not lists of dimensions"
            for name in ("time_cap_s", "settle_s", "min_time_s", "case_timeout_s"):
                if data.get(name) is not None and not isinstance(data[name], (int, float)):
                    problem = f"its {name} is not a number"
            ranks = data.get("ranks")
            if ranks is not None and (isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1):
                problem = "its ranks is not a count"
            if not isinstance(data.get("preset", "quick"), str):
                problem = "its preset is not a name"
        if problem:
            raise ResultsError(f"{path / RUN_FILE}: the recorded plan is damaged ({problem}): start a new run instead")
        return cls.from_dict(data)


@dataclass
class Outcome:
    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    skipped_existing: int = 0


def plan_cases(plan: RunPlan, device) -> list[tuple[Suite, Case]]:
    """Every case of the plan on this device; unknown names and impossible sizes are UsageErrors."""
    suites = [registry.load(name) for name in plan.suites]
    known_impls = {name for suite in suites for name in suite.impl_names()}
    for impl in plan.impls:
        if impl not in known_impls:
            raise UsageError(f"unknown implementation {impl!r} (implementations: {', '.join(sorted(known_impls))})")
    for flag, given, takes in (("--size", plan.sizes_bytes, "check_sizes"), ("--shape", plan.shapes, "check_shapes")):
        if given and len(suites) > 1 and not any(getattr(suite, takes) for suite in suites):
            raise UsageError(f"no suite of this run takes {flag}")
    cases = []
    for suite in suites:
        dtypes = [d for d in plan.dtypes if d in suite.dtypes] if len(suites) > 1 else list(plan.dtypes)
        if plan.dtypes and not dtypes:
            continue  # a dtype given for another suite of a multi-suite run
        sizes, shapes = list(plan.sizes_bytes), list(plan.shapes)
        if len(suites) > 1 and (sizes or shapes):
            # In a run of several suites, --size and --shape pick the suites they are about; each
            # of those gets the option it takes (stream sizes, GEMM shapes), the others are left out.
            sizes, shapes = (sizes if suite.check_sizes else []), (shapes if suite.check_shapes else [])
            if not (sizes or shapes):
                continue
        cases += [(suite, case) for case in
                  suite.cases(plan.preset, device, dtypes=dtypes, sizes=sizes, impls=plan.impls, shapes=shapes)]
    if plan.dtypes:
        all_dtypes = {d for suite in suites for d in suite.dtypes}
        for dtype in plan.dtypes:
            if dtype not in all_dtypes:
                raise UsageError(f"unknown dtype {dtype!r} (dtypes: {', '.join(sorted(all_dtypes))})")
    return cases


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _synchronize(device) -> None:
    if device.is_gpu:
        import torch

        torch.cuda.synchronize()


def prepare_checked(op, impl, case: Case, device):
    """Random inputs, the implementation's thunk, one call of it checked against the reference:
    (thunk, Check). Nothing here is timed; exceptions are the caller's to turn into a record."""
    inputs = op.inputs(case.params, device)
    thunk = impl.prepare(inputs, case.params)
    output = thunk()
    _synchronize(device)
    check = op.check(output, op.reference(inputs, case.params), inputs, case.params)
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
    impl, op = suite.impl_for(case), suite.op(case.op)
    timing = impl.timing(device)
    start, started_at = time.perf_counter(), _now()

    def record(status: str, reason: str | None = None, **extra) -> Measurement:
        return make_record(suite, case, device, status, reason, started_at, time.perf_counter() - start, **extra)

    try:
        reason = impl.supports(device, case.params)
    except Exception as exc:  # noqa: BLE001 - a broken predicate fails its case, not the run
        return record("failed", one_line(exc))
    if reason:
        return record("skipped", reason)
    try:
        thunk, check = prepare_checked(op, impl, case, device)
    except Exception as exc:  # noqa: BLE001 - any failure of one case is that case's record
        return record("failed", one_line(exc))
    if not check.passed:
        return record("invalid", check.error, validation=check.to_dict())
    try:
        cold = op.cache == "cold" and flush is not None and timing != TIMING_INTERPRET
        policy = Policy.for_timing(timing, plan.time_cap_s, plan.min_time_s)
        if case.policy:
            policy = dataclasses.replace(policy, **case.policy)
        # let the last case's heat and power drain before a compute case
        time.sleep(telemetry.settle_seconds(plan.settle_s, device, op.metric))
        sampler = telemetry.Sampler(reader or telemetry.Unavailable("no telemetry reader was opened for this case"))
        stats = (impl.measure or measure)(thunk, timing, policy, flush.evict if cold else None, window=sampler)
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


def run_meta(plan: RunPlan, device, command: list[str], flush: Flush | None) -> dict[str, Any]:
    return {
        "schema": RUN_SCHEMA,
        "run_id": dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
        "started_at": _now(),
        "ended_at": None,
        "status": "running",
        "command": command,
        "plan": plan.to_dict(),
        "device": device.to_dict(),
        "versions": provenance.versions(device),
        "git": provenance.git_revision(),
        "host": provenance.host(),
        "timing": {kind: Policy.for_timing(kind, plan.time_cap_s, plan.min_time_s).to_dict()
                   for kind in (TIMING_EVENTS, TIMING_WALL, TIMING_INTERPRET)},
        "flush_bytes": flush.bytes if flush else None,  # None: no device, nothing is flushed
        "spec_note": unmatched_note(device, flush),
        "flush_method": flush.method if flush else None,
        "settle_s": telemetry.settle_seconds(plan.settle_s, device),  # before compute cases
        "settle_s_memory": telemetry.settle_seconds(plan.settle_s, device, "GB/s"),
        **supervisor.timeout_meta(plan, device),
    }


def unmatched_note(device, flush: Flush | None) -> str | None:
    """What a run on a GPU that matches no spec must say: no % of spec, and the flush it got."""
    if not device.is_gpu or device.spec_id is not None:
        return None
    why = getattr(device, "spec_note", None) or f"no spec matches {device.name}"
    flushed = f"; cold samples are flushed with {flush.bytes >> 20} MiB" if flush else ""
    return f"{why}: no % of spec in its tables{flushed}"


def resume_plan(path: Path, device) -> tuple[RunPlan, dict[str, Any], set[str]]:
    """The plan, metadata and finished case keys of an earlier run, checked against this device."""
    run = read_run(path)
    recorded = run.meta.get("device", {})
    if (recorded.get("name"), recorded.get("backend")) != (device.name, device.backend):
        raise UsageError(f"{path} was run on {recorded.get('name')} ({recorded.get('backend')}); "
                         f"this is {device.name} ({device.backend}): start a new run instead")
    return RunPlan.recorded(run.meta, path), run.meta, done_keys(run.records)


def execute(plan: RunPlan, device, out_dir: Path, command: list[str], resume: bool = False,
            progress: Callable[[int, int, Case, Measurement | None], None] | None = None,
            case_runner: Callable[..., Measurement] | None = None) -> Outcome:
    """Run a plan into `out_dir` (or finish the run there with `resume`), one record per case,
    as the folder's only writer (runlock.py: a second one is refused with one line).

    `case_runner` (run_case's signature) replaces run_case: rank 0 of a process group runs the
    collective cases in step with the other ranks through it (distributed.Leader)."""
    with runlock.hold(out_dir, "resume" if resume else "run", fresh=not resume):
        return _execute(plan, device, out_dir, command, resume, progress, case_runner)


def _execute(plan: RunPlan, device, out_dir: Path, command: list[str], resume: bool,
             progress, case_runner) -> Outcome:
    if not getattr(case_runner, "runs_elsewhere", False):  # a supervisor's worker makes its own current
        device_mod.use(device)  # the cases run in this process: its GPU becomes current here, not at detection
    flush = Flush(device) if device.is_gpu else None
    if resume:
        plan, meta, done = resume_plan(out_dir, device)
        if meta.get("status") == "complete" and all(c.key in done for _, c in plan_cases(plan, device)):
            return Outcome(path=out_dir, skipped_existing=len(done))  # nothing to do: the run is left as it was
        meta.setdefault("resumed_at", []).append(_now())
        meta.update(status="running", ended_at=None)
    else:
        done = set()
        meta = run_meta(plan, device, command, flush)
    cases = plan_cases(plan, device)  # bad input fails here, before anything is written
    try:
        writer = RunWriter(out_dir, meta)
    except OSError as exc:
        raise ResultsError(write_failure(exc, out_dir)) from None
    try:
        return _walk(plan, device, out_dir, writer, cases, done, progress, case_runner, flush)
    except OSError as exc:  # the disk filled up, or the folder became read-only, while appending
        if exc.filename is None or not str(exc.filename).startswith(str(out_dir)):
            raise  # not the run's own files (RunWriter names them): not a write failure of the run
        writer.abandon()
        raise ResultsError(f"{write_failure(exc, out_dir)}; the records written so far are kept: "
                           f"parity run --resume {out_dir} finishes the run once it can be written") from None


def write_failure(exc: OSError, out_dir: Path) -> str:
    """`cannot write PATH: No space left on device (errno 28, ENOSPC)`: what, where and the errno."""
    where = exc.filename or out_dir
    code = f" (errno {exc.errno}, {errno.errorcode.get(exc.errno, '?')})" if exc.errno else ""
    return f"cannot write {where}: {exc.strerror or exc}{code}"


def _walk(plan, device, out_dir, writer, cases, done, progress, case_runner, flush) -> Outcome:
    """The cases not done yet, then the suites' follow-ups, each record appended as it comes."""
    outcome = Outcome(path=out_dir)
    todo = [(suite, case) for suite, case in cases if case.key not in done]
    outcome.skipped_existing = len(cases) - len(todo)
    reader = telemetry.open_reader(device)  # once per run: opening NVML or amdsmi is slow
    writer.update_meta(telemetry=reader.describe())

    def step(i: int, total: int, suite: Suite, case: Case) -> None:
        if progress:
            progress(i, total, case, None)
        result = (case_runner or run_case)(suite, case, device, plan, flush, reader)
        writer.append(result)
        outcome.counts[result.status] = outcome.counts.get(result.status, 0) + 1
        if progress:
            progress(i, total, case, result)
        _release(device)

    try:
        for i, (suite, case) in enumerate(todo, start=1):
            step(i, len(todo), suite, case)
        more = [(suite, case) for suite, case in followups(cases, out_dir, device) if case.key not in done]
        for i, (suite, case) in enumerate(more, start=len(todo) + 1):
            step(i, len(todo) + len(more), suite, case)
    except KeyboardInterrupt:
        writer.update_meta(status="interrupted", ended_at=_now())
        writer.close()
        raise
    finally:
        reader.close()
    counts: dict[str, int] = {}
    for record in read_run(out_dir).records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    writer.update_meta(status="complete", ended_at=_now(), counts=counts)
    writer.close()
    return outcome


def followups(cases: list[tuple[Suite, Case]], out_dir: Path, device) -> list[tuple[Suite, Case]]:
    """The cases each suite of the plan asks for after its preset's, from its records so far."""
    suites = [s for s in {suite.name: suite for suite, _ in cases}.values() if s.followup is not None]
    if not suites:
        return []
    records = read_run(out_dir).records
    return [(suite, case) for suite in suites
            for case in suite.followup([r for r in records if r.get("suite") == suite.name], device)]


def _release(device) -> None:
    """Return a case's arrays to the device so the next (perhaps larger) case has room."""
    if device.is_gpu:
        import torch

        torch.cuda.empty_cache()
