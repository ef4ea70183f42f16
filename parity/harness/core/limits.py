"""Limits on the numbers a run is given, checked before anything starts.

A count the machine cannot hold (`--ranks 100000`: a process each; `--cpu-workers` beyond the
cores) would start launching processes and hang; a time that is not a finite positive number
(`nan` passes every `<= 0` test) would make a limit that never fires. Each is one line
(UsageError) here, before a process starts or a file is written. Buffers larger than the device's
memory are the suites' own checks (`check_sizes`, `check_shapes`), run by `plan_cases`.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from types import SimpleNamespace

from parity.harness.core.model import UsageError
from parity.harness.core import safeio


DAY_S = 86400.0
HOUR_S = 3600.0
# Every time a run is given, from the CLI, the API or a recorded plan: (smallest, whether the
# smallest itself is allowed, largest). A timeout of more than a day, or a settle or sampling time
# of more than an hour, is a typo (1e308 would overflow the timers); NaN passes every `<=` test.
# Below: a timeout shorter than 0.1 s ends every case before its process has started, and a time cap
# under 1 ms before one sample (1e-320 would fail every case at once).
SECONDS = {"case_timeout_s": (0.1, True, DAY_S), "rank_timeout_s": (0.1, True, DAY_S),
           "time_cap_s": (0.001, True, HOUR_S), "settle_s": (0.0, True, HOUR_S), "min_time_s": (0.0, True, HOUR_S)}
MAX_RANKS = 4096  # processes of one collective group on one node; far above any node's GPUs
MAX_CPU_THREADS = 4096  # PyTorch CPU threads of one case; the CPUs the process may use bound it further


def seconds_range(name: str) -> str:
    """The range of one time in words, as --help states it."""
    low, inclusive, high = SECONDS[name]
    least = "0 or more" if low == 0 and inclusive else f"{'at least' if inclusive else 'more than'} {low:g}"
    return f"{least} and at most {high:g} s"


def seconds_problem(name: str, value) -> str | None:
    """Why `value` is not a valid `name` (a key of SECONDS), or None; None itself is valid (the default)."""
    if value is None:
        return None
    low, inclusive, high = SECONDS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{value!r} is not a number of seconds"
    if not (math.isfinite(value) and (value >= low if inclusive else value > low) and value <= high):
        return f"{value!r} is not {seconds_range(name)}"
    return None


def check_seconds(option: str, name: str, value) -> None:
    problem = seconds_problem(name, value)
    if problem:
        raise UsageError(f"{option} {problem}")


def positive_seconds(option: str, value: float | None) -> None:
    check_seconds(option, option.lstrip("-").replace("-", "_"), value)


def check_run_numbers(args) -> None:
    """The numbers of `parity run` that argparse takes as any float or int."""
    check_no_empty_names(args)
    for name in SECONDS:
        check_seconds("--" + name.replace("_", "-"), name, getattr(args, name, None))
    if args.device is not None and args.device < 0:
        raise UsageError(f"--device {args.device}: a GPU index is 0 or more")


def check_no_empty_names(args) -> None:
    """`parity run ""` or `--impl ""` would silently mean "all of them": an empty name is refused."""
    if args.preset is not None and not args.preset.strip():
        raise UsageError("--preset '': an empty name or value")
    for option, values in (("suite", args.suites), ("--impl", args.impl), ("--dtype", args.dtype),
                           ("--size", args.size), ("--shape", args.shape)):
        for value in values or ():
            if not value.strip() or any(not part.strip() for part in value.split(",")):
                raise UsageError(f"{option} {value!r}: an empty name or value")


def check_resume_folder(path: Path) -> None:
    """--resume takes the run folder; a file of it (measurements.jsonl) is not silently its folder."""
    if path.is_file():
        raise UsageError(f"--resume {path} is a file: give the run folder ({path.parent})")


def available_slots(device) -> tuple[int, str]:
    """How many ranks or workers this machine can give one each: its GPUs, else its CPU cores."""
    if device.is_gpu:
        return max(len(device.visible), 1), "GPU(s) visible, one per GPU"
    return max(device.multiprocessors, 1), "CPU cores here, one per core"


def check_counts(plan, device, cpu_workers: int | None, in_group: bool | None = None,
                 cores: int | None = None) -> None:
    """--ranks and --cpu-workers within what the machine has (outside a process group, whose size
    torchrun decides and which may span nodes). `device` None (check_counts_early, a GPU may be
    here): only the bounds that do not depend on the device."""
    from parity.harness.core.ranks import place_from_env

    if in_group is None:
        in_group = place_from_env() is not None
    if plan.ranks is not None and in_group and not 1 <= plan.ranks <= MAX_RANKS:
        raise UsageError(f"--ranks {plan.ranks} is not 1 to {MAX_RANKS}")
    if plan.ranks is not None and not in_group:
        if plan.ranks < 1:
            raise UsageError(f"--ranks {plan.ranks}: a collective needs two or more ranks")
        have, what = available_slots(device) if device is not None else (MAX_RANKS, "at most, one per GPU")
        if plan.ranks > have:
            raise UsageError(f"--ranks {plan.ranks}: only {have} {what}")
    threads = getattr(plan, "cpu_threads", None)
    if threads is not None:
        cpus = usable_cpus()
        if not 1 <= threads <= cpus:
            raise UsageError(f"--cpu-threads {threads}: give 1 to {cpus}, the CPUs this process may use")
    if cpu_workers is not None:
        if cpu_workers < 1:
            raise UsageError("--cpu-workers must be 1 or more")
        if cores is None:
            cores = max(device.multiprocessors if not device.is_gpu else (os.cpu_count() or 1), 1)
        if cpu_workers > cores:
            raise UsageError(f"--cpu-workers {cpu_workers}: only {cores} CPU cores here, one per core")


def check_device_index(index: int) -> None:
    """--device of devices and selfcheck: what run refuses (check_run_numbers, run_device), before
    the device is detected."""
    if index < 0:
        raise UsageError(f"--device {index}: a GPU index is 0 or more")
    check_counts_early(None, None, None, index)


def check_counts_early(ranks: int | None, cpu_workers: int | None, cpu_threads: int | None,
                       device_index: int = 0) -> None:
    """What check_counts and run_device refuse that needs no device detection (which imports
    torch): the same lines, in well under a second. Where a GPU may be here, the bounds that
    depend on it (ranks per GPU, --device N) wait for the device."""
    from parity.harness.core.device import gpu_may_be_here
    from parity.harness.core.ranks import place_from_env

    cpu_only = not gpu_may_be_here()
    if device_index and cpu_only:
        raise UsageError(f"--device {device_index}: there is no GPU here (the CPU is the only device)")
    cores = os.cpu_count() or 1  # check_counts' bound on CPU workers, GPU or not
    cpu = SimpleNamespace(is_gpu=False, multiprocessors=cores)
    check_counts(SimpleNamespace(ranks=ranks, cpu_threads=cpu_threads), cpu if cpu_only else None, cpu_workers,
                 in_group=place_from_env() is not None, cores=cores)


def usable_cpus() -> int:
    """The logical CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_creatable(folder: Path, option: str) -> None:
    """A folder to create under a file (`--out notes.txt/run`) fails only when the first record is
    written; refused here instead."""
    for parent in folder.parents:
        if parent.exists():
            if line := safeio.not_a_folder(parent):
                raise UsageError(f"{option} {folder}: {line}")
            return


def check_submit_numbers(args) -> None:
    if args.time_min < 1:
        raise UsageError(f"--time-min {args.time_min}: a job needs 1 minute or more")
    for option, value in (("--gpus-per-node", args.gpus_per_node), ("--cpus-per-task", args.cpus_per_task)):
        if value is not None and value < 1:
            raise UsageError(f"{option} {value}: give 1 or more")


def check_api(**values) -> None:
    """The Python API's numbers (parity.run, run_command), in the CLI's ranges, before anything is
    created: a time as SECONDS says, a count or a GPU index a whole number (not a bool, not 2.5)."""
    for name, value in values.items():
        if name in SECONDS:
            problem = seconds_problem(name, value)
            if problem:
                raise UsageError(f"{name}={problem}")
        elif value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"{name}={value!r} is not a whole number")
        elif value is not None and name == "device" and value < 0:
            raise UsageError(f"device={value}: a GPU index is 0 or more")
        # ranks, cpu_workers and cpu_threads: their range is what the machine has (check_counts)


SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in SIZE_UNITS:
        raise UsageError(f"cannot read size {text!r}: write e.g. 65536, 64KiB, 256MiB, 1GiB or 2GB")
    size = int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])
    if size <= 0:
        raise UsageError(f"size {text!r} must be positive")
    return size


def parse_shape(text: str) -> tuple[int, ...]:
    """A shape such as 4096x4096x4096 (GEMM MxNxK): positive integers joined by "x"."""
    if not re.fullmatch(r"\s*\d+(\s*[xX]\s*\d+)*\s*", text):
        raise UsageError(f"cannot read shape {text!r}: write MxNxK, e.g. 4096x4096x4096")
    dims = tuple(int(d) for d in re.split(r"[xX]", text))
    if min(dims) <= 0:
        raise UsageError(f"shape {text!r} has a zero dimension: every dimension must be positive")
    return dims
