"""Wall-clock sampling of synchronous calls (PyTorch on the CPU, the Triton interpreter) and the
warm-up every timing kind starts with (timing.py times with them)."""
from __future__ import annotations

import math
import time
from typing import Any, Callable

from parity.harness.core.model import TIMING_EVENTS

WARMUP_QUEUE_MS = 20.0  # the warm-up queues about this much work between synchronizations
MODE_SINGLE = "single"  # one launch per event pair (or per wall-clock sample)
MODE_BACK_TO_BACK = "back-to-back"  # several launches per event pair, the sample is their mean


class WallSampler:
    """`take(k)`: k samples of host wall-clock time (CPU work is synchronous); `launches` calls
    per sample where asked (collectives of a few microseconds)."""

    def __init__(self, thunk: Callable[[], Any], clock: Callable[[], float] = time.perf_counter,
                 launches: int = 1, before_batch: Callable[[], Any] | None = None,
                 setup: Callable[[], Any] | None = None):
        self.thunk, self.clock, self.launches, self.before_batch = thunk, clock, launches, before_batch
        self.setup = setup  # run before each sample, outside its clock

    @property
    def mode(self) -> str:
        return MODE_BACK_TO_BACK if self.launches > 1 else MODE_SINGLE

    def __call__(self, k: int) -> list[float]:
        if self.before_batch is not None:
            self.before_batch()
        out = []
        for _ in range(k):
            if self.setup is not None:
                self.setup()
            t0 = self.clock()
            for _ in range(self.launches):
                self.thunk()
            out.append((self.clock() - t0) * 1e3 / self.launches)
        return out


def wall_batch(thunk: Callable[[], Any], clock: Callable[[], float] = time.perf_counter, **options) -> WallSampler:
    """k samples of host wall-clock time (see WallSampler)."""
    return WallSampler(thunk, clock, **options)


def warm_up(thunk: Callable[[], Any], timing: str, policy,
            clock: Callable[[], float] = time.perf_counter, sync: Callable[[], Any] | None = None,
            seen: list[float] | None = None, setup: Callable[[], Any] | None = None) -> float:
    """Run the thunk for the warm-up budget (at least once); returns the estimated ms per call.

    With `seen` (wall-clock timings), each call after the first is timed alone and the fastest is
    appended to it: collect's floor, below which no sample of a synchronous call can be. `setup`
    runs before each call (its time is in the estimate: it only sizes the batches).
    On a GPU the calls are queued in batches of about WARMUP_QUEUE_MS of work with one synchronize
    each, so the device runs them back to back (a synchronize per call would leave it idle
    between calls, and never reach its loaded clock); there is no cap on the number of calls, only
    on time. The estimate is the last batch's time per call: the steady state, not the first
    call's compile or ramp."""
    if sync is None:
        sync = _synchronize if timing == TIMING_EVENTS else (lambda: None)
    start = clock()
    thunk()
    sync()
    per_call_ms = (clock() - start) * 1e3
    while (clock() - start) * 1e3 < policy.warmup_ms:
        remaining_ms = policy.warmup_ms - (clock() - start) * 1e3
        k = max(1, int(min(remaining_ms, WARMUP_QUEUE_MS) / max(per_call_ms, 1e-3)))  # no call is under 1 us
        t0 = clock()
        fastest = math.inf
        for _ in range(k):
            if setup is not None:
                setup()
            t1 = clock()
            thunk()
            fastest = min(fastest, clock() - t1)
        sync()
        spent_ms = (clock() - t0) * 1e3
        if seen is not None and fastest < math.inf:
            seen.append(fastest * 1e3)
        if spent_ms <= 0:  # a clock that does not move (a fake) cannot end a warm-up by time
            break
        per_call_ms = spent_ms / k
    return per_call_ms


def _synchronize() -> None:
    import torch

    torch.cuda.synchronize()


ONE_THREAD_CALLS = 3


def one_thread_floor(thunk: Callable[[], Any], setup: Callable[[], Any] | None = None) -> list[float]:
    """The fastest of a few calls with one PyTorch thread, in ms ([] where it already runs on one).

    On a loaded CPU every call of a multi-threaded op can wait at its OpenMP barriers for a thread
    that has no core (a scheduler slice, 4-12 ms): the warm-up then sees no faster call, and the
    samples are one quiet level that is the load's, not the op's. One thread does the same work with
    no barrier, so a multi-threaded median over FLOOR_FACTOR times it is waiting (noisy.judge)."""
    import torch

    threads = torch.get_num_threads()
    if threads <= 1:
        return []
    fastest = math.inf
    torch.set_num_threads(1)
    try:
        for _ in range(ONE_THREAD_CALLS):
            if setup is not None:
                setup()
            start = time.perf_counter()
            thunk()
            fastest = min(fastest, time.perf_counter() - start)
    except Exception:  # noqa: BLE001 - the floor is advice: a failing call fails in the sampling, on record
        return []
    finally:
        torch.set_num_threads(threads)
    return [fastest * 1e3]
