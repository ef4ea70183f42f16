"""A fake `pynvml` module: one or more GPUs whose readings the test sets, in NVML's units.

Names, arguments and units follow nvidia-ml-py 13 (`pynvml.py`): `nvmlDeviceGetClockInfo(h,
NVML_CLOCK_SM=1 | NVML_CLOCK_MEM=2)` in MHz, `nvmlDeviceGetPowerUsage(h)` in mW,
`nvmlDeviceGetFieldValues(h, [NVML_FI_DEV_POWER_INSTANT=186])` returning structs with
`nvmlReturn`, `valueType` and a `value` union (`uiVal` ...), `nvmlDeviceGetTemperature(h,
NVML_TEMPERATURE_GPU=0)` in degrees C, `nvmlDeviceGetTotalEnergyConsumption(h)` in mJ,
`nvmlDeviceGetCurrentClocksEventReasons(h)` (and the older `...ThrottleReasons`) as a bitmask.
The energy counter advances in steps, as NVML's does (every `energy_update_s`).
"""
from __future__ import annotations

import time
import types
from dataclasses import dataclass, field

NVML_SUCCESS, NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_DRIVER_NOT_LOADED = 0, 3, 9
NVML_VALUE_TYPE_UNSIGNED_INT = 1


class NVMLError(Exception):
    STRINGS = {NVML_ERROR_NOT_SUPPORTED: "Not Supported", NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded"}

    def __init__(self, value: int):
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return self.STRINGS.get(self.value, f"NVML Error with code {self.value}")


@dataclass
class Gpu:
    pci: str = "00000000:3B:00.0"
    uuid: str = "GPU-11111111-2222-3333-4444-555555555555"
    sm_mhz: int = 1980
    mem_mhz: int = 2619
    power_mw: int = 650_000
    temp_c: int = 61
    energy_mj_at_start: int = 123_456_789
    reasons: int = 0  # clock-event bitmask
    energy_update_s: float = 0.05
    unsupported: set[str] = field(default_factory=set)  # function names that answer Not Supported
    started: float = field(default_factory=time.monotonic)

    def energy_mj(self) -> int:
        """The counter in NVML's steps: power x time, as of the last update."""
        elapsed = time.monotonic() - self.started
        steps = int(elapsed / self.energy_update_s)
        return self.energy_mj_at_start + int(self.power_mw * steps * self.energy_update_s)


def module(*gpus: Gpu, missing: tuple[str, ...] = (), init_error: int | None = None) -> types.ModuleType:
    """A `pynvml` module for `gpus` (NVML index order). `missing` names functions this version of
    the bindings lacks (e.g. the new clock-event call); `init_error` makes nvmlInit fail."""
    gpus = gpus or (Gpu(),)
    mod = types.ModuleType("pynvml")
    mod.calls = []  # (function, argument) of every handle lookup, for the tests
    mod.initialized = 0
    mod.NVMLError = NVMLError
    mod.NVML_CLOCK_GRAPHICS, mod.NVML_CLOCK_SM, mod.NVML_CLOCK_MEM = 0, 1, 2
    mod.NVML_TEMPERATURE_GPU = 0
    mod.NVML_FI_DEV_POWER_INSTANT = 186
    mod.NVML_SUCCESS = NVML_SUCCESS

    def check(gpu: Gpu, name: str) -> None:
        if name in gpu.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    def nvmlInit():
        if init_error is not None:
            raise NVMLError(init_error)
        mod.initialized += 1

    def nvmlShutdown():
        mod.initialized -= 1

    def nvmlDeviceGetHandleByIndex(index):
        mod.calls.append(("index", index))
        return gpus[index]

    def nvmlDeviceGetHandleByPciBusId(bus_id):
        mod.calls.append(("pci", bus_id))
        # NVML reads the id with %x fields: any width of domain, either case.
        want = [int(p, 16) for p in bus_id.replace(".", ":").split(":")]
        for gpu in gpus:
            if [int(p, 16) for p in gpu.pci.replace(".", ":").split(":")] == want:
                return gpu
        raise NVMLError(6)  # NVML_ERROR_NOT_FOUND

    def nvmlDeviceGetHandleByUUID(uuid):
        mod.calls.append(("uuid", uuid))
        for gpu in gpus:
            if gpu.uuid == uuid:
                return gpu
        raise NVMLError(6)

    def nvmlDeviceGetClockInfo(handle, clock_type):
        check(handle, "nvmlDeviceGetClockInfo")
        return {1: handle.sm_mhz, 2: handle.mem_mhz}[clock_type]

    def nvmlDeviceGetPowerUsage(handle):
        check(handle, "nvmlDeviceGetPowerUsage")
        return handle.power_mw

    def nvmlDeviceGetFieldValues(handle, field_ids):
        out = []
        for field_id in field_ids:
            ok = field_id == 186 and "NVML_FI_DEV_POWER_INSTANT" not in handle.unsupported
            value = types.SimpleNamespace(uiVal=handle.power_mw if ok else 0, dVal=0.0, ullVal=0)
            out.append(types.SimpleNamespace(fieldId=field_id, scopeId=0, timestamp=0, latencyUsec=0,
                                             valueType=NVML_VALUE_TYPE_UNSIGNED_INT,
                                             nvmlReturn=NVML_SUCCESS if ok else NVML_ERROR_NOT_SUPPORTED,
                                             value=value))
        return out

    def nvmlDeviceGetTemperature(handle, sensor):
        check(handle, "nvmlDeviceGetTemperature")
        assert sensor == 0
        return handle.temp_c

    def nvmlDeviceGetTotalEnergyConsumption(handle):
        check(handle, "nvmlDeviceGetTotalEnergyConsumption")
        return handle.energy_mj()

    def nvmlDeviceGetCurrentClocksEventReasons(handle):
        check(handle, "nvmlDeviceGetCurrentClocksEventReasons")
        return handle.reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(handle):
        check(handle, "nvmlDeviceGetCurrentClocksThrottleReasons")
        return handle.reasons

    for fn in (nvmlInit, nvmlShutdown, nvmlDeviceGetHandleByIndex, nvmlDeviceGetHandleByPciBusId,
               nvmlDeviceGetHandleByUUID, nvmlDeviceGetClockInfo, nvmlDeviceGetPowerUsage,
               nvmlDeviceGetFieldValues, nvmlDeviceGetTemperature, nvmlDeviceGetTotalEnergyConsumption,
               nvmlDeviceGetCurrentClocksEventReasons, nvmlDeviceGetCurrentClocksThrottleReasons):
        if fn.__name__ not in missing:
            setattr(mod, fn.__name__, fn)
    return mod
