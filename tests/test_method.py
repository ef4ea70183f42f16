"""Issue 13's method, on fakes and simulated timelines: a clean cold cache, a minimum measuring time,
several launches per event pair for small kernels, the stream hold sized from a whole sample with
stalled batches re-taken, and the duty and clock state of the telemetry window. Nothing here needs a
GPU or sleeps."""
from __future__ import annotations

import math
from collections import OrderedDict

import pytest
from fakes.timeline import Timeline

from parity.harness.measurement import flush as flush_mod
from parity.harness.measurement import telemetry, timing
from parity.harness.measurement.telemetry import Sample, Unavailable
from parity.harness.measurement.timing import (
    EVENT_RESOLUTION_MS,
    MAX_RETAKES,
    MODE_BACK_TO_BACK,
    MODE_SINGLE,
    EventSampler,
    Policy,
    collect,
    host_stalls,
    launches_for,
    relative_noise,
)


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def policy(**kw) -> Policy:
    base = dict(warmup_ms=0.0, min_samples=10, max_samples=100_000, noise_target=0.01, time_cap_s=10.0)
    base.update(kw)
    return Policy(**base)


# --- 1. a cold cache without dirty lines ---------------------------------------------------------


class WriteBackCache:
    """An LRU write-back cache of `lines` lines: a dirty line evicted costs a write-back."""

    def __init__(self, lines: int):
        self.lines = lines
        self.held: OrderedDict[tuple, bool] = OrderedDict()  # line -> dirty
        self.write_backs = 0

    def touch(self, line: tuple, write: bool) -> None:
        dirty = self.held.pop(line, False) or write
        self.held[line] = dirty
        if len(self.held) > self.lines:
            _, was_dirty = self.held.popitem(last=False)
            self.write_backs += was_dirty


class CachedBuffer:
    """A flush buffer of `lines` lines in the simulated cache: zero_() writes every line, a
    reduction over the view reads every line."""

    def __init__(self, cache: WriteBackCache, lines: int):
        self.cache, self.lines, self.calls = cache, lines, []

    def view(self, *shape):
        return self

    def zero_(self):
        self.calls.append("write")
        for i in range(self.lines):
            self.cache.touch(("flush", i), write=True)

    def amax(self):
        self.calls.append("read")
        for i in range(self.lines):
            self.cache.touch(("flush", i), write=False)


def write_backs_in_timed_kernel(flush_of) -> int:
    """Write-backs a kernel reading 64 lines pays after the flush, in a 256-line cache."""
    cache = WriteBackCache(256)
    buffer = CachedBuffer(cache, 2 * 256)  # twice the LLC, as flush_bytes sizes it
    flush_of(buffer)()
    before = cache.write_backs
    for i in range(64):
        cache.touch(("kernel", i), write=False)
    return cache.write_backs - before


def test_a_memset_flush_leaves_dirty_lines_that_the_timed_kernel_writes_back():
    assert write_backs_in_timed_kernel(flush_mod.as_flush) == 64  # the old flush: memset only


def test_the_clean_flush_writes_then_reads_and_the_timed_kernel_pays_no_write_back():
    assert write_backs_in_timed_kernel(flush_mod.clean_flush) == 0
    cache = WriteBackCache(8)
    buffer = CachedBuffer(cache, 16)
    flush_mod.clean_flush(buffer)()
    assert buffer.calls == ["write", "read"]
    assert len(cache.held) == 8 and not any(cache.held.values())  # full of clean lines


def test_the_runner_flushes_clean_and_records_how(cpu_device):
    flush = flush_mod.Flush(cpu_device)
    assert flush.method == "write+read"
    import torch

    flush._buffer = torch.full((4096,), 7, dtype=torch.uint8)  # a CPU stand-in for the device buffer
    flush.evict()
    assert int(flush._buffer.max()) == 0


# --- 2. a minimum measuring time ------------------------------------------------------------------


def test_sampling_goes_on_for_min_time_before_stopping_on_noise():
    clock = FakeClock()
    taken = []

    def take(k):
        taken.append(k)
        clock.t += k * 0.001
        return [1.0] * k  # quiet from the first batch

    stats = collect(take, policy(min_time_s=0.5), estimate_ms=1.0, clock=clock)
    assert stats.stop == "noise" and clock.t - 1000.0 >= 0.5 and stats.n >= 500
    assert stats.batches == tuple(taken)
    clock2, taken = FakeClock(), []

    def take2(k):
        clock2.t += k * 0.001
        return [1.0] * k

    assert collect(take2, policy(min_time_s=0.0), estimate_ms=1.0, clock=clock2).n < 50  # without it: stops early


def test_min_time_never_outlasts_the_time_cap():
    pol = Policy.for_timing("events", time_cap_s=0.2)
    assert pol.min_time_s == 0.2
    assert Policy.for_timing("events").min_time_s == 0.5  # nvbench's --min-time
    assert Policy.for_timing("events", min_time_s=2.0).min_time_s == 2.0
    assert Policy.for_timing("wall").min_time_s == 0.0


def test_run_json_records_min_time_among_the_timing_policies(tmp_path, cpu_device):
    from parity.harness.measurement import runner

    plan = runner.RunPlan(suites=("stream",), min_time_s=0.25)
    meta = runner.run_meta(plan, cpu_device, ["parity", "run"], None)
    assert meta["timing"]["events"]["min_time_s"] == 0.25
    assert meta["timing"]["wall"]["min_time_s"] == 0.25
    assert runner.RunPlan.from_dict(plan.to_dict()) == plan
    assert runner.RunPlan.recorded({"plan": plan.to_dict()}, tmp_path).min_time_s == 0.25
    with pytest.raises(Exception, match="min_time_s .x. is not a number"):
        runner.RunPlan.recorded({"plan": {**plan.to_dict(), "min_time_s": "x"}}, tmp_path)


def test_the_settle_pause_serves_compute_cases_only():
    gpu = type("Device", (), {"is_gpu": True})()
    assert telemetry.settle_seconds(None, gpu, "TFLOPS") == telemetry.DEFAULT_SETTLE_GPU_S
    assert telemetry.settle_seconds(None, gpu, "GB/s") == 0.0
    assert telemetry.settle_seconds(0.2, gpu, "GB/s") == 0.2  # as asked, whatever the case


def clocked(values_mhz, dt=0.02):
    return [Sample(t_s=100.0 + i * dt, sm_clock_mhz=v) for i, v in enumerate(values_mhz)]


def test_the_clock_state_of_the_window():
    burst = clocked([1980.0] * 5 + [1650.0] * 30)  # 100 ms of boost, then the limiter
    assert telemetry.clock_state(burst) == (1980.0, 1650.0, "burst")
    steady = clocked([1755.0, 1740.0, 1760.0] * 12)
    assert telemetry.clock_state(steady)[2] == "sustained"
    assert telemetry.clock_state(clocked([1980.0] * 5 + [1650.0] * 5))[2] is None  # 0.18 s: cannot tell
    assert telemetry.clock_state([Sample(t_s=1.0)]) == (None, None, None)


# --- 3. small kernels: several launches per event pair --------------------------------------------


@pytest.mark.parametrize("sample_ms, launches", [
    (1.0, 1), (0.010, 1), (0.0099, 11), (0.002, 50), (0.0001, timing.MAX_LAUNCHES), (0.0, timing.MAX_LAUNCHES),
])
def test_launches_per_event_pair(sample_ms, launches):
    assert launches_for(sample_ms) == launches


def test_quantized_identical_samples_are_not_noise_free():
    ticks = [0.0025] * 40  # a 2.3 us kernel read as 5 ticks of 0.5 us every time
    assert relative_noise(ticks) == 0.0
    floor = relative_noise(ticks, EVENT_RESOLUTION_MS)
    assert floor == pytest.approx(EVENT_RESOLUTION_MS / math.sqrt(12) / 0.0025)
    clock = FakeClock()

    def take(k):
        clock.t += k * 1e-3
        return ticks[:k]

    stats = collect(take, policy(noise_target=0.005, time_cap_s=0.5, resolution_ms=EVENT_RESOLUTION_MS),
                    estimate_ms=1.0, clock=clock)
    assert stats.stop == "time-cap" and stats.noise_rel > 0.005  # no false confidence


def test_a_small_kernel_is_timed_back_to_back_and_labelled():
    tl = Timeline(launch_ms=0.005, resolution_ms=EVENT_RESOLUTION_MS)
    kernel_ms = 0.0023
    take = EventSampler(lambda: tl.kernel(kernel_ms), cuda=tl, clock=tl.clock)
    stats = collect(take, policy(resolution_ms=EVENT_RESOLUTION_MS, noise_target=0.005), estimate_ms=0.01,
                    clock=tl.clock)
    assert stats.launches_per_sample == launches_for(0.0025) == 40 and stats.timing_mode == MODE_BACK_TO_BACK
    assert stats.median == pytest.approx(kernel_ms, rel=0.01)  # one launch per pair reads 0.0025: +9 %
    assert stats.busy_ms == pytest.approx(sum(stats.samples) * 40)
    d = stats.to_dict()
    assert d["launches_per_sample"] == 40 and d["timing_mode"] == "back-to-back"
    one = EventSampler(lambda: tl.kernel(kernel_ms), cuda=tl, clock=tl.clock, launches=1)
    assert set(one(16)) == {0.0025} and one.mode == MODE_SINGLE


def test_a_cold_sample_is_one_launch_however_short():
    tl = Timeline()
    take = EventSampler(lambda: tl.kernel(0.001), flush=lambda: tl.kernel(0.03), cuda=tl, clock=tl.clock)
    take(8)
    assert take.launches == 1 and take.mode == MODE_SINGLE


# --- 4. the stream hold, verified --------------------------------------------------------------------


def test_the_hold_is_sized_from_a_whole_sample_so_the_first_batch_has_no_host_time():
    """Host: 5 us per launch and 2 us per event record, so a cold sample costs it 14 us to queue;
    the device needs 2 us. Sized from the kernel's launch alone (5 us) the hold runs out a third of
    the way into the batch, and later samples hold the host's launch time."""
    tl = Timeline(launch_ms=0.005, record_ms=0.002)
    take = EventSampler(lambda: tl.kernel(0.001), flush=lambda: tl.kernel(0.001), cuda=tl, clock=tl.clock)
    samples = take(32)
    assert samples == pytest.approx([0.001] * 32)
    assert take.retaken == 0 and take.host_ms == pytest.approx(0.014, rel=0.02)
    assert host_stalls(take.gaps_ms) == []


def test_gaps_between_samples_find_a_host_stall():
    assert host_stalls([0.03] * 10 + [0.5] + [0.03] * 5) == [10]
    assert host_stalls([0.0] * 8) == [] and host_stalls([]) == []
    assert host_stalls([0.001, 0.002, 0.0015, 0.015]) == []  # under the slack: event jitter


def test_a_batch_with_a_host_stall_is_taken_again():
    tl = Timeline(launch_ms=0.005, record_ms=0.002)
    take = EventSampler(lambda: tl.kernel(0.001), flush=lambda: tl.kernel(0.001), cuda=tl, clock=tl.clock)
    take(32)
    tl.stalls[tl.launches + 2 + 30] = 2.0  # 2 ms lost mid-batch (the hold covers ~0.7 ms)
    samples = take(32)
    assert take.retaken == 1 and take.stalled == 0
    assert samples == pytest.approx([0.001] * 32)  # the retaken batch is clean


def test_a_stall_that_outlasts_every_retake_is_kept_and_counted():
    tl = Timeline(launch_ms=0.005, record_ms=0.002)
    take = EventSampler(lambda: tl.kernel(0.001), flush=lambda: tl.kernel(0.001), cuda=tl, clock=tl.clock)
    take(8)
    for n in range(tl.launches, tl.launches + 2000, 10):
        tl.stalls[n] = 80.0  # longer than the hold's 50 ms cap, every few samples
    take(8)
    assert take.retaken == MAX_RETAKES and take.stalled == 1
    clock = FakeClock()
    stats = collect(take, policy(min_samples=5, max_samples=8), estimate_ms=1.0, clock=clock)
    assert stats.stalled_batches >= 1 and stats.retaken_batches >= MAX_RETAKES


# --- 5. power only where the GPU was busy -----------------------------------------------------------


def reader_stub():
    stub = Unavailable("unused")
    stub.describe = lambda: {"source": "nvml", "reason": None, "device_match": "pci x", "power_kind": "instant",
                             "unsupported": {}}
    return stub


def test_the_summary_records_the_duty():
    s = [Sample(t_s=100.0 + 0.02 * i, sm_clock_mhz=1980.0, power_w=400.0) for i in range(51)]
    out = telemetry.summarize(s, calls=1000, window_s=1.0, reader=reader_stub(), busy_s=0.3)
    assert out["duty"] == pytest.approx(0.3) and out["busy_s"] == 0.3
    assert telemetry.summarize(s, 10, 1.0, reader_stub())["duty"] is None  # not told: unknown, not 1
    assert telemetry.duty(1.0000001, 1.0) == 1.0


def test_measure_tells_the_window_every_timed_call_and_their_time():
    seen = {}

    class Window:
        def start(self):
            pass

        def stop(self, n, busy_s=None):
            seen.update(n=n, busy_s=busy_s)

    pol = Policy(warmup_ms=0.0, min_samples=5, max_samples=12, noise_target=0.0, time_cap_s=10.0)
    stats = timing.measure(lambda: sum(range(100)), "wall", pol, window=Window())
    assert seen["n"] == stats.n * stats.launches_per_sample
    assert seen["busy_s"] == pytest.approx(sum(stats.samples) / 1e3)


def test_the_report_withholds_power_figures_below_the_duty_floor():
    from synthetic import record, run

    from parity.harness.reporting import report

    tel = {"source": "nvml", "sm_clock_mhz_median": 1980.0, "power_w_median": 500.0, "energy_j_per_call": 0.01,
           "duty": 0.3}
    idle = record(op="copy", bytes_read=10**9, telemetry=tel)
    busy = record(op="scale", bytes_read=10**9, telemetry={**tel, "duty": 0.95})
    df = report.frame([run([idle, busy])])
    by = {r["op"]: r for r in report.display_rows(df)}
    assert by["copy"]["W"] == "-" and by["copy"]["per W"] == "-" and by["copy"]["J/call"] == "-"
    assert "duty 30%" in by["copy"]["status"]
    assert by["scale"]["W"] == "500" and by["scale"]["per W"] != "-"
    hot = record(op="add", bytes_read=10**9, telemetry={**tel, "duty": 0.95, "clock_state": "burst"})
    (row,) = report.display_rows(report.frame([run([hot])]))
    assert "the clock fell during the window" in row["status"]


@pytest.mark.gpu
def test_on_the_gpu_a_small_copy_is_timed_back_to_back_and_the_clean_flush_runs():
    import torch

    x = torch.randn(16 << 10, device="cuda")  # 64 KiB
    y = torch.empty_like(x)
    take = EventSampler(lambda: y.copy_(x))
    samples = take(16)
    assert take.launches > 1 and take.mode == MODE_BACK_TO_BACK, samples
    assert sorted(samples)[8] < timing.SMALL_KERNEL_MS
    buffer = torch.full((64 << 20,), 3, dtype=torch.uint8, device="cuda")
    flush_mod.clean_flush(buffer)()
    torch.cuda.synchronize()
    assert int(buffer.max()) == 0
