"""Two runs (or two sets of runs), case by case: the ratio of median times, a significance test,
and a verdict (`faster`, `slower`, `same`, `uncertain`), with the geometric mean per suite.

Samples of one run are not independent: a run drifts (clocks, temperature, other processes), and
two runs of one build differ by a percent or two that no sample of either shows. So:
- with several runs per side (`parity compare A1,A2,A3 B1,B2,B3`), the verdict rests on the
  run-to-run variance: each run's median is one observation, and the test is Student's two-sample
  t-test on their logarithms (pooled variance: one machine, one case), with its t interval of the
  ratio (`basis` "runs");
- with one run per side, on the samples, with the dependence inside a run respected: the interval
  is a block bootstrap whose blocks are the batches the samples were taken in (Kuensch 1989; a
  batch is queued and read as one), and the Mann-Whitney test compares batch medians (the method
  of batch means). Such a verdict is within-run only (`basis` "within-run"), and says so: it
  cannot see drift between runs.

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

The statistics (Mann-Whitney, block bootstrap, Student's t) are stats.py.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from parity.harness.core.model import TIMING_INTERPRET, UsageError
from parity.harness.core.results import Run
from parity.harness.reporting.report import SECTION_ORDER, SECTION_TITLES, _figure, _missing
from parity.harness.reporting.stats import (  # noqa: F401 - the statistics, named here as before
    Settings,
    block_length,
    mann_whitney_p,
    ratio_interval,
    t_quantile,
    t_two_sided_p,
)
from parity.harness.reporting.verdicts import Verdict, judge, judge_runs  # noqa: F401 - compare's API
from parity.harness.reporting.tables import gpu_label, params_text, worker_unit

VERDICTS = ("faster", "slower", "same", "uncertain")


NOT_COMPARED = "n/a"


def is_regression(row: dict[str, Any] | pd.Series, pct: float, settings: Settings) -> bool:
    """A significant slow-down larger than `pct` percent: p below alpha and the whole interval
    above 1 + pct/100. Interpreter times are not performance and never count."""
    if row["verdict"] == NOT_COMPARED or row["timing"] == TIMING_INTERPRET or pd.isna(row["ratio"]):
        return False
    return row["p"] < settings.alpha and row["ci_low"] > 1 + pct / 100


BASIS_RUNS, BASIS_PARTS, BASIS_WITHIN = "runs", "parts", "within-run"
GEOMEAN_COLUMNS = ["suite", "timing", "cases", *VERDICTS, "no_change", "significant", "geomean", "geomean_low",
                   "geomean_high"]


def _geomean_interval(sig: pd.DataFrame, settings: Settings) -> tuple[float, float, float]:
    """The geometric mean of the significant cases' ratios and its interval at `confidence`.
    Each case's interval is read as a normal one on the log scale (half-width / z is its standard
    error); the mean of n independent logs has standard error sqrt(sum se_i^2) / n. This is the
    uncertainty of the mean of these cases, not of a population of cases."""
    if sig.empty:
        return math.nan, math.nan, math.nan
    logs = np.log(sig["ratio"].astype(float).to_numpy())
    z = NormalDist().inv_cdf(1 - (1 - settings.confidence) / 2)
    width = np.log(sig["ci_high"].astype(float).to_numpy()) - np.log(sig["ci_low"].astype(float).to_numpy())
    se = float(np.sqrt(np.nansum((width / (2 * z)) ** 2))) / len(logs)
    mean = float(logs.mean())
    return math.exp(mean), math.exp(mean - z * se), math.exp(mean + z * se)


@dataclass
class Comparison:
    base: Run  # the first run of each side (its device and id head the tables)
    new: Run
    settings: Settings
    rows: pd.DataFrame  # one row per case present in both sides
    only_base: pd.DataFrame  # suite, op, impl, dtype, case, timing: cases missing from NEW
    only_new: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    base_runs: tuple[Run, ...] = ()
    new_runs: tuple[Run, ...] = ()

    @property
    def within_run_only(self) -> bool:
        """Whether every verdict rests on one run per side (so none sees drift between runs)."""
        judged = self.rows[self.rows["verdict"] != NOT_COMPARED] if not self.rows.empty else self.rows
        return judged.empty or bool((judged["basis"] == BASIS_WITHIN).all())

    def geomeans(self) -> pd.DataFrame:
        """Per suite and timing kind: the count of each verdict, and the geometric mean of the time
        ratios (Fleming and Wallace 1986: the mean of normalized figures is geometric) over the
        significant cases only (`faster` or `slower`), with its interval; NaN when none is
        significant. A mean over `uncertain` cases would headline a change no case supports.
        Interpreter times are left out."""
        rows = self.rows[(self.rows["verdict"] != NOT_COMPARED) & (self.rows["timing"] != TIMING_INTERPRET)]
        out = []
        for (suite, timing), group in rows.groupby(["suite", "timing"], sort=True):
            counts = group["verdict"].value_counts()
            sig = group[group["verdict"].isin(("faster", "slower"))]
            geo, low, high = _geomean_interval(sig, self.settings)
            out.append({"suite": suite, "timing": timing, "cases": len(group),
                        **{v: int(counts.get(v, 0)) for v in VERDICTS},
                        "no_change": int(counts.get("same", 0) + counts.get("uncertain", 0)),
                        "significant": len(sig), "geomean": geo, "geomean_low": low, "geomean_high": high})
        return pd.DataFrame(out, columns=GEOMEAN_COLUMNS)

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


def _block(rec: dict[str, Any]) -> int:
    return block_length((rec.get("time_ms") or {}).get("batches"))


def _describe(rec: dict[str, Any]) -> dict[str, Any]:
    params = rec.get("params") or {}
    return {"key": rec.get("key"), "suite": rec.get("suite"), "op": rec.get("op"), "impl": rec.get("impl"),
            "dtype": params.get("dtype"), "case": params_text(params), "timing": rec.get("timing")}


def _device(run: Run) -> tuple[str | None, str | None]:
    device = run.meta.get("device") or {}
    return device.get("name"), device.get("backend")


def _runs(side: Run | Sequence[Run]) -> tuple[Run, ...]:
    return (side,) if isinstance(side, Run) else tuple(side)


def _judge_case(bs_recs: list[dict], ns_recs: list[dict], settings: Settings, basis: str = "runs") -> dict[str, Any]:
    """The row's figures for one case with `ok` records on both sides: run-level with three runs
    (or parts of a device: GPUs, CPU workers, each one observation as a run is) or more in all,
    else within-run."""
    if len(bs_recs) + len(ns_recs) >= 3:
        base_meds = [float(np.median(_samples(r))) for r in bs_recs]
        new_meds = [float(np.median(_samples(r))) for r in ns_recs]
        v = judge_runs(base_meds, new_meds, settings)
        return dict(base_ms=float(np.median(base_meds)), new_ms=float(np.median(new_meds)), ratio=v.ratio,
                    ci_low=v.low, ci_high=v.high, p=v.p, base_n=len(bs_recs), new_n=len(ns_recs),
                    verdict=v.verdict, basis=basis)
    (b,), (n,) = bs_recs, ns_recs
    bs, ns = _samples(b), _samples(n)
    v = judge(bs, ns, settings, _block(b), _block(n))
    return dict(base_ms=float(np.median(bs)), new_ms=float(np.median(ns)), ratio=v.ratio, ci_low=v.low,
                ci_high=v.high, p=v.p, base_n=len(bs), new_n=len(ns), verdict=v.verdict, basis=BASIS_WITHIN)


def compare(base: Run | Sequence[Run], new: Run | Sequence[Run], settings: Settings = Settings(),
            ignore_devices: bool = False) -> Comparison:
    """Every case of BASE against the same case (same key) of NEW; each side one run or several
    runs of one build (see the module docstring for how several runs are judged)."""
    base_runs, new_runs = _runs(base), _runs(new)
    if not base_runs or not new_runs:
        raise UsageError("compare needs at least one run on each side")
    for side in (base_runs, new_runs):
        ids = [r.meta.get("run_id") or str(Path(r.path).resolve()) for r in side]
        twice = sorted({str(r.path) for r, i in zip(side, ids) if ids.count(i) > 1})
        if twice:  # the same samples twice would pass for zero run-to-run variance
            raise UsageError(f"one run is given twice on one side ({', '.join(twice)}): give each run once")
    devices = {_device(r) for r in base_runs + new_runs}
    side_devices = [{_device(r) for r in side} for side in (base_runs, new_runs)]
    if any(len(d) > 1 for d in side_devices) and not ignore_devices:
        raise UsageError("the runs of one side ran on different devices: " + ", ".join(
            f"{r.path} on {_device(r)[0]}" for r in base_runs + new_runs))
    if len(devices) > 1 and not ignore_devices:
        raise UsageError(f"{base_runs[0].path} ran on {_device(base_runs[0])[0]}, {new_runs[0].path} on "
                         f"{_device(new_runs[0])[0]}: compare is for one device across software versions; use "
                         "parity report BASE NEW for devices side by side, or --ignore-devices")
    base_by = _by_key(base_runs)
    new_by = _by_key(new_runs)
    rows = []
    unit = worker_unit(base_runs[0].meta)
    for key, b_all in base_by.items():
        n_all = new_by.get(key)
        if n_all is None:
            continue
        b_parts, n_parts = _parts(b_all), _parts(n_all)
        if set(b_parts) == set(n_parts) and len(b_parts) > 1:
            # The same GPUs or CPU workers on both sides: each part against itself, a row each
            hosts = len({h for h, _ in b_parts})
            rows += [_row(b_parts[p], n_parts[p], settings, BASIS_RUNS, gpu_label(b_parts[p][0], hosts, unit))
                     for p in b_parts]
        else:  # parts on one side only, or different ones: each part's median one observation of the device
            parted = len(b_all) > len(base_runs) or len(n_all) > len(new_runs)
            rows.append(_row(b_all, n_all, settings, BASIS_PARTS if parted else BASIS_RUNS, None))
    columns = ["key", "suite", "op", "impl", "dtype", "case", "timing"]
    row_columns = columns + ["part", "base_status", "new_status", "new_timing", "base_ms", "new_ms", "ratio", "ci_low",
                             "ci_high", "p", "base_n", "new_n", "verdict", "basis", "note"]
    only_base = pd.DataFrame([_describe(r[0]) for k, r in base_by.items() if k not in new_by], columns=columns)
    only_new = pd.DataFrame([_describe(r[0]) for k, r in new_by.items() if k not in base_by], columns=columns)
    notes = [w for run in base_runs + new_runs for w in run.warnings]  # each names its file already
    return Comparison(base=base_runs[0], new=new_runs[0], settings=settings,
                      rows=pd.DataFrame(rows, columns=row_columns), only_base=only_base, only_new=only_new,
                      notes=notes, base_runs=base_runs, new_runs=new_runs)


def _by_key(runs: tuple[Run, ...]) -> dict[str, list[dict[str, Any]]]:
    """Each case's records, one per run that holds it, and in a run over several GPUs or CPU
    workers one per part (host, GPU), in the runs' order; a part's last record of a case wins."""
    out: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for r in {(r["key"], r.get("host"), r.get("gpu_index")): r for r in run.records if "key" in r}.values():
            out.setdefault(r["key"], []).append(r)
    return out


def _parts(records: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """A case's records by the part (host, GPU or worker) that ran them; (None, None) outside a run over several."""
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault((r.get("host"), r.get("gpu_index")), []).append(r)
    return out


def _row(b_all: list[dict], n_all: list[dict], settings: Settings, basis: str, part: str | None) -> dict[str, Any]:
    """One row of the comparison: a case (on one part of a device, where `part` names it) in both sides."""
    b, n = b_all[0], n_all[0]
    row = {**_describe(b), "part": part, "base_status": b.get("status"), "new_status": n.get("status"),
           "new_timing": n.get("timing"), "base_ms": None, "new_ms": None, "ratio": math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "base_n": 0, "new_n": 0,
           "verdict": NOT_COMPARED, "basis": None, "note": None}
    timings = {r.get("timing") for r in b_all + n_all}
    b_ok = [r for r in b_all if r.get("status") == "ok" and _samples(r)]
    n_ok = [r for r in n_all if r.get("status") == "ok" and _samples(r)]
    bad = next((r for r in n_all + b_all if r.get("status") != "ok"), None)
    if len(timings) > 1:
        row["note"] = f"timed differently ({b.get('timing')} vs {n.get('timing')}): not compared"
    elif bad is not None:
        b_bad = next((r for r in b_all if r.get("status") != "ok"), b)
        n_bad = next((r for r in n_all if r.get("status") != "ok"), n)
        row.update(base_status=b_bad.get("status"), new_status=n_bad.get("status"))
        row["note"] = f"status {b_bad.get('status')} -> {n_bad.get('status')}"
        why = n_bad.get("reason") if n_bad.get("status") != "ok" else b_bad.get("reason")
        if why:
            row["note"] += f": {why}"
    elif not b_ok or not n_ok or len(b_ok) < len(b_all) or len(n_ok) < len(n_all):
        row["note"] = "no samples recorded"
    else:
        row.update(_judge_case(b_ok, n_ok, settings, basis))
        if b.get("timing") == TIMING_INTERPRET:
            row["note"] = "interpreter times: not performance"
    return row


def _change(ratio: float) -> str:
    """pyperf's wording: 1.25x slower / 1.25x faster, from a time ratio."""
    if isinstance(ratio, float) and math.isnan(ratio):
        return "-"
    if ratio >= 1:
        return f"{ratio:.3g}x slower"
    return f"{1 / ratio:.3g}x faster"


def _headline(g: pd.Series) -> str:
    """The per-suite headline: the counts first, a change only where some case is significant."""
    counts = f"{g['faster']} faster, {g['slower']} slower, {g['no_change']} no significant change"
    if not g["significant"]:
        return counts
    return f"{counts}; significant cases {_change(g['geomean'])}"


def _label(run: Run, runs: tuple[Run, ...] = ()) -> str:
    ids = [r.meta.get("run_id") for r in runs] if len(runs) > 1 else [run.meta.get("run_id")]
    return f"{_device(run)[0]} ({', '.join(str(i) for i in ids)})"


def _basis_text(c: Comparison) -> str:
    """How the verdicts were reached, for the tables' titles."""
    if c.within_run_only:
        return ("within-run only: one run per side, interval by block bootstrap over batches, "
                "Mann-Whitney p; drift between runs is not seen (give several runs per side: A1,A2,A3 B1,B2,B3)")
    parts = (not c.rows.empty) and bool((c.rows["basis"] == BASIS_PARTS).any())
    return (f"from run-to-run variance over {len(c.base_runs)}/{len(c.new_runs)} runs"
            + (" and the spread between the parts (GPUs, CPU workers) of a device, each part's median one "
               "observation" if parts else "")
            + " (t-test on log medians, t interval); cases with one run per side within-run only")


def tables(c: Comparison) -> list[tuple[str, list[dict[str, str]]]]:
    """Titled tables for report.render: cases per timing kind, geometric means, one-sided cases."""
    s = c.settings
    out = []
    head = f"{_label(c.base, c.base_runs)} -> {_label(c.new, c.new_runs)}"
    rows = c.rows
    if not rows.empty:
        order = {k: i for i, k in enumerate(SECTION_ORDER)}
        for timing in sorted(rows["timing"].unique(), key=lambda t: (order.get(t, len(order)), str(t))):
            group = rows[rows["timing"] == timing]
            with_parts, unit = group["part"].notna().any(), worker_unit(c.base.meta)
            title = (f"{head}: {SECTION_TITLES.get(timing, timing)}; time ratio new/base with its "
                     f"{s.confidence:.0%} interval, verdict at alpha {s.alpha:g}, "
                     f"same within {100 * s.same_within:g} %; {_basis_text(c)}")
            out.append((title, [{
                "suite": r["suite"], "op": r["op"], "impl": r["impl"], "dtype": "" if _missing(r["dtype"]) else r["dtype"],
                "case": r["case"], **({unit: r["part"] or "-"} if with_parts else {}),
                "base ms": _figure(r["base_ms"], ".4g"), "new ms": _figure(r["new_ms"], ".4g"),
                "new/base": _figure(r["ratio"], ".3f"),
                "interval": "-" if math.isnan(r["ci_low"]) else f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                "p": _figure(r["p"], ".2g"),
                "n": "-" if not r["base_n"] else f"{r['base_n']}/{r['new_n']}" + (f" {r['basis']}" if r["basis"] in (BASIS_RUNS, BASIS_PARTS) else ""),
                "verdict": r["verdict"], "note": "" if _missing(r["note"]) else r["note"],
            } for _, r in group.iterrows()]))
    geo = c.geomeans()
    if not geo.empty:
        each = f"; each (case, {worker_unit(c.base.meta)}) counts" if rows["part"].notna().any() else ""
        out.append((f"{head}: verdicts per suite; geometric mean of the time ratios over the significant "
                    f"(faster or slower) cases only, with its {s.confidence:.0%} interval{each}", [{
            "suite": g["suite"], "timing": g["timing"], "cases": str(g["cases"]),
            "faster": str(g["faster"]), "slower": str(g["slower"]), "no significant change": str(g["no_change"]),
            "geomean new/base": ("-" if math.isnan(g["geomean"]) else f"{g['geomean']:.3f}"),
            "interval": ("-" if math.isnan(g["geomean"]) else f"[{g['geomean_low']:.3f}, {g['geomean_high']:.3f}]"),
            "change": _headline(g)} for _, g in geo.iterrows()]))
    for title, frame in ((f"only in BASE {_label(c.base, c.base_runs)}", c.only_base),
                         (f"only in NEW {_label(c.new, c.new_runs)}", c.only_new)):
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
    per_part = not rows.empty and rows["part"].notna().any()  # a row per GPU or worker of each case
    text = (f"{rows['key'].nunique()} case(s) in both runs, {len(rows)} (case, {worker_unit(c.base.meta)}) pairs"
            if per_part else f"{len(rows)} case(s) in both runs") + (f": {', '.join(parts)}" if parts else "")
    text += f"; {len(c.only_base)} only in BASE, {len(c.only_new)} only in NEW"
    if c.within_run_only and not rows.empty:
        text += "; verdicts within-run only (one run per side)"
    return text
