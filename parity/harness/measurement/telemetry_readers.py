"""The telemetry readers: NVML on NVIDIA (nvidia-ml-py, imported as pynvml), amdsmi on AMD, and
`Unavailable` (with its reason) elsewhere. Each reads one Sample: clocks, power, temperature, the
energy counter and the throttle reasons, every call probed once and dropped with its reason if the
device does not support it. reference/harness-method.md lists the calls.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Any, Callable

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
