"""How many threads PyTorch uses for CPU work while a case is timed: stated, recorded, settable.

The default is one thread per physical core this process may use: the CPUs of its affinity mask
(taskset, cgroup cpusets), counted once per core (SMT siblings share one; /sys's topology says which),
and no more than its cgroup CPU quota (cpu.max: a container given 2 CPUs of a 64-core host). OpenMP
threads beyond the cores there are wait for each other at every barrier: a 0.01 ms CPU op then takes
a scheduler time slice (4-8 ms). `--cpu-threads N` (`threads=` in the API) sets another count,
1 to the CPUs the process may use.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path


def allowed_cpus() -> list[int]:
    """The logical CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _core_of(cpu: int) -> tuple[str, str] | None:
    base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
    try:
        return (base / "physical_package_id").read_text().strip(), (base / "core_id").read_text().strip()
    except OSError:
        return None


def _cgroup_dir(root: Path) -> Path:
    """This process's cgroup v2 folder ("0::/path" in /proc/self/cgroup), else the root."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return root / line[3:].lstrip("/")
    except OSError:
        pass
    return root


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPUs this process's cgroup v2 quota allows (cpu.max: "quota period"), None where
    unlimited or unknown."""
    try:
        quota, period = (_cgroup_dir(root) / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def physical_cores() -> int:
    """Physical cores among the CPUs this process may use, capped by its CPU quota; at least 1."""
    cpus = allowed_cpus()
    cores = {_core_of(c) for c in cpus}
    count = len(cpus) if None in cores else len(cores)
    quota = cgroup_cpu_limit()
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, count)


def default_threads(workers: int = 1) -> int:
    """One thread per physical core, shared among `workers` processes timing at once."""
    return max(1, physical_cores() // max(1, workers))


def limit() -> int:
    """The most threads a case may be given: the logical CPUs this process may use."""
    from parity.harness.core.limits import usable_cpus

    return usable_cpus()


@contextlib.contextmanager
def using(threads: int):
    """PyTorch's intra-op thread count set to `threads` within, restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
