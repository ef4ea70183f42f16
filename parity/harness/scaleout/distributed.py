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

`PARITY_FAULT=WHO:KIND[:CASE]` (testing only) makes rank or worker WHO raise, hang, exit or segv at its
CASE-th case (default the first), so the tests can check the above for real.
"""
from __future__ import annotations

import atexit
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from parity.harness.core import device as device_mod
from parity.harness.core.model import TIMING_EVENTS, Case, UsageError, one_line
from parity.harness.measurement.timing import Policy, Stats, collect_in_window, event_batch, launches_for, wall_batch

EXIT_RANK = 3  # a rank failed or hung: the run ended early
DEFAULT_TIMEOUT_S = 300.0
STORE_ENV = "PARITY_STORE"  # host:port of the store of the process that started the ranks
FAULT_ENV = "PARITY_FAULT"
WORKER_ENV = "PARITY_WORKER"  # set by multigpu.py for each per-GPU worker
WARMUP_CALLS = 5  # nccl-tests' default warm-up iterations, per round
POLL_S = 0.005
DONE = "done"


class RankError(Exception):
    """A rank failed, died or stopped answering; the message names it and is one line."""


@dataclass(frozen=True)
class Place:
    rank: int
    world_size: int
    local_rank: int


def place_from_env() -> Place | None:
    """This process's place, from the variables torchrun (or `launch`) sets; None outside a group."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    return Place(rank, world, local)


def local_index(default: int) -> int:
    """The GPU a process uses: its LOCAL_RANK inside a process group, else the one asked for."""
    place = place_from_env()
    return default if place is None else place.local_rank


RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
                  "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE", STORE_ENV)


def launched_by_parity() -> bool:
    """Whether this process is a rank that `launch` started (which reports the rank's faults)."""
    return bool(os.environ.get(STORE_ENV)) and place_from_env() is not None


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process parity starts: this one's, less any place in a group."""
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARIABLES}
    env.update(extra)
    return env


def default_ranks(device) -> int:
    """Ranks parity starts for a collective suite: one per visible GPU, two on the CPU (gloo)."""
    if device.is_gpu:
        import torch

        return torch.cuda.device_count()
    return 2


# --- measuring in step ---------------------------------------------------------------------------


def _agree_max(values: list[float]) -> list[float]:
    """The elementwise maximum over ranks (on the GPU for NCCL, which moves device memory only)."""
    import torch
    import torch.distributed as dist

    where = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=where)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


class _AgreedClock:
    """Seconds since sampling began, as the slowest rank saw them at the end of the last batch.
    Every rank reads the same value, so every rank makes the same stopping decision."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def _barrier() -> None:
    """Every rank waits here until all have come: a tiny all-reduce, read back on the host."""
    _agree_max([0.0])


class _InStep:
    """A rank's sampler whose samples and clock are agreed over the ranks (the maximum of each):
    every rank gets the same samples, so every rank makes the same stopping decision."""

    def __init__(self, local, began: float, clock: _AgreedClock):
        self.local, self.began, self.clock = local, began, clock

    def __getattr__(self, name: str):  # launches, mode, retaken, stalled: the local sampler's
        return getattr(self.local, name)

    def __call__(self, k: int) -> list[float]:
        agreed = _agree_max(self.local(k) + [time.perf_counter() - self.began])
        self.clock.seconds = agreed[-1]
        return agreed[:-1]


def measure_in_step(thunk: Callable[[], Any], timing: str, policy: Policy, flush=None, window=None) -> Stats:
    """`timing.measure` for work that every rank runs at once (a collective): the same warm-up,
    batches and stopping rule on every rank, each sample the slowest rank's time.

    A collective is done when its last rank is; nccl-tests reports the mean over ranks of each
    rank's mean time by default (`-a 1`; `-a 3` takes the maximum; common.cu `BenchTime` and
    `Allreduce`); the maximum per sample keeps the median and spread of the slowest rank. As in
    nccl-tests (`-n`, iterations per timing), a small message is timed several calls per event
    pair (timing.launches_for, agreed over the ranks), so a sample is not launch latency. Before
    each batch the ranks meet at a barrier, and each holds its stream for the longest host
    queueing time of any rank, so the first sample of a batch carries no skew between ranks.
    """
    start = time.perf_counter()
    calls, spent_ms = 0, 0.0
    while True:  # warm-up in rounds, the budget (time only) judged on the slowest rank's clock
        for _ in range(WARMUP_CALLS):
            thunk()
        if timing == TIMING_EVENTS:
            import torch

            torch.cuda.synchronize()
        calls += WARMUP_CALLS
        spent_ms = _agree_max([(time.perf_counter() - start) * 1e3])[0]
        if spent_ms >= policy.warmup_ms:
            break
    estimate_ms = spent_ms / calls
    if timing == TIMING_EVENTS:  # the sampler judges the call on one-launch samples, agreed over ranks
        local = event_batch(thunk, flush, before_batch=_barrier, agree=_agree_max)
    else:
        local = wall_batch(thunk, launches=launches_for(estimate_ms), before_batch=_barrier)
    clock = _AgreedClock()
    take = _InStep(local, time.perf_counter(), clock)
    return collect_in_window(take, policy, estimate_ms, window, clock=clock)


# --- one rank's session --------------------------------------------------------------------------


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


def inject_fault(who: int, at: int) -> None:
    """Testing only: raise, hang or exit when PARITY_FAULT names this rank or worker and case."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    parts = spec.split(":")
    if int(parts[0]) != who or (int(parts[2]) if len(parts) > 2 else 0) != at:
        return
    if parts[1] == "raise":
        raise RuntimeError(f"injected fault ({FAULT_ENV}={spec})")
    if parts[1] == "hang":
        time.sleep(3600)
    if parts[1] == "exit":
        os._exit(17)
    if parts[1] == "segv":  # as a crashing kernel or driver would end the process
        os.kill(os.getpid(), signal.SIGSEGV)


def _get(store, key: str) -> str | None:
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
                error = _get(store, f"error/{r}")
                if error is not None:
                    raise RankError(f"rank {r} failed: {error}")
                found = _get(store, f"outcome/{i}/{r}")
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
    from parity.harness.core import registry
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
        value = _get(store, key)
        if value is not None:
            return value
        time.sleep(POLL_S * 4)


# --- parity starting the ranks of one node ---------------------------------------------------------


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
    if plan.ranks is not None:
        args += ["--ranks", str(plan.ranks)]
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
    from parity.harness.core import registry

    return any(registry.load(name).collective for name in plan.suites)


def dispatch(plan, device, out: Path, resume: bool, timeout_s: float | None):
    """Before a run: start the ranks (returns their exit status), or join the group as a rank
    (returns the status of a rank other than 0; None lets rank 0 run the plan as usual), or None
    for a run in this process alone."""
    timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    if timeout_s <= 0:
        raise UsageError("--rank-timeout-s must be positive")
    place = place_from_env()
    if place is not None:
        if plan.ranks is not None and plan.ranks != place.world_size:
            raise UsageError(f"--ranks {plan.ranks} differs from WORLD_SIZE={place.world_size}")
        device_mod.use(device)  # this rank's GPU is current before NCCL/RCCL binds to it
        session = join(place, device, timeout_s)
        return None if place.rank == 0 else follow(session, device)
    if resume:  # the plan is the one the run folder recorded
        from parity.harness.core.results import read_run
        from parity.harness.measurement.runner import RunPlan

        plan = RunPlan.recorded(read_run(out).meta, out)
    if not has_collective(plan):
        return None
    n = wanted_ranks(plan, device)
    if n < 2:
        return None  # one GPU: the collective cases are skipped, each with its reason
    from parity.harness.measurement.runner import plan_cases

    plan_cases(plan, device)  # bad input fails here, once, before any process starts
    args = ["--resume", str(out)] if resume else plan_args(replace(plan, ranks=n)) + ["--out", str(out)]
    from parity.harness.core import runlock
    from parity.harness.measurement.supervisor import case_timeout_s

    with runlock.hold(out, "resume" if resume else "run", fresh=not resume):  # rank 0, which writes OUT, inherits it
        return launch(n, out, args + ["--rank-timeout-s", repr(timeout_s)], timeout_s, case_timeout_s(plan, device),
                      device)


@dataclass(frozen=True)
class GroupFault:
    """Why a process group ended early, and the collective case it was in (None: none to blame)."""

    message: str
    task: dict[str, Any] | None = None
    reason: str | None = None  # the case's failure, as its record says it


MAX_RESTARTS = 50  # a group replaced this often is not unlucky: the run ends instead


def launch(n: int, out: Path, run_args: list[str], timeout_s: float, case_timeout_s: float | None = None,
           device=None) -> int:
    """The ranks of one node, supervised like the cases of a single process: a collective case past
    its limit, or a rank that fails or dies in one, is recorded failed (with which rank and how),
    the group is replaced and the run goes on from the next case, as a resume would. A fault with
    no case to blame ends the run with one line naming the rank (EXIT_RANK)."""
    args = run_args
    for restarts in range(MAX_RESTARTS + 1):
        code, fault = _launch_group(n, out, args, timeout_s, case_timeout_s)
        if fault is None:
            return 1 if code == 0 and restarts else code  # 1: a case failed (the one recorded here)
        if device is None or fault.task is None or not _record_failed_case(out, fault, device):
            print(f"parity: error: {fault.message}; finished records are in {out}", file=sys.stderr)
            return EXIT_RANK
        print(f"parity: warning: {fault.message}; its case is recorded failed and the ranks start again "
              "from the next case", file=sys.stderr, flush=True)
        args = ["--resume", str(out), "--rank-timeout-s", repr(timeout_s)]
        os.environ.pop(FAULT_ENV, None)  # testing: an injected fault happens once, not in every group
    print(f"parity: error: the ranks were replaced {MAX_RESTARTS} times; finished records are in {out}",
          file=sys.stderr)
    return EXIT_RANK


def _record_failed_case(out: Path, fault: GroupFault, device) -> bool:
    """Append the failed record of the case the group was in (every rank has ended: this process is
    the run's only writer now); False when it has a record already."""
    from parity.harness.core import registry
    from parity.harness.core.results import RunWriter, done_keys, read_run
    from parity.harness.measurement.runner import _now, failed_record

    try:
        run = read_run(out)
    except Exception:  # noqa: BLE001 - rank 0 ended before it wrote the run: no case to record
        return False
    task = fault.task
    case = Case(task["suite"], task["op"], task["impl"], task["params"])
    if case.key in done_keys(run.records):
        return False
    record = failed_record(registry.load(case.suite), case, device, fault.reason or fault.message, _now(), 0.0)
    writer = RunWriter(out, dict(run.meta))
    try:
        writer.append(record)
    finally:
        writer.close()
    return True


def _launch_group(n: int, out: Path, run_args: list[str], timeout_s: float,
                  case_timeout_s: float | None) -> tuple[int, GroupFault | None]:
    """Start `parity run` as ranks 0..n-1 of one node and watch them; rank 0 talks to the user,
    the others write to OUT/ranks/rank-N.log. Returns rank 0's status, or EXIT_RANK and the fault
    naming the rank that failed, died or fell behind."""
    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                          timeout=dt.timedelta(seconds=timeout_s))
    logs = out / "ranks"
    logs.mkdir(parents=True, exist_ok=True)
    procs, files = [], []
    for rank in range(n):
        env = child_env(RANK=str(rank), WORLD_SIZE=str(n), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(n),
                        **{STORE_ENV: f"127.0.0.1:{store.port}"})
        cmd = [sys.executable, "-m", "parity", "run", *run_args]
        if rank == 0:
            procs.append(subprocess.Popen(cmd, env=env))
            continue
        log = (logs / f"rank-{rank}.log").open("a")
        files.append(log)
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    try:
        return _watch(procs, dist.PrefixStore("parity", store), out, timeout_s, case_timeout_s)
    except KeyboardInterrupt:
        stop_processes(procs, grace_s=5.0)  # the terminal sent SIGINT to every rank: rank 0 says what is kept
        return 130, None
    finally:
        stop_processes(procs)
        for log in files:
            log.close()


def _watch(procs, store, out: Path, timeout_s: float,
           case_timeout_s: float | None = None) -> tuple[int, GroupFault | None]:
    idle_limit = 2 * timeout_s + 10  # past rank 0's own limits (a collective's, then the gather's)
    last, last_change = None, time.monotonic()
    first_dead: tuple[int, int] | None = None
    running: dict[int, tuple[str, float]] = {}  # rank -> (its state "i:0" or "i:1", since when)
    while True:
        codes = [p.poll() for p in procs]
        if codes[0] is not None:
            if codes[0] == EXIT_RANK:  # rank 0 has named the rank that failed
                stop_processes(procs)
                return EXIT_RANK, _fault(store, len(procs), None, idle_limit)
            if codes[0] in (0, 1, 2, 130):
                stop_processes(procs[1:], grace_s=30.0)  # rank 0 has told them it is done
                return codes[0], None
            first_dead = first_dead or (0, codes[0])
            break
        dead = [(r, c) for r, c in enumerate(codes) if r and c not in (None, 0)]
        if dead:
            first_dead = dead[0]
            # Rank 0 notices a peer's death within seconds (its collective fails, the peer's error
            # is in the store) and says which rank failed: give it the chance to, then speak for it.
            try:
                procs[0].wait(timeout=min(timeout_s, 10.0))
            except subprocess.TimeoutExpired:
                pass
            break
        progress = _progress(store, len(procs))
        now = time.monotonic()
        if progress != last:
            last, last_change = progress, now
        elif any(progress) and now - last_change > idle_limit:
            # Armed once rank 0 has begun: before, joining the group has its own timeout.
            stop_processes(procs)
            return EXIT_RANK, _fault(store, len(procs), None, idle_limit)
        if case_timeout_s is not None:
            states = progress[1:]  # state/r of every rank
            for r, state in enumerate(states):
                if state and not state.endswith(":2"):  # in a collective case (":2": done with it)
                    if running.get(r, ("", 0.0))[0] != state:
                        running[r] = (state, now)
                else:
                    running.pop(r, None)
            if any(now - since > case_timeout_s for _, since in running.values()):
                stop_processes(procs, grace_s=0.0)
                # The rank furthest behind holds the others up (they wait in the collective for it).
                behind = min(tuple(map(int, state.split(":"))) for state, _ in running.values())
                late = [r for r, (state, _) in sorted(running.items()) if tuple(map(int, state.split(":"))) == behind]
                who = f"rank{'s' if len(late) > 1 else ''} {', '.join(map(str, late))}"
                return EXIT_RANK, GroupFault(f"{who} ran collective case {behind[0]} past {case_timeout_s:g} s",
                                             _task_of(store, f"{behind[0]}:0"),
                                             f"timed out after {case_timeout_s:g} s ({who})")
        time.sleep(0.05)
    stop_processes(procs)
    return EXIT_RANK, _fault(store, len(procs), first_dead, idle_limit)


def _task_of(store, state: str | None) -> dict[str, Any] | None:
    """The collective case a rank's state ("i:k") names, as rank 0 posted it."""
    if not state:
        return None
    task = _get(store, f"case/{state.split(':')[0]}")
    return json.loads(task) if task and task != DONE else None


def _fault(store, n: int, first_dead, idle_s: float) -> GroupFault:
    """The group's fault in words, and the collective case rank 0 was in when it came."""
    message = _culprit(store, n, first_dead, idle_s)
    return GroupFault(message, _task_of(store, _get(store, "state/0")), message)


def _progress(store, n: int) -> tuple:
    keys = ["beat/0"] + [f"state/{r}" for r in range(n)]
    return tuple(_get(store, k) for k in keys)


def _culprit(store, n: int, first_dead: tuple[int, int] | None, idle_s: float) -> str:
    errors = {r: _get(store, f"error/{r}") for r in range(n)}
    errors = {r: e for r, e in errors.items() if e is not None}
    if errors:
        r = min(errors)
        return f"rank {r} failed: {errors[r]}"
    states = {}
    for r in range(n):
        value = _get(store, f"state/{r}")
        states[r] = tuple(map(int, value.split(":"))) if value else (-1, 2)
    behind = min(states.values())
    laggards = [r for r, s in states.items() if s == behind] if len(set(states.values())) > 1 else []
    # A rank that died is the news, unless NCCL's watchdog aborted it (SIGABRT) for waiting on one
    # that fell behind.
    if first_dead is not None and not (first_dead[1] == -6 and laggards and first_dead[0] not in laggards):
        from parity.harness.measurement.supervisor import how_it_died

        r, code = first_dead
        how = how_it_died(code)
        return f"rank {r} {how}" + (f" (see ranks/rank-{r}.log)" if r else "")
    if laggards:
        where = f"collective case {behind[0]}" if behind[0] >= 0 else "its first collective case"
        return (f"rank {', '.join(map(str, laggards))} stopped before finishing {where}; the other ranks "
                "went on and timed out waiting for it")
    return f"no rank made progress for {idle_s:g} s"


def stop_processes(procs, grace_s: float = 2.0) -> None:
    """Wait up to `grace_s` for the processes to end, then terminate, then kill what remains."""
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
