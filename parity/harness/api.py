"""The Python API: what `parity` does, as functions; the command line is a layer of argument
parsing and messages over it (cli -> api -> runner -> suites -> kernels).

- `measure(fn, ...)`: times a callable with the sampling engine and telemetry `parity run` uses,
  checks it against a reference first where one is given, normalizes it against the device's spec;
- `run(suites, ...)`: a run as `parity run` makes it; returns the run folder;
- `load(*runs)`: the pandas frame the reports are built from, params as columns;
- `to_torch_benchmark(run)`: the run's timings as torch.utils.benchmark Measurements.

Every function detects the device before it imports a kernel or a suite: on a machine without a
GPU that switches the Triton interpreter on first (device.detect), whatever the caller imported.
Bad input is an exception with one clear message (UsageError, MeasureError), never a traceback
from deep inside.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from parity.harness.core import limits, safeio
from parity.harness.core.model import UsageError

from parity.harness.api_measure import (DEFAULT_RTOL, MeasureError, Result, ValidationError,  # noqa: F401
                                        default_check, measure, table)

DEFAULT_RUNS_DIR = Path("runs")  # ignored by git: a user's runs never land in the repository

# --- runs --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    """What a run left: its folder, and the exit status the command line gives it."""

    path: Path
    code: int
    counts: dict[str, int] = field(default_factory=dict)
    skipped_existing: int = 0
    finished: bool = True  # False: the work was handed to other processes (ranks) and this one is done
    reported: bool = False  # True: the multi-GPU runner printed the run's tables itself


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the finished cases are kept in `path` (resume with --resume)."""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path


def names(values: str | Iterable[str] | None) -> tuple[str, ...]:
    """Names given as "a,b", ["a", "b,c"] or None, in order, without duplicates."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        out += [v.strip() for v in str(value).split(",") if v.strip()]
    return tuple(dict.fromkeys(out))


def default_out(device) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device.name).strip("-").lower()[:40] or "device"
    return DEFAULT_RUNS_DIR / f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{slug}"


def run_device(index: int = 0):
    """The device a run uses (a rank: its LOCAL_RANK's GPU), not made current yet: this process
    may only start others."""
    from parity.harness.core import device as device_mod
    from parity.harness.core import ranks
    from parity.harness.measurement.registry import triton_problem

    device = device_mod.detect(ranks.local_index(index), select=False)
    if index != 0 and not device.is_gpu:
        raise UsageError(f"--device {index}: there is no GPU here (the CPU is the only device)")
    problem = triton_problem()
    if problem:
        raise UsageError(problem)
    return device


def check_run_request(*, suites=(), out: Path | None = None, resume: Path | None = None, time_cap_s=None,
                      settle_s=None, min_time_s=None, case_timeout_s=None, ranks=None, cpu_threads=None,
                      cpu_workers=None, rank_timeout_s=None) -> None:
    """The refusals of a run that need no device: numbers, suite names, the folders. Called before
    the device is detected (torch's import alone takes 1.5 s or more), so that bad input is one line
    at once; run_command repeats it for callers that come with a device already. (The counts the
    device bounds: limits.check_counts_early, then check_counts.)"""
    from parity.harness.core.results import held_run, run_meta
    from parity.harness.measurement import registry

    limits.check_api(time_cap_s=time_cap_s, settle_s=settle_s, min_time_s=min_time_s, case_timeout_s=case_timeout_s,
                     rank_timeout_s=rank_timeout_s, ranks=ranks, cpu_workers=cpu_workers, cpu_threads=cpu_threads)
    if resume is not None:
        limits.check_resume_folder(Path(resume))
        run_meta(resume)  # a missing folder, or one without its run.json; its records are read later
    elif out is not None:
        folder = Path(out)
        if line := safeio.not_a_folder(folder):
            raise UsageError(f"--out {line}")
        limits.check_creatable(folder, "--out")
        if held_run(folder):
            raise UsageError(f"{folder} already holds a run ({held_run(folder)}): use --resume {folder}, or another --out")
    registry.check_names(names(suites))


def check_plan_request(*, suites=(), preset=None, impls=(), dtypes=(), sizes=(), shapes=()) -> None:
    """A run's unknown presets, dtypes and implementations, and sizes or shapes that cannot be, from
    the suites' light metadata, before the device is detected: the lines runner.plan_cases gives
    after it, which still decides what this cannot (plugin suites; fits on a GPU)."""
    from parity.harness.measurement import plan

    plan.check_early(names(suites), preset, names(impls), names(dtypes), tuple(sizes), tuple(shapes))


def _warn(line: str) -> None:
    import warnings

    warnings.warn(line, stacklevel=3)


def run_command(device, *, suites=(), preset=None, impls=(), dtypes=(), sizes=(), shapes=(), out: Path | None = None,
                resume: Path | None = None, time_cap_s=None, settle_s=None, min_time_s=None, case_timeout_s=None,
                ranks=None, all_gpus=False, cpu_threads=None,
                cpu_workers=None, rank_timeout_s=None, command=(), progress=None, console=None,
                warn: Callable[[str], None] | None = None, gpu_progress=None) -> RunOutcome:
    """`parity run`'s work: plan, folder checks, then one process, every GPU (or CPU workers), or
    the ranks of a collective. Bad input raises UsageError before anything is written."""
    from parity.harness.core.results import read_run
    from parity.harness.measurement import registry, runner, supervisor
    from parity.harness.measurement.flush import Flush
    from parity.harness.measurement.plan import RunPlan
    from parity.harness.scaleout import distributed, group, multigpu

    folder, again = (Path(resume), True) if resume is not None else (Path(out if out is not None else default_out(device)), False)
    check_run_request(suites=suites, out=None if again else folder, resume=resume, time_cap_s=time_cap_s,
                      settle_s=settle_s, min_time_s=min_time_s, case_timeout_s=case_timeout_s, ranks=ranks,
                      cpu_threads=cpu_threads, cpu_workers=cpu_workers, rank_timeout_s=rank_timeout_s)
    if again:
        recorded = read_run(folder)  # a corrupt folder is refused before anything runs
    # Every suite that loads; a plugin that does not is one warning line, and the rest runs.
    chosen = names(suites) or tuple(suite.name for suite in registry.load_all())
    plan = RunPlan(suites=chosen, preset=preset or "quick",
                          impls=names(impls), dtypes=names(dtypes), sizes_bytes=tuple(sizes),
                          time_cap_s=time_cap_s, settle_s=settle_s, ranks=ranks, shapes=tuple(shapes),
                          min_time_s=min_time_s, case_timeout_s=case_timeout_s, cpu_threads=cpu_threads)
    limits.check_counts(plan, device, cpu_workers)
    if resume is None:
        runner.plan_cases(plan, device)  # bad input fails here, before anything starts
    for line in registry.problems():
        (warn or _warn)(line)
    if not device.is_gpu:
        from parity.harness.core import capability

        older = capability.interpreter_warning()  # what an older Triton's interpreter cannot run
        if older:
            (warn or _warn)(older)
    else:
        from parity.harness.core import capability

        older = capability.gpu_warning(device.backend, device.arch)  # an older Triton on this GPU
        if older:
            (warn or _warn)(older)
    unmatched = runner.unmatched_note(device, Flush(device) if device.is_gpu else None)
    if unmatched:  # also in run.json's spec_note
        (warn or _warn)(unmatched)
    if all_gpus or cpu_workers is not None or (again and multigpu.is_multi_gpu(folder)):
        if console is None:
            from rich.console import Console

            console = Console(stderr=True, highlight=False)
        from parity.harness.reporting import report

        try:
            code = multigpu.run_all(plan, device, folder, again, cpu_workers, rank_timeout_s,
                                    lambda run: report.print_run(run, console), gpu_progress)
        except KeyboardInterrupt:
            raise RunInterrupted(folder) from None
        return RunOutcome(path=folder, code=code, reported=True)
    early = group.dispatch(plan, device, folder, again, rank_timeout_s)  # start ranks, or be one
    if early is not None:
        return RunOutcome(path=folder, code=early, finished=False)
    # The cases run in a supervised worker: a case that hangs or kills its process fails alone.
    # (the recorded plan, read without its checks: the run lock and the device check come in execute)
    timeout_s = supervisor.case_timeout_s(RunPlan.recorded(recorded.meta, folder) if again else plan, device)
    with supervisor.Supervisor(device, timeout_s) as supervised:
        try:
            outcome = runner.execute(plan, device, folder, list(command), resume=again, progress=progress,
                                     case_runner=distributed.case_runner(supervised))
        except KeyboardInterrupt:
            raise RunInterrupted(folder) from None
    bad = outcome.counts.get("failed", 0) + outcome.counts.get("invalid", 0)
    return RunOutcome(path=folder, code=1 if bad else 0, counts=dict(outcome.counts),
                      skipped_existing=outcome.skipped_existing)


def run(suites: str | Iterable[str] | None = None, *, preset: str = "quick", impl: str | Iterable[str] | None = None,
        dtype: str | Iterable[str] | None = None, sizes: str | Iterable[str | int] | None = None,
        shapes: str | Iterable[str | Iterable[int]] | None = None, out: str | Path | None = None,
        time_cap_s: float | None = None, settle_s: float | None = None, min_time_s: float | None = None,
        case_timeout_s: float | None = None, threads: int | None = None, device: int = 0) -> Path:
    """Run suites as `parity run` does (default: the quick preset of every suite) and return the run
    folder; failed and invalid cases are records in it, as on the command line (see `load`).

    Every flag of `parity run` that shapes the plan, by the same name: `sizes` as "64KiB,1GiB" or
    byte counts (--size), `shapes` as "4096x4096x4096" or tuples (--shape), `threads` PyTorch's CPU
    threads per case (--cpu-threads; default one per physical core), and the times in seconds."""
    limits.check_api(time_cap_s=time_cap_s, settle_s=settle_s, min_time_s=min_time_s, case_timeout_s=case_timeout_s,
                     cpu_threads=threads, device=device)  # before the device is even looked at
    sizes_bytes = tuple(_size(s) for s in _items(sizes))
    dims = tuple(dict.fromkeys(_shape(s) for s in _items(shapes, nested=True)))
    check_run_request(suites=suites, out=out, time_cap_s=time_cap_s, settle_s=settle_s, min_time_s=min_time_s,
                      case_timeout_s=case_timeout_s, cpu_threads=threads)
    limits.check_counts_early(None, None, threads, device)
    check_plan_request(suites=suites or (), preset=preset, impls=impl, dtypes=dtype, sizes=sizes_bytes, shapes=dims)
    dev = run_device(device)
    command = ["parity.run", *names(suites), "--preset", preset]
    return run_command(dev, suites=suites or (), preset=preset, impls=names(impl), dtypes=names(dtype),
                       sizes=sizes_bytes, shapes=dims, out=Path(out) if out is not None else None,
                       time_cap_s=time_cap_s, settle_s=settle_s, min_time_s=min_time_s,
                       case_timeout_s=case_timeout_s, cpu_threads=threads, command=command).path


def _items(values, nested: bool = False) -> list:
    """A comma-separated string, or a list of items (strings split at commas; a shape may be a
    tuple of ints where `nested`)."""
    if values is None:
        return []
    if isinstance(values, (str, int)) or (nested and isinstance(values, tuple) and all(isinstance(v, int) for v in values)):
        values = [values]
    out = []
    for value in values:
        out += names(value) if isinstance(value, str) else [value]
    return out


def _size(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UsageError(f"sizes: {value!r} is not a size (64KiB, 1GiB or a byte count)")
    if isinstance(value, int):
        if value <= 0:
            raise UsageError(f"sizes: {value} must be positive")
        return value
    return limits.parse_size(value)


def _shape(value) -> tuple[int, ...]:
    if isinstance(value, str):
        return limits.parse_shape(value)
    dims = tuple(value) if isinstance(value, (tuple, list)) else ()
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dims):
        raise UsageError(f"shapes: {value!r} is not a shape (\"4096x4096x4096\" or positive integers)")
    return dims


def load(*runs: str | Path, to_spec: str | None = None):
    """The frame the reports are built from, one row per record of every run, each parameter of a
    case as a column of its own (named `param_<name>` where the frame already has that name)."""
    from parity.harness.core import specs
    from parity.harness.core.results import read_run
    from parity.harness.reporting import report

    if not runs:
        raise UsageError("parity.load needs one or more run folders")
    read = [read_run(Path(p)) for p in runs]
    df = report.frame(read, to_spec=specs.get(to_spec) if to_spec else None)
    params = [rec.get("params") or {} for run in read for rec in run.records]
    if df.empty:
        return df
    columns: dict[str, list] = {}
    for i, p in enumerate(params):
        for key, value in p.items():
            col = key if key not in df.columns or key == "dtype" else f"param_{key}"
            columns.setdefault(col, [None] * len(params))[i] = value
    for col, values in columns.items():
        if col == "dtype":
            continue  # the frame's own dtype column is the parameter already
        df[col] = values
    return df


def to_torch_benchmark(run: str | Path):
    """The run's timed records as torch.utils.benchmark Measurements, for its Compare."""
    from parity.harness.core.results import read_run
    from parity.harness.reporting import exports

    return exports.torch_measurements(read_run(Path(run)))
