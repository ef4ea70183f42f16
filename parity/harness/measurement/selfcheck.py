"""`parity selfcheck`: does the harness measure what it says it measures?

Four checks, each with its figure, its threshold and PASS, FAIL or SKIP (with the reason):

1. Agreement. A large copy and a large matmul are timed by the harness (`timing.measure`, with the
   telemetry sampler running as in a real run) and by an independent method. On a GPU that method
   is `triton.testing.do_bench` (median), with the cache flushed before every sample by both. On
   the CPU it is a plain `perf_counter` loop: blocks of back-to-back calls, the lowest block mean
   (timeit's convention: a slower block is one another process interrupted).
   Figure: |harness - independent| / independent.
2. Run-to-run spread. One case (the copy) timed several times; figure: (max - min) / median of the
   medians.
3. Cache flush (GPU only). A read of a buffer half the size of the last-level cache, timed warm
   (no flush: it stays in cache) and cold (the harness's flush before every sample). Figure:
   cold / warm, which must be clearly above 1 if the flush evicts the buffer. The harness never
   flushes on the CPU (CPU timings are warm by design), so there is nothing to check there.
4. Telemetry (GPU only). Clocks, power and energy per call must be in every harness summary.

Thresholds on a GPU follow the issue's targets (2 % agreement, 1 % spread). A shared CPU's timings
move by several per cent from run to run, so the CPU's thresholds are 10 %: there the check is
that the method agrees, not that the machine is quiet. For the same reason the CPU's reference
kernels run on one thread: on a busy machine, OpenMP threads waiting for a core make an 8 MiB copy
jump between 0.1 and 10 ms, which measures the machine's load, not the timers.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from parity.harness.measurement import telemetry
from parity.harness.core.model import TIMING_EVENTS, TIMING_WALL
from parity.harness.measurement.timing import Policy, measure

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
GPU_AGREEMENT, GPU_SPREAD, FLUSH_MIN_RATIO = 0.02, 0.01, 1.2
CPU_AGREEMENT, CPU_SPREAD = 0.10, 0.10
CPU_TIME_CAP_S = 0.5  # per harness timing on the CPU: the whole selfcheck takes a few seconds there
LOOP_BUDGET_S, LOOP_BLOCKS = 0.3, 50  # 6 ms blocks: short enough for some to run uninterrupted
DO_BENCH_REP_MS = 200
TELEMETRY_FIELDS = ("sm_clock_mhz_median", "power_w_median", "energy_j_per_call")


@dataclass(frozen=True)
class Result:
    check: str  # agreement | spread | flush | telemetry
    subject: str
    figure: str  # what was measured, for people
    value: float | None  # the number held against the threshold
    threshold: str
    status: str  # PASS | FAIL | SKIP
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tel_text(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("source") in (None, "none"):
        return ""
    parts = []
    for key, fmt in (("sm_clock_mhz_median", "{:.0f} MHz"), ("power_w_median", "{:.0f} W"),
                     ("energy_j_per_call", "{:.3g} J/call")):
        if summary.get(key) is not None:
            parts.append(fmt.format(summary[key]))
    if summary.get("throttled_fraction"):
        parts.append(f"throttled {summary['throttled_fraction']:.0%}")
    return f" ({', '.join(parts)})" if parts else ""


def judge_agreement(subject: str, harness_ms: float, other_ms: float, other: str, limit: float,
                    harness_telemetry: dict[str, Any] | None = None) -> Result:
    gap = abs(harness_ms - other_ms) / other_ms
    figure = (f"harness {harness_ms:.4g} ms{_tel_text(harness_telemetry)}, {other} {other_ms:.4g} ms: "
              f"{100 * gap:.2f} % apart")
    return Result("agreement", subject, figure, gap, f"<= {100 * limit:g} %", PASS if gap <= limit else FAIL,
                  {"harness_ms": harness_ms, "independent_ms": other_ms, "independent": other,
                   "telemetry": harness_telemetry})


def judge_spread(subject: str, medians_ms: list[float], limit: float) -> Result:
    mid = statistics.median(medians_ms)
    spread = (max(medians_ms) - min(medians_ms)) / mid
    figure = (f"{len(medians_ms)} runs, medians {min(medians_ms):.4g}-{max(medians_ms):.4g} ms: "
              f"spread {100 * spread:.2f} %")
    return Result("spread", subject, figure, spread, f"< {100 * limit:g} %", PASS if spread < limit else FAIL,
                  {"medians_ms": list(medians_ms)})


def judge_flush(subject: str, warm_ms: float, cold_ms: float, min_ratio: float) -> Result:
    ratio = cold_ms / warm_ms
    figure = f"warm {warm_ms:.4g} ms, cold {cold_ms:.4g} ms: cold/warm {ratio:.2f}"
    return Result("flush", subject, figure, ratio, f">= {min_ratio:g}", PASS if ratio >= min_ratio else FAIL,
                  {"warm_ms": warm_ms, "cold_ms": cold_ms})


def judge_telemetry(summaries: dict[str, dict[str, Any]]) -> Result:
    """Every harness timing must carry clocks, power and energy per call."""
    missing = {name: [k for k in TELEMETRY_FIELDS if s.get(k) is None] for name, s in summaries.items()}
    missing = {name: keys for name, keys in missing.items() if keys}
    first = next(iter(summaries.values()), {})
    if not summaries:
        return skipped("telemetry", "harness timings", "no harness timing ran")
    if missing:
        why = "; ".join(f"{name}: no {', '.join(keys)}" for name, keys in missing.items())
        reason = first.get("reason")
        figure = why + (f" (telemetry: {reason})" if reason else "")
        return Result("telemetry", "every harness timing", figure, None, "clock, power, energy in each",
                      FAIL, {"missing": missing, "source": first.get("source")})
    figure = "; ".join(f"{name}{_tel_text(s)}" for name, s in summaries.items())
    return Result("telemetry", "every harness timing", f"{first.get('source')}: {figure}", None,
                  "clock, power, energy in each", PASS, {"source": first.get("source")})


def skipped(check: str, subject: str, reason: str) -> Result:
    return Result(check, subject, f"skipped: {reason}", None, "-", SKIP)


def loop_ms(thunk: Callable[[], Any], budget_s: float = LOOP_BUDGET_S, blocks: int = LOOP_BLOCKS,
            clock: Callable[[], float] = time.perf_counter) -> float:
    """An independent CPU timer: blocks of back-to-back calls, the lowest block mean (ms)."""
    thunk()
    start = clock()
    thunk()
    one = max(clock() - start, 1e-7)
    calls = max(1, int(budget_s / blocks / one))
    means = []
    for _ in range(blocks):
        start = clock()
        for _ in range(calls):
            thunk()
        means.append((clock() - start) / calls * 1e3)
    return min(means)


def do_bench_ms(thunk: Callable[[], Any]) -> float:
    from triton.testing import do_bench

    return float(do_bench(thunk, warmup=25, rep=DO_BENCH_REP_MS, return_mode="median"))


@dataclass(frozen=True)
class Kernels:
    """The reference kernels, built on the device: torch ops only, no suite."""

    copy: tuple[str, Callable[[], Any]]
    matmul: tuple[str, Callable[[], Any]]
    read: tuple[str, Callable[[], Any]] | None  # a read of half the LLC, for the flush check (GPU)


def reference_kernels(device) -> Kernels:
    import torch

    if not device.is_gpu:
        n, m, dtype, where = 8 << 18, 384, torch.float32, "cpu"  # 8 MiB copy, fp32 matmul
    else:
        n, m, dtype, where = 1 << 28, 8192, torch.bfloat16, f"cuda:{device.index}"  # 1 GiB copy, bf16 matmul
    src = torch.randn(n, device=where)
    dst = torch.empty_like(src)
    a, b = torch.randn(m, m, device=where, dtype=dtype), torch.randn(m, m, device=where, dtype=dtype)
    c = torch.empty(m, m, device=where, dtype=dtype)
    copy = (f"copy {n * 4 >> 20} MiB fp32", lambda: dst.copy_(src))
    matmul = (f"matmul {m}x{m}x{m} {str(dtype).removeprefix('torch.')}", lambda: torch.matmul(a, b, out=c))
    read = None
    if device.is_gpu and device.llc_bytes:
        buf = torch.randn(device.llc_bytes // 2 // 4, device=where)
        read = (f"sum of {device.llc_bytes // 2 >> 20} MiB (half the {device.llc_bytes >> 20} MiB last-level cache)",
                lambda: buf.sum())
    return Kernels(copy=copy, matmul=matmul, read=read)


class _Harness:
    """Times thunks as `parity run` does: a settle pause, the sampler around `measure`."""

    def __init__(self, device, reader, settle_s: float | None):
        from parity.harness.measurement.timing import Flush

        self.device = device
        self.reader = reader
        self.flush = Flush(device).buffer() if device.is_gpu else None  # the buffer `parity run` flushes with
        self.settle_s = telemetry.settle_seconds(settle_s, device)
        self.timing = TIMING_EVENTS if device.is_gpu else TIMING_WALL
        self.policy = Policy.for_timing(self.timing, None if device.is_gpu else CPU_TIME_CAP_S)
        self.summaries: dict[str, dict[str, Any]] = {}

    def settle(self) -> None:
        time.sleep(self.settle_s)

    def time_ms(self, label: str, thunk, flush=None) -> tuple[float, dict[str, Any]]:
        self.settle()
        sampler = telemetry.Sampler(self.reader)
        stats = measure(thunk, self.timing, self.policy, flush, window=sampler)
        self.summaries[label] = sampler.summary
        return stats.median, sampler.summary


def run(device, repeats: int = 5, settle_s: float | None = None,
        progress: Callable[[str], None] = lambda text: None) -> list[Result]:
    """Every check on `device`; a check that cannot run here is a SKIP with its reason, one that
    raises (out of memory, say) a FAIL with the error."""
    import torch

    threads = torch.get_num_threads()
    if not device.is_gpu:
        torch.set_num_threads(1)
    reader = telemetry.open_reader(device)
    try:
        try:
            kernels = reference_kernels(device)
        except Exception as exc:  # noqa: BLE001
            return [failure("setup", "reference kernels", exc)]
        harness = _Harness(device, reader, settle_s)
        checks = [(f"agreement: {kernels.copy[0]}", lambda: _agreement(harness, *kernels.copy)),
                  (f"agreement: {kernels.matmul[0]}", lambda: _agreement(harness, *kernels.matmul)),
                  (f"spread: {kernels.copy[0]} x {repeats}", lambda: _spread(harness, *kernels.copy, repeats)),
                  ("flush", lambda: _flush(harness, kernels.read)),
                  ("telemetry", lambda: _telemetry(harness))]
        results = []
        for label, check in checks:
            progress(label)
            try:
                results.append(check())
            except Exception as exc:  # noqa: BLE001 - one broken check is that check's FAIL
                results.append(failure(label.split(":")[0], label.partition(": ")[2] or label, exc))
        return results
    finally:
        reader.close()
        torch.set_num_threads(threads)


def failure(check: str, subject: str, exc: BaseException) -> Result:
    from parity.harness.measurement.runner import _one_line

    return Result(check, subject, f"error: {_one_line(exc)}", None, "-", FAIL)


def _agreement(harness: _Harness, name: str, thunk) -> Result:
    gpu = harness.device.is_gpu
    independent, limit, timer = ("do_bench", GPU_AGREEMENT, do_bench_ms) if gpu else ("plain loop", CPU_AGREEMENT, loop_ms)
    ms, summary = harness.time_ms(name, thunk, harness.flush)
    harness.settle()
    try:
        other = timer(thunk)
    except ImportError as exc:
        return skipped("agreement", name, f"{independent} is not available ({exc})")
    return judge_agreement(name, ms, other, independent, limit, summary)


def _spread(harness: _Harness, name: str, thunk, repeats: int) -> Result:
    medians = [harness.time_ms(f"{name} run {i + 1}", thunk, harness.flush)[0] for i in range(repeats)]
    return judge_spread(name, medians, GPU_SPREAD if harness.device.is_gpu else CPU_SPREAD)


def _flush(harness: _Harness, read) -> Result:
    if read is None:
        why = ("the harness flushes only on a GPU: CPU timings are warm by design" if not harness.device.is_gpu
               else "the last-level cache size is unknown")
        return skipped("flush", "cold vs warm read", why)
    name, thunk = read
    warm, _ = harness.time_ms(f"{name}, warm", thunk, None)
    cold, _ = harness.time_ms(f"{name}, cold", thunk, harness.flush)
    return judge_flush(name, warm, cold, FLUSH_MIN_RATIO)


def _telemetry(harness: _Harness) -> Result:
    if not harness.device.is_gpu:
        return skipped("telemetry", "clocks, power, energy", harness.reader.describe()["reason"])
    return judge_telemetry(harness.summaries)


def failed(results: list[Result]) -> bool:
    return any(r.status == FAIL for r in results)


def rows(results: list[Result]) -> list[dict[str, str]]:
    return [{"check": r.check, "subject": r.subject, "figure": r.figure, "threshold": r.threshold,
             "result": r.status} for r in results]
