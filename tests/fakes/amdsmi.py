"""A fake `amdsmi` module: one or more GPUs whose readings the test sets, in amdsmi's units.

Names and return shapes follow ROCm's `amdsmi_interface.py`: `amdsmi_get_power_info(h)` in W
(`socket_power` from ROCm 7; `current_socket_power` and `average_socket_power`, "N/A" where the
part has none), `amdsmi_get_energy_count(h)` with `energy_accumulator` (`power` in older
versions) in ticks of `counter_resolution` microjoules, `amdsmi_get_clock_info(h, AmdSmiClkType.GFX
| MEM)` in MHz under `cur_clk` (ROCm 6.2+) or `clk`, `amdsmi_get_temp_metric(h, type, metric)` in
degrees C, `amdsmi_get_violation_status(h)` with `active_*` flags (MI300+), and
`amdsmi_get_gpu_metrics_info(h)` with `throttle_status` (MI200).
"""
from __future__ import annotations

import enum
import time
import types
from dataclasses import dataclass, field
from typing import Any

NA = "N/A"


class AmdSmiException(Exception):
    pass


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code: int, err_info: str = "AMDSMI_STATUS_NOT_SUPPORTED"):
        super().__init__(err_info)
        self.err_code, self.err_info = err_code, err_info


class AmdSmiClkType(enum.IntEnum):
    SYS = 0
    GFX = 0
    DF = 1
    DCEF = 2
    SOC = 3
    MEM = 4


class AmdSmiTemperatureType(enum.IntEnum):
    EDGE = 0
    HOTSPOT = 1
    JUNCTION = 1
    VRAM = 2


class AmdSmiTemperatureMetric(enum.IntEnum):
    CURRENT = 0
    MAX = 1


@dataclass
class Gpu:
    bdf: str = "0000:0c:00.0"
    gfx_mhz: int = 2100
    mem_mhz: int = 1300
    clock_key: str = "cur_clk"  # "clk" before ROCm 6.2
    power: dict[str, Any] = field(default_factory=lambda: {"socket_power": 720, "current_socket_power": 720,
                                                           "average_socket_power": NA})
    energy_key: str = "energy_accumulator"  # "power" in older amdsmi
    resolution_uj: float = 15.3
    power_w: float = 720.0  # what the energy accumulator integrates
    hotspot_c: int = 71
    edge_c: int = 55
    violations: dict[str, Any] | None = field(default_factory=lambda: {"active_ppt_pwr": False,
                                                                       "active_socket_thrm": False,
                                                                       "active_hbm_thrm": False})
    throttle_status: Any = NA
    unsupported: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)

    def ticks(self) -> int:
        joules = self.power_w * (time.monotonic() - self.started)
        return 1_000_000 + int(joules * 1e6 / self.resolution_uj)


def module(*gpus: Gpu, missing: tuple[str, ...] = (), init_error: bool = False) -> types.ModuleType:
    gpus = gpus or (Gpu(),)
    mod = types.ModuleType("amdsmi")
    mod.calls = []
    mod.initialized = 0
    mod.AmdSmiException, mod.AmdSmiLibraryException = AmdSmiException, AmdSmiLibraryException
    mod.AmdSmiClkType, mod.AmdSmiTemperatureType = AmdSmiClkType, AmdSmiTemperatureType
    mod.AmdSmiTemperatureMetric = AmdSmiTemperatureMetric

    def check(gpu: Gpu, name: str) -> None:
        if name in gpu.unsupported:
            raise AmdSmiLibraryException(2)

    def amdsmi_init(flags=None):
        if init_error:
            raise AmdSmiLibraryException(8, "AMDSMI_STATUS_INIT_ERROR")
        mod.initialized += 1

    def amdsmi_shut_down():
        mod.initialized -= 1

    def amdsmi_get_processor_handles():
        mod.calls.append(("handles", None))
        return list(gpus)

    def amdsmi_get_processor_handle_from_bdf(bdf):
        mod.calls.append(("bdf", bdf))
        for gpu in gpus:
            if gpu.bdf == bdf:
                return gpu
        raise AmdSmiLibraryException(13, "AMDSMI_STATUS_NOT_FOUND")

    def amdsmi_get_clock_info(handle, clock_type):
        check(handle, "amdsmi_get_clock_info")
        mhz = handle.gfx_mhz if clock_type == AmdSmiClkType.GFX else handle.mem_mhz
        return {handle.clock_key: mhz, "min_clk": 500, "max_clk": 2100, "clk_locked": False, "clk_deep_sleep": NA}

    def amdsmi_get_power_info(handle, sensor_ind=0):
        check(handle, "amdsmi_get_power_info")
        return {**handle.power, "gfx_voltage": 800, "soc_voltage": 900, "mem_voltage": 1100, "power_limit": 750}

    def amdsmi_get_temp_metric(handle, sensor_type, metric):
        check(handle, "amdsmi_get_temp_metric")
        return handle.hotspot_c if sensor_type == AmdSmiTemperatureType.HOTSPOT else handle.edge_c

    def amdsmi_get_energy_count(handle):
        check(handle, "amdsmi_get_energy_count")
        return {handle.energy_key: handle.ticks(), "counter_resolution": handle.resolution_uj,
                "timestamp": time.monotonic_ns()}

    def amdsmi_get_violation_status(handle):
        check(handle, "amdsmi_get_violation_status")
        if handle.violations is None:
            raise AmdSmiLibraryException(2)
        return {"acc_counter": 1, "acc_ppt_pwr": 0, **handle.violations}

    def amdsmi_get_gpu_metrics_info(handle):
        check(handle, "amdsmi_get_gpu_metrics_info")
        return {"temperature_edge": handle.edge_c, "current_socket_power": handle.power_w,
                "throttle_status": handle.throttle_status, "current_gfxclk": handle.gfx_mhz}

    for fn in (amdsmi_init, amdsmi_shut_down, amdsmi_get_processor_handles, amdsmi_get_processor_handle_from_bdf,
               amdsmi_get_clock_info, amdsmi_get_power_info, amdsmi_get_temp_metric, amdsmi_get_energy_count,
               amdsmi_get_violation_status, amdsmi_get_gpu_metrics_info):
        if fn.__name__ not in missing:
            setattr(mod, fn.__name__, fn)
    return mod
