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
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from parity.harness.core import limits
from parity.harness.core.model import TIMING_EVENTS, TIMING_WALL, UsageError, one_line

DEFAULT_RUNS_DIR = Path("runs")  # ignored by git: a user's runs never land in the repository
CACHES = ("cold", "warm")
# The default check of measure(): max |out - ref| <= rtol * max |ref|, rtol by the output's dtype.
# bf16 and fp16 take torch.testing.assert_close's default rtol (its documented table); fp32 is
# loosened from 1.3e-6 to 1e-4 so long fp32 reductions (a K of 10^4-10^5) pass, since the callable's
# reduction length is unknown here. Normwise against the largest |ref| so cancellation near zero is
# not a failure. Anything stricter or looser: pass `check`.
DEFAULT_RTOL = {"torch.float64": 1e-7, "torch.float32": 1e-4, "torch.bfloat16": 1.6e-2, "torch.float16": 1e-3}
DEFAULT_RTOL_OTHER = 0.125  # fp8 and narrower: one e4m3 rounding is 2^-4 relative


class MeasureError(Exception):
    """parity.measure could not time the callable: the message says why, in one line."""


class ValidationError(MeasureError):
    """The callable's output does not match the reference; `check` holds the comparison."""

    def __init__(self, message: str, check):
        super().__init__(message)
        self.check = check


@dataclass(frozen=True)
class Result:
    """One callable timed by parity.measure. Times in ms; `tflops` and `gbps` are None where no
    flops or bytes were declared; `pct_of_spec` is a fraction (0.62 is 62 %) of the spec's roof
    for the declared work, None where no spec applies (a CPU, an unknown card), as in the frame."""

    name: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    samples_ms: tuple[float, ...]
    tflops: float | None
    gbps: float | None
    pct_of_spec: float | None
    spec_id: str | None
    bound: str | None  # "compute" | "memory" | "cache" | None
    flag: str | None  # e.g. above the spec's peak: a measurement error, not a result
    timing: str  # "events" (GPU) | "wall" (CPU)
    device: str
    dtype: str
    cache: str
    stop: str  # why sampling stopped
    noise_rel: float
    validation: dict[str, Any] | None = None
    telemetry: dict[str, Any] | None = field(default=None, repr=False)
    autotune: tuple[dict[str, Any], ...] = ()  # per Triton autotuner: the config timed and how it was chosen

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    def row(self) -> dict[str, str]:
        """The result as one row of a table (the report's number formats)."""
        from parity.harness.reporting.report import rate_text

        return {"name": self.name, "device": self.device, "timing": self.timing, "dtype": self.dtype,
                "median ms": f"{self.median_ms:.4g}", "p10-p90 ms": f"{self.p10_ms:.4g}-{self.p90_ms:.4g}",
                "n": str(self.n), "TFLOPS": "-" if self.tflops is None else rate_text(self.tflops),
                "GB/s": "-" if self.gbps is None else rate_text(self.gbps),
                "% of spec": "-" if self.pct_of_spec is None else f"{100 * self.pct_of_spec:.1f} % of {self.spec_id}",
                "validated": "-" if self.validation is None else ("yes" if self.validation["passed"] else "NO")}

    def __str__(self) -> str:
        return "  ".join(f"{k} {v}" for k, v in self.row().items())


def table(results: Iterable[Result], fmt: str = "md") -> str:
    """Several results as one table: "md" (markdown) or "text"."""
    from parity.harness.reporting.tables import markdown_table

    rows = [r.row() for r in results]
    if fmt == "md":
        return markdown_table("parity.measure", rows)
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in rows[0]} if rows else {}
    lines = ["  ".join(k.ljust(w) for k, w in widths.items())]
    lines += ["  ".join(r[k].ljust(w) for k, w in widths.items()) for r in rows]
    return "\n".join(lines) + "\n"


def _nonnegative(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise MeasureError(f"{name} must be a number of 0 or more, not {value!r}")


def _hint(exc: BaseException, device) -> str:
    """Where a Triton kernel fails on a machine without a GPU: it was decorated before the
    interpreter was switched on, so it tries to compile for a GPU that is not there."""
    tb, triton_frames = exc.__traceback__, False
    while tb is not None:
        triton_frames |= str(tb.tb_frame.f_globals.get("__name__", "")).startswith("triton")
        tb = tb.tb_next
    if device.is_gpu or not triton_frames:
        return ""
    return (" (no GPU here: a Triton kernel imported before the interpreter was on cannot run; call "
            "parity.detect() before importing it, or set TRITON_INTERPRET=1)")


def _synchronize(device) -> None:
    if device.is_gpu:
        import torch

        torch.cuda.synchronize()


def _validate(output, reference, check):
    """The callable's output against the reference: the user's `check`, or the default bound."""
    from parity.harness.core.model import Check

    try:
        expected = reference() if callable(reference) else reference
    except Exception as exc:  # noqa: BLE001 - the user's reference: one line
        raise MeasureError(f"the reference raised {one_line(exc)}") from exc
    if check is not None:
        try:
            verdict = check(output, expected) if reference is not None else check(output)
        except AssertionError as exc:  # torch.testing.assert_close and plain asserts say why
            return Check(False, math.nan, {}, f"check failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'assertion'}")
        except Exception as exc:  # noqa: BLE001
            raise MeasureError(f"the check raised {one_line(exc)}") from exc
        if isinstance(verdict, Check):
            return verdict
        passed = verdict is None or bool(verdict)  # assert_close returns None when it passes
        return Check(passed, math.nan, {}, None if passed else "check returned False")
    return default_check(output, expected)


def default_check(output, expected):
    """max |out - ref| <= rtol * max |ref| (DEFAULT_RTOL by the output's dtype); tensors, or tuples
    and lists of them."""
    import torch

    from parity.harness.core.model import Check

    outs = output if isinstance(output, (tuple, list)) else (output,)
    refs = expected if isinstance(expected, (tuple, list)) else (expected,)
    if len(outs) != len(refs):
        return Check(False, math.inf, {}, f"{len(outs)} outputs for {len(refs)} reference outputs")
    worst, tolerance = 0.0, {}
    for i, (out, ref) in enumerate(zip(outs, refs)):
        if not isinstance(out, torch.Tensor):
            raise MeasureError(f"the callable returned {type(out).__name__}: the default check compares tensors; "
                               "pass check=... for other outputs")
        ref = torch.as_tensor(ref, device=out.device)
        if tuple(out.shape) != tuple(ref.shape):
            return Check(False, math.inf, {}, f"output {i} has shape {tuple(out.shape)}, the reference {tuple(ref.shape)}")
        out64, ref64 = out.detach().to(torch.float64), ref.detach().to(torch.float64)
        if not torch.isfinite(out64).all():
            return Check(False, math.inf, {}, f"output {i} holds NaN or inf")
        err = float((out64 - ref64).abs().max()) if out64.numel() else 0.0
        rtol = DEFAULT_RTOL.get(str(out.dtype), DEFAULT_RTOL_OTHER)
        scale = float(ref64.abs().max()) if ref64.numel() else 0.0
        bound = rtol * scale
        tolerance[f"output{i}_rtol"] = rtol
        worst = max(worst, err)
        if err > bound:
            return Check(False, err, tolerance, f"output {i}: max abs error {err:.3g} > {rtol:g} x max|ref| {scale:.3g}")
    return Check(True, worst, tolerance)


def measure(fn: Callable[[], Any], *, flops: float | None = None, bytes_read: float = 0, bytes_written: float = 0,
            dtype: str = "bf16", cache: str = "cold", reference=None, check=None,
            time_cap_s: float | None = None, device: int = 0) -> Result:
    """Time `fn()` as `parity run` times a case and return the statistics, rates and % of spec.

    `flops`, `bytes_read` and `bytes_written` are the work of one call (they give TFLOPS, GB/s and
    the roofline bound); `dtype` is the math dtype whose peak applies; `cache="cold"` flushes the
    last-level cache before every sample on a GPU. With `reference` (a value, or a callable returning
    it) one call of `fn` is checked first, by `check(output, expected)` (False or an AssertionError
    is a mismatch) or the default bound (DEFAULT_RTOL); a mismatch raises ValidationError.
    """
    from parity.harness.core import device as device_mod
    from parity.harness.core.results import Measurement, Run
    from parity.harness.measurement import flush as flush_mod
    from parity.harness.measurement import autotuning, telemetry, timing
    from parity.harness.measurement.telemetry_readers import open_reader
    from parity.harness.reporting import report

    if not callable(fn):
        raise MeasureError(f"parity.measure times a callable taking no arguments, not {type(fn).__name__}")
    if flops is not None:
        _nonnegative("flops", flops)
    _nonnegative("bytes_read", bytes_read)
    _nonnegative("bytes_written", bytes_written)
    if cache not in CACHES:
        raise MeasureError(f"cache must be one of {', '.join(CACHES)}, not {cache!r}")
    if not isinstance(dtype, str) or not dtype:
        raise MeasureError(f"dtype is the math dtype whose peak applies, e.g. 'bf16', not {dtype!r}")
    try:
        limits.check_api(time_cap_s=time_cap_s, device=device)  # the ranges of `parity run`
    except UsageError as exc:
        raise MeasureError(str(exc)) from None
    try:
        dev = device_mod.detect(device)
    except UsageError as exc:
        raise MeasureError(str(exc)) from None
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    tuning = autotuning.Tuning()  # in the interpreter each config of an autotuner is run (and checked) once
    tuned, checks = tuning.wrap(fn), reference is not None or check is not None
    try:
        output = tuned()
        _synchronize(dev)
        result = _validate(output, reference, check) if checks else None
        del output
        result = autotuning.validate_each_config(tuning, tuned, (lambda out: _validate(out, reference, check))
                                                 if checks else None, first=result)
    except MeasureError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's callable: one line, the cause chained
        raise MeasureError(f"{name}() raised {one_line(exc)}{_hint(exc, dev)}") from exc
    if result is not None and not result.passed:
        raise ValidationError(f"{name}() does not match the reference: {result.error}", result)
    validation = None if result is None else result.to_dict()
    kind = TIMING_EVENTS if dev.is_gpu else TIMING_WALL
    policy = timing.Policy.for_timing(kind, time_cap_s)
    flush = flush_mod.Flush(dev).evict if cache == "cold" and dev.is_gpu else None  # clean lines, as `parity run`
    reader = open_reader(dev)
    try:
        sampler = telemetry.Sampler(reader)
        stats = timing.measure(tuned if tuning.interpret else fn, kind, policy, flush, window=sampler)
    except Exception as exc:  # noqa: BLE001
        raise MeasureError(f"{name}() raised {one_line(exc)} while being timed") from exc
    finally:
        reader.close()
    work = {"flops": int(flops or 0), "bytes_read": int(bytes_read), "bytes_written": int(bytes_written),
            "math_dtype": dtype}
    record = Measurement(suite="measure", op=name, impl="callable", backend="python", params={}, status="ok",
                         reason=None, timing=kind, key=f"measure/{name}", device=dev.name, cache=cache,
                         time_ms=stats.to_dict(), work=work, validation=validation,
                         telemetry=sampler.summary, extra={"autotune": tuning.record()}).to_dict()
    row = report.frame([Run(path=Path("."), meta={"run_id": "measure", "device": dev.to_dict()},
                            records=(record,))]).iloc[0]

    def value(key):
        v = row.get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    return Result(name=name, median_ms=stats.median, p10_ms=stats.p10, p90_ms=stats.p90,
                  samples_ms=tuple(stats.samples), tflops=value("tflops") if flops else None,
                  gbps=value("gbps") if bytes_read + bytes_written else None, pct_of_spec=value("pct_of_spec"),
                  spec_id=value("spec_id"), bound=value("bound"), flag=value("flag"), timing=kind, device=dev.name,
                  dtype=dtype, cache=cache, stop=stats.stop, noise_rel=stats.noise_rel, validation=validation,
                  telemetry=sampler.summary, autotune=tuple(tuning.record()))


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


def _warn(line: str) -> None:
    import warnings
    warnings.warn(line, stacklevel=3)


def run_command(device, *, suites=(), preset=None, impls=(), dtypes=(), sizes=(), shapes=(), out: Path | None = None,
                resume: Path | None = None, time_cap_s=None, settle_s=None, min_time_s=None, case_timeout_s=None,
                ranks=None, all_gpus=False, cpu_workers=None, rank_timeout_s=None, command=(), progress=None,
                console=None, warn: Callable[[str], None] | None = None, gpu_progress=None) -> RunOutcome:
    """`parity run`'s work: plan, folder checks, then one process, every GPU (or CPU workers), or
    the ranks of a collective. Bad input raises UsageError before anything is written."""
    from parity.harness.core.results import MEASUREMENTS_FILE, read_run
    from parity.harness.measurement import registry, runner, supervisor
    from parity.harness.measurement.flush import Flush
    from parity.harness.measurement.plan import RunPlan
    from parity.harness.scaleout import distributed, group, multigpu

    limits.check_api(time_cap_s=time_cap_s, settle_s=settle_s, min_time_s=min_time_s, case_timeout_s=case_timeout_s,
                     rank_timeout_s=rank_timeout_s, ranks=ranks, cpu_workers=cpu_workers)
    if resume is not None:
        folder, again = Path(resume), True
        limits.check_resume_folder(folder)
        recorded = read_run(folder)  # a missing or corrupt folder is refused before anything runs
    else:
        folder, again = Path(out) if out is not None else default_out(device), False
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"--out {folder} is a file, not a folder")
        limits.check_creatable(folder, "--out")
        if (folder / MEASUREMENTS_FILE).exists() and (folder / MEASUREMENTS_FILE).stat().st_size:
            raise UsageError(f"{folder} already holds a run: use --resume {folder}, or another --out")
    # Every suite that loads; a plugin that does not is one warning line, and the rest runs.
    chosen = names(suites) or tuple(suite.name for suite in registry.load_all())
    plan = RunPlan(suites=chosen, preset=preset or "quick", impls=names(impls), dtypes=names(dtypes),
                   sizes_bytes=tuple(sizes), time_cap_s=time_cap_s, settle_s=settle_s, ranks=ranks,
                   shapes=tuple(shapes), min_time_s=min_time_s, case_timeout_s=case_timeout_s)
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
        dtype: str | Iterable[str] | None = None, out: str | Path | None = None, time_cap_s: float | None = None,
        device: int = 0) -> Path:
    """Run suites as `parity run` does (default: the quick preset of every suite) and return the run
    folder; failed and invalid cases are records in it, as on the command line (see `load`)."""
    limits.check_api(time_cap_s=time_cap_s, device=device)  # before the device is even looked at
    dev = run_device(device)
    command = ["parity.run", *names(suites), "--preset", preset]
    return run_command(dev, suites=suites or (), preset=preset, impls=names(impl), dtypes=names(dtype),
                       out=Path(out) if out is not None else None, time_cap_s=time_cap_s, command=command).path


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
