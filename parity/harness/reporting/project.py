"""Projection of a run onto another device: keep each case's measured efficiency, apply the
target's roofline.

efficiency = t_roofline(work, source spec) / t_measured; t_projected = t_roofline(work, target) /
efficiency. The target's published range (variants of an unreleased part) gives the projected
range. When the target has been measured too, the projection is checked against that run.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from parity.harness.core import roofline, specs
from parity.harness.core.model import TIMING_INTERPRET, UsageError
from parity.harness.reporting.report import _figure, params_text
from parity.harness.core.results import Run


def _rate(rec: dict[str, Any], seconds: float) -> float:
    """The record's headline rate (its metric) at a time of `seconds`."""
    gbps, tflops = roofline.rates(rec.get("work") or {}, seconds)
    return gbps if rec.get("metric") == "GB/s" else tflops


def project(run: Run, target) -> pd.DataFrame:
    device = run.meta.get("device", {})
    if device.get("backend") not in ("cuda", "rocm"):
        raise UsageError(f"{run.path} ran on {device.get('name')} ({device.get('backend')}): only GPU runs, "
                         "timed with device events, can be projected")
    source = specs.match_device(device)
    if source is None:
        raise UsageError(f"{run.path} ran on {device.get('name')}, which matches no spec: its efficiency "
                         "cannot be carried to another device")
    rows = []
    for rec in run.records:
        if rec.get("status") != "ok" or rec.get("timing") == TIMING_INTERPRET:
            continue
        work = rec.get("work") or {}
        measured_s = rec["time_ms"]["median"] * 1e-3
        row = {"suite": rec.get("suite"), "op": rec.get("op"), "impl": rec.get("impl"),
               "dtype": (rec.get("params") or {}).get("dtype"), "case": params_text(rec.get("params") or {}),
               "key": rec.get("key"), "metric": rec.get("metric"), "source_spec": source.id,
               "target_spec": target.id, "measured_ms": measured_s * 1e3,
               "measured_rate": _rate(rec, measured_s), "note": None}
        src, tgt = roofline.roof(work, source), roofline.roof(work, target)
        emulated = roofline.emulated_format(rec) is not None
        if emulated or src is None or tgt is None:
            row["note"] = ("emulated path: not projected" if emulated else
                           f"{'source' if src is None else 'target'} spec has no roof for {work.get('math_dtype')}")
            rows.append(row)
            continue
        efficiency = src.seconds / measured_s
        row.update(efficiency=efficiency, source_bound=src.bound, target_bound=tgt.bound,
                   target_roof=tgt.figure, target_confidence=tgt.confidence)
        if efficiency > 1.0:
            row["note"] = f"measured above the source spec's roof ({efficiency:.0%}): a measurement error, not projected"
            rows.append(row)
            continue
        fast, slow = (t / efficiency for t in tgt.seconds_range)
        projected = tgt.seconds / efficiency
        row.update(projected_ms=projected * 1e3, projected_ms_low=fast * 1e3, projected_ms_high=slow * 1e3,
                   projected_rate=_rate(rec, projected), projected_rate_low=_rate(rec, slow),
                   projected_rate_high=_rate(rec, fast))
        rows.append(row)
    return pd.DataFrame(rows)


def check_against(projection: pd.DataFrame, actual: Run) -> pd.DataFrame:
    """Adds the measured time of the same case on the target and the projection's error."""
    measured = {rec["key"]: rec["time_ms"]["median"] for rec in actual.records
                if rec.get("status") == "ok" and rec.get("timing") != TIMING_INTERPRET}
    out = projection.copy()
    out["actual_ms"] = out["key"].map(measured)
    if "projected_ms" in out:
        out["error_pct"] = 100 * (out["projected_ms"] / out["actual_ms"] - 1)
    return out


def display_rows(df: pd.DataFrame) -> list[dict[str, str]]:
    rows = []
    for _, r in df.iterrows():
        unit = r["metric"]
        row = {"suite": r["suite"], "op": r["op"], "impl": r["impl"], "dtype": r["dtype"] or "",
               "case": r["case"], "measured": f"{_figure(r['measured_rate'], ',.1f')} {unit}",
               "efficiency": _figure(r.get("efficiency"), ".1%"),
               "projected": f"{_figure(r.get('projected_rate'), ',.1f')} {unit}" if not pd.isna(r.get("projected_rate", float("nan"))) else "-",
               "range": (f"{_figure(r.get('projected_rate_low'), ',.1f')} - {_figure(r.get('projected_rate_high'), ',.1f')}"
                         if not pd.isna(r.get("projected_rate_low", float("nan"))) else "-"),
               "projected ms": _figure(r.get("projected_ms"), ".4g"),
               "target roof": r.get("target_roof") if isinstance(r.get("target_roof"), str) else "-"}
        if "actual_ms" in df:
            row["actual ms"] = _figure(r.get("actual_ms"), ".4g")
            error = _figure(r.get("error_pct"), "+.1f")
            row["error"] = error if error == "-" else f"{error} %"
        row["note"] = r["note"] if isinstance(r["note"], str) else ""
        rows.append(row)
    return rows
