"""Telemetry without a GPU: fake NVML and amdsmi modules in the real ones' names and units, the
unit conversions, device matching, energy from counter steps, throttle flags, the sampler thread,
and the "none" path when there is no library or no device."""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace

import pytest
from fakes import amdsmi as fake_amdsmi
from fakes import nvml as fake_nvml

from parity.harness.core.device import DeviceInfo
from parity.harness.core.model import TIMING_WALL
from parity.harness.measurement import telemetry, telemetry_readers
from parity.harness.measurement.telemetry import Sampler, summarize
from parity.harness.measurement.telemetry_readers import Sample, Unavailable, open_reader
from parity.harness.measurement.timing import Policy, measure

CUDA = DeviceInfo(backend="cuda", name="NVIDIA H100 80GB HBM3", arch="sm_90", index=0, memory_bytes=80 << 30,
                  multiprocessors=132, l2_bytes=50 << 20, llc_bytes=50 << 20, driver_version=None,
                  runtime_version="12.8")
ROCM = replace(CUDA, backend="rocm", name="AMD Instinct MI300X", arch="gfx942")
CPU = replace(CUDA, backend="cpu", name="Some CPU", arch="x86_64")
NO_ID = lambda index: (None, None)  # noqa: E731 - torch reports no PCI id or UUID


def nvml_reader(*gpus, identity=NO_ID, device=CUDA, **kw):
    mod = fake_nvml.module(*gpus, **kw)
    return open_reader(device, import_module=lambda name: {"pynvml": mod}[name], identity=identity), mod


def amd_reader(*gpus, identity=NO_ID, **kw):
    mod = fake_amdsmi.module(*gpus, **kw)
    return open_reader(ROCM, import_module=lambda name: {"amdsmi": mod}[name], identity=identity), mod


# --- NVML -------------------------------------------------------------------------------------------


def test_nvml_readings_in_normalized_units():
    reader, mod = nvml_reader(fake_nvml.Gpu(sm_mhz=1980, mem_mhz=2619, power_mw=650_000, temp_c=61,
                                            energy_mj_at_start=123_456_789, energy_update_s=1e9))
    assert reader.source == "nvml" and reader.power_kind == "instant" and reader.unsupported == {}
    s = reader.read()
    assert (s.sm_clock_mhz, s.mem_clock_mhz, s.temp_c) == (1980, 2619, 61)
    assert s.power_w == pytest.approx(650.0)  # mW -> W
    assert s.energy_j == pytest.approx(123_456.789)  # mJ -> J
    assert s.reasons == () and s.throttle == ()
    assert mod.initialized == 1
    reader.close()
    assert mod.initialized == 0


def test_nvml_falls_back_to_averaged_power_without_the_instant_field():
    reader, _ = nvml_reader(fake_nvml.Gpu(power_mw=300_500, unsupported={"NVML_FI_DEV_POWER_INSTANT"}))
    assert reader.power_kind == "average-1s"
    assert reader.read().power_w == pytest.approx(300.5)


def test_nvml_clock_event_reasons_and_which_of_them_throttle():
    reader, _ = nvml_reader(fake_nvml.Gpu(reasons=0x1 | 0x4 | 0x40))
    s = reader.read()
    assert s.reasons == ("GpuIdle", "SwPowerCap", "HwThermalSlowdown")
    assert s.throttle == ("SwPowerCap", "HwThermalSlowdown")  # idle is a clock event, not throttling
    assert telemetry_readers.nvml_reasons(0x2 | 0x10 | 0x100) == (("ApplicationsClocksSetting", "SyncBoost",
                                                           "DisplayClockSetting"), ())
    assert telemetry_readers.nvml_reasons(0x8)[1] == ("HwSlowdown",)
    assert telemetry_readers.nvml_reasons(0x200)[0] == ("bit0x200",)


def test_nvml_bindings_without_the_new_clock_event_call_use_the_throttle_call():
    reader, _ = nvml_reader(fake_nvml.Gpu(reasons=0x4), missing=("nvmlDeviceGetCurrentClocksEventReasons",))
    assert reader.read().throttle == ("SwPowerCap",)
    assert "reasons" not in reader.unsupported


def test_nvml_unsupported_quantities_are_none_and_say_why():
    reader, _ = nvml_reader(fake_nvml.Gpu(unsupported={"nvmlDeviceGetTotalEnergyConsumption",
                                                       "nvmlDeviceGetTemperature"}))
    s = reader.read()
    assert s.energy_j is None and s.temp_c is None and s.power_w is not None
    assert reader.unsupported == {"energy": "Not Supported", "temp": "Not Supported"}
    assert reader.describe()["unsupported"] == reader.unsupported


def test_nvml_device_is_found_by_pci_bus_id_then_uuid_then_index():
    gpus = (fake_nvml.Gpu(pci="00000000:1B:00.0", uuid="GPU-aaaa"), fake_nvml.Gpu(pci="00000000:3B:00.0", uuid="GPU-bbbb"))
    device = replace(CUDA, index=0)  # CUDA's device 0 is NVML's second GPU (CUDA_VISIBLE_DEVICES=1)
    reader, mod = nvml_reader(*gpus, device=device, identity=lambda i: ("0000:3b:00.0", None))
    assert reader.handle is gpus[1] and reader.device_match == "pci 0000:3b:00.0"
    reader, mod = nvml_reader(*gpus, device=device, identity=lambda i: (None, "bbbb"))
    assert reader.handle is gpus[1] and reader.device_match == "uuid GPU-bbbb"
    reader, mod = nvml_reader(*gpus, device=device, identity=lambda i: ("0000:99:00.0", "GPU-zzzz"))
    assert reader.handle is gpus[0] and reader.device_match.startswith("index 0 (")
    assert [c[0] for c in mod.calls] == ["pci", "uuid", "index"]


def test_missing_nvml_or_driver_gives_a_reason_and_no_exception(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # "import pynvml" raises ImportError
    reader = open_reader(CUDA, identity=NO_ID)
    assert isinstance(reader, Unavailable)
    assert reader.describe()["reason"].startswith("nvidia-ml-py is not installed or does not load")
    reader, mod = nvml_reader(init_error=fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED)
    assert isinstance(reader, Unavailable)
    assert reader.describe()["reason"] == "pynvml could not open GPU 0: Driver Not Loaded"


def test_the_real_import_path_is_used(monkeypatch):
    """open_reader imports `pynvml` by name, so a module in sys.modules replaces the real one."""
    mod = fake_nvml.module()
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    reader = open_reader(CUDA, identity=NO_ID)
    assert reader.source == "nvml" and reader.handle is not None
    reader.close()


def test_a_handle_lookup_failure_shuts_nvml_down():
    reader, mod = nvml_reader(fake_nvml.Gpu(), device=replace(CUDA, index=3))
    assert isinstance(reader, Unavailable) and "could not open GPU 3" in reader.describe()["reason"]
    assert mod.initialized == 0


# --- amdsmi -----------------------------------------------------------------------------------------


def test_amdsmi_readings_in_normalized_units():
    gpu = fake_amdsmi.Gpu(gfx_mhz=2100, mem_mhz=1300, hotspot_c=71, resolution_uj=15.3)
    reader, mod = amd_reader(gpu)
    assert reader.source == "amdsmi" and reader.power_kind == "instant" and reader.unsupported == {}
    before = gpu.ticks()
    s = reader.read()
    after = gpu.ticks()
    assert (s.sm_clock_mhz, s.mem_clock_mhz, s.temp_c, s.power_w) == (2100, 1300, 71, 720)  # W stays W
    # ticks x resolution microjoules -> J; the fake's counter runs, so bracket the read
    assert before * 15.3e-6 * (1 - 1e-9) <= s.energy_j <= after * 15.3e-6 * (1 + 1e-9)
    assert s.reasons == () and s.throttle == ()
    reader.close()
    assert mod.initialized == 0


@pytest.mark.parametrize("key", ["cur_clk", "clk"])
def test_amdsmi_clock_key_of_either_version(key):
    reader, _ = amd_reader(fake_amdsmi.Gpu(clock_key=key, gfx_mhz=1900))
    assert reader.read().sm_clock_mhz == 1900


def test_amdsmi_energy_key_of_older_versions():
    # No power drawn: the counter stays at its start, so the reading is exact however long the
    # read takes on a loaded machine (at 720 W one millisecond is 0.7 J, 5% of this counter).
    reader, _ = amd_reader(fake_amdsmi.Gpu(energy_key="power", resolution_uj=15.259, power_w=0.0))
    assert reader.read().energy_j == pytest.approx(1_000_000 * 15.259e-6, rel=1e-9)


@pytest.mark.parametrize("power, watts, kind", [
    ({"socket_power": 700, "current_socket_power": 690, "average_socket_power": "N/A"}, 700, "instant"),
    ({"current_socket_power": 690, "average_socket_power": "N/A"}, 690, "instant"),
    ({"current_socket_power": "N/A", "average_socket_power": 540}, 540, "average"),
    ({"current_socket_power": 0xFFFF, "average_socket_power": 0xFFFF}, None, None),  # max-uint: no value
])
def test_amdsmi_power_fields_across_versions_and_parts(power, watts, kind):
    reader, _ = amd_reader(fake_amdsmi.Gpu(power=power))
    assert reader.read().power_w == watts and reader.power_kind == kind
    assert ("power" in reader.unsupported) == (watts is None)


def test_amdsmi_violations_flag_throttling():
    gpu = fake_amdsmi.Gpu(violations={"active_ppt_pwr": True, "active_socket_thrm": False, "active_hbm_thrm": True})
    reader, _ = amd_reader(gpu)
    assert reader.read().throttle == ("hbm_thrm", "ppt_pwr")


def test_amdsmi_without_violation_status_uses_throttle_status():
    reader, _ = amd_reader(fake_amdsmi.Gpu(violations=None, throttle_status=0x3))
    assert reader.read().throttle == ("throttle_status",)
    reader, _ = amd_reader(fake_amdsmi.Gpu(violations={"active_ppt_pwr": "N/A"}, throttle_status="N/A"))
    assert reader.read().throttle is None and "reasons" in reader.unsupported


def test_amdsmi_device_by_bdf_else_index():
    gpus = (fake_amdsmi.Gpu(bdf="0000:0c:00.0"), fake_amdsmi.Gpu(bdf="0000:22:00.0"))
    reader, _ = amd_reader(*gpus, identity=lambda i: ("0000:22:00.0", None))
    assert reader.handle is gpus[1] and reader.device_match == "pci 0000:22:00.0"
    reader, _ = amd_reader(*gpus)
    assert reader.handle is gpus[0] and reader.device_match.startswith("index 0")


def test_missing_amdsmi_gives_a_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    reader = open_reader(ROCM, identity=NO_ID)
    assert isinstance(reader, Unavailable) and reader.describe()["reason"].startswith("amdsmi")
    reader, mod = amd_reader(init_error=True)
    assert "could not open GPU 0: AMDSMI_STATUS_INIT_ERROR" in reader.describe()["reason"]


# --- the summary ------------------------------------------------------------------------------------


def samples(n, dt=0.02, energy=None, power=500.0, throttle_at=(), sm=1980.0):
    """n polls dt apart; `energy(t)` gives the counter in J."""
    out = []
    for i in range(n):
        t = 100.0 + i * dt
        throttled = ("SwPowerCap",) if i in throttle_at else ()
        out.append(Sample(t_s=t, sm_clock_mhz=sm - (300 if throttled else 0), mem_clock_mhz=2619.0, power_w=power,
                          temp_c=60.0 + i % 7, energy_j=None if energy is None else energy(t),
                          reasons=throttled, throttle=throttled))
    return out


def stepped(watts, step_s, start=100.0):
    """A counter that advances every step_s at `watts`, as NVML's does."""
    return lambda t: 5000.0 + watts * step_s * int((t - start) / step_s + 1e-9)


def reader_stub(source="nvml"):
    stub = Unavailable("unused")
    stub.describe = lambda: {"source": source, "reason": None, "device_match": "pci x", "power_kind": "instant",
                             "unsupported": {}}
    return stub


def test_energy_per_call_from_counter_steps():
    s = samples(51, energy=stepped(600.0, 0.1), power=550.0)  # 1 s window; polled power disagrees
    out = summarize(s, calls=200, window_s=1.0, reader=reader_stub())
    assert out["energy_method"] == "counter"
    assert out["energy_j"] == pytest.approx(600.0, rel=0.01)  # the counter's 600 W, not the polled 550 W
    assert out["energy_j_per_call"] == pytest.approx(3.0, rel=0.01)
    assert out["calls"] == 200 and out["samples"] == 51


def test_counter_steps_beat_a_plain_difference():
    """Over 0.34 s a 10 Hz counter at 600 W advances 3 steps (180 J): a first-to-last difference
    says 529 W; between the first and last observed steps it is 600 W."""
    s = samples(18, energy=stepped(600.0, 0.1), power=None)
    out = summarize(s, calls=34, window_s=0.34, reader=reader_stub())
    assert out["energy_method"] == "counter"
    assert out["energy_j"] == pytest.approx(600.0 * 0.34, rel=0.01)
    assert telemetry.counter_power_w(s) == pytest.approx(600.0, rel=0.01)


def test_short_window_uses_polled_power():
    s = samples(5, energy=stepped(600.0, 0.1), power=550.0)  # 0.08 s: the counter steps at most once
    out = summarize(s, calls=10, window_s=0.08, reader=reader_stub())
    assert out["energy_method"] == "power"
    assert out["energy_j_per_call"] == pytest.approx(550.0 * 0.08 / 10)


def test_a_counter_reset_is_not_negative_energy():
    counter = stepped(600.0, 0.1)
    s = samples(51, energy=lambda t: counter(t) if t < 100.5 else counter(t) - 10_000)
    out = summarize(s, calls=10, window_s=1.0, reader=reader_stub())
    assert out["energy_method"] == "power" and out["energy_j_per_call"] > 0


def test_no_energy_and_no_power_is_none_not_zero():
    s = [replace(x, power_w=None) for x in samples(20)]
    out = summarize(s, calls=10, window_s=0.4, reader=reader_stub())
    assert out["energy_j_per_call"] is None and out["energy_method"] is None and out["power_w_median"] is None


def test_clock_power_temperature_statistics_and_throttle_flags():
    s = samples(10, throttle_at=(2, 5, 7))
    out = summarize(s, calls=50, window_s=0.2, reader=reader_stub())
    assert out["sm_clock_mhz_median"] == 1980.0 and out["sm_clock_mhz_min"] == 1680.0
    assert out["mem_clock_mhz_median"] == 2619.0 and out["power_w_median"] == 500.0
    assert out["temp_c_max"] == 66.0
    assert out["throttled_fraction"] == pytest.approx(0.3)
    assert out["throttle_reasons"] == ["SwPowerCap"]
    assert out["series"]["throttled"] == [i in (2, 5, 7) for i in range(10)]
    assert out["series"]["t_s"][:2] == [0.0, 0.02]
    assert set(out) == set(telemetry.SUMMARY_KEYS)


def test_long_windows_are_decimated_in_the_series():
    out = summarize(samples(1500), calls=10, window_s=30.0, reader=reader_stub())
    assert len(out["series"]["t_s"]) <= telemetry.SERIES_MAX and out["samples"] == 1500


def test_idle_and_other_clock_events_are_not_throttling():
    idle = ("GpuIdle", "ApplicationsClocksSetting")
    s = [replace(x, reasons=idle, throttle=()) for x in samples(8)] + samples(2, throttle_at=(0, 1))
    out = summarize(s, calls=5, window_s=0.2, reader=reader_stub())
    assert out["throttled_fraction"] == pytest.approx(0.2)
    assert out["clock_event_reasons"] == ["ApplicationsClocksSetting", "GpuIdle", "SwPowerCap"]
    assert out["throttle_reasons"] == ["SwPowerCap"]


def test_no_reason_reported_means_no_throttle_fraction():
    s = [replace(x, reasons=None, throttle=None) for x in samples(10)]
    out = summarize(s, calls=5, window_s=0.2, reader=reader_stub())
    assert out["throttled_fraction"] is None and out["series"]["throttled"] == [None] * 10


# --- the sampler ------------------------------------------------------------------------------------


def telemetry_threads():
    return [t for t in threading.enumerate() if t.name == "parity-telemetry"]


def test_sampler_polls_in_the_background_and_stops_cleanly():
    reader, _ = nvml_reader(fake_nvml.Gpu(power_mw=400_000, energy_update_s=0.02, reasons=0x4))
    sampler = Sampler(reader, interval_s=0.01)
    sampler.start()
    assert len(telemetry_threads()) == 1
    time.sleep(0.3)
    out = sampler.stop(calls=100)
    assert telemetry_threads() == []
    assert out is sampler.summary and out["source"] == "nvml" and out["reason"] is None
    assert 10 <= out["samples"] <= 40
    assert out["window_s"] == pytest.approx(0.3, abs=0.1)
    assert out["power_w_median"] == pytest.approx(400.0)
    assert out["throttled_fraction"] == 1.0 and out["throttle_reasons"] == ["SwPowerCap"]
    assert out["energy_method"] == "counter"
    assert out["energy_j_per_call"] == pytest.approx(400.0 * out["window_s"] / 100, rel=0.2)
    reader.close()


def test_sampler_can_be_reused_and_refuses_a_double_start():
    reader, _ = nvml_reader()
    sampler = Sampler(reader, interval_s=0.01)
    for calls in (3, 4):
        sampler.start()
        with pytest.raises(RuntimeError):
            sampler.start()
        assert sampler.stop(calls)["calls"] == calls
    assert telemetry_threads() == []


def test_no_library_on_the_cpu_starts_no_thread_and_records_why():
    reader = open_reader(CPU)
    assert isinstance(reader, Unavailable)
    sampler = Sampler(reader)
    sampler.start()
    assert telemetry_threads() == []
    out = sampler.stop(calls=7)
    assert out["source"] == "none" and out["reason"] == "no GPU: NVML and amdsmi report on GPUs only"
    assert out["samples"] == 0 and out["calls"] == 7
    assert all(out[k] is None for k in ("sm_clock_mhz_median", "power_w_median", "energy_j_per_call"))
    assert set(out) == set(telemetry.SUMMARY_KEYS)
    reader.close()


def test_measure_opens_the_window_after_warm_up_and_closes_it_with_the_call_count():
    events = []
    calls = []

    class Window:
        def start(self):
            events.append(("start", len(calls)))

        def stop(self, n, busy_s=None):
            events.append(("stop", len(calls), n))

    policy = Policy(warmup_ms=5.0, min_samples=5, max_samples=12, noise_target=0.0, time_cap_s=10.0)
    stats = measure(lambda: calls.append(1), TIMING_WALL, policy, window=Window())
    (start, warm), (stop, total, n) = events
    assert warm >= 1  # the warm-up ran before the window opened
    assert n == stats.n == 12 and total - warm == n  # exactly the timed calls are in the window


def test_measure_closes_the_window_when_the_thunk_raises():
    events, state = [], {"n": 0}

    class Window:
        def start(self):
            events.append("start")

        def stop(self, n, busy_s=None):
            events.append(("stop", n))

    def thunk():
        state["n"] += 1
        if state["n"] > 3:
            raise ValueError("boom")

    policy = Policy(warmup_ms=0.0, min_samples=5, max_samples=10, noise_target=0.0, time_cap_s=1.0)
    with pytest.raises(ValueError):
        measure(thunk, TIMING_WALL, policy, window=Window())
    assert events == ["start", ("stop", 0)]


def test_sampler_with_a_reader_that_fails_mid_run_keeps_going():
    reader, mod = nvml_reader(fake_nvml.Gpu())
    sampler = Sampler(reader, interval_s=0.01)
    sampler.start()
    reader.handle.unsupported.add("nvmlDeviceGetClockInfo")  # the driver stops answering clocks
    time.sleep(0.05)
    out = sampler.stop(calls=1)
    assert out["samples"] >= 3 and out["sm_clock_mhz_median"] == 1980  # the first poll had it
    assert telemetry_threads() == []


def test_settle_defaults():
    assert telemetry.settle_seconds(None, CUDA) == 0.5  # the documented default on a GPU
    assert telemetry.settle_seconds(None, CPU) == 0.0
    assert telemetry.settle_seconds(0.1, CPU) == 0.1 and telemetry.settle_seconds(0.0, CUDA) == 0.0


@pytest.mark.gpu
def test_real_telemetry_on_this_gpu():
    import torch

    from parity.harness.core.device import detect

    device = detect()
    reader = open_reader(device)
    assert not isinstance(reader, Unavailable), reader.describe()
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    sampler = Sampler(reader)
    sampler.start()
    end = time.monotonic() + 1.0
    n = 0
    while time.monotonic() < end:
        a @ a
        n += 1
    torch.cuda.synchronize()
    out = sampler.stop(calls=n)
    reader.close()
    for key in ("sm_clock_mhz_median", "mem_clock_mhz_median", "power_w_median", "temp_c_max", "energy_j_per_call"):
        assert out[key] is not None and out[key] > 0, (key, out)


# --- in the runner ----------------------------------------------------------------------------------


def _double_suite():
    import torch

    from parity.harness.core.model import Check, Impl, Op, Suite, Work

    def prepare(inputs, params):
        out = torch.empty_like(inputs)
        return lambda: torch.mul(inputs, 2.0, out=out)

    op = Op(name="double", inputs=lambda p, d: torch.randn(p["n"]) + 3.0,
            work=lambda p: Work(p["n"], 4 * p["n"], 4 * p["n"], "fp32"), reference=lambda x, p: 2.0 * x,
            check=lambda out, exp, x, p: Check(bool(torch.equal(out, exp)), 0.0, {"atol": 0.0}),
            cache="warm", metric="GB/s")
    return Suite(name="toy", description="toy", ops=(op,), impls=(Impl("good", "double", "torch", prepare),),
                 presets=("smoke",), dtypes=("fp32",),
                 params_for=lambda preset, device, dtypes, sizes: [("double", {"dtype": "fp32", "n": 4096})])


@pytest.fixture
def toy(monkeypatch):
    from parity.harness.measurement import registry

    suite = _double_suite()
    monkeypatch.setattr(registry, "load", lambda name: suite)
    return suite


def test_every_record_of_a_cpu_run_says_why_it_has_no_telemetry(tmp_path, cpu_device, toy):
    from parity.harness.core.results import read_run
    from parity.harness.measurement.runner import RunPlan, execute

    execute(RunPlan(suites=("toy",), preset="smoke", time_cap_s=0.1), cpu_device, tmp_path / "run", ["test"])
    run = read_run(tmp_path / "run")
    (rec,) = run.records
    tel = rec["telemetry"]
    assert tel["source"] == "none" and tel["reason"] == "no GPU: NVML and amdsmi report on GPUs only"
    assert tel["calls"] == rec["time_ms"]["n"]
    assert run.meta["settle_s"] == 0.0
    assert run.meta["telemetry"]["source"] == "none" and run.meta["plan"]["settle_s"] is None


def test_run_case_records_the_readers_summary_over_exactly_the_timed_calls(cpu_device, toy, monkeypatch):
    from parity.harness.core.model import Case
    from parity.harness.measurement import case as case_mod
    from parity.harness.measurement import runner

    sleeps = []
    monkeypatch.setattr(case_mod.time, "sleep", lambda s: sleeps.append(s))
    reader, _ = nvml_reader(fake_nvml.Gpu(power_mw=250_000, reasons=0x20))
    plan = runner.RunPlan(suites=("toy",), preset="smoke", time_cap_s=0.1, settle_s=0.25)
    case = Case("toy", "double", "good", {"dtype": "fp32", "n": 4096})
    rec = runner.run_case(toy, case, cpu_device, plan, None, reader).to_dict()
    reader.close()
    assert sleeps == [0.25]  # the settle pause, asked for by the plan
    tel = rec["telemetry"]
    assert rec["status"] == "ok" and tel["source"] == "nvml" and tel["device_match"].startswith("index 0")
    assert tel["calls"] == rec["time_ms"]["n"] and tel["samples"] >= 2
    assert tel["power_w_median"] == 250.0 and tel["throttle_reasons"] == ["SwThermalSlowdown"]
    assert tel["energy_j_per_call"] == pytest.approx(250.0 * tel["window_s"] / tel["calls"], rel=0.01)
    assert telemetry_threads() == []


def test_run_case_without_a_reader_says_so(cpu_device, toy):
    from parity.harness.core.model import Case
    from parity.harness.measurement import runner

    plan = runner.RunPlan(suites=("toy",), preset="smoke", time_cap_s=0.1)
    rec = runner.run_case(toy, Case("toy", "double", "good", {"dtype": "fp32", "n": 64}), cpu_device, plan, None)
    assert rec.telemetry["source"] == "none" and "no telemetry reader" in rec.telemetry["reason"]


def test_run_refuses_a_negative_settle(tmp_path):
    from test_cli import assert_one_error_line, parity

    assert_one_error_line(parity("run", "stream", "--settle-s", "-0.5", cwd=tmp_path), "--settle-s -0.5 is not 0 or more and at most 3600 s")
