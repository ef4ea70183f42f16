"""Cases run in a supervised worker process, so one case that hangs or kills its process ends alone.

`parity run` hands each case to one long-lived worker (a fresh Python that imports torch and the
suites once, then runs `case.run_case` case after case) and waits for its record at most the
case's wall-clock limit (`--case-timeout-s`). A case past it is recorded `failed` with the reason
"timed out after S s"; a worker that dies under a case (a segfault, the OOM killer, a GPU fault,
os._exit) leaves its case recorded `failed` with how it died. Either way the worker is replaced
(the next case starts a fresh one) and the run goes on from the next case, as a resume would. The
records are still written by the one process that owns the run folder (`runner.execute`); the
worker only computes them.

Why a process and not a thread: a kernel stuck on the GPU, or the Triton interpreter looping over a
billion-element grid, cannot be interrupted from Python; only ending its process frees the device.
Why one long-lived worker and not one per case: a fresh worker spends seconds importing torch and
compiling kernels, so it is replaced only when a case kills or outlives it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

from parity.harness.core import lifeline
from parity.harness.core.model import one_line
from parity.harness.core.results import Measurement

DEFAULT_CASE_TIMEOUT_GPU_S = 900.0  # a mamf re-time of a large shape with its 2 s warm-up fits many times over
DEFAULT_CASE_TIMEOUT_CPU_S = 300.0  # the interpreter's slowest smoke and quick cases take seconds
KILL_WAIT_S = 10.0
START_TIMEOUT_S = 300.0  # a fresh worker imports torch, triton and the suites: not part of any case's time


def default_case_timeout_s(device) -> float:
    return DEFAULT_CASE_TIMEOUT_GPU_S if device.is_gpu else DEFAULT_CASE_TIMEOUT_CPU_S


def case_timeout_s(plan, device) -> float:
    """The limit of one case: the plan's, else the default for this kind of device."""
    given = getattr(plan, "case_timeout_s", None)
    return default_case_timeout_s(device) if given is None else float(given)


def timeout_meta(plan, device) -> dict:
    """What run.json records about the limit: the one applied and both defaults."""
    return {"case_timeout_s": case_timeout_s(plan, device),
            "case_timeout_defaults_s": {"gpu": DEFAULT_CASE_TIMEOUT_GPU_S, "cpu": DEFAULT_CASE_TIMEOUT_CPU_S}}


def how_it_died(code: int | None) -> str:
    """A worker's exit status in words: the signal's name (SIGSEGV, SIGKILL: the OOM killer's) or the code."""
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


class Supervisor:
    """A case runner (`case.run_case`'s signature) that runs each case in the worker and turns a
    timeout or the worker's death into the case's `failed` record."""

    runs_elsewhere = True  # runner.execute: the cases use the GPU in the worker, not in this process

    def __init__(self, device, timeout_s: float):
        self.device = device
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        self._ready = False
        self.cases = 0  # cases handed over so far: a fault injected for the tests names one
        self.replaced = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self, suites: tuple[str, ...] = ()) -> None:
        """Start a worker that loads `suites` before its first case; idempotent."""
        if self._proc is not None:
            return
        to_worker, from_worker = os.pipe(), os.pipe()
        root = str(Path(__file__).resolve().parents[3])  # the folder holding the parity package
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(p for p in (root, *sys.path) if p)))
        code = "from parity.harness.measurement.supervisor import worker_main; worker_main(%d, %d)" % (
            to_worker[0], from_worker[1])
        # Its own session: Ctrl-C in the terminal reaches this process, which ends the worker; and
        # a kill ends the worker's own children (Triton's compiler) with it.
        env, line = lifeline.child(env)  # killed with this process however it dies (kill -9 too)
        self._proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(to_worker[0], from_worker[1], *line),
                                      stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        os.close(to_worker[0])
        os.close(from_worker[1])
        self._send = Connection(to_worker[1], readable=False)
        self._recv = Connection(from_worker[0], writable=False)
        self._send.send(("init", self.device, tuple(suites)))
        self._ready = False

    def _wait_ready(self) -> None:
        """A fresh worker's start-up (imports, the GPU's context) is waited for apart from the case."""
        if self._ready:
            return
        if not self._recv.poll(START_TIMEOUT_S):
            raise OSError(f"the worker did not start within {START_TIMEOUT_S:g} s")
        self._recv.recv()  # ("ready",); EOFError if it died starting
        self._ready = True

    def __call__(self, suite, case, device, plan, flush=None, reader=None) -> Measurement:
        from parity.harness.measurement.case import failed_record, now_iso

        index = self.cases
        self.cases += 1
        self.start(tuple(plan.suites))
        started, started_at = time.perf_counter(), now_iso()
        try:
            self._wait_ready()
            started = time.perf_counter()
            self._send.send(("case", index, suite.name, case, plan))
            if self._recv.poll(self.timeout_s):
                reply = self._recv.recv()
                if isinstance(reply, Measurement):
                    return reply
                reason = reply[1]  # ("error", text): raised outside run_case's own handling
            else:
                reason = f"timed out after {self.timeout_s:g} s"
        except (EOFError, OSError) as exc:  # the worker died (its end of the pipes closed), or never started
            reason = str(exc) if isinstance(exc, OSError) and not exc.errno else None
        code = self._end()
        if reason is None:
            reason = f"the worker running it {how_it_died(code)}"
        self.replaced += 1
        return failed_record(suite, case, device, reason, started_at, time.perf_counter() - started)

    def _end(self) -> int | None:
        """End the worker (and its process group) and return its exit status."""
        proc, self._proc = self._proc, None
        for conn in (self._send, self._recv):
            if conn is not None:
                conn.close()
        self._send = self._recv = None
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.wait(timeout=0.2)  # a worker dying right now: keep its real status
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            return proc.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:  # unkillable (stuck in the driver): leave it, say so
            return None

    def close(self) -> None:
        """Tell the worker the run is over; end it if it does not go at once."""
        if self._proc is None:
            return
        try:
            self._send.send(("done",))
            self._proc.wait(timeout=2.0)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        self._end()


def _end_with_parent(poll_s: float = 1.0) -> None:
    """A supervisor killed outright (kill -9) cannot end its worker: the worker notices it has been
    orphaned and ends itself, rather than finish a case of minutes nobody will record."""
    import threading

    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parity-orphan-watch").start()


def worker_main(recv_fd: int, send_fd: int) -> None:
    """The worker: run each case it is given with `case.run_case`, send back its record."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when the worker ends
    lifeline.hold()
    _end_with_parent()
    recv, send = Connection(recv_fd, writable=False), Connection(send_fd, readable=False)
    try:
        message = recv.recv()
    except EOFError:
        return
    device = message[1]
    from parity.harness.core import device as device_mod
    from parity.harness.core import ranks
    from parity.harness.measurement import registry
    from parity.harness.measurement.case import release, run_case
    from parity.harness.measurement.flush import Flush
    from parity.harness.measurement.telemetry_readers import open_reader

    device_mod.use(device)
    for name in message[2]:  # imports (torch, triton, the kernels) are start-up, not a case's time
        try:
            registry.load(name)
        except Exception:  # noqa: BLE001 - the case that needs it reports the failure
            pass
    flush = Flush(device) if device.is_gpu else None
    reader = open_reader(device)
    worker = os.environ.get(ranks.WORKER_ENV)
    send.send(("ready",))
    try:
        while True:
            try:
                message = recv.recv()
            except EOFError:  # the supervisor is gone
                return
            if message[0] != "case":
                return
            _, index, suite_name, case, plan = message
            try:
                suite = registry.load(suite_name)
                if worker is not None:
                    ranks.inject_fault(int(worker), index)  # tests: a per-GPU worker's fault
                result = run_case(suite, case, device, plan, flush, reader)
                release(device)
            except Exception as exc:  # noqa: BLE001 - reported as the case's failure by the supervisor
                send.send(("error", one_line(exc)))
                continue
            try:
                send.send(result)
            except (BrokenPipeError, OSError):
                return
    finally:
        reader.close()
