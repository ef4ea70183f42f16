"""Statistics and adaptive stopping, on a fake clock and fake samples: nothing here sleeps."""
from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from parity.harness.core.model import TIMING_EVENTS, TIMING_INTERPRET, TIMING_WALL
from parity.harness.measurement import timing
from parity.harness.measurement.flush import FLUSH_UNKNOWN_LLC_BYTES, flush_bytes
from parity.harness.measurement.timing import (
    MAD_TO_SIGMA,
    MAX_BATCH,
    Policy,
    collect,
    quantile,
    relative_noise,
    summarize,
    warm_up,
)

MiB = 1 << 20


# --- fakes -------------------------------------------------------------------------------------


class FakeClock:
    """A clock that only moves when a fake sample or thunk says time has passed (seconds)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeBatches:
    """A `take_batch` that hands out the next values of a sequence and advances the fake clock."""

    def __init__(self, values, clock: FakeClock, seconds_per_sample: float) -> None:
        self.values = iter(values)
        self.clock = clock
        self.seconds_per_sample = seconds_per_sample
        self.batches: list[int] = []
        self.taken = 0

    def __call__(self, k: int) -> list[float]:
        self.batches.append(k)
        out = [next(self.values) for _ in range(k)]
        self.taken += k
        self.clock.t += k * self.seconds_per_sample
        return out


def policy(**kw) -> Policy:
    base = dict(warmup_ms=0.0, min_samples=10, max_samples=1000, noise_target=0.01, time_cap_s=1.0)
    base.update(kw)
    return Policy(**base)


QUIET = itertools.repeat(1.0)  # relative noise 0


def noisy():
    return itertools.cycle([1.0, 2.0, 3.0])  # median 2, MAD 1: relative noise ~0.74


# --- quantile ------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, q, expected", [
    ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
    ([1.0, 2.0, 3.0, 4.0], 0.1, 1.3),  # position 0.3 between 1 and 2
    ([1.0, 2.0, 3.0, 4.0], 0.9, 3.7),  # position 2.7 between 3 and 4
    ([1.0, 2.0, 3.0, 4.0], 0.0, 1.0),
    ([1.0, 2.0, 3.0, 4.0], 1.0, 4.0),
    ([10.0, 20.0, 40.0], 0.25, 15.0),  # position 0.5
    ([10.0, 20.0, 40.0], 0.75, 30.0),  # position 1.5
    ([7.0], 0.1, 7.0),
    ([7.0], 0.9, 7.0),
])
def test_quantile_hand_computed(values, q, expected):
    assert quantile(values, q) == pytest.approx(expected, abs=1e-12)


def test_quantile_matches_numpy_linear_interpolation():
    rng = random.Random(7)
    for size in (1, 2, 3, 5, 10, 11, 37):
        values = sorted(rng.uniform(0.1, 10.0) for _ in range(size))
        for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
            assert quantile(values, q) == pytest.approx(float(np.quantile(values, q, method="linear")),
                                                        rel=1e-12), (size, q)


def test_quantile_of_nothing_is_nan():
    assert math.isnan(quantile([], 0.5))


# --- relative noise --------------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [[], [1.0], [1.0, 2.0], [1.0, 5.0, 9.0, 2.0]])
def test_relative_noise_is_infinite_below_five_samples(samples):
    assert relative_noise(samples) == math.inf


def test_relative_noise_hand_computed_mad():
    # median 3; absolute deviations 2, 1, 0, 1, 97 -> sorted 0, 1, 1, 2, 97 -> MAD 1.
    assert relative_noise([4.0, 1.0, 100.0, 3.0, 2.0]) == pytest.approx(MAD_TO_SIGMA * 1.0 / 3.0)
    assert MAD_TO_SIGMA == pytest.approx(1.4826)


def test_relative_noise_hand_computed_even_count():
    # sorted 1, 2, 2, 3, 4, 10: median 2.5; deviations 1.5, .5, .5, .5, 1.5, 7.5 -> sorted
    # .5, .5, .5, 1.5, 1.5, 7.5 -> MAD (0.5 + 1.5) / 2 = 1.0
    assert relative_noise([10.0, 2.0, 1.0, 4.0, 3.0, 2.0]) == pytest.approx(MAD_TO_SIGMA * 1.0 / 2.5)


def test_relative_noise_of_identical_samples_is_zero():
    assert relative_noise([2.0] * 5) == 0.0


def test_relative_noise_is_robust_to_one_outlier():
    assert relative_noise([1.0] * 9 + [1000.0]) == 0.0


def test_relative_noise_non_positive_median_is_infinite():
    assert relative_noise([0.0] * 6) == math.inf


# --- summarize ----------------------------------------------------------------------------------------


def test_summarize_statistics():
    samples = [6.0, 11.0, 1.0, 9.0, 3.0, 7.0, 2.0, 10.0, 4.0, 8.0, 5.0]  # 1..11 shuffled
    stats = summarize(samples, "noise")
    assert stats.median == 6.0
    assert stats.p10 == pytest.approx(2.0)  # position 1.0
    assert stats.p90 == pytest.approx(10.0)  # position 9.0
    assert stats.min == 1.0
    assert stats.n == 11
    assert stats.stop == "noise"
    assert stats.samples == tuple(samples)  # raw samples, in the order they were taken
    assert stats.noise_rel == pytest.approx(relative_noise(samples))


def test_summarize_interpolates_and_to_dict_is_plain():
    stats = summarize([4.0, 1.0, 3.0, 2.0], "time-cap")
    assert (stats.median, stats.p10, stats.p90, stats.min, stats.n) == pytest.approx((2.5, 1.3, 3.7, 1.0, 4))
    assert stats.noise_rel == math.inf
    d = stats.to_dict()
    assert d["samples"] == [4.0, 1.0, 3.0, 2.0] and isinstance(d["samples"], list)
    assert {"median", "p10", "p90", "min", "n", "noise_rel", "stop"} <= set(d)


# --- collect: adaptive stopping ------------------------------------------------------------------


def test_collect_stops_on_noise_once_min_samples_reached():
    clock = FakeClock()
    take = FakeBatches(QUIET, clock, 0.001)
    pol = policy(min_samples=10)
    stats = collect(take, pol, estimate_ms=1.0, clock=clock)
    assert stats.stop == "noise"
    assert pol.min_samples <= stats.n <= pol.min_samples + MAX_BATCH
    assert stats.n == take.taken == len(stats.samples)
    assert clock.t - 1000.0 < pol.time_cap_s  # stopped on noise, well before the cap


def test_collect_never_stops_before_min_samples_even_if_quiet():
    clock = FakeClock()
    take = FakeBatches(QUIET, clock, 0.0)
    pol = policy(min_samples=50, max_samples=1000)
    stats = collect(take, pol, estimate_ms=1.0, clock=clock)
    assert stats.n >= 50  # more than one batch of MAX_BATCH is needed to get there
    assert stats.stop == "noise"


def test_collect_stops_when_noise_falls_under_target():
    clock = FakeClock()
    values = itertools.chain([1.0, 5.0, 9.0, 2.0, 7.0, 3.0, 8.0, 4.0, 6.0, 10.0], itertools.repeat(5.0))
    take = FakeBatches(values, clock, 0.001)
    pol = policy(min_samples=10, max_samples=10_000, noise_target=0.01, time_cap_s=100.0)
    stats = collect(take, pol, estimate_ms=1.0, clock=clock)
    assert stats.stop == "noise"
    assert stats.n > 10  # the first ten samples were noisy
    assert stats.noise_rel <= 0.01


def test_collect_stops_at_time_cap_with_noisy_samples():
    clock = FakeClock()
    take = FakeBatches(noisy(), clock, 0.01)  # 10 ms per sample
    pol = policy(min_samples=10, max_samples=100_000, time_cap_s=1.0)
    stats = collect(take, pol, estimate_ms=10.0, clock=clock)
    assert stats.stop == "time-cap"
    assert stats.n >= pol.min_samples
    elapsed = clock.t - 1000.0
    assert elapsed >= pol.time_cap_s
    # It stops at the first check after the cap: at most one more batch than the cap affords.
    assert elapsed <= pol.time_cap_s + MAX_BATCH * 0.01 + 1e-9
    assert stats.noise_rel > pol.noise_target


def test_collect_stops_at_max_samples():
    clock = FakeClock()
    take = FakeBatches(noisy(), clock, 0.0)  # time never passes: only the count can stop it
    pol = policy(min_samples=5, max_samples=77, time_cap_s=1.0)
    stats = collect(take, pol, estimate_ms=0.001, clock=clock)
    assert stats.stop == "max-samples"
    assert stats.n == 77
    assert take.taken == 77  # the last batch was cut to fit, not overshot


def test_collect_escapes_at_four_times_the_cap_below_min_samples():
    clock = FakeClock()
    take = FakeBatches(QUIET, clock, 0.5)  # each sample takes half the cap
    pol = policy(min_samples=1000, max_samples=2000, time_cap_s=1.0)
    stats = collect(take, pol, estimate_ms=500.0, clock=clock)
    assert stats.stop == "time-cap"
    assert 0 < stats.n < pol.min_samples
    elapsed = clock.t - 1000.0
    assert elapsed >= 4 * pol.time_cap_s
    assert elapsed <= 4 * pol.time_cap_s + 0.5 + 1e-9  # stopped at the first check past 4x


def test_collect_does_not_take_the_time_cap_below_min_samples():
    # Past the cap but under 4x it, with fewer than min_samples: keep sampling.
    clock = FakeClock()
    take = FakeBatches(noisy(), clock, 0.1)
    pol = policy(min_samples=20, max_samples=2000, time_cap_s=1.0)
    stats = collect(take, pol, estimate_ms=100.0, clock=clock)
    assert stats.n >= 20
    assert stats.stop == "time-cap"


@pytest.mark.parametrize("estimate_ms, seconds_per_sample, min_samples, max_samples", [
    (1e-6, 0.0, 10, 2000),  # tiny estimate: "affordable" is huge
    (0.0, 0.0, 3, 500),  # zero estimate must not divide by zero
    (1.0, 0.001, 100, 2000),  # min_samples above MAX_BATCH
    (1000.0, 0.2, 10, 20),
])
def test_collect_batches_never_exceed_max_batch(estimate_ms, seconds_per_sample, min_samples, max_samples):
    clock = FakeClock()
    take = FakeBatches(noisy(), clock, seconds_per_sample)
    pol = policy(min_samples=min_samples, max_samples=max_samples, time_cap_s=1.0)
    stats = collect(take, pol, estimate_ms=estimate_ms, clock=clock)
    assert take.batches, "no sample was taken"
    assert all(1 <= k <= MAX_BATCH for k in take.batches), take.batches
    assert stats.n == sum(take.batches) <= max_samples


def test_collect_with_real_wall_batch_and_fake_clock():
    # wall_batch times the thunk with the clock it is given; the thunk advances the fake clock.
    clock = FakeClock()

    def thunk():
        clock.t += 0.002

    take = timing.wall_batch(thunk, clock=clock)
    assert take(3) == pytest.approx([2.0, 2.0, 2.0])
    stats = collect(take, policy(min_samples=5), estimate_ms=2.0, clock=clock)
    assert stats.stop == "noise"
    assert stats.median == pytest.approx(2.0)


# --- flush size -------------------------------------------------------------------------------------


@pytest.mark.parametrize("llc, expected", [
    (256 * MiB, 512 * MiB),  # MI300X Infinity Cache
    (50 * MiB, 100 * MiB),  # H100 L2
    (None, 512 * MiB),
    (0, 512 * MiB),
])
def test_flush_bytes_is_twice_the_llc_or_512_mib(llc, expected):
    assert flush_bytes(llc) == expected


def test_flush_for_unknown_cache_covers_amd_infinity_cache_twice():
    assert FLUSH_UNKNOWN_LLC_BYTES >= 2 * 256 * MiB


# --- warm-up -----------------------------------------------------------------------------------------


def test_warm_up_runs_for_its_budget_and_estimates_per_call_time():
    clock = FakeClock()
    calls = []

    def thunk():
        calls.append(1)
        clock.t += 2.0**-9  # 1.953125 ms a call, exact in binary

    est = warm_up(thunk, TIMING_WALL, policy(warmup_ms=5 * 1.953125), clock=clock)
    assert len(calls) == 5
    assert est == pytest.approx(1.953125)


def test_warm_up_runs_at_least_once_with_no_budget():
    clock = FakeClock()
    calls = []

    def thunk():
        calls.append(1)
        clock.t += 0.003

    est = warm_up(thunk, TIMING_INTERPRET, policy(warmup_ms=0.0), clock=clock)
    assert len(calls) == 1
    assert est == pytest.approx(3.0)


def test_warm_up_ends_when_the_clock_does_not_move():
    clock = FakeClock()
    calls = []
    est = warm_up(lambda: calls.append(1), TIMING_WALL, policy(warmup_ms=10.0), clock=clock)
    assert 1 <= len(calls) <= 1 + 10_000  # one batch of 10 ms at the 1 us floor, then it stops
    assert est == 0.0


def test_warm_up_is_by_time_with_batched_queueing_and_no_call_cap():
    """A 2 us call and a 100 ms budget: 50,000 calls (the old warm-up stopped at 1,000, after 2 ms),
    queued in batches of about WARMUP_QUEUE_MS with one synchronize each, not one per call."""
    clock = FakeClock()
    calls, syncs = [], []

    def thunk():
        calls.append(1)
        clock.t += 2e-6

    est = warm_up(thunk, TIMING_EVENTS, policy(warmup_ms=100.0), clock=clock, sync=lambda: syncs.append(len(calls)))
    assert len(calls) >= 49_000 and (clock.t - 1000.0) * 1e3 >= 100.0
    assert est == pytest.approx(0.002)
    assert len(syncs) <= 1 + 100.0 / timing.WARMUP_QUEUE_MS + 2  # the first call, then ~20 ms batches
    assert syncs[0] == 1 and max(b - a for a, b in zip(syncs, syncs[1:])) >= 9_000


# --- policies ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", [TIMING_EVENTS, TIMING_WALL, TIMING_INTERPRET])
def test_policy_for_each_timing_label_is_sane(label):
    pol = Policy.for_timing(label)
    assert 1 <= pol.min_samples <= pol.max_samples
    assert 0 < pol.noise_target < 1
    assert pol.time_cap_s > 0
    assert pol.warmup_ms >= 0
    assert set(pol.to_dict()) == {"warmup_ms", "min_samples", "max_samples", "noise_target", "time_cap_s",
                                  "min_time_s", "resolution_ms"}
    assert 0 <= pol.min_time_s <= pol.time_cap_s


@pytest.mark.parametrize("label", [TIMING_EVENTS, TIMING_WALL, TIMING_INTERPRET])
def test_policy_time_cap_override_changes_only_the_cap(label):
    base = Policy.for_timing(label)
    capped = Policy.for_timing(label, time_cap_s=0.2)
    assert capped.time_cap_s == 0.2
    assert (capped.warmup_ms, capped.min_samples, capped.max_samples, capped.noise_target) == \
        (base.warmup_ms, base.min_samples, base.max_samples, base.noise_target)
    assert capped.min_time_s == min(base.min_time_s, 0.2)  # a short cap asked for wins over the least time


def test_policies_differ_by_timing_label():
    events, wall, interp = (Policy.for_timing(t) for t in (TIMING_EVENTS, TIMING_WALL, TIMING_INTERPRET))
    # Device events are the precise timer: the strictest noise target, a warm-up, enough samples
    # for a noise estimate (nvbench: at least 5, default 10).
    assert events.noise_target <= wall.noise_target <= interp.noise_target
    assert events.min_samples >= 5 and events.warmup_ms > 0
    # Interpreter timings only need to exist: the fewest samples.
    assert interp.max_samples <= wall.max_samples <= events.max_samples
    assert len({events, wall, interp}) == 3


def test_policy_unknown_timing_label_is_refused():
    with pytest.raises(KeyError):
        Policy.for_timing("stopwatch")


def test_relative_noise_sees_a_second_mode():
    # Three of eight samples far below the rest: the MAD alone calls this quiet (< 1 %), the
    # interquartile range does not, so sampling goes on instead of stopping on a bimodal sample.
    samples = [7.98, 8.0, 7.998, 7.997, 8.05, 0.101, 0.039, 0.035]
    med = quantile(sorted(samples), 0.5)
    mad = quantile(sorted(abs(s - med) for s in samples), 0.5)
    assert MAD_TO_SIGMA * mad / med < 0.01
    assert relative_noise(samples) > 0.5


def test_the_hold_covers_the_hosts_queueing_time_and_is_capped():
    from parity.harness.measurement.flush import HOLD_CAP_MS, hold_ms

    assert hold_ms(32, 0.02) == pytest.approx(1.5 * 32 * 0.02)  # 32 launches of 20 us: ~1 ms held
    assert hold_ms(32, 10.0) == HOLD_CAP_MS  # a slow host never holds the device for long
    assert hold_ms(8, -1.0) == 0.0


@pytest.mark.gpu
def test_events_on_the_gpu_time_a_short_kernel_without_its_launch():
    """With the stream held while the batch is queued, a tiny kernel's samples are its device time:
    far below the host's launch cost of a Python-level call, and close to each other."""
    import torch

    from parity.harness.measurement.timing import event_batch

    x = torch.randn(1024, device="cuda")
    take = event_batch(lambda: x.mul_(1.0))
    take(4)  # learns the host's queueing time
    samples = take(32)
    assert len(samples) == 32 and min(samples) > 0
    assert sorted(samples)[16] < 0.02  # ms: a 4 KiB multiply is a few microseconds on any GPU
