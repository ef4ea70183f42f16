"""Timing a thunk: warm-up, per-sample device events (or the wall clock), cache flush, adaptive stop.

Method after nvbench's cold measurement and triton.testing.do_bench (../shared/reference/
harness-method.md, sections 1.1, 1.2 and 1.5): a warm-up by time budget, queued in batches; on a
GPU one event pair per sample, with the last-level cache flushed (and left holding clean lines)
before the sample when the op asks for a cold cache; samples are queued in batches behind a spin
hold and read after one synchronize, so the host never stalls the device between samples; a batch
whose inter-sample gaps show a host stall is taken again. Kernels shorter than ~10 us are timed
several launches per event pair (a sample is their mean), so a sample is not launch latency or
event resolution. Sampling goes on for at least `min_time_s` (nvbench's --min-time, 0.5 s on a
GPU: the clock and power limiter reach their sustained state), then stops once the relative noise
is under a target (after a minimum count), or at a time cap. Statistics are the median with
p10/p90, never a lone mean.

The cold-cache flush and the device hold are flush.py.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from parity.harness.core.model import TIMING_EVENTS, TIMING_INTERPRET, TIMING_WALL
from parity.harness.measurement import noisy as noisy_mod
from parity.harness.measurement.flush import _sleep_cycles_per_ms, as_flush, hold_ms
from parity.harness.measurement.wall import (MODE_BACK_TO_BACK, MODE_SINGLE, WARMUP_QUEUE_MS, WallSampler,  # noqa: F401
                                             one_thread_floor, wall_batch, warm_up)

MAX_BATCH = 32  # samples queued between synchronizations (nvbench's blocking kernel holds ~32 launches)


MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


IQR_SIGMAS = 1.349  # the interquartile range of a normal distribution in standard deviations


# CUDA documents cudaEventElapsedTime's resolution as "around 0.5 microseconds"; hipEventElapsedTime
# is no finer. A sample quantized to it has an uncertainty of resolution / sqrt(12) (the standard
# deviation of a uniform rounding error), however alike the samples look.
EVENT_RESOLUTION_MS = 0.0005


SMALL_KERNEL_MS = 0.010  # below this a kernel is timed several launches per event pair


TARGET_SAMPLE_MS = 0.100  # ... enough launches for a sample of about this long (resolution 0.5 %)


MAX_LAUNCHES = 64


PROBE_SAMPLES = 8  # one-launch samples taken (and dropped) to judge whether a kernel is small




STALL_SLACK_MS = 0.02  # a gap between samples this much longer than usual is a host stall


MAX_SAMPLES_FOR_MIN_TIME = 100_000  # samples kept when a least time, not a count, bounds sampling

MAX_RETAKES = 2  # a stalled batch is taken again at most this often, with a longer hold






@dataclass(frozen=True)
class Policy:
    """When to stop sampling. `noise_target` is a relative (robust) standard deviation;
    `min_time_s` is the least time sampling goes on (the device busy with the case, so its clocks
    and power reach the sustained state); `resolution_ms` the timer's tick."""

    warmup_ms: float
    min_samples: int
    max_samples: int
    noise_target: float
    time_cap_s: float
    min_time_s: float = 0.0
    resolution_ms: float = 0.0

    @classmethod
    def for_timing(cls, timing: str, time_cap_s: float | None = None, min_time_s: float | None = None,
                   warmup_ms: float | None = None, max_samples: int | None = None) -> "Policy":
        """The timing's defaults, with any of the cap, the least time, the warm-up budget and the
        sample count replaced by the caller's (None: the default)."""
        base = {
            # nvbench's defaults are min 10 samples, 0.5 % noise, 0.5 s min time, 15 s; a sweep of
            # hundreds of cases needs a shorter cap, and most GPU cases reach the noise target well
            # before it. The warm-up is 100 ms of back-to-back calls (clocks ramp in tens of ms).
            TIMING_EVENTS: cls(warmup_ms=100.0, min_samples=10, max_samples=2000, noise_target=0.005,
                               time_cap_s=3.0, min_time_s=0.5, resolution_ms=EVENT_RESOLUTION_MS),
            TIMING_WALL: cls(warmup_ms=10.0, min_samples=5, max_samples=500, noise_target=0.02, time_cap_s=1.0),
            # The interpreter is for correctness; its timings only need to exist, labelled as such.
            TIMING_INTERPRET: cls(warmup_ms=0.0, min_samples=3, max_samples=20, noise_target=0.05, time_cap_s=1.0),
        }[timing]
        cap = base.time_cap_s if time_cap_s is None else time_cap_s
        least = base.min_time_s if min_time_s is None else min_time_s
        # A cap below the minimum time wins: the user asked for a short case.
        # A least time the caller asked for is honoured over the default sample count (a 1 us op
        # reaches 500 samples in 0.5 ms); a count the caller gave caps both.
        most = base.max_samples if max_samples is None else max_samples
        if max_samples is None and min_time_s:
            most = max(most, MAX_SAMPLES_FOR_MIN_TIME)
        return cls(base.warmup_ms if warmup_ms is None else warmup_ms, min(base.min_samples, most), most,
                   base.noise_target, cap, min(least, cap), base.resolution_ms)

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
    launches_per_sample: int = 1  # calls between one pair of events (a sample is their mean)
    timing_mode: str = MODE_SINGLE  # single | back-to-back
    batches: tuple[int, ...] = ()  # samples per batch, in order: the blocks of compare's bootstrap
    retaken_batches: int = 0  # batches taken again because their gaps showed a host stall
    stalled_batches: int = 0  # batches kept although a stall remained after the retakes
    busy_ms: float = 0.0  # device (or CPU) time of every timed call: the telemetry duty's numerator
    # Why the samples are not one clean level (noisy.judge: two modes, outlier-heavy, a plateau over
    # the fastest call), and the two levels ((median_ms, share) each); None: the median is the op's.
    noisy: str | None = None
    modes: tuple[tuple[float, float], ...] = ()
    threads: int | None = None  # PyTorch's CPU threads while timed (threads.py); None on a GPU

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["samples"] = list(self.samples)
        out["batches"] = list(self.batches)
        out["modes"] = [{"median_ms": m, "share": share} for m, share in self.modes]
        return out


def quantile(ordered: Sequence[float], q: float) -> float:
    """Quantile of sorted values by linear interpolation (numpy's default method)."""
    if not ordered:
        return math.nan
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def relative_noise(samples: Sequence[float], resolution_ms: float = 0.0) -> float:
    """Relative spread as a standard deviation over the median; infinite below 5 samples, as
    nvbench needs 5 for a noise estimate.

    Two robust estimates of sigma, and the larger wins: 1.4826 * MAD (blind to up to half the
    samples being elsewhere) and IQR / 1.349 (which sees a second mode holding a quarter of the
    samples); for normal samples both estimate the same sigma. A bimodal sample so never looks
    quiet, and a lone outlier does not keep sampling going. Neither is taken below the timer's
    quantization, resolution / sqrt(12): identical samples of a tick or two are not noise-free.
    """
    if len(samples) < 5:
        return math.inf
    ordered = sorted(samples)
    med = quantile(ordered, 0.5)
    if med <= 0:
        return math.inf
    mad = quantile(sorted(abs(s - med) for s in ordered), 0.5)
    spread = (quantile(ordered, 0.75) - quantile(ordered, 0.25)) / IQR_SIGMAS
    return max(MAD_TO_SIGMA * mad, spread, resolution_ms / math.sqrt(12)) / med


def summarize(samples: Sequence[float], stop: str, resolution_ms: float = 0.0, **how: Any) -> Stats:
    """Stats of the samples; `how` fills the fields that say how they were taken."""
    ordered = sorted(samples)
    launches = how.get("launches_per_sample", 1)
    how.setdefault("busy_ms", sum(samples) * launches)
    return Stats(median=quantile(ordered, 0.5), p10=quantile(ordered, 0.1), p90=quantile(ordered, 0.9),
                 min=ordered[0], n=len(ordered), noise_rel=relative_noise(ordered, resolution_ms / launches),
                 stop=stop, samples=tuple(samples), **how)


def collect(take_batch: Callable[[int], list[float]], policy: Policy, estimate_ms: float,
            clock: Callable[[], float] = time.perf_counter, fastest_ms: float | None = None) -> Stats:
    """Take samples in batches until the policy says stop.

    Stops when the sample count reaches `max_samples`; or, with at least `min_samples` and
    `min_time_s` spent, when the noise is under target and the samples are one clean level
    (noisy.judge: not two modes, not outlier-heavy, not a plateau over `fastest_ms`, the fastest
    call the warm-up saw), or when the time cap has passed; or, whatever
    the count, at four times the time cap, so one pathological case cannot stall a sweep (the
    record says why it stopped). `take_batch` may say how it times (`launches`, `mode`,
    `retaken`, `stalled`); a sample of several launches is quantized to a fraction of the tick.
    """
    samples: list[float] = []
    batches: list[int] = []
    least_s = min(policy.min_time_s, policy.time_cap_s)
    start = clock()

    def resolution() -> float:
        return policy.resolution_ms / (getattr(take_batch, "launches", None) or 1)

    def done(stop: str) -> Stats:
        launches = getattr(take_batch, "launches", None) or 1
        verdict = noisy_mod.judge(samples, fastest_ms, resolution())
        return summarize(samples, stop, policy.resolution_ms, launches_per_sample=launches,
                         timing_mode=getattr(take_batch, "mode", MODE_SINGLE), batches=tuple(batches),
                         retaken_batches=getattr(take_batch, "retaken", 0),
                         stalled_batches=getattr(take_batch, "stalled", 0),
                         noisy=verdict[0] if verdict else None, modes=verdict[1] if verdict else ())

    while True:
        elapsed = clock() - start
        if len(samples) >= policy.max_samples:
            return done("max-samples")
        if len(samples) >= policy.min_samples and elapsed >= least_s:
            # A noisy set (two modes, outliers, a plateau) never stops on its noise: it samples on
            # to the cap, and its record is flagged.
            if (relative_noise(samples, resolution()) <= policy.noise_target
                    and noisy_mod.judge(samples, fastest_ms, resolution()) is None):
                return done("noise")
            if elapsed >= policy.time_cap_s:
                return done("time-cap")
        elif samples and elapsed >= 4 * policy.time_cap_s:
            return done("time-cap")
        remaining_ms = max(policy.time_cap_s - elapsed, 0.0) * 1e3
        affordable = int(remaining_ms / max(estimate_ms, 1e-6)) + 1
        want = max(policy.min_samples - len(samples), 8)
        k = max(1, min(MAX_BATCH, policy.max_samples - len(samples), want, affordable))
        got = take_batch(k)
        samples.extend(got)
        batches.append(len(got))


def launches_for(sample_ms: float) -> int:
    """Launches per event pair for a kernel whose one-launch sample is `sample_ms`: one from
    SMALL_KERNEL_MS up, else enough for a sample of about TARGET_SAMPLE_MS (nccl-tests and
    do_bench_cudagraph average many iterations per event pair for the same reason)."""
    if not sample_ms > 0 or sample_ms >= SMALL_KERNEL_MS:
        return 1 if sample_ms > 0 else MAX_LAUNCHES
    return max(2, min(MAX_LAUNCHES, math.ceil(TARGET_SAMPLE_MS / sample_ms)))


def host_stalls(gaps_ms: Sequence[float]) -> list[int]:
    """Which gaps between one sample's end event and the next one's start show a host stall.

    Behind a hold that lasts, the device runs sample after sample and a gap holds only what was
    queued between them (the flush, the event records): about the same every time. A gap well
    above the usual means the device ran dry and waited for the host, and a sample next to it may
    hold host time between its start event and its kernel."""
    if not gaps_ms:
        return []
    usual = quantile(sorted(gaps_ms), 0.5)
    limit = 1.5 * max(usual, 0.0) + STALL_SLACK_MS
    return [i for i, gap in enumerate(gaps_ms) if gap > limit]


class EventSampler:
    """`take(k)`: k samples, each bracketed by its own device events; one synchronize per batch.

    A spin kernel queued first holds the stream while the host queues the batch, so samples follow
    each other on the device with no host time between a start event and its kernel. The hold is
    sized from the host's time to queue a whole sample (flush, events, launches), and each batch
    is checked twice: the gaps between consecutive samples (a gap well above the usual is the
    device waiting for the host), and, against an event recorded before the hold, whether the
    device reached a sample's start before the host had queued its launches. A batch with a host
    stall is taken again with a longer hold (up to MAX_RETAKES times; `retaken` and `stalled`
    count them). A kernel whose one-launch samples are under SMALL_KERNEL_MS is timed `launches`
    calls per event pair; a cold sample is always one launch (a second would find the cache warm).

    `cuda` is torch.cuda (a fake in the tests); `clock` the host clock; `before_batch` runs before
    each batch (a barrier, for collectives); `agree` maps a list of numbers to their maximum over
    the ranks, so every rank holds as long and launches as often.
    """

    def __init__(self, thunk: Callable[[], Any], flush=None, cuda=None, clock: Callable[[], float] = time.perf_counter,
                 launches: int | None = None, before_batch: Callable[[], Any] | None = None,
                 agree: Callable[[list[float]], list[float]] | None = None):
        if cuda is None:
            import torch

            cuda = torch.cuda
        self.thunk, self.flush, self.cuda, self.clock = thunk, as_flush(flush), cuda, clock
        self.launches = 1 if self.flush is not None else launches
        self.before_batch = before_batch
        self.agree = agree or (lambda values: values)
        self.retaken = self.stalled = 0
        self.host_ms: float | None = None  # the host's time to queue one whole sample
        self.gaps_ms: list[float] = []  # every gap between consecutive samples, batch by batch
        self._cycles_per_ms = _sleep_cycles_per_ms(cuda, cuda.current_device())

    @property
    def mode(self) -> str:
        return MODE_BACK_TO_BACK if (self.launches or 1) > 1 else MODE_SINGLE

    def _sample(self, start, end, launches: int, t0: float = 0.0) -> float:
        """Queue one sample; returns the host time (ms since t0) when its last launch was queued."""
        if self.flush is not None:
            self.flush()  # outside the event pair: the flush is not timed
        start.record()
        for _ in range(launches):
            self.thunk()
        queued_ms = (self.clock() - t0) * 1e3
        end.record()
        return queued_ms

    def _events(self, k: int):
        return ([self.cuda.Event(enable_timing=True) for _ in range(k)],
                [self.cuda.Event(enable_timing=True) for _ in range(k)])

    def _batch(self, k: int, launches: int) -> tuple[list[float], list[float], list[int]]:
        """(samples in ms per launch, gaps in ms between consecutive samples, the samples the
        device reached before the host had queued their launches)."""
        if self.before_batch is not None:
            self.before_batch()
        starts, ends = self._events(k)
        origin = self.cuda.Event(enable_timing=True)
        origin.record()  # the stream is idle: the device reaches it as the host queues it
        t0 = self.clock()
        if self._cycles_per_ms:
            self.cuda._sleep(int(hold_ms(k, self.host_ms) * self._cycles_per_ms))
        queued = [self._sample(start, end, launches, t0) for start, end in zip(starts, ends)]
        self.host_ms = self.agree([(self.clock() - t0) * 1e3 / k])[0]
        ends[-1].synchronize()
        samples = [s.elapsed_time(e) / launches for s, e in zip(starts, ends)]
        gaps = [e.elapsed_time(s) for e, s in zip(ends, starts[1:])]
        # The device reached start i at origin + reached[i]; if the host was still queueing that
        # sample's launches then, the sample holds host time (the hold ran out).
        # No slack: a clean batch is held for 1.5x its queueing time, far ahead of the host; a
        # device that lags its origin event's queueing only makes this test stricter.
        late = [i for i, (q, start) in enumerate(zip(queued, starts)) if q > origin.elapsed_time(start)]
        return samples, gaps, late

    def _size_hold(self) -> None:
        """One whole untimed sample, queued on an idle stream: what queueing a sample costs the host."""
        self.cuda.synchronize()
        start, end = self._events(1)
        t0 = self.clock()
        self._sample(start[0], end[0], self.launches or 1)
        self.host_ms = self.agree([(self.clock() - t0) * 1e3])[0]
        self.cuda.synchronize()

    def __call__(self, k: int) -> list[float]:
        if self.host_ms is None:
            self._size_hold()
        if self.launches is None:  # judge the kernel on one-launch samples, then time it as it needs
            probe, _, _ = self._batch(PROBE_SAMPLES, 1)
            self.launches = int(self.agree([float(launches_for(quantile(sorted(probe), 0.5)))])[0])
            if self.launches > 1:
                self._size_hold()  # a sample now holds several launches: queueing it costs more
        for attempt in range(MAX_RETAKES + 1):
            samples, gaps, late = self._batch(k, self.launches)
            stalled = bool(self.agree([float(bool(host_stalls(gaps) or late))])[0])
            if not stalled:
                break
            if attempt < MAX_RETAKES:
                self.retaken += 1
                self.host_ms = 2 * max(self.host_ms, STALL_SLACK_MS)  # hold longer next time
        else:
            self.stalled += 1  # kept: the record says so
        self.gaps_ms.extend(gaps)
        return samples


def event_batch(thunk: Callable[[], Any], flush=None, **options) -> EventSampler:
    """k samples of device events per call (see EventSampler)."""
    return EventSampler(thunk, flush, **options)


def measure(thunk: Callable[[], Any], timing: str, policy: Policy, flush=None, window=None,
            setup: Callable[[], Any] | None = None) -> Stats:
    """Warm up, then sample. `setup` runs before each sample (and warm-up call) outside the timed
    region, before the flush; `flush` evicts the cache before each sample (a call, or a buffer to
    memset). `window` (a telemetry sampler: `start()`, `stop(calls, busy_s=)`) is started after
    the warm-up and stopped once the last sample has finished, with the number of timed calls and
    their device time, so its window holds exactly the timed samples (and, for cold ops, their
    flushes) and knows how busy the device was in it."""
    events = timing == TIMING_EVENTS
    seen: list[float] | None = None if events else []
    estimate_ms = warm_up(thunk, timing, policy, seen=seen, setup=setup)
    if events:
        take = event_batch(thunk, _before_sample(setup, as_flush(flush)))
    else:
        take = wall_batch(thunk, setup=setup)
    if timing == TIMING_WALL and seen is not None:
        seen.extend(one_thread_floor(thunk, setup))
    fastest = min(seen, default=None) if seen is not None else None
    return collect_in_window(take, policy, estimate_ms, window, fastest_ms=fastest)



def _before_sample(setup, flush):
    """What runs outside each sample's events: the setup, then the flush (so a cold sample finds
    the setup's writes evicted too)."""
    if setup is None or flush is None:
        return flush if setup is None else setup

    def both() -> None:
        setup()
        flush()

    return both


def collect_in_window(take, policy: Policy, estimate_ms: float, window=None,
                      clock: Callable[[], float] = time.perf_counter, fastest_ms: float | None = None) -> Stats:
    """`collect`, with the telemetry `window` (if any) open over exactly the sampling."""
    if window is None:
        return collect(take, policy, estimate_ms, clock, fastest_ms)
    window.start()
    stats = None
    try:
        stats = collect(take, policy, estimate_ms, clock, fastest_ms)
    finally:
        if stats is None:
            window.stop(0)
        else:
            window.stop(stats.n * stats.launches_per_sample, busy_s=stats.busy_ms / 1e3)
    return stats


def _synchronize() -> None:
    import torch

    torch.cuda.synchronize()
