"""Ranks of a process group: started by parity for one node, or by torchrun; cases run in step.

A run whose plan holds a collective suite needs every rank to run each collective case at once.
`parity run` outside a process group starts the ranks itself (`launch`): one `parity run` process
per GPU (two on the CPU, `--ranks N`), each told its place by the variables torchrun sets (RANK,
WORLD_SIZE, LOCAL_RANK) and pointed at a TCPStore this process holds. Under torchrun the same
processes start the same way with torchrun's store. Each rank joins the group (`join`: NCCL on
CUDA, RCCL behind the same "nccl" backend on ROCm, gloo on the CPU, with a timeout on every
collective). Rank 0 runs the plan as any run does and writes the run folder; before each
collective case it posts the case to the store, the other ranks (`follow`) run it at the same time
with the same runner (`runner.run_case`), and post their records back; rank 0 merges them into the
case's one record (`Leader`). Samples are taken in step on every rank and each is the slowest
rank's time (`measure_in_step`).

A rank that fails or stops answering ends the run within a timeout with one line naming it:
rank 0 names a rank whose record does not come (or that posted an error); the launching process
watches the processes (exit status, progress in the store) and names the one that died or fell
behind. Every record written before stays in the run folder.

Starting and watching the ranks of one node is group.py; a process's place is core/ranks.py.
"""
from __future__ import annotations

import atexit
import datetime as dt
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from parity.harness.core.model import Case, UsageError, one_line
from parity.harness.core.ranks import EXIT_RANK, STORE_ENV, Place, RankError, default_ranks, inject_fault

POLL_S = 0.005


DONE = "done"


@dataclass
class Session:
    place: Place
    store: Any  # a PrefixStore for parity's keys
    timeout_s: float


_SESSION: Session | None = None  # this process's group, like torch's default group (one per process)


def join(place: Place, device, timeout_s: float) -> Session:
    """Join the process group: the store of the process that started us, or torchrun's (env://)."""
    global _SESSION
    import torch.distributed as dist

    timeout = dt.timedelta(seconds=timeout_s)
    try:
        if os.environ.get(STORE_ENV):
            host, port = os.environ[STORE_ENV].rsplit(":", 1)
            store = dist.TCPStore(host, int(port), is_master=False, timeout=timeout)
        else:
            store = next(dist.rendezvous("env://", timeout=timeout))[0]
        dist.init_process_group("nccl" if device.is_gpu else "gloo", store=store, rank=place.rank,
                                world_size=place.world_size, timeout=timeout)
    except (RuntimeError, ValueError) as exc:
        raise RankError(f"rank {place.rank} could not join the process group: {one_line(exc)}") from None
    _SESSION = Session(place, dist.PrefixStore("parity", store), timeout_s)
    return _SESSION


def store_get(store, key: str) -> str | None:
    return store.get(key).decode() if store.check([key]) else None


def _task(case: Case, plan) -> str:
    # The whole plan travels, so a follower times its cases as rank 0 does (time cap, settle, ...).
    return json.dumps({"suite": case.suite, "op": case.op, "impl": case.impl, "params": dict(case.params),
                       "plan": plan.to_dict()})


class Leader:
    """Rank 0's case runner: `runner.run_case` for every case, in step with the other ranks for
    the cases of a collective suite, whose records it merges into one."""

    def __init__(self, session: Session, run=None):
        self.session = session
        self.run = run  # what runs the cases of other suites (the supervisor); None: run_case here
        self.index = 0  # collective cases so far
        self.cases = 0  # all cases so far
        self.closed = False
        self.failed = False
        atexit.register(self.close)

    def __call__(self, suite, case: Case, device, plan, flush, reader=None):
        from parity.harness.measurement.runner import run_case

        store = self.session.store
        self.cases += 1
        if not suite.collective:
            result = (self.run or run_case)(suite, case, device, plan, flush, reader)
            store.set("beat/0", str(self.cases))
            return result
        i = self.index
        self.index += 1
        store.set(f"case/{i}", _task(case, plan))
        store.set("state/0", f"{i}:0")
        try:
            inject_fault(0, i)
        except Exception as exc:  # noqa: BLE001 - rank 0's own fault ends the run named, like any rank's
            self.failed = True
            store.set("error/0", one_line(exc))
            raise RankError(f"rank 0 failed {case.label()}: {one_line(exc)}") from None
        store.set("state/0", f"{i}:1")
        mine = run_case(suite, case, device, plan, flush, reader)
        store.set("state/0", f"{i}:2")
        try:
            merged = merge(case, mine, self._gather(i, case))
        except RankError:
            self.failed = True  # the group is out of step: leaving it could wait on the lost rank
            raise
        store.set("beat/0", str(self.cases))
        return merged

    def _gather(self, i: int, case: Case) -> dict[int, dict[str, Any]]:
        store, n = self.session.store, self.session.place.world_size
        pending, records = set(range(1, n)), {}
        deadline = time.monotonic() + self.session.timeout_s
        while pending:
            for r in sorted(pending):
                error = store_get(store, f"error/{r}")
                if error is not None:
                    raise RankError(f"rank {r} failed: {error}")
                found = store_get(store, f"outcome/{i}/{r}")
                if found is not None:
                    records[r] = json.loads(found)
                    pending.discard(r)
            if pending and time.monotonic() > deadline:
                late = ", ".join(map(str, sorted(pending)))
                raise RankError(f"rank {late} did not finish {case.label()} within {self.session.timeout_s:g} s "
                                f"(hung or dead; --rank-timeout-s sets the limit)")
            if pending:
                time.sleep(POLL_S)
        return records

    def close(self) -> None:
        """Tell the other ranks the run is over and leave the group."""
        if self.closed:
            return
        self.closed = True
        try:
            import torch.distributed as dist

            self.session.store.set(f"case/{self.index}", DONE)
            if dist.is_initialized() and not self.failed:
                dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - the store's owner may be gone already: nothing to tell
            pass


def merge(case: Case, mine, others: dict[int, dict[str, Any]]):
    """One record for a case from every rank's: validation over all ranks, rank 0's timing (the
    same on every rank). The same failure on every rank is the case's record; any other failure
    has left the group out of step and ends the run, naming the rank that failed first."""
    records = {0: mine.to_dict(), **others}
    statuses = {r: rec["status"] for r, rec in records.items()}
    failed = [r for r, s in statuses.items() if s == "failed"]
    reasons = {records[r].get("reason") for r in failed}
    if failed and (len(failed) < len(records) or len(reasons) > 1):  # not one failure shared by all
        first = min(failed, key=lambda r: records[r].get("duration_s") or 0.0)  # the others waited for it
        raise RankError(f"rank {first} failed {case.label()}: {records[first].get('reason')}")
    if len(set(statuses.values())) > 1 and not set(statuses.values()) <= {"ok", "invalid"}:
        shown = ", ".join(f"rank {r} {s}" for r, s in sorted(statuses.items()))
        raise RankError(f"the ranks disagree on {case.label()}: {shown}")
    checks = {r: rec.get("validation") for r, rec in records.items() if rec.get("validation")}
    if not checks:
        return mine
    errors = [c["error"] for _, c in sorted(checks.items()) if c.get("error")]
    worst = max(c.get("max_abs_error") or 0.0 for c in checks.values())
    validation = dict(mine.validation, passed=all(c.get("passed") for c in checks.values()),
                      max_abs_error=worst, error="; ".join(errors) or None)
    if validation["passed"]:
        return replace(mine, validation=validation)
    return replace(mine, status="invalid", reason=validation["error"], validation=validation, time_ms=None)


def case_runner(run=None):
    """What `runner.execute` runs each case with: the Leader on rank 0 of a group (the collective
    cases in step here, the others through `run`); `run` (the supervisor, whose worker injects
    PARITY_FAULT into a per-GPU worker's cases) otherwise."""
    if _SESSION is not None and _SESSION.place.rank == 0:
        return Leader(_SESSION, run)
    return run


def follow(session: Session, device) -> int:
    """Ranks other than 0: run each collective case rank 0 posts, post the record, until done."""
    from parity.harness.measurement import registry
    from parity.harness.measurement.runner import Flush, RunPlan, run_case

    store, rank = session.store, session.place.rank
    flush = Flush(device) if device.is_gpu else None
    i = 0
    try:
        while True:
            task = _wait(store, f"case/{i}")
            if task == DONE:
                break
            spec = json.loads(task)
            store.set(f"state/{rank}", f"{i}:0")
            suite = registry.load(spec["suite"])
            case = Case(spec["suite"], spec["op"], spec["impl"], spec["params"])
            inject_fault(rank, i)
            store.set(f"state/{rank}", f"{i}:1")
            plan = replace(RunPlan.from_dict(spec["plan"]), suites=(suite.name,))
            record = run_case(suite, case, device, plan, flush)
            store.set(f"outcome/{i}/{rank}", json.dumps(record.to_dict(), allow_nan=True))
            store.set(f"state/{rank}", f"{i}:2")
            i += 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - any failure of a rank ends it, named, for rank 0 to report
        message = one_line(exc)
        try:
            store.set(f"error/{rank}", message)
        except Exception:  # noqa: BLE001 - the store is gone: the launcher reports the exit instead
            pass
        print(f"parity: error: rank {rank} failed: {message}", file=sys.stderr)
        return EXIT_RANK
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _wait(store, key: str) -> str:
    """The value of `key` once it is set (rank 0 may run other suites for a long while first)."""
    while True:
        value = store_get(store, key)
        if value is not None:
            return value
        time.sleep(POLL_S * 4)


def plan_args(plan) -> list[str]:
    """`parity run` arguments that rebuild the plan field for field in the processes parity starts
    (GPU and CPU workers, ranks). tests/test_plan_args.py fails when a RunPlan field is not carried."""
    args = list(plan.suites) + ["--preset", plan.preset]
    for option, values in (("--impl", plan.impls), ("--dtype", plan.dtypes)):
        if values:
            args += [option, ",".join(values)]
    if plan.sizes_bytes:
        args += ["--size", ",".join(str(s) for s in plan.sizes_bytes)]
    if plan.shapes:
        args += ["--shape", ",".join("x".join(str(d) for d in shape) for shape in plan.shapes)]
    for option, value in (("--time-cap-s", plan.time_cap_s), ("--settle-s", plan.settle_s),
                          ("--min-time-s", plan.min_time_s), ("--case-timeout-s", plan.case_timeout_s)):
        if value is not None:
            args += [option, repr(float(value))]
    for option, count in (("--ranks", plan.ranks), ("--cpu-threads", plan.cpu_threads)):
        if count is not None:
            args += [option, str(count)]
    return args


def wanted_ranks(plan, device) -> int:
    """The ranks a plan with a collective suite runs on here; checks --ranks against the GPUs."""
    have = default_ranks(device)
    if plan.ranks is None:
        return have
    if plan.ranks < 2:
        raise UsageError(f"--ranks {plan.ranks}: a collective needs two or more ranks")
    if device.is_gpu and plan.ranks > have:
        raise UsageError(f"--ranks {plan.ranks}: only {have} GPU(s) visible, one rank per GPU")
    return plan.ranks


def has_collective(plan) -> bool:
    from parity.harness.measurement import registry

    return any(registry.load(name).collective for name in plan.suites)
