"""parity.measure: time one callable of the user's as `parity run` times a case (api.py re-exports it).

The callable is checked once against a reference where one is given, then warmed up and sampled
with the engine and telemetry of `parity run`, on the CPU with a stated PyTorch thread count
(measurement/threads.py); a callable that runs Triton kernels in the CPU interpreter is labelled
as such (TIMING_INTERPRET) and gets no rate and no % of spec: its time is Python's, not hardware's.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from parity.harness.core import limits
from parity.harness.core.model import TIMING_EVENTS, TIMING_INTERPRET, TIMING_WALL, UsageError, one_line

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
    timing: str  # "events" (GPU) | "wall" (CPU) | "wall-interpret" (Triton's CPU interpreter: no rates)
    device: str
    dtype: str
    cache: str
    stop: str  # why sampling stopped
    noise_rel: float
    validation: dict[str, Any] | None = None
    telemetry: dict[str, Any] | None = field(default=None, repr=False)
    threads: int | None = None  # PyTorch's CPU threads while timed; None on a GPU
    noisy: str | None = None  # why the samples are not one clean level (noisy.judge); None: they are
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
                "validated": "-" if self.validation is None else ("yes" if self.validation["passed"] else "NO"),
                "noisy": self.noisy or "-"}

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


def math_dtypes() -> tuple[str, ...]:
    """The math dtypes whose peak the spec database holds, and their aliases (fp16, e4m3, ...)."""
    from parity.harness.core.specs import PEAK_DTYPES, PEAK_KEY

    return tuple(dict.fromkeys((*PEAK_DTYPES, *PEAK_KEY)))


def _count(name: str, value, least: int, most: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most):
        raise MeasureError(f"{name} must be a whole number from {least} to {most}, not {value!r}")


def _nonnegative(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise MeasureError(f"{name} must be a number of 0 or more, not {value!r}")


def _hint(exc: BaseException, device) -> str:
    """The fix where a Triton kernel fails on a machine without a GPU because it took Triton's GPU
    path (it asked for a driver: "0 active drivers"), never elsewhere: a kernel decorated before the
    interpreter was on, or with the interpreter off. Where the interpreter ran it, no hint."""
    from parity.harness.measurement.autotuning import gpu_path, interpreting

    if device.is_gpu or not gpu_path(exc):
        return ""
    if interpreting():
        return (" (no GPU here: this kernel was decorated before the interpreter was switched on, so it takes "
                "the GPU path; import it after parity.detect() or after TRITON_INTERPRET=1 is set)")
    return (" (no GPU here: set TRITON_INTERPRET=1 before the kernel is imported, or call parity.detect() "
            "before importing it, which does)")


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


MAX_SAMPLES = 100_000  # samples of one measure() call; more is a typo (the timers hold every sample)


def measure(fn: Callable[[], Any], *, flops: float | None = None, bytes_read: float = 0, bytes_written: float = 0,
            dtype: str = "bf16", cache: str = "cold", reference=None, check=None,
            time_cap_s: float | None = None, device: int = 0, name: str | None = None,
            warmup_ms: float | None = None, warmup: float | None = None, min_time_s: float | None = None,
            max_samples: int | None = None, setup: Callable[[], Any] | None = None,
            threads: int | None = None) -> Result:
    """Time `fn()` as `parity run` times a case and return the statistics, rates and % of spec.

    `flops`, `bytes_read` and `bytes_written` are the work of one call (they give TFLOPS, GB/s and
    the roofline bound); `dtype` is the math dtype whose peak applies (one of math_dtypes());
    `cache="cold"` flushes the last-level cache before every sample on a GPU. With `reference` (a
    value, or a callable returning it) one call of `fn` is checked first, by `check(output,
    expected)` (False or an AssertionError is a mismatch) or the default bound (DEFAULT_RTOL); a
    mismatch raises ValidationError.

    Sampling as `parity run` samples, with the timing's defaults unless given: `warmup_ms` (the
    warm-up budget in ms; `warmup` is the same, the name triton.testing.do_bench uses),
    `min_time_s`, `max_samples`, `time_cap_s`. `setup()` runs before the checked call and before
    each sample and warm-up call, outside the timed region (reset an accumulator, refill a buffer).
    On the CPU the callable runs with `threads` PyTorch threads (default: one per physical core
    this process may use, measurement/threads.py), recorded in the result. `name` labels the
    result (default: the callable's name). A callable that launches Triton kernels in the CPU
    interpreter is timed and labelled "wall-interpret", with no rate and no % of spec.
    """
    from parity.harness.measurement import threads as threads_mod

    if not callable(fn):
        raise MeasureError(f"parity.measure times a callable taking no arguments, not {type(fn).__name__}")
    if setup is not None and not callable(setup):
        raise MeasureError(f"setup is a callable taking no arguments, not {type(setup).__name__}")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        raise MeasureError(f"name is a label of 1 to 200 characters, not {name!r}")
    if flops is not None:
        _nonnegative("flops", flops)
    _nonnegative("bytes_read", bytes_read)
    _nonnegative("bytes_written", bytes_written)
    if cache not in CACHES:
        raise MeasureError(f"cache must be one of {', '.join(CACHES)}, not {cache!r}")
    if not isinstance(dtype, str) or dtype not in math_dtypes():
        raise MeasureError(f"dtype is the math dtype whose peak applies, one of {', '.join(math_dtypes())}; "
                           f"not {dtype!r}")
    if warmup is not None and warmup_ms is not None:
        raise MeasureError("give warmup_ms or warmup (the same budget, in ms), not both")
    warmup_ms = warmup if warmup_ms is None else warmup_ms
    if warmup_ms is not None:
        _nonnegative("warmup_ms", warmup_ms)
        if warmup_ms > limits.HOUR_S * 1e3:
            raise MeasureError(f"warmup_ms must be at most {limits.HOUR_S * 1e3:.0f} (an hour), not {warmup_ms!r}")
    _count("max_samples", max_samples, 1, MAX_SAMPLES)
    _count("threads", threads, 1, threads_mod.limit())
    try:
        limits.check_api(time_cap_s=time_cap_s, min_time_s=min_time_s, device=device)  # `parity run`'s ranges
    except UsageError as exc:
        raise MeasureError(str(exc)) from None
    from parity.harness.core import device as device_mod

    try:
        dev = device_mod.detect(device)
    except UsageError as exc:
        raise MeasureError(str(exc)) from None
    label = name or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    if dev.is_gpu:
        return _measure(fn, dev, label, locals())
    count = threads or threads_mod.default_threads()
    with threads_mod.using(count):
        return _measure(fn, dev, label, locals(), count)


def _measure(fn, dev, name: str, given: dict[str, Any], cpu_threads: int | None = None) -> Result:
    """measure()'s work once its input is checked and its threads are set."""
    from parity.harness.core.results import Measurement, Run
    from parity.harness.measurement import autotuning, telemetry, timing
    from parity.harness.measurement import flush as flush_mod
    from parity.harness.measurement.telemetry_readers import open_reader
    from parity.harness.reporting import report

    setup, reference, check, cache = given["setup"], given["reference"], given["check"], given["cache"]
    tuning = autotuning.Tuning()  # in the interpreter each config of an autotuner is run (and checked) once
    tuned, checks = tuning.wrap(fn), reference is not None or check is not None

    def call():
        if setup is not None:
            setup()
        out = tuned()
        _synchronize(dev)
        return out

    try:
        output = call()
        interpreted = tuning.launches > 0  # the first call launched Triton kernels in the interpreter
        result = _validate(output, reference, check) if checks else None
        del output
        result = autotuning.validate_each_config(tuning, call, (lambda out: _validate(out, reference, check))
                                                 if checks else None, first=result)
    except MeasureError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's callable: one line, the cause chained
        raise MeasureError(f"{name}() raised {one_line(exc)}{_hint(exc, dev)}") from exc
    if result is not None and not result.passed:
        raise ValidationError(f"{name}() does not match the reference: {result.error}", result)
    validation = None if result is None else result.to_dict()
    kind = TIMING_EVENTS if dev.is_gpu else (TIMING_INTERPRET if interpreted else TIMING_WALL)
    policy = timing.Policy.for_timing(kind, given["time_cap_s"], given["min_time_s"], given["warmup_ms"],
                                      given["max_samples"])
    flush = flush_mod.Flush(dev).evict if cache == "cold" and dev.is_gpu else None  # clean lines, as `parity run`
    reader = open_reader(dev)

    try:
        sampler = telemetry.Sampler(reader)
        stats = timing.measure(tuned if tuning.interpret and tuning.record() else fn, kind, policy, flush, window=sampler, setup=setup)
    except Exception as exc:  # noqa: BLE001
        raise MeasureError(f"{name}() raised {one_line(exc)} while being timed") from exc
    finally:
        reader.close()
    if cpu_threads is not None:
        stats = dataclasses.replace(stats, threads=cpu_threads)
    flops, bytes_read, bytes_written = given["flops"], given["bytes_read"], given["bytes_written"]
    work = {"flops": int(flops or 0), "bytes_read": int(bytes_read), "bytes_written": int(bytes_written),
            "math_dtype": given["dtype"]}
    extra = {"autotune": tuning.record()} if tuning.record() else {}
    record = Measurement(suite="measure", op=name, impl="callable", backend="python", params={}, status="ok",
                         reason=None, timing=kind, key=f"measure/{name}", device=dev.name, cache=cache,
                         time_ms=stats.to_dict(), work=work, validation=validation,
                         telemetry=sampler.summary, extra=extra).to_dict()
    row = report.frame([Run(path=Path("."), meta={"run_id": "measure", "device": dev.to_dict()},
                            records=(record,))]).iloc[0]
    rated = kind != TIMING_INTERPRET  # an interpreter's time is Python's: no rate, no % of spec

    def value(key):
        v = row.get(key)
        return None if not rated or v is None or (isinstance(v, float) and math.isnan(v)) else v

    return Result(name=name, median_ms=stats.median, p10_ms=stats.p10, p90_ms=stats.p90,
                  samples_ms=tuple(stats.samples), tflops=value("tflops") if flops else None,
                  gbps=value("gbps") if bytes_read + bytes_written else None, pct_of_spec=value("pct_of_spec"),
                  spec_id=value("spec_id"), bound=value("bound"), flag=value("flag"), timing=kind, device=dev.name,
                  dtype=given["dtype"], cache=cache, stop=stats.stop, noise_rel=stats.noise_rel,
                  validation=validation, telemetry=sampler.summary, threads=cpu_threads, noisy=stats.noisy,
                  autotune=tuple(tuning.record()))
