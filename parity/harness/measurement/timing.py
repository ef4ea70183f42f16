"""Timing a thunk: warm-up, per-sample device events (or the wall clock), cache flush, adaptive stop.

Method after nvbench's cold measurement and triton.testing.do_bench (../shared/reference/
harness-method.md, sections 1.1, 1.2 and 1.5): a warm-up by time budget; on a GPU one event pair
per sample, with the last-level cache flushed before the sample when the op asks for a cold cache;
samples are queued in batches and read after one synchronize, so the host never stalls the device
between samples; sampling stops once the relative noise is under a target (after a minimum count),
or at a time cap. Statistics are the median with p10/p90, never a lone mean.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from parity.harness.core.model import TIMING_EVENTS, TIMING_INTERPRET, TIMING_WALL

FLUSH_UNKNOWN_LLC_BYTES = 512 << 20  # AMD's Infinity Cache is 256 MiB: twice it where size is unknown
MAX_BATCH = 32  # samples queued between synchronizations (nvbench's blocking kernel holds ~32 launches)
HOLD_CAP_MS = 50.0  # the longest the stream is held while the host queues a batch
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
IQR_SIGMAS = 1.349  # the interquartile range of a normal distribution in standard deviations


@dataclass(frozen=True)
class Policy:
    """When to stop sampling. `noise_target` is a relative (robust) standard deviation."""

    warmup_ms: float
    min_samples: int
    max_samples: int
    noise_target: float
    time_cap_s: float

    @classmethod
    def for_timing(cls, timing: str, time_cap_s: float | None = None) -> "Policy":
        base = {
            # nvbench's defaults are min 10 samples, 0.5 % noise, 15 s; a sweep of hundreds of
            # cases needs a shorter cap, and most GPU cases reach the noise target well before it.
            TIMING_EVENTS: cls(warmup_ms=25.0, min_samples=10, max_samples=2000, noise_target=0.005, time_cap_s=3.0),
            TIMING_WALL: cls(warmup_ms=10.0, min_samples=5, max_samples=500, noise_target=0.02, time_cap_s=1.0),
            # The interpreter is for correctness; its timings only need to exist, labelled as such.
            TIMING_INTERPRET: cls(warmup_ms=0.0, min_samples=3, max_samples=20, noise_target=0.05, time_cap_s=1.0),
        }[timing]
        if time_cap_s is not None:
            base = cls(base.warmup_ms, base.min_samples, base.max_samples, base.noise_target, time_cap_s)
        return base

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Stats:
    median: float
    p10: float
    p90: float
    min: float
    n: int
    noise_rel: float  # robust relative standard deviation (see relative_noise)
    stop: str  # why sampling stopped: "noise", "time-cap", "max-samples"
    samples: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["samples"] = list(self.samples)
        return out


def quantile(ordered: Sequence[float], q: float) -> float:
    """Quantile of sorted values by linear interpolation (numpy's default method)."""
    if not ordered:
        return math.nan
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def relative_noise(samples: Sequence[float]) -> float:
    """Relative spread as a standard deviation over the median; infinite below 5 samples, as
    nvbench needs 5 for a noise estimate.

    Two robust estimates of sigma, and the larger wins: 1.4826 * MAD (blind to up to half the
    samples being elsewhere) and IQR / 1.349 (which sees a second mode holding a quarter of the
    samples); for normal samples both estimate the same sigma. A bimodal sample so never looks
    quiet, and a lone outlier does not keep sampling going.
    """
    if len(samples) < 5:
        return math.inf
    ordered = sorted(samples)
    med = quantile(ordered, 0.5)
    if med <= 0:
        return math.inf
    mad = quantile(sorted(abs(s - med) for s in ordered), 0.5)
    spread = (quantile(ordered, 0.75) - quantile(ordered, 0.25)) / IQR_SIGMAS
    return max(MAD_TO_SIGMA * mad, spread) / med


def summarize(samples: Sequence[float], stop: str) -> Stats:
    ordered = sorted(samples)
    return Stats(median=quantile(ordered, 0.5), p10=quantile(ordered, 0.1), p90=quantile(ordered, 0.9),
                 min=ordered[0], n=len(ordered), noise_rel=relative_noise(ordered), stop=stop,
                 samples=tuple(samples))


def collect(take_batch: Callable[[int], list[float]], policy: Policy, estimate_ms: float,
            clock: Callable[[], float] = time.perf_counter) -> Stats:
    """Take samples in batches until the policy says stop.

    Stops when the sample count reaches `max_samples`; or, with at least `min_samples`, when the
    noise is under target or the time cap has passed; or, whatever the count, at four times the
    time cap, so one pathological case cannot stall a sweep (the record says why it stopped).
    """
    samples: list[float] = []
    start = clock()
    while True:
        elapsed = clock() - start
        if len(samples) >= policy.max_samples:
            return summarize(samples, "max-samples")
        if len(samples) >= policy.min_samples:
            if relative_noise(samples) <= policy.noise_target:
                return summarize(samples, "noise")
            if elapsed >= policy.time_cap_s:
                return summarize(samples, "time-cap")
        elif samples and elapsed >= 4 * policy.time_cap_s:
            return summarize(samples, "time-cap")
        remaining_ms = max(policy.time_cap_s - elapsed, 0.0) * 1e3
        affordable = int(remaining_ms / max(estimate_ms, 1e-6)) + 1
        want = max(policy.min_samples - len(samples), 8)
        k = max(1, min(MAX_BATCH, policy.max_samples - len(samples), want, affordable))
        samples.extend(take_batch(k))


def flush_bytes(llc_bytes: int | None, spec_known: bool = True) -> int:
    """Size of the buffer written before each cold sample: twice the last-level cache. Without a
    spec the cache torch reports may be the L2 alone (an MI300X read as "AMD Radeon Graphics" hides
    a 256 MiB Infinity Cache behind 4 MiB of L2), so then at least FLUSH_UNKNOWN_LLC_BYTES."""
    if not llc_bytes:
        return FLUSH_UNKNOWN_LLC_BYTES
    return 2 * llc_bytes if spec_known else max(2 * llc_bytes, FLUSH_UNKNOWN_LLC_BYTES)


class Flush:
    """The cache-flush buffer, allocated on first use (only cold ops on a GPU need it)."""

    def __init__(self, device):
        self.device = device
        self.bytes = flush_bytes(device.llc_bytes, spec_known=getattr(device, "spec_id", None) is not None)
        self._buffer = None

    def buffer(self):
        if self._buffer is None:
            import torch

            self._buffer = torch.empty(self.bytes, dtype=torch.uint8, device=f"cuda:{self.device.index}")
        return self._buffer


def hold_ms(k: int, host_ms_per_sample: float, cap_ms: float = HOLD_CAP_MS) -> float:
    """How long to keep the device busy while the host queues k samples: 1.5x the host's own
    queueing time, capped. Without it a kernel shorter than its launch finds the stream idle, and
    the host's launch time falls between its start event and the kernel (nvbench holds the stream
    with a blocking kernel for the same reason)."""
    return min(1.5 * k * max(host_ms_per_sample, 0.0), cap_ms)


@functools.lru_cache(maxsize=None)
def _sleep_cycles_per_ms(device_index: int) -> float | None:
    """Clock cycles of `torch.cuda._sleep` per ms on this device, timed once with events; None
    where this torch has no `_sleep` (then nothing holds the stream)."""
    import torch

    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is None:
        return None
    cycles = 1_000_000
    sleep(cycles)  # the first launch loads the kernel
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    sleep(cycles)
    end.record()
    end.synchronize()
    return cycles / max(start.elapsed_time(end), 1e-3)


def event_batch(thunk: Callable[[], Any], flush=None) -> Callable[[int], list[float]]:
    """k samples, each bracketed by its own device events; one synchronize per batch.

    A spin kernel queued first holds the stream while the host queues the batch, so samples follow
    each other on the device with no host time between a start event and its kernel.
    """
    import torch

    cycles_per_ms = _sleep_cycles_per_ms(torch.cuda.current_device())
    host_ms = [None]  # the host's time to queue one sample, from the batch before

    def take(k: int) -> list[float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(k)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(k)]
        if host_ms[0] is None:  # one untimed call: what queueing a sample costs the host
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            thunk()
            host_ms[0] = (time.perf_counter() - t0) * 1e3
        if cycles_per_ms:
            torch.cuda._sleep(int(hold_ms(k, host_ms[0]) * cycles_per_ms))
        t0 = time.perf_counter()
        for start, end in zip(starts, ends):
            if flush is not None:
                flush.zero_()  # outside the event pair: the flush is not timed
            start.record()
            thunk()
            end.record()
        host_ms[0] = (time.perf_counter() - t0) * 1e3 / k
        ends[-1].synchronize()
        return [s.elapsed_time(e) for s, e in zip(starts, ends)]

    return take


def wall_batch(thunk: Callable[[], Any], clock: Callable[[], float] = time.perf_counter):
    """k samples of host wall-clock time (CPU work is synchronous)."""

    def take(k: int) -> list[float]:
        out = []
        for _ in range(k):
            t0 = clock()
            thunk()
            out.append((clock() - t0) * 1e3)
        return out

    return take


def warm_up(thunk: Callable[[], Any], timing: str, policy: Policy,
            clock: Callable[[], float] = time.perf_counter) -> float:
    """Run the thunk for the warm-up budget (at least once); returns the estimated ms per call."""
    sync = _synchronize if timing == TIMING_EVENTS else (lambda: None)
    calls = 0
    start = clock()
    while True:
        thunk()
        sync()
        calls += 1
        spent_ms = (clock() - start) * 1e3
        if spent_ms >= policy.warmup_ms or calls >= 1000:
            return spent_ms / calls


def measure(thunk: Callable[[], Any], timing: str, policy: Policy, flush=None, window=None) -> Stats:
    """Warm up, then sample. `window` (a telemetry sampler: `start()`, `stop(calls)`) is started
    after the warm-up and stopped once the last sample has finished, with the number of timed
    calls, so its window holds exactly the timed samples (and, for cold ops, their flushes)."""
    estimate_ms = warm_up(thunk, timing, policy)
    take = event_batch(thunk, flush) if timing == TIMING_EVENTS else wall_batch(thunk)
    return collect_in_window(take, policy, estimate_ms, window)


def collect_in_window(take, policy: Policy, estimate_ms: float, window=None,
                      clock: Callable[[], float] = time.perf_counter) -> Stats:
    """`collect`, with the telemetry `window` (if any) open over exactly the sampling."""
    if window is None:
        return collect(take, policy, estimate_ms, clock)
    window.start()
    stats = None
    try:
        stats = collect(take, policy, estimate_ms, clock)
    finally:
        window.stop(stats.n if stats else 0)
    return stats


def _synchronize() -> None:
    import torch

    torch.cuda.synchronize()
