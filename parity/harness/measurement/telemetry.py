"""What the card was doing while a case was timed: clocks, power, temperature, throttling, energy.

A `Sampler` polls the device from a background thread every 20 ms (the survey's 10-50 ms; NVML's
power and energy counters update every 20-100 ms, so faster polling buys nothing) while
`timing.measure` takes its samples, and summarizes the window into the record's `telemetry` dict.
The window starts after the warm-up and ends after the last timed sample has finished, so it
holds exactly the timed calls and, for cold ops, their cache flushes. It also holds the holds,
flushes, synchronizations and host work between batches, so the summary records the duty, the
timed device time over the window: below core/results.DUTY_MIN the power, energy and perf-per-watt figures of
the window describe a part-idle GPU, and the report withholds them. It records whether the clock
was in its sustained state (`clock_state`): a clock that fell during the window began it in burst.

Sources (../shared/reference/harness-method.md, section 3), each optional:
- NVIDIA, NVML through `nvidia-ml-py` (`import pynvml`): clocks in MHz, power in mW (instant
  power from the `NVML_FI_DEV_POWER_INSTANT` field where the driver has it; otherwise
  `nvmlDeviceGetPowerUsage`, which Ampere and later average over one second), temperature in
  degrees C, energy in mJ since the driver loaded (Volta and later), clock-event reasons as a
  bitmask (`nvmlDeviceGetCurrentClocksEventReasons`, formerly `...ThrottleReasons`).
- AMD, amdsmi: power in W (`socket_power` from ROCm 7, else `current_socket_power`, else
  `average_socket_power`), energy as accumulator x `counter_resolution` in microjoules (the
  accumulator key was `power` before `energy_accumulator`), clocks in MHz under `cur_clk` or `clk`
  depending on the version, temperature in degrees C, throttling from `amdsmi_get_violation_status`
  (MI300 and later) or the gpu-metrics `throttle_status` (earlier parts).
Units are normalized when read: MHz, W, degrees C, J. A quantity the device does not report is
None ("not supported"), never 0; a missing library or device gives a summary with source "none"
and the reason, and the run goes on.

The readers (NVML, amdsmi, none) are telemetry_readers.py; this module samples them over a window
and summarizes what they saw.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from parity.harness.measurement.telemetry_readers import Sample, Unavailable, _Probed
from parity.harness.measurement.timing import quantile

DEFAULT_INTERVAL_S = 0.02


DEFAULT_SETTLE_GPU_S = 0.5  # idle before each compute case on a GPU: power capping acts on sub-second averages


CLOCK_EDGE_S = 0.1  # the clock at the window's start and end: the median over this long


CLOCK_STATE_MIN_S = 0.3  # a shorter window cannot tell burst from sustained


CLOCK_DROP = 0.02  # a clock 2 % lower at the end than at the start fell during the window: burst


ENERGY_MIN_SPAN_S = 0.2  # the counter must be seen to advance over at least this long to be used


SERIES_MAX = 600  # telemetry samples kept per record (30 s at 20 ms); longer windows are decimated


SUMMARY_KEYS = (
    "source", "reason", "device_match", "interval_ms", "samples", "window_s", "calls",
    "sm_clock_mhz_median", "sm_clock_mhz_min", "mem_clock_mhz_median", "power_w_median", "power_kind",
    "temp_c_max", "energy_j", "energy_j_per_call", "energy_method", "throttled_fraction",
    "throttle_reasons", "clock_event_reasons", "unsupported", "series",
    "busy_s", "duty", "sm_clock_mhz_first", "sm_clock_mhz_last", "clock_state",
)


def settle_seconds(settle_s: float | None, device, metric: str | None = "TFLOPS") -> float:
    """The pause before each timed case: as asked, else 0.5 s before a compute case (metric
    TFLOPS) on a GPU, and none before memory-bound cases or on the CPU. The pause serves cases
    that the power limiter acts on: each starts from the same state whatever ran before it, and
    the warm-up and `min_time_s` bring it to its sustained state. A memory-bound case draws far
    less power; a pause would only let its clocks drop to idle before it."""
    if settle_s is not None:
        return settle_s
    return DEFAULT_SETTLE_GPU_S if device.is_gpu and metric == "TFLOPS" else 0.0


class Sampler:
    """Polls a reader from a background thread between `start()` and `stop(calls)`.

    The first and last samples are taken on the caller's thread, at the window's edges, so the
    energy counter brackets the window. `stop` returns the summary and keeps it in `summary`.
    An `Unavailable` reader starts no thread: its summary is the reason.
    """

    def __init__(self, reader: _Probed, interval_s: float = DEFAULT_INTERVAL_S):
        self.reader = reader
        self.interval_s = interval_s
        self.summary: dict[str, Any] | None = None
        self._samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the sampler is already running")
        self._samples, self.summary = [], None
        self._stop.clear()
        self._t0 = time.monotonic()
        if isinstance(self.reader, Unavailable):
            return
        self._samples.append(self.reader.read())
        self._thread = threading.Thread(target=self._poll, name="parity-telemetry", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._samples.append(self.reader.read())

    def stop(self, calls: int, busy_s: float | None = None) -> dict[str, Any]:
        window_s = time.monotonic() - self._t0
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._samples.append(self.reader.read())
        self.summary = summarize(self._samples, calls, window_s, self.reader, self.interval_s, busy_s)
        return self.summary


def _median(values: list[float]) -> float | None:
    return quantile(sorted(values), 0.5) if values else None


def counter_power_w(samples: list[Sample]) -> float | None:
    """Average power from the energy counter: the energy between the first and the last sample at
    which the counter was seen to change, over the time between them. Counters advance in steps
    (NVML every 20-100 ms), so a plain first-to-last difference over a short window can be off by a
    whole step; between two observed steps it is off by at most one poll interval in time."""
    steps = [cur for prev, cur in zip(samples, samples[1:])
             if cur.energy_j is not None and prev.energy_j is not None and cur.energy_j != prev.energy_j]
    if len(steps) < 2:
        return None
    span = steps[-1].t_s - steps[0].t_s
    energy = steps[-1].energy_j - steps[0].energy_j
    if span < ENERGY_MIN_SPAN_S or energy < 0:  # too short to trust, or the counter was reset
        return None
    return energy / span


def _series(samples: list[Sample]) -> dict[str, list]:
    """The polled values, relative time first, decimated to at most SERIES_MAX points; each point's
    `throttled` flag is True when a throttling reason was active at that poll."""
    step = max(1, -(-len(samples) // SERIES_MAX))
    kept = samples[::step]
    t0 = samples[0].t_s if samples else 0.0
    return {"t_s": [round(s.t_s - t0, 4) for s in kept],
            "sm_clock_mhz": [s.sm_clock_mhz for s in kept],
            "power_w": [s.power_w for s in kept],
            "temp_c": [s.temp_c for s in kept],
            "throttled": [None if s.throttle is None else bool(s.throttle) for s in kept]}


def duty(busy_s: float | None, window_s: float) -> float | None:
    """The share of the window the device spent in timed calls (at most 1: events and the host
    clock disagree by microseconds)."""
    if busy_s is None or window_s <= 0:
        return None
    return min(max(busy_s, 0.0) / window_s, 1.0)


def clock_state(samples: list[Sample]) -> tuple[float | None, float | None, str | None]:
    """(SM clock over the window's first CLOCK_EDGE_S, over its last, "sustained" or "burst").

    GPUs boost for the first tens of milliseconds after idle, until the power limiter's average
    catches up; a clock that fell by CLOCK_DROP or more during the window began it in burst state,
    and figures from it are not the sustained ones. A window shorter than CLOCK_STATE_MIN_S, or
    without clocks at both ends, is None: it cannot tell."""
    clocked = [s for s in samples if s.sm_clock_mhz is not None]
    if len(clocked) < 2:
        return None, None, None
    t0, t1 = clocked[0].t_s, clocked[-1].t_s
    first = _median([s.sm_clock_mhz for s in clocked if s.t_s <= t0 + CLOCK_EDGE_S])
    last = _median([s.sm_clock_mhz for s in clocked if s.t_s >= t1 - CLOCK_EDGE_S])
    if t1 - t0 < CLOCK_STATE_MIN_S:
        return first, last, None
    return first, last, "burst" if last < first * (1 - CLOCK_DROP) else "sustained"


def summarize(samples: list[Sample], calls: int, window_s: float, reader: _Probed,
              interval_s: float = DEFAULT_INTERVAL_S, busy_s: float | None = None) -> dict[str, Any]:
    """The record's `telemetry`: medians and extremes over the window, energy per timed call,
    the fraction of samples taken while the clock was throttled, the duty (timed device time
    over the window) and whether the clock was the sustained one."""
    out: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
    out.update(reader.describe())
    out.update(interval_ms=interval_s * 1e3, samples=len(samples), window_s=round(window_s, 6), calls=calls,
               busy_s=None if busy_s is None else round(busy_s, 6), duty=duty(busy_s, window_s))
    if not samples:
        return out
    out["sm_clock_mhz_first"], out["sm_clock_mhz_last"], out["clock_state"] = clock_state(samples)
    sm = [s.sm_clock_mhz for s in samples if s.sm_clock_mhz is not None]
    mem = [s.mem_clock_mhz for s in samples if s.mem_clock_mhz is not None]
    power = [s.power_w for s in samples if s.power_w is not None]
    temp = [s.temp_c for s in samples if s.temp_c is not None]
    flagged = [s for s in samples if s.throttle is not None]
    out.update(sm_clock_mhz_median=_median(sm), sm_clock_mhz_min=min(sm, default=None),
               mem_clock_mhz_median=_median(mem), power_w_median=_median(power),
               temp_c_max=max(temp, default=None), series=_series(samples))
    if flagged:
        out["throttled_fraction"] = sum(1 for s in flagged if s.throttle) / len(flagged)
        out["throttle_reasons"] = sorted({r for s in flagged for r in s.throttle})
        out["clock_event_reasons"] = sorted({r for s in flagged for r in s.reasons or ()})
    # Energy of the window = average power x window length; per call, over the timed calls. The
    # average power comes from the energy counter where it advanced long enough to be trusted,
    # else from the polled power readings.
    watts, method = counter_power_w(samples), "counter"
    if watts is None and power:
        watts, method = sum(power) / len(power), "power"
    if watts is not None:
        out["energy_j"] = watts * window_s
        out["energy_method"] = method
        out["energy_j_per_call"] = watts * window_s / calls if calls else None
    return out


def unsampled(reason: str) -> dict[str, Any]:
    """A `telemetry` summary for a window that was never sampled."""
    return summarize([], 0, 0.0, Unavailable(reason))
