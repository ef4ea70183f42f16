"""The statistics compare.py rests on, in the standard library alone: the Mann-Whitney U test with
its normal approximation and tie correction, a moving-block bootstrap of the ratio of medians (samples
of one run are autocorrelated), and Student's t through the regularized incomplete beta function
(Numerical Recipes' continued fraction).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from parity.harness.core.model import UsageError

ALPHA = 0.001


SAME_WITHIN = 0.01  # changes under 1 % are "same" (nvbench's robust compare uses a 0.5 % clear gap)


CONFIDENCE = 0.95


BOOTSTRAP = 1000


SEED = 20261121


@dataclass(frozen=True)
class Settings:
    alpha: float = ALPHA
    same_within: float = SAME_WITHIN
    confidence: float = CONFIDENCE
    bootstrap: int = BOOTSTRAP
    seed: int = SEED

    def __post_init__(self):
        if not 0 < self.alpha < 1:
            raise UsageError(f"alpha must be between 0 and 1, not {self.alpha}")
        if not 0 <= self.same_within < 1:
            raise UsageError(f"the 'same' band must be between 0 and 100 %, not {100 * self.same_within:g} %")


def _ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks with ties given their average rank, and the size of every tie group."""
    order = np.argsort(values, kind="mergesort")
    uniques, inverse, counts = np.unique(values[order], return_inverse=True, return_counts=True)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))  # 0-based position of each group
    average = first + (counts + 1) / 2.0
    ranks = np.empty(len(values))
    ranks[order] = average[inverse]
    return ranks, counts


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie- and
    continuity-corrected). 1.0 where nothing can be concluded (an empty or constant sample)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return 1.0
    ranks, ties = _ranks(np.concatenate((a, b)))
    n = n1 + n2
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    mean = n1 * n2 / 2.0
    # Var(U) = n1 n2 / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1))), t the sizes of the tie groups.
    tie_term = float(np.sum(ties.astype(float) ** 3 - ties)) / (n * (n - 1)) if n > 1 else 0.0
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if variance <= 0:
        return 1.0
    z = max(abs(u1 - mean) - 0.5, 0.0) / math.sqrt(variance)
    return math.erfc(z / math.sqrt(2.0))  # 2 * (1 - Phi(z))


def block_length(batches: Sequence[int] | None) -> int:
    """The bootstrap's block: the usual batch size (1, i.e. independent samples, where unknown)."""
    sizes = [int(b) for b in batches or () if int(b) > 0]
    return max(1, int(np.median(sizes))) if sizes else 1


def _resampled_medians(values: np.ndarray, block: int, rng, count: int) -> np.ndarray:
    """Medians of `count` bootstrap resamples of `values` in blocks of `block` consecutive samples
    (the batches, when the samples were taken in batches of that size); circular at the end."""
    n = len(values)
    if block <= 1:
        return np.median(values[rng.integers(0, n, (count, n))], axis=1)
    starts = np.arange(0, n, block)
    drawn = starts[rng.integers(0, len(starts), (count, len(starts)))]
    index = (drawn[:, :, None] + np.arange(block)).reshape(count, -1)[:, :n] % n
    return np.median(values[index], axis=1)


def block_medians(values: Sequence[float], block: int) -> np.ndarray:
    """The median of each block of `block` consecutive samples: one value per batch."""
    values = np.asarray(values, dtype=float)
    return np.array([np.median(values[i:i + block]) for i in range(0, len(values), block)])


def ratio_interval(base: Sequence[float], new: Sequence[float], settings: Settings = Settings(),
                   base_block: int = 1, new_block: int = 1) -> tuple[float, float]:
    """Percentile bootstrap interval of median(new) / median(base), resampling both with a fixed
    seed, in blocks of the given lengths (1: independent samples). The bounds are bootstrap
    ratios themselves (the outer order statistics), never interpolated between them."""
    rng = np.random.default_rng(settings.seed)
    base, new = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    base_medians = _resampled_medians(base, base_block, rng, settings.bootstrap)
    new_medians = _resampled_medians(new, new_block, rng, settings.bootstrap)
    ratios = new_medians / base_medians
    tail = (1 - settings.confidence) / 2
    return float(np.quantile(ratios, tail, method="lower")), float(np.quantile(ratios, 1 - tail, method="higher"))


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified
    Lentz; Press et al., Numerical Recipes, 3rd ed., section 6.4)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * f


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    if math.isinf(t):
        return 0.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(q: float, df: float) -> float:
    """The q quantile (q > 0.5) of Student's t, by bisection on the two-sided tail."""
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > 2 * (1 - q):
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided_p(mid, df) > 2 * (1 - q) else (lo, mid)
    return (lo + hi) / 2
