"""What the card was doing while a case was timed: clocks, power, temperature, throttling, energy.

A `Sampler` polls the device from a background thread every 20 ms (the survey's 10-50 ms; NVML's
power and energy counters update every 20-100 ms, so faster polling buys nothing) while
`timing.measure` takes its samples, and summarizes the window into the record's `telemetry` dict.
The window starts after the warm-up and ends after the last timed sample has finished, so it
holds exactly the timed calls and, for cold ops, their cache flushes. It also holds the holds,
flushes, synchronizations and host work between batches, so the summary records the duty, the
timed device time over the window: below DUTY_MIN the power, energy and perf-per-watt figures of
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
"""
from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from parity.harness.measurement.timing import quantile

DEFAULT_INTERVAL_S = 0.02
DEFAULT_SETTLE_GPU_S = 0.5  # idle before each compute case on a GPU: power capping acts on sub-second averages
DUTY_MIN = 0.8  # below this share of busy time in the window, power-derived figures are withheld
CLOCK_EDGE_S = 0.1  # the clock at the window's start and end: the median over this long
CLOCK_STATE_MIN_S = 0.3  # a shorter window cannot tell burst from sustained
CLOCK_DROP = 0.02  # a clock 2 % lower at the end than at the start fell during the window: burst
ENERGY_MIN_SPAN_S = 0.2  # the counter must be seen to advance over at least this long to be used
SERIES_MAX = 600  # telemetry samples kept per record (30 s at 20 ms); longer windows are decimated

# NVML clock-event (formerly throttle) reason bits (nvml.h, nvmlClocksEventReason*).
NVML_REASONS = {
    0x1: "GpuIdle", 0x2: "ApplicationsClocksSetting", 0x4: "SwPowerCap", 0x8: "HwSlowdown",
    0x10: "SyncBoost", 0x20: "SwThermalSlowdown", 0x40: "HwThermalSlowdown",
    0x80: "HwPowerBrakeSlowdown", 0x100: "DisplayClockSetting",
}
# The reasons that mean the clock was pulled down by power or heat. GpuIdle, application clocks set
# by the user, sync boost and display clocks are clock events but not throttling.
NVML_THROTTLING = {"SwPowerCap", "HwSlowdown", "SwThermalSlowdown", "HwThermalSlowdown", "HwPowerBrakeSlowdown"}
NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0  # values from nvml.h
NVML_FI_DEV_POWER_INSTANT = 186
NVML_VALUE_FIELDS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
NOT_SUPPORTED_SENTINELS = (0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)  # amdsmi's "no value" max-uints

SUMMARY_KEYS = (
    "source", "reason", "device_match", "interval_ms", "samples", "window_s", "calls",
    "sm_clock_mhz_median", "sm_clock_mhz_min", "mem_clock_mhz_median", "power_w_median", "power_kind",
    "temp_c_max", "energy_j", "energy_j_per_call", "energy_method", "throttled_fraction",
    "throttle_reasons", "clock_event_reasons", "unsupported", "series",
    "busy_s", "duty", "sm_clock_mhz_first", "sm_clock_mhz_last", "clock_state",
)


@dataclass(frozen=True)
class Sample:
    """One poll, in normalized units; None where the device does not report the quantity."""

    t_s: float  # time.monotonic()
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    power_w: float | None = None
    temp_c: float | None = None
    energy_j: float | None = None  # the device's cumulative counter
    reasons: tuple[str, ...] | None = None  # every clock-event reason active (None: not reported)
    throttle: tuple[str, ...] | None = None  # the subset that is power or thermal throttling


def _number(value: Any) -> float | None:
    """A reading as a float; None for "N/A", non-numbers and amdsmi's max-uint sentinels."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and value in NOT_SUPPORTED_SENTINELS:
        return None
    return float(value)


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("\n", " ")[:200]


class _Probed:
    """A reader's quantities, each tried once when it opens: the ones that work are polled, the
    others are listed in `unsupported` with the library's answer and never called again."""

    source = "none"
    power_kind: str | None = None
    device_match: str | None = None

    def __init__(self):
        self.unsupported: dict[str, str] = {}
        self._readers: dict[str, Callable[[], Any]] = {}

    def _probe(self, name: str, *candidates: Callable[[], Any]) -> int | None:
        """Keep the first candidate that answers with a value; return its position."""
        errors = []
        for i, fn in enumerate(candidates):
            try:
                value = fn()
            except Exception as exc:  # noqa: BLE001 - any library error means "not supported here"
                errors.append(_error_text(exc))
                continue
            if value is not None:
                self._readers[name] = fn
                return i
            errors.append("no value")
        self.unsupported[name] = "; ".join(dict.fromkeys(errors)) or "no value"
        return None

    def _get(self, name: str):
        fn = self._readers.get(name)
        if fn is None:
            return None
        try:
            return fn()
        except Exception:  # noqa: BLE001 - one failed poll leaves a gap, not a crash
            return None

    def read(self) -> Sample:
        reasons = self._get("reasons")
        return Sample(t_s=time.monotonic(), sm_clock_mhz=self._get("sm_clock"), mem_clock_mhz=self._get("mem_clock"),
                      power_w=self._get("power"), temp_c=self._get("temp"), energy_j=self._get("energy"),
                      reasons=None if reasons is None else reasons[0],
                      throttle=None if reasons is None else reasons[1])

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "reason": None, "device_match": self.device_match,
                "power_kind": self.power_kind, "unsupported": dict(self.unsupported)}

    def close(self) -> None:
        pass


class Unavailable(_Probed):
    """No telemetry for this device, and why: the run goes on and every record says so."""

    def __init__(self, reason: str):
        super().__init__()
        self.reason = reason

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "reason": self.reason}


def nvml_reasons(mask: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every reason active, the throttling ones) of an NVML clock-event bitmask."""
    names = tuple(NVML_REASONS.get(bit, f"bit{bit:#x}") for bit in (1 << i for i in range(64)) if mask & bit)
    return names, tuple(n for n in names if n in NVML_THROTTLING)


class NvmlReader(_Probed):
    source = "nvml"

    def __init__(self, nvml, device, identity: tuple[str | None, str | None]):
        super().__init__()
        self.nvml = nvml
        nvml.nvmlInit()
        try:
            self.handle, self.device_match = _nvml_handle(nvml, device.index, identity)
            h = self.handle
            self._probe("sm_clock", lambda: _number(nvml.nvmlDeviceGetClockInfo(h, NVML_CLOCK_SM)))
            self._probe("mem_clock", lambda: _number(nvml.nvmlDeviceGetClockInfo(h, NVML_CLOCK_MEM)))
            kind = self._probe("power", self._instant_power_w,
                               lambda: _milli(nvml.nvmlDeviceGetPowerUsage(h)))
            self.power_kind = {0: "instant", 1: "average-1s"}.get(kind)
            self._probe("temp", lambda: _number(nvml.nvmlDeviceGetTemperature(h, NVML_TEMPERATURE_GPU)))
            self._probe("energy", lambda: _milli(nvml.nvmlDeviceGetTotalEnergyConsumption(h)))
            self._probe("reasons", lambda: nvml_reasons(nvml.nvmlDeviceGetCurrentClocksEventReasons(h)),
                        lambda: nvml_reasons(nvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)))
        except Exception:
            nvml.nvmlShutdown()
            raise

    def _instant_power_w(self) -> float | None:
        field = getattr(self.nvml, "NVML_FI_DEV_POWER_INSTANT", NVML_FI_DEV_POWER_INSTANT)
        (value,) = self.nvml.nvmlDeviceGetFieldValues(self.handle, [field])
        if value.nvmlReturn != 0:  # NVML_SUCCESS
            return None
        member = NVML_VALUE_FIELDS.get(value.valueType)
        return None if member is None else _milli(getattr(value.value, member))

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutting down a library that is already gone
            pass


def _milli(value: Any) -> float | None:
    """mW -> W, mJ -> J."""
    number = _number(value)
    return None if number is None else number / 1e3


def _nvml_handle(nvml, index: int, identity) -> tuple[Any, str]:
    """The NVML handle of CUDA device `index`. NVML numbers devices in PCI order and CUDA by speed
    unless CUDA_DEVICE_ORDER=PCI_BUS_ID, and CUDA_VISIBLE_DEVICES renumbers them, so the device is
    found by the PCI bus id torch reports, else by its UUID; the index is the last resort."""
    bdf, uuid = identity
    if bdf:
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId(bdf), f"pci {bdf}"
        except Exception:  # noqa: BLE001
            pass
    if uuid:
        text = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        try:
            return nvml.nvmlDeviceGetHandleByUUID(text), f"uuid {text}"
        except Exception:  # noqa: BLE001
            pass
    return nvml.nvmlDeviceGetHandleByIndex(index), (f"index {index} (no PCI bus id or UUID from torch: "
                                                    "right only if CUDA and NVML number the GPUs alike)")


class AmdsmiReader(_Probed):
    source = "amdsmi"

    def __init__(self, amdsmi, device, identity: tuple[str | None, str | None]):
        super().__init__()
        self.amdsmi = amdsmi
        amdsmi.amdsmi_init()
        try:
            self.handle, self.device_match = _amdsmi_handle(amdsmi, device.index, identity)
            h, clk = self.handle, amdsmi.AmdSmiClkType
            temp_type, metric = amdsmi.AmdSmiTemperatureType, amdsmi.AmdSmiTemperatureMetric.CURRENT
            self._probe("sm_clock", lambda: _amd_clock(amdsmi.amdsmi_get_clock_info(h, clk.GFX)))
            self._probe("mem_clock", lambda: _amd_clock(amdsmi.amdsmi_get_clock_info(h, clk.MEM)))
            kind = self._probe("power", *(lambda key=key: _number(amdsmi.amdsmi_get_power_info(h).get(key))
                                          for key in ("socket_power", "current_socket_power", "average_socket_power")))
            self.power_kind = {0: "instant", 1: "instant", 2: "average"}.get(kind)
            # amdsmi.h calls temperatures millidegrees, but the library divides by 1000: degrees C.
            self._probe("temp", lambda: _number(amdsmi.amdsmi_get_temp_metric(h, temp_type.HOTSPOT, metric)),
                        lambda: _number(amdsmi.amdsmi_get_temp_metric(h, temp_type.EDGE, metric)))
            self._probe("energy", lambda: _amd_energy_j(amdsmi.amdsmi_get_energy_count(h)))
            self._probe("reasons", lambda: _amd_violations(amdsmi.amdsmi_get_violation_status(h)),
                        lambda: _amd_throttle_status(amdsmi.amdsmi_get_gpu_metrics_info(h)))
        except Exception:
            amdsmi.amdsmi_shut_down()
            raise

    def close(self) -> None:
        try:
            self.amdsmi.amdsmi_shut_down()
        except Exception:  # noqa: BLE001
            pass


def _amd_clock(info: dict[str, Any]) -> float | None:
    """MHz; the current clock is `cur_clk` in ROCm 6.2 and later, `clk` before (and again in some)."""
    for key in ("cur_clk", "clk"):
        value = _number(info.get(key))
        if value is not None:
            return value
    return None


def _amd_energy_j(info: dict[str, Any]) -> float | None:
    """accumulator x counter_resolution is in microjoules; the key was `power` before ROCm 6.4."""
    ticks = _number(info.get("energy_accumulator", info.get("power")))
    resolution = _number(info.get("counter_resolution"))
    if ticks is None or resolution is None:
        return None
    return ticks * resolution * 1e-6


def _amd_violations(info: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """MI300 and later: `active_*` flags are True while the violation is active (PVIOL is
    `ppt_pwr`, TVIOL `socket_thrm`); all of them throttle the clock."""
    flags = {k[len("active_"):]: v for k, v in info.items() if k.startswith("active_")}
    if not flags or all(not isinstance(v, bool) for v in flags.values()):
        return None  # every flag "N/A": the part does not report violations
    names = tuple(sorted(k for k, v in flags.items() if v is True))
    return names, names


def _amd_throttle_status(metrics: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """MI100/MI200: a nonzero gpu-metrics `throttle_status` means some throttler is active."""
    status = _number(metrics.get("throttle_status"))
    if status is None:
        return None
    names = ("throttle_status",) if status else ()
    return names, names


def _amdsmi_handle(amdsmi, index: int, identity) -> tuple[Any, str]:
    """By the PCI address torch reports; otherwise amdsmi's index, which is the HIP index only
    without *_VISIBLE_DEVICES and on ROCm versions that enumerate alike."""
    bdf, _ = identity
    if bdf:
        try:
            return amdsmi.amdsmi_get_processor_handle_from_bdf(bdf), f"pci {bdf}"
        except Exception:  # noqa: BLE001
            pass
    return amdsmi.amdsmi_get_processor_handles()[index], (f"index {index} (no PCI bus id from torch: right only "
                                                          "if HIP and amdsmi number the GPUs alike)")


def torch_identity(index: int) -> tuple[str | None, str | None]:
    """(PCI address "0000:3b:00.0", UUID) of torch's device `index`, where torch reports them.
    Both NVML (which reads the address with %x fields) and amdsmi take this form."""
    try:
        import torch

        props = torch.cuda.get_device_properties(index)
    except Exception:  # noqa: BLE001 - no CUDA/ROCm here
        return None, None
    bdf = None
    if all(hasattr(props, a) for a in ("pci_domain_id", "pci_bus_id", "pci_device_id")):
        bdf = f"{props.pci_domain_id:04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    uuid = str(getattr(props, "uuid", "") or "") or None
    return bdf, uuid


def open_reader(device, import_module: Callable[[str], Any] = importlib.import_module,
                identity: Callable[[int], tuple[str | None, str | None]] = torch_identity) -> _Probed:
    """The telemetry reader for `device`, or an `Unavailable` that says why there is none."""
    if device.backend == "cpu":
        return Unavailable("no GPU: NVML and amdsmi report on GPUs only")
    module, package, cls = {"cuda": ("pynvml", "nvidia-ml-py", NvmlReader),
                            "rocm": ("amdsmi", "amdsmi (pip install 'parity[amd]', or ROCm's amd_smi)", AmdsmiReader)
                            }[device.backend]
    try:
        lib = import_module(module)
    except Exception as exc:  # noqa: BLE001 - ImportError, or a binding that fails to load
        return Unavailable(f"{package} is not installed or does not load ({_error_text(exc)})")
    try:
        return cls(lib, device, identity(device.index))
    except Exception as exc:  # noqa: BLE001 - no driver, no permission, no such device
        return Unavailable(f"{module} could not open GPU {device.index}: {_error_text(exc)}")


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
