"""What a run says at a glance: its device, spec, versions, case counts and headline figures.

Used by the HTML report's summary and by the published index (results/README.md). Headlines are
taken from report.frame, so a number above a spec's peak (a measurement error) is never one. For
the stream suite the headline is the HBM figure: the best rate at working sets of at least four
times the last-level cache, which cannot stay in any cache (parity.suites.stream).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from parity.harness.core.model import TIMING_INTERPRET
from parity.harness.core.results import Run
from parity.harness.reporting.plots import case_params
from parity.harness.reporting.report import _above_peak, _missing, _pct, rate_text

HBM_FACTOR = 4  # working sets this many times the LLC and above are HBM numbers


@dataclass(frozen=True)
class RunSummary:
    run: Run
    device: dict[str, Any]
    spec_id: str | None
    counts: dict[str, int]
    headlines: tuple[str, ...]  # e.g. "stream HBM 4,312 GB/s (89.8 % of h200)"

    @property
    def date(self) -> str:
        return str(self.run.meta.get("started_at") or "")[:10]

    def versions(self) -> str:
        v = self.run.meta.get("versions") or {}
        names = (("torch", "torch"), ("triton", "triton"), ("cuda_runtime", "CUDA"), ("hip_runtime", "HIP"),
                 ("driver", "driver"), ("parity", "parity"))
        return ", ".join(f"{label} {v[key]}" for key, label in names if v.get(key))


def _llc(device: dict[str, Any], spec_id: str | None) -> int | None:
    if device.get("llc_bytes"):
        return device["llc_bytes"]
    if spec_id:
        from parity.harness.core import specs

        try:
            return specs.get(spec_id).llc_bytes
        except Exception:  # noqa: BLE001 - no spec, no HBM restriction
            return None
    return None


def headlines(rows: pd.DataFrame, device: dict[str, Any]) -> tuple[str, ...]:
    """The best published rate per suite and metric (per math dtype for TFLOPS), with its % of spec."""
    timed = rows[(rows["status"] == "ok") & (rows["timing"] != TIMING_INTERPRET)]
    if timed.empty:
        checked = rows[rows["validated"].notna()]
        if rows.empty:
            return ()
        return (f"correctness only: {int(checked['validated'].astype(bool).sum())} of {len(rows)} cases checked and "
                "passed (interpreter timings are not performance)",)
    out = []
    spec_ids = timed["spec_id"].dropna().unique()
    spec_id = spec_ids[0] if len(spec_ids) else None
    for (suite, metric), group in timed.groupby(["suite", "metric"], sort=True):
        column = "gbps" if metric == "GB/s" else "tflops"
        group = group[group[column].notna() & ~group.apply(_above_peak, axis=1)]
        label = suite
        if suite == "stream":
            llc = _llc(device, spec_id)
            sizes = group.apply(lambda r: case_params(r).get("working_set_bytes") or 0, axis=1)
            if llc and (sizes >= HBM_FACTOR * llc).any():
                group, label = group[sizes >= HBM_FACTOR * llc], "stream HBM"
        keys = ["math_dtype"] if metric != "GB/s" else []
        for key, sub in (group.groupby(keys, sort=True) if keys else [((None,), group)]):
            if sub.empty:
                continue
            best = sub.loc[sub[column].astype(float).idxmax()]
            dtype = f" {key[0]}" if keys else ""
            unit = "GB/s" if metric == "GB/s" else "TFLOPS"
            pct = "" if _missing(best["pct_of_spec"]) else f" ({_pct(best['pct_of_spec'])} of {best['spec_id']})"
            out.append(f"{label}{dtype} {rate_text(best[column])} {unit}{pct}")
    return tuple(out)


def summarize(runs: list[Run], df: pd.DataFrame) -> list[RunSummary]:
    out = []
    for run in runs:
        rows = df[df["run_id"] == run.meta.get("run_id")] if not df.empty else df
        device = run.meta.get("device") or {}
        counts = {} if rows.empty else {k: int(v) for k, v in rows["status"].value_counts().sort_index().items()}
        spec_ids = [] if rows.empty else rows["spec_id"].dropna().unique()
        out.append(RunSummary(run=run, device=device, spec_id=spec_ids[0] if len(spec_ids) else None,
                              counts=counts, headlines=headlines(rows, device) if not rows.empty else ()))
    return out
