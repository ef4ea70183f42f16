"""Timing work that every rank of a group runs at once (a collective): each sample the slowest rank's.

An implementation asks for it with `Impl(measure=MEASURE_IN_STEP)`; the case runner picks this
sampler in place of `timing.measure`.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from parity.harness.core.model import TIMING_EVENTS
from parity.harness.measurement.timing import Policy, Stats, collect_in_window, event_batch, launches_for, wall_batch

WARMUP_CALLS = 5  # nccl-tests' default warm-up iterations, per round


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
