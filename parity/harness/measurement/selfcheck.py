"""`parity selfcheck`: does the harness measure what it says it measures?

Checks, each with its figure, its threshold and PASS, FAIL or SKIP (with the reason); INFO rows
report a figure that has no pass mark (what the method changes, for people to read):

1. Agreement. A large copy and a large matmul are timed by the harness (`timing.measure`, with the
   telemetry sampler running as in a real run) and by an independent method, interleaved A B A B
   so both see the same power and thermal state (the medians of each are compared). On a GPU that
   method is `triton.testing.do_bench` (median), with the cache flushed before every sample by
   both. On the CPU it is a plain `perf_counter` loop: blocks of back-to-back calls, the lowest
   block mean (timeit's convention: a slower block is one another process interrupted).
   Figure: |harness - independent| / independent.
2. Run-to-run spread. One case (the copy) timed several times; figure: (max - min) / median of the
   medians.
3. Cache flush (GPU only). A read of a quarter of the last-level cache (it surely stays in cache
   when warm), timed warm (no flush) and cold, with each flush variant: the harness's clean flush
   (a write and a read pass) and a memset alone. Figure: cold / warm with the clean flush, which
   must be clearly above 1 if the flush evicts the buffer; the memset's ratio beside it. The
   harness never flushes on the CPU (CPU timings are warm by design).
4. Dirty lines (GPU only, INFO). A small cold GEMM after a memset flush and after the clean flush:
   the difference is the write-back of the dirty lines a memset leaves, which a cold sample paid.
5. Clock (GPU only, INFO). The large matmul from idle for a few seconds: the SM clock over the
   first 100 ms (burst) and the last (sustained), and the state the harness records.
6. Small kernels (GPU only, INFO). The smallest stream working set (a 64 KiB copy), one launch per
   event pair against several back-to-back, with the noise of each and the batches re-taken for a
   host stall.
7. Telemetry (GPU only). Clocks, power and energy per call must be in every harness summary; each
   summary's duty (timed GPU time over the window) and clock state are shown.

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

from parity.harness.core.model import TIMING_EVENTS, TIMING_WALL
from parity.harness.measurement import telemetry
from parity.harness.measurement.telemetry_readers import open_reader
from parity.harness.measurement.timing import Policy, measure

PASS, FAIL, SKIP, INFO = "PASS", "FAIL", "SKIP", "INFO"
GPU_AGREEMENT, GPU_SPREAD, FLUSH_MIN_RATIO = 0.02, 0.01, 1.2
CPU_AGREEMENT, CPU_SPREAD = 0.10, 0.10
CPU_TIME_CAP_S = 0.5  # per harness timing on the CPU: the whole selfcheck takes a few seconds there
LOOP_BUDGET_S, LOOP_BLOCKS = 0.3, 50  # 6 ms blocks: short enough for some to run uninterrupted
DO_BENCH_REP_MS = 200
AGREEMENT_ROUNDS = 2  # harness, independent, harness, independent
CLOCK_RUN_S = 3.0  # the matmul from idle, long enough for the power limiter's average to settle
SMALL_COPY_BYTES = 64 << 10  # the stream suite's smallest working set
DIRTY_GEMM = 2048  # a small cold GEMM (2048^3 bf16: tens of microseconds on an H200)
TELEMETRY_FIELDS = ("sm_clock_mhz_median", "power_w_median", "energy_j_per_call")


@dataclass(frozen=True)
class Result:
    check: str  # agreement | spread | flush | dirty-lines | clock | small-kernel | telemetry
    subject: str
    figure: str  # what was measured, for people
    value: float | None  # the number held against the threshold
    threshold: str
    status: str  # PASS | FAIL | SKIP | INFO
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
    if summary.get("duty") is not None:
        parts.append(f"duty {summary['duty']:.0%}")
    if summary.get("clock_state"):
        parts.append(f"clock {summary['clock_state']}")
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


def judge_flush(subject: str, warm_ms: float, cold_ms: float, min_ratio: float,
                dirty_cold_ms: float | None = None) -> Result:
    """The clean flush's cold/warm ratio against the threshold; a memset flush's beside it."""
    ratio = cold_ms / warm_ms
    figure = f"warm {warm_ms:.4g} ms, cold {cold_ms:.4g} ms: cold/warm {ratio:.2f}"
    detail = {"warm_ms": warm_ms, "cold_ms": cold_ms}
    if dirty_cold_ms is not None:
        figure += f" (memset flush: cold {dirty_cold_ms:.4g} ms, cold/warm {dirty_cold_ms / warm_ms:.2f})"
        detail.update(cold_dirty_ms=dirty_cold_ms, ratio_dirty=dirty_cold_ms / warm_ms)
    return Result("flush", subject, figure, ratio, f">= {min_ratio:g}", PASS if ratio >= min_ratio else FAIL, detail)


def judge_dirty_lines(subject: str, clean_ms: float, dirty_ms: float) -> Result:
    """What a memset flush's dirty lines add to a cold sample (INFO: the size depends on the part)."""
    extra = dirty_ms - clean_ms
    figure = (f"cold after a memset {dirty_ms * 1e3:.4g} us, after the clean flush {clean_ms * 1e3:.4g} us: "
              f"dirty lines add {extra * 1e3:.3g} us ({100 * extra / clean_ms:+.1f} %)")
    return Result("dirty-lines", subject, figure, extra / clean_ms, "-", INFO,
                  {"clean_ms": clean_ms, "dirty_ms": dirty_ms})


def judge_clock(subject: str, summary: dict[str, Any]) -> Result:
    """The SM clock at the start (burst) and end (sustained) of a long timing from idle."""
    first, last, state = (summary.get(k) for k in ("sm_clock_mhz_first", "sm_clock_mhz_last", "clock_state"))
    if first is None or last is None:
        return skipped("clock", subject, f"no clock in the telemetry ({summary.get('reason') or 'not reported'})")
    figure = (f"first 100 ms {first:.0f} MHz, last 100 ms {last:.0f} MHz ({100 * (last / first - 1):+.1f} %): "
              f"the harness records {state or 'unknown (window too short)'}")
    return Result("clock", subject, figure, last / first, "-", INFO,
                  {"first_mhz": first, "last_mhz": last, "clock_state": state})


def judge_launches(subject: str, single, several) -> Result:
    """One launch per event pair against several (Stats of each; INFO)."""
    figure = (f"1 launch per event pair: {single.median * 1e3:.3g} us (noise {100 * single.noise_rel:.2g} %); "
              f"{several.launches_per_sample} back-to-back: {several.median * 1e3:.3g} us "
              f"(noise {100 * several.noise_rel:.2g} %); batches re-taken for a host stall "
              f"{single.retaken_batches + several.retaken_batches}, kept stalled "
              f"{single.stalled_batches + several.stalled_batches}")
    return Result("small-kernel", subject, figure, several.median / single.median, "-", INFO,
                  {"single_ms": single.median, "several_ms": several.median,
                   "launches": several.launches_per_sample, "single_noise": single.noise_rel,
                   "several_noise": several.noise_rel})


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
    read: tuple[str, Callable[[], Any]] | None  # a read of a quarter of the LLC, for the flush check (GPU)
    small_gemm: tuple[str, Callable[[], Any]] | None = None  # a small cold GEMM, for the dirty-lines check (GPU)
    small_copy: tuple[str, Callable[[], Any]] | None = None  # the smallest stream case (GPU)


def warm_read_bytes(llc_bytes: int) -> int:
    """The warm case's buffer: a quarter of the LLC, so it stays there whatever the replacement
    policy, the other data in the cache and a partitioned LLC (half could spill)."""
    return llc_bytes // 4


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
    read = small_gemm = small_copy = None
    if device.is_gpu and device.llc_bytes:
        size = warm_read_bytes(device.llc_bytes)
        buf = torch.randn(size // 4, device=where)
        read = (f"sum of {size >> 20} MiB (a quarter of the {device.llc_bytes >> 20} MiB last-level cache)",
                lambda: buf.sum())
    if device.is_gpu:
        g = DIRTY_GEMM
        sa, sb = (torch.randn(g, g, device=where, dtype=dtype) for _ in range(2))
        sc = torch.empty(g, g, device=where, dtype=dtype)
        small_gemm = (f"matmul {g}x{g}x{g} bf16, cold", lambda: torch.matmul(sa, sb, out=sc))
        x = torch.randn(SMALL_COPY_BYTES // 4, device=where)
        y = torch.empty_like(x)
        small_copy = (f"copy {SMALL_COPY_BYTES >> 10} KiB fp32, warm", lambda: y.copy_(x))
    return Kernels(copy=copy, matmul=matmul, read=read, small_gemm=small_gemm, small_copy=small_copy)


class _Harness:
    """Times thunks as `parity run` does: a settle pause, the sampler around `measure`."""

    def __init__(self, device, reader, settle_s: float | None):
        from parity.harness.measurement.flush import Flush

        self.device = device
        self.reader = reader
        flush = Flush(device) if device.is_gpu else None
        self.flush = flush.evict if flush else None  # the flush `parity run` uses: write, then read
        self.dirty_flush = (lambda: flush.buffer().zero_()) if flush else None  # a memset alone
        self.settle_s = telemetry.settle_seconds(settle_s, device)
        self.timing = TIMING_EVENTS if device.is_gpu else TIMING_WALL
        self.policy = Policy.for_timing(self.timing, None if device.is_gpu else CPU_TIME_CAP_S)
        self.summaries: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, Any] = {}

    def settle(self) -> None:
        time.sleep(self.settle_s)

    def time_ms(self, label: str, thunk, flush=None, policy: Policy | None = None) -> tuple[float, dict[str, Any]]:
        self.settle()
        sampler = telemetry.Sampler(self.reader)
        stats = measure(thunk, self.timing, policy or self.policy, flush, window=sampler)
        self.summaries[label] = sampler.summary
        self.stats[label] = stats
        return stats.median, sampler.summary


def run(device, repeats: int = 5, settle_s: float | None = None,
        progress: Callable[[str], None] = lambda text: None) -> list[Result]:
    """Every check on `device`; a check that cannot run here is a SKIP with its reason, one that
    raises (out of memory, say) a FAIL with the error."""
    import torch

    threads = torch.get_num_threads()
    if not device.is_gpu:
        torch.set_num_threads(1)
    reader = open_reader(device)
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
                  ("dirty-lines", lambda: _dirty_lines(harness, kernels.small_gemm)),
                  ("clock", lambda: _clock(harness, *kernels.matmul)),
                  ("small-kernel", lambda: _small_kernel(harness, kernels.small_copy)),
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
    from parity.harness.core.model import one_line

    return Result(check, subject, f"error: {one_line(exc)}", None, "-", FAIL)


def _agreement(harness: _Harness, name: str, thunk, rounds: int = AGREEMENT_ROUNDS) -> Result:
    """The harness and the independent timer, interleaved A B A B: each sees the power and
    thermal state the other left, so neither is favoured by going first or last."""
    gpu = harness.device.is_gpu
    independent, limit, timer = ("do_bench", GPU_AGREEMENT, do_bench_ms) if gpu else ("plain loop", CPU_AGREEMENT, loop_ms)
    ours, theirs, summary = [], [], None
    for i in range(rounds):
        ms, summary = harness.time_ms(f"{name}, round {i + 1}" if i else name, thunk, harness.flush)
        ours.append(ms)
        harness.settle()
        try:
            theirs.append(timer(thunk))
        except ImportError as exc:
            return skipped("agreement", name, f"{independent} is not available ({exc})")
    result = judge_agreement(name, statistics.median(ours), statistics.median(theirs), independent, limit, summary)
    result.detail.update(order=["harness", independent] * rounds, harness_runs_ms=ours, independent_runs_ms=theirs)
    return result


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
    dirty, _ = harness.time_ms(f"{name}, cold after a memset", thunk, harness.dirty_flush)
    return judge_flush(name, warm, cold, FLUSH_MIN_RATIO, dirty)


def _gpu_only(harness: _Harness, check: str, subject: str) -> Result | None:
    if harness.device.is_gpu:
        return None
    return skipped(check, subject, "GPU only: the CPU has no flush, no device events and no GPU clock")


def _dirty_lines(harness: _Harness, gemm) -> Result:
    if gemm is None:
        return _gpu_only(harness, "dirty-lines", "a small cold GEMM") or skipped("dirty-lines", "-", "no kernel")
    name, thunk = gemm
    clean, _ = harness.time_ms(f"{name}, clean flush", thunk, harness.flush)
    dirty, _ = harness.time_ms(f"{name}, memset flush", thunk, harness.dirty_flush)
    return judge_dirty_lines(name, clean, dirty)


def _clock(harness: _Harness, name: str, thunk) -> Result:
    subject = f"{name} from idle for {CLOCK_RUN_S:g} s"
    if not harness.device.is_gpu:
        return _gpu_only(harness, "clock", subject)
    # No warm-up: the window opens on the burst state, and min_time keeps it open until sustained.
    policy = Policy(warmup_ms=0.0, min_samples=10, max_samples=100_000, noise_target=0.0,
                    time_cap_s=CLOCK_RUN_S, min_time_s=CLOCK_RUN_S, resolution_ms=harness.policy.resolution_ms)
    _, summary = harness.time_ms(subject, thunk, harness.flush, policy)
    return judge_clock(subject, summary)


def _small_kernel(harness: _Harness, copy) -> Result:
    if copy is None:
        return _gpu_only(harness, "small-kernel", "the smallest stream case") or skipped("small-kernel", "-", "no kernel")
    from parity.harness.measurement.timing import collect, event_batch, warm_up

    name, thunk = copy
    estimate_ms = warm_up(thunk, harness.timing, harness.policy)
    out = []
    for launches in (1, None):  # one launch per event pair; as the harness times it
        harness.settle()
        out.append(collect(event_batch(thunk, launches=launches), harness.policy, estimate_ms))
    return judge_launches(name, *out)


def _telemetry(harness: _Harness) -> Result:
    if not harness.device.is_gpu:
        return skipped("telemetry", "clocks, power, energy", harness.reader.describe()["reason"])
    return judge_telemetry(harness.summaries)


def failed(results: list[Result]) -> bool:
    return any(r.status == FAIL for r in results)


def rows(results: list[Result]) -> list[dict[str, str]]:
    return [{"check": r.check, "subject": r.subject, "figure": r.figure, "threshold": r.threshold,
             "result": r.status} for r in results]
