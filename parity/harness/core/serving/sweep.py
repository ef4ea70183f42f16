"""Curves over concurrency and the best point under a latency SLO."""
from __future__ import annotations

from parity.harness.core.serving.scenario import Scenario, add_note, solve

GRID = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096,
        6144, 8192, 12288, 16384)


def grid(max_concurrency: int) -> list[int]:
    """The concurrencies of a sweep: a geometric grid up to the maximum, the maximum included."""
    points = [c for c in GRID if c < max_concurrency]
    return points + [max_concurrency]


def curve(scn: Scenario, spec, concurrencies: list[int] | None = None, values: dict | None = None, measured=None):
    """[(concurrency, Result)] at each concurrency (the whole deployment's), capped by memory."""
    mem, _ = solve(_at(scn, 1), spec, values=values, measured=measured)
    if not mem.fits:
        return mem, []
    top = mem.max_concurrency
    asked = grid(top) if concurrencies is None else sorted({top if c == 0 else c for c in concurrencies})
    # Concurrencies above what memory and the engine allow all run at the maximum (the rest queue):
    # one point stands for them, so a curve never repeats a point.
    above = [c for c in asked if c > top]
    points = sorted({c for c in asked if c <= top} | ({top} if above else set()))
    out = []
    for c in points:
        _, res = solve(_at(scn, c), spec, values=values, measured=measured)
        if c == top and above and res is not None:
            res.note = add_note(res.note, f"concurrency {', '.join(map(str, above))} {'is' if len(above) == 1 else 'are'} above the "
                        f"{top} the memory and engine allow: the rest wait in the queue")
        out.append((c, res))
    return mem, out


def best_under_slo(scn: Scenario, spec, tpot_ms: float, ttft_ms: float | None = None,
                   concurrencies: list[int] | None = None, values: dict | None = None, measured=None):
    """(concurrency, Result) of the highest output throughput whose TPOT (and TTFT) meets the SLO."""
    _, points = curve(scn, spec, concurrencies, values, measured)
    ok = [(c, r) for c, r in points if r.tpot_s * 1e3 <= tpot_ms and (ttft_ms is None or r.ttft_s * 1e3 <= ttft_ms)]
    return max(ok, key=lambda cr: cr[1].output_tps_per_gpu) if ok else None


def _at(scn: Scenario, c: int) -> Scenario:
    from dataclasses import replace
    return replace(scn, concurrency=c, request_rate=None)
