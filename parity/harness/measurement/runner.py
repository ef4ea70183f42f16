"""Walks the cases of a run plan: supports -> inputs -> prepare -> validate -> time -> append.

Every case ends as exactly one record, appended to the run's file as soon as it is known; a skip,
a failure and an invalid output are records too, and the run goes on after each. One case end to end
is case.py (which the case supervisor's worker runs too).
"""
from __future__ import annotations

import datetime as dt
import errno
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from parity.harness.core import device as device_mod
from parity.harness.core import provenance, runlock
from parity.harness.core.model import TIMING_EVENTS, TIMING_INTERPRET, TIMING_WALL, Case, Suite, UsageError
from parity.harness.core.results import RUN_FILE, RUN_SCHEMA, Measurement, ResultsError, RunWriter, done_keys, read_run
from parity.harness.measurement import registry, supervisor, telemetry
from parity.harness.measurement.case import now_iso, release, run_case
from parity.harness.measurement.flush import Flush
from parity.harness.measurement.plan import RunPlan, choose
from parity.harness.measurement.telemetry_readers import open_reader
from parity.harness.measurement.timing import Policy


@dataclass
class Outcome:
    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    skipped_existing: int = 0


def plan_cases(plan: RunPlan, device) -> list[tuple[Suite, Case]]:
    """Every case of the plan on this device; unknown names and impossible sizes are UsageErrors."""
    suites = [registry.load(name) for name in plan.suites]
    return [(suite, case) for suite, dtypes, sizes, shapes in choose(suites, plan, device)
            for case in suite.cases(plan.preset, device, dtypes=dtypes, sizes=sizes, impls=plan.impls, shapes=shapes)]


def run_meta(plan: RunPlan, device, command: list[str], flush: Flush | None) -> dict[str, Any]:
    return {
        "schema": RUN_SCHEMA,
        "run_id": dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
        "started_at": now_iso(),
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
    if not recorded.get("name") or not recorded.get("backend"):
        raise UsageError(f"{path / RUN_FILE} records no device (its device has no name and backend): "
                         "start a new run instead")
    if (recorded.get("name"), recorded.get("backend")) != (device.name, device.backend):
        raise UsageError(f"{path} was run on {recorded.get('name')} ({recorded.get('backend')}); "
                         f"this is {device.name} ({device.backend}): start a new run instead")
    return RunPlan.recorded(run.meta, path), run.meta, done_keys(run.records)


def _complete(plan: RunPlan, meta: dict[str, Any], done: set[str], device) -> bool:
    return meta.get("status") == "complete" and all(c.key in done for _, c in plan_cases(plan, device))


def finished(out_dir: Path, device) -> bool:
    """Whether resuming the run in `out_dir` would find nothing to do (what execute checks first);
    False where it cannot tell (a damaged or foreign folder: the resume itself says why)."""
    try:
        return _complete(*resume_plan(out_dir, device), device)
    except (ResultsError, UsageError):
        return False


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
        if _complete(plan, meta, done, device):
            return Outcome(path=out_dir, skipped_existing=len(done))  # nothing to do: the run is left as it was
        meta.setdefault("resumed_at", []).append(now_iso())
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
    reader = open_reader(device)  # once per run: opening NVML or amdsmi is slow
    writer.update_meta(telemetry=reader.describe())

    def step(i: int, total: int, suite: Suite, case: Case) -> None:
        if progress:
            progress(i, total, case, None)
        result = (case_runner or run_case)(suite, case, device, plan, flush, reader)
        writer.append(result)
        outcome.counts[result.status] = outcome.counts.get(result.status, 0) + 1
        if progress:
            progress(i, total, case, result)
        release(device)

    try:
        for i, (suite, case) in enumerate(todo, start=1):
            step(i, len(todo), suite, case)
        more = [(suite, case) for suite, case in followups(cases, out_dir, device) if case.key not in done]
        for i, (suite, case) in enumerate(more, start=len(todo) + 1):
            step(i, len(todo) + len(more), suite, case)
    except KeyboardInterrupt:
        writer.update_meta(status="interrupted", ended_at=now_iso())
        writer.close()
        raise
    finally:
        reader.close()
    counts: dict[str, int] = {}
    for record in read_run(out_dir).records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    writer.update_meta(status="complete", ended_at=now_iso(), counts=counts)
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
