"""A verdict on two sets of times of one case (`faster`, `slower`, `same`, `uncertain`): within one
run from the samples, or from run-to-run variance. The rules are compare.py's module docstring."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from parity.harness.reporting.stats import (
    Settings,
    block_medians,
    mann_whitney_p,
    ratio_interval,
    t_quantile,
    t_two_sided_p,
)


@dataclass(frozen=True)
class Verdict:
    ratio: float  # median(new) / median(base) of the times: below 1 is faster
    low: float
    high: float
    p: float
    verdict: str


def judge(base: Sequence[float], new: Sequence[float], settings: Settings = Settings(),
          base_block: int = 1, new_block: int = 1) -> Verdict:
    """The within-run verdict on two samples of times of the same case, taken in batches of the
    given sizes (see the module docstring)."""
    ratio = float(np.median(new)) / float(np.median(base))
    low, high = ratio_interval(base, new, settings, base_block, new_block)
    if base_block > 1 or new_block > 1:
        p = mann_whitney_p(block_medians(base, base_block), block_medians(new, new_block))
    else:
        p = mann_whitney_p(base, new)
    return _verdict(ratio, low, high, p, settings)


def _verdict(ratio: float, low: float, high: float, p: float, settings: Settings) -> Verdict:
    band = 1 + settings.same_within
    if p < settings.alpha and (low > band or high < 1 / band):
        verdict = "slower" if ratio > 1 else "faster"
    elif low >= 1 / band and high <= band:
        verdict = "same"
    else:
        verdict = "uncertain"
    return Verdict(ratio=ratio, low=low, high=high, p=p, verdict=verdict)


def judge_runs(base_medians: Sequence[float], new_medians: Sequence[float], settings: Settings = Settings()) -> Verdict:
    """The verdict from run-to-run variance: each run's median is one observation; Student's
    pooled two-sample t-test on their logarithms (a time ratio is a difference of logarithms),
    with its interval at `confidence`. Needs three runs in all (one degree of freedom)."""
    a, b = np.log(np.asarray(base_medians, dtype=float)), np.log(np.asarray(new_medians, dtype=float))
    n1, n2 = len(a), len(b)
    if n1 < 1 or n2 < 1 or n1 + n2 < 3:
        raise ValueError("a run-level verdict needs at least one run per side and three in all")
    df = n1 + n2 - 2
    diff = float(b.mean() - a.mean())
    pooled = (float(((a - a.mean()) ** 2).sum()) + float(((b - b.mean()) ** 2).sum())) / df
    se = math.sqrt(pooled * (1 / n1 + 1 / n2))
    ratio = math.exp(diff)
    if se == 0:  # runs that agree exactly within each side
        p = 1.0 if diff == 0 else 0.0
        return _verdict(ratio, ratio, ratio, p, settings)
    half = t_quantile(1 - (1 - settings.confidence) / 2, df) * se
    return _verdict(ratio, math.exp(diff - half), math.exp(diff + half), t_two_sided_p(diff / se, df), settings)
