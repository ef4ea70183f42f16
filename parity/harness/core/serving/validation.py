"""The published serving figures (validation.json) against the estimate.

validation.json keeps every figure of the shared set with its source, the scenario it is read as
(model, GPU, parallelism, lengths, concurrency, engine, and what the source left unstated, in
`assumptions`), and its subset: `calibration` (the only figures core/serving/fit.py may see),
`check` (never fitted) or `skipped` (with the reason). The split was made once, by source family,
and is part of the file.

error = estimate / published - 1. The range of an estimate comes from the calibration residuals:
r = log(estimated speed / published speed) (speed: a throughput, or the inverse of a time), each
calibration entry estimated by a fit on the others (leave-one-out); their 10th and 90th
percentiles bound the truth.
"""
from __future__ import annotations

import functools
import json
import math
import statistics
from pathlib import Path

from parity.harness.core import specs
from parity.harness.core.serving import burst, engines, sweep
from parity.harness.core.serving.scenario import Scenario

DATA = Path(__file__).with_name("validation.json")
SUBSETS = ("calibration", "check")
TIME_METRICS = {"tpot_ms": 1e3, "ttft_ms": 1e3, "e2e_s": 1.0}
RATE_METRICS = ("output_tps_system", "output_tps_per_gpu", "slo_output_tps_system", "tps_per_user")
MIN_HALF_WIDTH = 0.05  # a range is never narrower than +-5 %


@functools.lru_cache(maxsize=None)
def entries() -> tuple[dict, ...]:
    return tuple(json.loads(DATA.read_text(encoding="utf-8"))["entries"])


def scenario(entry: dict) -> Scenario:
    s = entry["scenario"]
    conc = s["concurrency"]
    scn = Scenario(model=s["model"], dtype=s["dtype"], gpus=s["gpus"], tp=s["tp"], isl=s["isl"], osl=s["osl"],
                   engine=s["engine"], concurrency=None if conc in (None, "max") else int(conc), ep=s["ep"],
                   attention_dp=s["attention_dp"], mode=s["mode"], request_rate=s["request_rate"],
                   overrides=tuple(sorted(s["overrides"].items())), requests=s.get("requests"),
                   limits=s.get("limits", "engine"))
    scn.check()  # an entry is input too: a bad reading is one UsageError line, not a silent default
    return scn


def is_time(metric: str) -> bool:
    return metric in TIME_METRICS


def estimate(entry: dict, values: dict | None = None) -> float:
    """The estimate of the entry's published figure, in the figure's unit."""
    s = entry["scenario"]
    scn = scenario(entry)
    spec = specs.get(s["spec"])
    metric = s["metric"]
    if metric == "slo_output_tps_system":
        best = sweep.best_under_slo(scn, spec, s["slo"]["tpot_ms"], s["slo"].get("ttft_ms"), values=values)
        return 0.0 if best is None else best[1].output_tps_per_gpu * scn.gpus
    _, res = burst.solve(scn, spec, values=values)
    if res is None:
        return 0.0
    if metric == "output_tps_system":
        return res.output_tps_per_gpu * scn.gpus
    if metric == "output_tps_per_gpu":
        return res.output_tps_per_gpu
    if metric == "tps_per_user":
        return 1.0 / res.tpot_s
    if metric == "tpot_ms":
        return res.tpot_s * 1e3
    if metric == "ttft_ms":
        return res.ttft_s * 1e3
    if metric == "e2e_s":
        return res.e2e_s
    raise ValueError(f"unknown metric {metric}")


def speed_residual(entry: dict, value: float) -> float:
    """log(estimated speed / published speed); +inf where the estimate is 0 (does not fit)."""
    published = float(entry["published"]["value"])
    if value <= 0:
        return math.inf
    ratio = value / published
    return -math.log(ratio) if is_time(entry["scenario"]["metric"]) else math.log(ratio)


def band() -> tuple[float, float]:
    """(q_low, q_high) of the speed residuals on the calibration subset, from calibration.toml."""
    b = engines.calibration().get("band", {})
    return float(b.get("q_low", -0.2)), float(b.get("q_high", 0.2))


def bounds(value: float, time_like: bool, q: tuple[float, float] | None = None) -> tuple[float, float]:
    """(low, high) of a figure: the truth lies at value x exp(-r) for a speed, value x exp(r) for a
    time, r within the calibration band; never narrower than +-MIN_HALF_WIDTH."""
    q_low, q_high = band() if q is None else q
    q_low, q_high = min(q_low, -MIN_HALF_WIDTH), max(q_high, MIN_HALF_WIDTH)
    if time_like:
        return value * math.exp(q_low), value * math.exp(q_high)
    return value * math.exp(-q_high), value * math.exp(-q_low)


def rows(values: dict | None = None, subsets=SUBSETS, q: tuple[float, float] | None = None) -> list[dict]:
    out = []
    for e in entries():
        if e["subset"] not in subsets:
            continue
        s = e["scenario"]
        est = estimate(e, values)
        pub = float(e["published"]["value"])
        low, high = bounds(est, is_time(s["metric"]), q) if est > 0 else (0.0, 0.0)
        out.append({"id": e["id"], "source": e["source"], "subset": e["subset"], "family": e["family"],
                    "metric": s["metric"], "unit": e["published"]["unit"], "device": s["spec"], "model": s["model"],
                    "scenario": _describe(s), "assumptions": s["assumptions"], "published": pub, "estimate": est,
                    "low": low, "high": high, "error": est / pub - 1, "inside": bool(low <= pub <= high)})
    return out


def skipped() -> list[dict]:
    return [{"id": e["id"], "source": e["source"], "reason": e["skip"]} for e in entries() if e["subset"] == "skipped"]


def _describe(s: dict) -> str:
    par = f"TP{s['tp']}" + (f" EP{s['ep']}" if s["ep"] > 1 else "") + (" attention-DP" if s["attention_dp"] else "")
    conc = (f"{s['request_rate']:g} req/s" if s["request_rate"] else
            f"SLO TPOT {s['slo']['tpot_ms']:g} ms" if s["slo"] else
            f"a burst of {s['requests']}" if s.get("requests") else f"C={s['concurrency'] or 'max'}")
    if s.get("limits", "engine") != "engine":
        conc += f", {s['limits']} limits"
    return (f"{s['model']} {s['dtype']} {s['gpus']}x{s['spec']} {par} {s['isl']}/{s['osl']} {conc} {s['engine']}"
            + (" static batch" if s["mode"] == "static" else ""))


def summary(result_rows: list[dict]) -> dict:
    out = {}
    for subset in SUBSETS:
        errs = [abs(r["error"]) for r in result_rows if r["subset"] == subset]
        if not errs:
            continue
        inside = [r["inside"] for r in result_rows if r["subset"] == subset]
        out[subset] = {"entries": len(errs), "median_abs_error": statistics.median(errs), "worst_abs_error": max(errs),
                       "share_inside": sum(inside) / len(inside)}
    return out
