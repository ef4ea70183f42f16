"""Two runs, case by case: the ratio of median times, a significance test on the raw samples, and
a verdict (`faster`, `slower`, `same`, `uncertain`), with the geometric mean per suite.

The test is Mann-Whitney U (two-sided, normal approximation with the tie correction and a
continuity correction; Mann and Whitney 1947, the tie term as in Lehmann, "Nonparametrics", 1975,
eq. 1.49): it needs no normality, which GPU timings (skewed, quantized, with a long right tail)
do not have. The interval is a percentile bootstrap of the ratio of medians with a fixed seed, so a
comparison prints the same numbers every time.

A verdict needs both kinds of evidence (pyperf's rule is a t-test at 95 %; nvbench's robust compare
starts from "ambiguous" and upgrades only with evidence, and that is the spirit here):
- `faster` / `slower`: p below `alpha` (0.001: a sweep compares hundreds of cases, and at 0.05 one
  case in twenty of two identical builds would be called changed) and the whole interval beyond
  `same_within` of 1 (the change is larger than the band, not merely different from nothing);
- `same`: the whole interval within `same_within` of 1 (an equivalence bound, like TOST);
- `uncertain`: neither (too few or too noisy samples to tell).
Different timing kinds (device events, the wall clock, the interpreter) are never compared: such a
case is marked, not given a ratio. Interpreter times measure the interpreter; they are compared for
completeness, but they count neither in the geometric means nor as regressions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from parity.harness.core.model import TIMING_INTERPRET, UsageError
from parity.harness.reporting.report import SECTION_ORDER, SECTION_TITLES, _figure, _missing, params_text
from parity.harness.core.results import Run

ALPHA = 0.001
SAME_WITHIN = 0.01  # changes under 1 % are "same" (nvbench's robust compare uses a 0.5 % clear gap)
CONFIDENCE = 0.95
BOOTSTRAP = 1000
SEED = 20261121
VERDICTS = ("faster", "slower", "same", "uncertain")
NOT_COMPARED = "n/a"


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


def ratio_interval(base: Sequence[float], new: Sequence[float], settings: Settings = Settings()) -> tuple[float, float]:
    """Percentile bootstrap interval of median(new) / median(base), resampling both with a fixed
    seed. The bounds are bootstrap ratios themselves (the outer order statistics), never
    interpolated between them."""
    rng = np.random.default_rng(settings.seed)
    base, new = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    base_medians = np.median(base[rng.integers(0, len(base), (settings.bootstrap, len(base)))], axis=1)
    new_medians = np.median(new[rng.integers(0, len(new), (settings.bootstrap, len(new)))], axis=1)
    ratios = new_medians / base_medians
    tail = (1 - settings.confidence) / 2
    return float(np.quantile(ratios, tail, method="lower")), float(np.quantile(ratios, 1 - tail, method="higher"))


@dataclass(frozen=True)
class Verdict:
    ratio: float  # median(new) / median(base) of the times: below 1 is faster
    low: float
    high: float
    p: float
    verdict: str


def judge(base: Sequence[float], new: Sequence[float], settings: Settings = Settings()) -> Verdict:
    """The verdict on two samples of times of the same case (see the module docstring)."""
    ratio = float(np.median(new)) / float(np.median(base))
    low, high = ratio_interval(base, new, settings)
    p = mann_whitney_p(base, new)
    band = 1 + settings.same_within
    if p < settings.alpha and (low > band or high < 1 / band):
        verdict = "slower" if ratio > 1 else "faster"
    elif low >= 1 / band and high <= band:
        verdict = "same"
    else:
        verdict = "uncertain"
    return Verdict(ratio=ratio, low=low, high=high, p=p, verdict=verdict)


def is_regression(row: dict[str, Any] | pd.Series, pct: float, settings: Settings) -> bool:
    """A significant slow-down larger than `pct` percent: p below alpha and the whole interval
    above 1 + pct/100. Interpreter times are not performance and never count."""
    if row["verdict"] == NOT_COMPARED or row["timing"] == TIMING_INTERPRET or pd.isna(row["ratio"]):
        return False
    return row["p"] < settings.alpha and row["ci_low"] > 1 + pct / 100


@dataclass
class Comparison:
    base: Run
    new: Run
    settings: Settings
    rows: pd.DataFrame  # one row per case present in both runs
    only_base: pd.DataFrame  # suite, op, impl, dtype, case, timing: cases missing from NEW
    only_new: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def geomeans(self) -> pd.DataFrame:
        """Per suite and timing kind: the geometric mean of the time ratios of the cases timed in
        both runs (Fleming and Wallace 1986: the mean of normalized figures is geometric), with
        the count of each verdict. Interpreter times are left out."""
        rows = self.rows[(self.rows["verdict"] != NOT_COMPARED) & (self.rows["timing"] != TIMING_INTERPRET)]
        out = []
        for (suite, timing), group in rows.groupby(["suite", "timing"], sort=True):
            counts = group["verdict"].value_counts()
            out.append({"suite": suite, "timing": timing, "cases": len(group),
                        "geomean": float(np.exp(np.log(group["ratio"].astype(float)).mean())),
                        **{v: int(counts.get(v, 0)) for v in VERDICTS}})
        return pd.DataFrame(out, columns=["suite", "timing", "cases", "geomean", *VERDICTS])

    def regressions(self, pct: float) -> pd.DataFrame:
        mask = [is_regression(r, pct, self.settings) for _, r in self.rows.iterrows()]
        return self.rows[mask] if len(self.rows) else self.rows

    def broken(self) -> pd.DataFrame:
        """Cases that passed in BASE and failed or gave a wrong answer in NEW."""
        if self.rows.empty:
            return self.rows
        return self.rows[(self.rows["base_status"] == "ok") & self.rows["new_status"].isin(("failed", "invalid"))]


def _samples(rec: dict[str, Any]) -> list[float]:
    t = rec.get("time_ms") or {}
    return [float(s) for s in t.get("samples") or ()] or ([float(t["median"])] if t.get("median") else [])


def _describe(rec: dict[str, Any]) -> dict[str, Any]:
    params = rec.get("params") or {}
    return {"key": rec.get("key"), "suite": rec.get("suite"), "op": rec.get("op"), "impl": rec.get("impl"),
            "dtype": params.get("dtype"), "case": params_text(params), "timing": rec.get("timing")}


def _device(run: Run) -> tuple[str | None, str | None]:
    device = run.meta.get("device") or {}
    return device.get("name"), device.get("backend")


def compare(base: Run, new: Run, settings: Settings = Settings(), ignore_devices: bool = False) -> Comparison:
    """Every case of BASE against the same case (same key) of NEW."""
    if _device(base) != _device(new) and not ignore_devices:
        raise UsageError(f"{base.path} ran on {_device(base)[0]}, {new.path} on {_device(new)[0]}: compare is "
                         "for one device across software versions; use parity report BASE NEW for devices "
                         "side by side, or --ignore-devices")
    base_recs = {r["key"]: r for r in base.records if "key" in r}
    new_recs = {r["key"]: r for r in new.records if "key" in r}
    rows = []
    for key, b in base_recs.items():
        n = new_recs.get(key)
        if n is None:
            continue
        row = {**_describe(b), "base_status": b.get("status"), "new_status": n.get("status"),
               "new_timing": n.get("timing"), "base_ms": None, "new_ms": None, "ratio": math.nan,
               "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "base_n": 0, "new_n": 0,
               "verdict": NOT_COMPARED, "note": None}
        bs, ns = _samples(b), _samples(n)
        if b.get("timing") != n.get("timing"):
            row["note"] = f"timed differently ({b.get('timing')} vs {n.get('timing')}): not compared"
        elif b.get("status") != "ok" or n.get("status") != "ok":
            row["note"] = f"status {b.get('status')} -> {n.get('status')}"
            why = n.get("reason") if n.get("status") != "ok" else b.get("reason")
            if why:
                row["note"] += f": {why}"
        elif not bs or not ns:
            row["note"] = "no samples recorded"
        else:
            v = judge(bs, ns, settings)
            row.update(base_ms=float(np.median(bs)), new_ms=float(np.median(ns)), ratio=v.ratio, ci_low=v.low,
                       ci_high=v.high, p=v.p, base_n=len(bs), new_n=len(ns), verdict=v.verdict)
            if b.get("timing") == TIMING_INTERPRET:
                row["note"] = "interpreter times: not performance"
        rows.append(row)
    columns = ["key", "suite", "op", "impl", "dtype", "case", "timing"]
    row_columns = columns + ["base_status", "new_status", "new_timing", "base_ms", "new_ms", "ratio", "ci_low",
                             "ci_high", "p", "base_n", "new_n", "verdict", "note"]
    only_base = pd.DataFrame([_describe(r) for k, r in base_recs.items() if k not in new_recs], columns=columns)
    only_new = pd.DataFrame([_describe(r) for k, r in new_recs.items() if k not in base_recs], columns=columns)
    notes = [w for run in (base, new) for w in run.warnings]  # each names its file already
    return Comparison(base=base, new=new, settings=settings, rows=pd.DataFrame(rows, columns=row_columns),
                      only_base=only_base,
                      only_new=only_new, notes=notes)


# --- tables -------------------------------------------------------------------------------------




def _change(ratio: float) -> str:
    """pyperf's wording: 1.25x slower / 1.25x faster, from a time ratio."""
    if isinstance(ratio, float) and math.isnan(ratio):
        return "-"
    if ratio >= 1:
        return f"{ratio:.3g}x slower"
    return f"{1 / ratio:.3g}x faster"


def _label(run: Run) -> str:
    return f"{_device(run)[0]} ({run.meta.get('run_id')})"


def tables(c: Comparison) -> list[tuple[str, list[dict[str, str]]]]:
    """Titled tables for report.render: cases per timing kind, geometric means, one-sided cases."""
    s = c.settings
    out = []
    head = f"{_label(c.base)} -> {_label(c.new)}"
    rows = c.rows
    if not rows.empty:
        order = {k: i for i, k in enumerate(SECTION_ORDER)}
        for timing in sorted(rows["timing"].unique(), key=lambda t: (order.get(t, len(order)), str(t))):
            group = rows[rows["timing"] == timing]
            title = (f"{head}: {SECTION_TITLES.get(timing, timing)}; time ratio new/base with its "
                     f"{s.confidence:.0%} interval, Mann-Whitney p, verdict at alpha {s.alpha:g}, "
                     f"same within {100 * s.same_within:g} %")
            out.append((title, [{
                "suite": r["suite"], "op": r["op"], "impl": r["impl"], "dtype": "" if _missing(r["dtype"]) else r["dtype"],
                "case": r["case"],
                "base ms": _figure(r["base_ms"], ".4g"), "new ms": _figure(r["new_ms"], ".4g"),
                "new/base": _figure(r["ratio"], ".3f"),
                "interval": "-" if math.isnan(r["ci_low"]) else f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                "p": _figure(r["p"], ".2g"), "n": "-" if not r["base_n"] else f"{r['base_n']}/{r['new_n']}",
                "verdict": r["verdict"], "note": "" if _missing(r["note"]) else r["note"],
            } for _, r in group.iterrows()]))
    geo = c.geomeans()
    if not geo.empty:
        out.append((f"{head}: geometric mean of the time ratios per suite", [{
            "suite": g["suite"], "timing": g["timing"], "cases": str(g["cases"]),
            "geomean new/base": f"{g['geomean']:.3f}", "change": _change(g["geomean"]),
            **{v: str(g[v]) for v in VERDICTS}} for _, g in geo.iterrows()]))
    for title, frame in ((f"only in BASE {_label(c.base)}", c.only_base), (f"only in NEW {_label(c.new)}", c.only_new)):
        if not frame.empty:
            out.append((title, [{k: ("" if _missing(r[k]) else r[k]) for k in ("suite", "op", "impl", "dtype", "case", "timing")}
                                for _, r in frame.iterrows()]))
    return out


def to_csv(c: Comparison) -> str:
    return c.rows.to_csv(index=False)


def summary_line(c: Comparison) -> str:
    """One line for stderr: how many cases compared, each verdict, the cases on one side only."""
    rows = c.rows
    counts = rows["verdict"].value_counts() if not rows.empty else pd.Series(dtype=int)
    parts = [f"{int(counts.get(v, 0))} {v}" for v in VERDICTS if counts.get(v, 0)]
    if counts.get(NOT_COMPARED, 0):
        parts.append(f"{int(counts[NOT_COMPARED])} not compared")
    text = f"{len(rows)} case(s) in both runs" + (f": {', '.join(parts)}" if parts else "")
    return text + f"; {len(c.only_base)} only in BASE, {len(c.only_new)} only in NEW"
