"""Projection of a run onto another device: keep what the run measured about the kernel, replace
what belongs to the platform, apply the target's roofline.

efficiency = t_roofline(work, source spec) / t_measured. Efficiency belongs to the software stack
as much as to the chip, so by default (`stack="carry"`) it is carried across:
efficiency_target = efficiency x (target's achieved / source's achieved) for the case's op class,
both from the sourced priors (core/priors.py); the range spans the priors' spread. `stack="keep"`
keeps the measured efficiency unchanged (right within one part, wrong across vendors).
t_projected = t_roofline(work, target) / efficiency_target; the target's published range (variants
of an unreleased part) widens the projected range. When the target has been measured too, the
projection is checked against that run. `validate()` is the leave-one-out check of the priors.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from parity.harness.core import identity, priors, roofline, specs
from parity.harness.core.model import TIMING_INTERPRET, UsageError
from parity.harness.core.results import Run
from parity.harness.reporting.report import _figure
from parity.harness.reporting.tables import params_text


def _rate(rec: dict[str, Any], seconds: float) -> float:
    """The record's headline rate (its metric) at a time of `seconds`."""
    gbps, tflops = roofline.rates(rec.get("work") or {}, seconds)
    return gbps if rec.get("metric") == "GB/s" else tflops


GEMM_CLASS = {"bf16": "bf16", "fp16": "bf16", "fp8": "fp8", "e4m3": "fp8", "e5m2": "fp8", "fp4": "fp4",
              "mxfp4": "fp4", "nvfp4": "fp4"}
STACKS = ("carry", "keep")


def op_class(rec: dict[str, Any], bound: str) -> str | None:
    """The priors' op class whose achieved efficiency stands for this record's platform share.

    A memory-bound case (a stream op, attention decode, a GEMM with few rows) runs at the HBM's
    achieved rate; a compute-bound GEMM or attention forward at its class's. None: no prior (FP32
    GEMM, attention backward)."""
    params = rec.get("params") or {}
    if bound == "memory":
        return "hbm_copy" if rec.get("op") == "copy" else "hbm_triad"
    if rec.get("suite") == "gemm":
        dtype = GEMM_CLASS.get((rec.get("work") or {}).get("math_dtype") or params.get("dtype") or "")
        if dtype is None:
            return None
        square = all(params.get(k) == 8192 for k in ("m", "n", "k"))
        return f"gemm_{dtype}_{'8192' if square else 'best'}"
    if rec.get("suite") == "attention" and params.get("direction", "fwd") == "fwd":
        return "attention_fwd_d128"
    return None


def carry_factor(source: str, target: str, cls: str | None) -> tuple[float, float, float, str, str]:
    """(factor, low, high, carried, assumed): the target stack's achieved efficiency over the
    source's for `cls`, with the range from the priors' spread, and what it rests on in words."""
    if source == target:
        return 1.0, 1.0, 1.0, "same part: nothing carried", ""
    src = priors.prior(source, cls) if cls else None
    tgt = priors.prior(target, cls) if cls else None
    if src is None or tgt is None:
        missing = source if src is None else target
        why = f"no prior for {cls} on {missing}" if cls else "no op class with published figures"
        return 1.0, 1.0, 1.0, "", f"measured efficiency kept ({why})"
    factor = tgt.efficiency / src.efficiency
    carried = f"{cls}: {source} {src.text} -> {target} {tgt.text}"
    assumed = f"{target} prior from its vendor's trend" if tgt.basis == "trend" else ""
    return factor, tgt.low / src.high, tgt.high / src.low, carried, assumed


def source_spec(run: Run):
    """The spec a run was measured on; a CPU run or an unknown card is refused (only GPU runs,
    timed with device events, carry an efficiency)."""
    device = run.meta.get("device", {})
    if device.get("backend") not in ("cuda", "rocm"):
        raise UsageError(f"{run.path} ran on {device.get('name')} ({device.get('backend')}): only GPU runs, "
                         "timed with device events, carry an efficiency to another device")
    source = identity.match_device(device)
    if source is None:
        raise UsageError(f"{run.path} ran on {device.get('name')}, which matches no spec: its efficiency "
                         "cannot be carried to another device")
    return source


def project(run: Run, target, stack: str = "carry") -> pd.DataFrame:
    if stack not in STACKS:
        raise UsageError(f"stack must be one of {', '.join(STACKS)}")
    source = source_spec(run)
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
        cls = op_class(rec, tgt.bound)
        factor, low, high, carried, assumed = (carry_factor(source.id, target.id, cls) if stack == "carry" else
                                               (1.0, 1.0, 1.0, "", "measured efficiency kept (--stack keep)"))
        eff, eff_low, eff_high = (min(1.0, efficiency * f) for f in (factor, low, high))
        peaks = f"{target.id} roofline ({tgt.confidence})"
        row.update(op_class=cls, stack_factor=factor, target_efficiency=eff, target_efficiency_low=eff_low,
                   target_efficiency_high=eff_high, measured=f"kernel efficiency {efficiency:.1%} on {source.id}",
                   carried=carried, assumed="; ".join(x for x in (assumed, peaks) if x))
        fast, slow = tgt.seconds_range[0] / eff_high, tgt.seconds_range[1] / eff_low
        projected = tgt.seconds / eff
        row.update(projected_ms=projected * 1e3, projected_ms_low=fast * 1e3, projected_ms_high=slow * 1e3,
                   projected_rate=_rate(rec, projected), projected_rate_low=_rate(rec, slow),
                   projected_rate_high=_rate(rec, fast))
        rows.append(row)
    return pd.DataFrame(rows)


def validate() -> list[dict[str, Any]]:
    """Leave one out: for every op class and every ordered pair of devices with published figures,
    hide the target's figures from the priors, project each published figure of the source onto
    the target (the source's figure is the "measured" run, its efficiency carried by the ratio of
    the priors, the target's prior then coming from its vendor's trend), and compare with the
    target's published figures (their median; `in_range` when the projected range meets them)."""
    db = priors.load_all()
    rows = []
    for cls in priors.OP_CLASSES:
        devices = db.measured_devices(cls)
        for s in devices:
            for t in devices:
                if s == t:
                    continue
                hidden = frozenset({t})
                src, tgt = priors.prior(s, cls, db=db), priors.prior(t, cls, exclude=hidden, db=db)
                if tgt is None:
                    continue
                peak = priors.peak_of(specs.get(t), cls)
                actual = [f.value for f in db.used(t, cls)]
                actual_mid = float(pd.Series(actual).median())
                for fig in db.used(s, cls):
                    eff = fig.efficiency * tgt.efficiency / src.efficiency
                    low = fig.efficiency * tgt.low / src.high * peak
                    high = fig.efficiency * tgt.high / src.low * peak
                    rows.append({"op_class": cls, "source": s, "target": t,
                                 "same_vendor": specs.get(s).vendor == specs.get(t).vendor,
                                 "source_figure": fig.value, "source_stack": fig.stack,
                                 "projected": eff * peak, "low": low, "high": high,
                                 "published": actual_mid, "published_min": min(actual), "published_max": max(actual),
                                 "error_pct": 100 * (eff * peak / actual_mid - 1),
                                 # the old law (--stack keep): the source's efficiency on the target's peak
                                 "kept_error_pct": 100 * (fig.efficiency * peak / actual_mid - 1),
                                 "in_range": low <= max(actual) and high >= min(actual),
                                 "target_prior": tgt.label})
    return rows


def validation_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median and worst absolute error, within a vendor and across vendors, per op class and overall."""
    df = pd.DataFrame(rows)
    out = []
    if df.empty:
        return out
    df["abs_error"] = df["error_pct"].abs()
    for cls, group in [*df.groupby("op_class", sort=False), ("all", df)]:
        for same, label in ((True, "within a vendor"), (False, "across vendors")):
            part = group[group["same_vendor"] == same]
            if part.empty:
                continue
            out.append({"op_class": cls, "pairs": label, "projections": len(part),
                        "median_abs_error_pct": float(part["abs_error"].median()),
                        "worst_abs_error_pct": float(part["abs_error"].max()),
                        "kept_median_abs_error_pct": float(part["kept_error_pct"].abs().median()),
                        "kept_worst_abs_error_pct": float(part["kept_error_pct"].abs().max()),
                        "in_range_pct": float(100 * part["in_range"].mean())})
    return out


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame as JSON-ready rows (NaN as None)."""
    return [{k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in row.items()}
            for row in df.astype(object).to_dict(orient="records")]


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
               "target roof": r.get("target_roof") if isinstance(r.get("target_roof"), str) else "-",
               "carried": r.get("carried") if isinstance(r.get("carried"), str) else "",
               "assumed": r.get("assumed") if isinstance(r.get("assumed"), str) else ""}
        if "actual_ms" in df:
            row["actual ms"] = _figure(r.get("actual_ms"), ".4g")
            error = _figure(r.get("error_pct"), "+.1f")
            row["error"] = error if error == "-" else f"{error} %"
        row["note"] = r["note"] if isinstance(r["note"], str) else ""
        rows.append(row)
    return rows
