"""parity starting the ranks of one node (or joining torchrun's group), watching them, and replacing
a group whose collective case failed, hung or died, as the case supervisor does for one process.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from parity.harness.core import lifeline, safeio
from parity.harness.core import device as device_mod
from parity.harness.core.model import Case, UsageError
from parity.harness.core.ranks import DEFAULT_TIMEOUT_S, EXIT_RANK, FAULT_ENV, STORE_ENV, child_env, place_from_env
from parity.harness.scaleout.distributed import DONE, follow, has_collective, join, plan_args, store_get, wanted_ranks


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
    from parity.harness.core.results import RunWriter, done_keys, read_run
    from parity.harness.measurement import registry
    from parity.harness.measurement.case import failed_record, now_iso

    try:
        run = read_run(out)
    except Exception:  # noqa: BLE001 - rank 0 ended before it wrote the run: no case to record
        return False
    task = fault.task
    case = Case(task["suite"], task["op"], task["impl"], task["params"])
    if case.key in done_keys(run.records):
        return False
    record = failed_record(registry.load(case.suite), case, device, fault.reason or fault.message, now_iso(), 0.0)
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
        env, fds = lifeline.child(env)  # a rank ends with this process, however it dies
        cmd = [sys.executable, "-m", "parity", "run", *run_args]
        if rank == 0:
            procs.append(subprocess.Popen(cmd, env=env, pass_fds=fds))
            continue
        log = safeio.append_own(logs / f"rank-{rank}.log")
        files.append(log)
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      pass_fds=fds))
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
    task = store_get(store, f"case/{state.split(':')[0]}")
    return json.loads(task) if task and task != DONE else None


def _fault(store, n: int, first_dead, idle_s: float) -> GroupFault:
    """The group's fault in words, and the collective case rank 0 was in when it came."""
    message = _culprit(store, n, first_dead, idle_s)
    return GroupFault(message, _task_of(store, store_get(store, "state/0")), message)


def _progress(store, n: int) -> tuple:
    keys = ["beat/0"] + [f"state/{r}" for r in range(n)]
    return tuple(store_get(store, k) for k in keys)


def _culprit(store, n: int, first_dead: tuple[int, int] | None, idle_s: float) -> str:
    errors = {r: store_get(store, f"error/{r}") for r in range(n)}
    errors = {r: e for r, e in errors.items() if e is not None}
    if errors:
        r = min(errors)
        return f"rank {r} failed: {errors[r]}"
    states = {}
    for r in range(n):
        value = store_get(store, f"state/{r}")
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
