"""Whether a sample set is the op's time or the load's: two modes, heavy outliers, or a plateau.

On a shared CPU an op's samples can sit on a level that is not the op at all: OpenMP threads waiting
for a core make a 0.01 ms sum take 4-8 ms (the scheduler's time slice), for a few samples or for
all of them. A robust spread (timing.relative_noise) sees a second level holding a quarter of the
samples, but not a smaller one, nor a set that is all plateau. Three checks, any of which makes a set
`noisy` (sampling goes on to the time cap, and the record is flagged with the modes, never reported
as a clean median):

- two modes: split the sorted samples at their widest gap (a ratio of at least MODE_GAP between
  neighbours) with at least MODE_SHARE of the samples on each side;
- outlier-heavy: more than OUTLIER_SHARE of the samples above OUTLIER_FACTOR times the lower quartile
  (a lone outlier does not count; a tenth of the samples does);
- a plateau (wall-clock timings only): the median above FLOOR_FACTOR times the fastest call seen,
  warm-up calls included. Nothing makes a synchronous CPU call faster than the op, so a median twice
  the fastest call holds waiting that is not the op. (Device events get no floor from the warm-up:
  its calls are queued back to back and overlap.)

The factors are 2x where they judge a level (a median or an outlier twice the op's time is what
the issue calls a time that measures the load) and 1.5x for the gap between modes (above the
spread of a quiet sample set: the CPU selfcheck's run-to-run spread is under 10 %).
"""
from __future__ import annotations

import math
from typing import Sequence

MODE_GAP = 1.5
MODE_SHARE = 0.1
OUTLIER_FACTOR = 2.0
OUTLIER_SHARE = 0.1
FLOOR_FACTOR = 2.0
MIN_SAMPLES = 5  # below this nothing is judged (timing.relative_noise's count for a noise estimate)


def _median(ordered: Sequence[float]) -> float:
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def modes(samples: Sequence[float], resolution_ms: float = 0.0) -> tuple[tuple[float, float], ...]:
    """((median_ms, share), (median_ms, share)) of two modes, or () for one. A gap of two timer
    ticks or less splits nothing: 2 and 3 ticks of a 0.5 us event clock are one level, quantized."""
    ordered = sorted(samples)
    n = len(ordered)
    least = max(2, math.ceil(MODE_SHARE * n))
    if n < MIN_SAMPLES or n < 2 * least:
        return ()
    best, split = MODE_GAP, None
    for i in range(least - 1, n - least):
        lo, hi = ordered[i], ordered[i + 1]
        gap = hi / lo if lo > 0 else math.inf
        if gap >= best and hi - lo > 2 * resolution_ms:
            best, split = gap, i + 1
    if split is None:
        return ()
    low, high = ordered[:split], ordered[split:]
    return ((_median(low), len(low) / n), (_median(high), len(high) / n))


def judge(samples: Sequence[float], fastest_ms: float | None = None,
          resolution_ms: float = 0.0) -> tuple[str, tuple[tuple[float, float], ...]] | None:
    """Why the samples are not the op's time, and the two levels they hold ((median_ms, share) each;
    for a plateau the fastest call seen, share 0, and the samples); None where they are."""
    ordered = sorted(samples)
    n = len(ordered)
    if n < MIN_SAMPLES:
        return None
    two = modes(ordered, resolution_ms)
    if two:
        (lo, lo_share), (hi, hi_share) = two
        return f"two modes: {lo:.4g} ms ({lo_share:.0%}) and {hi:.4g} ms ({hi_share:.0%})", two
    q1 = ordered[(n - 1) // 4]
    limit = max(OUTLIER_FACTOR * q1, q1 + 2 * resolution_ms)
    far = [s for s in ordered if s > limit]
    if len(far) > OUTLIER_SHARE * n:
        near = ordered[:n - len(far)]
        levels = ((_median(near), len(near) / n), (_median(far), len(far) / n))
        return f"{len(far)} of {n} samples above {OUTLIER_FACTOR:g}x the lower quartile ({q1:.4g} ms)", levels
    if fastest_ms is None:  # a GPU's events: back-to-back warm-up calls overlap, no floor from them
        return None
    med = _median(ordered)
    floor = min(ordered[0], fastest_ms if fastest_ms > 0 else math.inf)
    if med > FLOOR_FACTOR * floor and med - floor > 2 * resolution_ms:
        return (f"median {med:.4g} ms over {FLOOR_FACTOR:g}x the fastest call seen ({floor:.4g} ms)",
                ((floor, 0.0), (med, 1.0)))
    return None
