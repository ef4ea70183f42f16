"""What we run on: detection of the GPU (CUDA or ROCm) or the CPU with the Triton interpreter.

`detect()` must run before any kernel module is imported: on a machine without a GPU it switches
the Triton interpreter on (`TRITON_INTERPRET=1`), which `triton.jit` reads when a kernel is
decorated, i.e. when its module is imported.
"""
from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from parity.harness.core import identity

VISIBILITY_VARS = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")



@dataclass(frozen=True)
class DeviceInfo:
    backend: str  # "cuda" | "rocm" | "cpu"
    name: str
    arch: str  # "sm_90", "gfx942", or the CPU's machine type ("x86_64")
    index: int
    memory_bytes: int
    multiprocessors: int  # SMs, CUs, or CPU cores
    l2_bytes: int | None
    llc_bytes: int | None  # last-level cache: L2 on NVIDIA, Infinity Cache on AMD, L3 on a CPU
    driver_version: str | None
    runtime_version: str | None  # CUDA or HIP runtime of the torch build
    visible: tuple[str, ...] = ()  # names of the devices visible to this process
    visibility_env: dict[str, str] = field(default_factory=dict)
    spec_id: str | None = None  # the spec this device matches (None: a CPU or an unknown card)
    market_name: str | None = None  # amdsmi's market name (AMD), read where a container hides the real name
    spec_note: str | None = None  # how the spec was told (name, market name, hardware), or why none matched

    @property
    def is_gpu(self) -> bool:
        return self.backend in ("cuda", "rocm")

    @property
    def interpreter(self) -> bool:
        return self.backend == "cpu"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["visible"] = list(self.visible)
        return out


# The device nodes a GPU needs: NVIDIA's (nvidiactl with one node per GPU), AMD's KFD, WSL's.
GPU_NODES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def gpu_may_be_here() -> bool:
    """False only where no GPU can be found: none of its device nodes exists. Lets a bad count or
    index be refused before detect() imports torch (1.5 s or more); where a GPU may be, detect()
    decides, as before."""
    return any(os.path.exists(node) for node in GPU_NODES) or any(Path("/dev").glob("nvidia[0-9]*"))


def enable_interpreter() -> None:
    """Switch the Triton interpreter on; it must happen before a kernel module is imported."""
    # parity.suites._meta holds what the suites accept, imports no kernel, and is read before this.
    loaded = [m for m in sys.modules if m.startswith("parity.kernels.")
              or (m.startswith("parity.suites.") and not m.startswith("parity.suites._meta"))]
    if loaded and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(f"kernel modules were imported before the interpreter was enabled: {loaded}")
    os.environ["TRITON_INTERPRET"] = "1"


def detect(index: int = 0, select: bool = True) -> DeviceInfo:
    """The device this process will run on; on a machine without a GPU, the CPU and the interpreter.

    `select=False` describes the GPU without making it current: a process that only starts others
    (one per GPU, or the ranks of a collective) must not hold a context on GPU 0 for the whole run,
    which would leave that GPU's worker less memory than its peers.
    """
    import torch

    if not torch.cuda.is_available():
        enable_interpreter()
        return _cpu()
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        from parity.harness.core.model import UsageError
        raise UsageError(f"device index {index} is out of range: {count} GPU(s) visible")
    info = _gpu(index, count)
    if select:
        use(info)
    return info


def use(info: DeviceInfo) -> None:
    """Make the described GPU current for this process (creates its context); nothing on the CPU."""
    if info.is_gpu:
        import torch

        torch.cuda.set_device(info.index)


def _gpu(index: int, count: int) -> DeviceInfo:
    import torch

    props = torch.cuda.get_device_properties(index)
    hip = torch.version.hip
    if hip:
        arch = getattr(props, "gcnArchName", "").split(":")[0] or f"gfx{props.major}{props.minor}"
    else:
        arch = f"sm_{props.major}{props.minor}"
    backend = "rocm" if hip else "cuda"
    market_name = _amd_market_name(props, index) if hip else None
    found = identity.identify({"backend": backend, "arch": arch, "name": props.name, "market_name": market_name,
                               "multiprocessors": int(props.multi_processor_count),
                               "memory_bytes": int(props.total_memory)})
    spec = found.spec
    l2 = getattr(props, "L2_cache_size", 0) or None
    # torch reports the L2 only; AMD's Infinity Cache (256 MiB on MI300X) is larger and known
    # from the spec, so the last level is the larger of the two.
    llc = max((b for b in (l2, spec.llc_bytes if spec else None) if b), default=None)
    return DeviceInfo(
        backend=backend,
        name=props.name,
        arch=arch,
        index=index,
        memory_bytes=int(props.total_memory),
        multiprocessors=int(props.multi_processor_count),
        l2_bytes=l2,
        llc_bytes=llc,
        driver_version=_driver_version(bool(hip)),
        runtime_version=hip or torch.version.cuda,
        visible=tuple(torch.cuda.get_device_name(i) for i in range(count)),
        visibility_env=_visibility_env(),
        spec_id=spec.id if spec else None,
        market_name=market_name,
        spec_note=found.note,
    )


def _amd_market_name(props, index: int) -> str | None:
    """amdsmi's market name of this GPU ("AMD Instinct MI300X"), which does not depend on libdrm's
    amdgpu.ids as torch's name does; None without amdsmi or where it cannot say."""
    try:
        import amdsmi
    except Exception:  # noqa: BLE001 - not installed, or its library does not load
        return None
    try:
        amdsmi.amdsmi_init()
    except Exception:  # noqa: BLE001
        return None
    try:
        handle = None
        if all(hasattr(props, a) for a in ("pci_domain_id", "pci_bus_id", "pci_device_id")):
            bdf = f"{props.pci_domain_id:04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
            try:
                handle = amdsmi.amdsmi_get_processor_handle_from_bdf(bdf)
            except Exception:  # noqa: BLE001
                handle = None
        if handle is None:
            handles = amdsmi.amdsmi_get_processor_handles()
            names = {_market(amdsmi, h) for h in handles}
            # By index only when every GPU says the same: HIP and amdsmi may number them apart.
            return names.pop() if len(names) == 1 else None
        return _market(amdsmi, handle)
    except Exception:  # noqa: BLE001 - no such device, no permission: the name stays unknown
        return None
    finally:
        try:
            amdsmi.amdsmi_shut_down()
        except Exception:  # noqa: BLE001
            pass


def _market(amdsmi, handle) -> str | None:
    name = (amdsmi.amdsmi_get_gpu_asic_info(handle) or {}).get("market_name")
    return str(name).strip() or None if name and name != "N/A" else None


def _driver_version(rocm: bool) -> str | None:
    """The kernel driver's version: NVML on NVIDIA, the amdgpu module on AMD; None if unreadable."""
    if rocm:
        path = Path("/sys/module/amdgpu/version")
        try:
            return path.read_text().strip() or None
        except OSError:
            return None
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # noqa: BLE001 - NVML missing or unusable: the version stays unknown
        return None


def cpu_info() -> DeviceInfo:
    """The CPU as a device, without touching the interpreter switch (a GPU host's CPU, for tests
    and PyTorch's CPU paths)."""
    return _cpu()


def _cpu() -> DeviceInfo:
    caches = _cpu_caches()
    cores = os.cpu_count() or 1
    return DeviceInfo(
        backend="cpu",
        name=_cpu_name(),
        arch=platform.machine() or "unknown",
        index=0,
        memory_bytes=_cpu_memory_bytes(),
        multiprocessors=cores,
        l2_bytes=caches.get(2),
        llc_bytes=caches[max(caches)] if caches else None,
        driver_version=None,
        runtime_version="triton-interpreter",
        visible=(),
        visibility_env=_visibility_env(),
    )


def _visibility_env() -> dict[str, str]:
    return {k: os.environ[k] for k in VISIBILITY_VARS if k in os.environ}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def _cpu_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _cpu_caches() -> dict[int, int]:
    """Unified or data cache size per level of CPU 0, from sysfs ("32K", "1024K", "32M")."""
    sizes: dict[int, int] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        match = re.fullmatch(r"(\d+)([KMG]?)", text)
        if kind == "Instruction" or not match:
            continue
        sizes[level] = int(match.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[match.group(2)]
    return sizes
