"""The serving estimate as rows and tables: per device one row (or one per concurrency of a curve).

Every figure carries _low and _high from the calibration band of core/serving/validation (the
residuals of the calibration subset), never of zero width; prices widen the dollar figures by
their own range. usd_per_m_output_tokens = usd_per_gpu_hour x 1e6 / (3600 x output tokens/s per
GPU) (InferenceX's convention: the GPU's whole cost over its output tokens);
usd_per_m_input_tokens = the prefill share of the GPU time over the input tokens.
"""
from __future__ import annotations

import math
from typing import Any

from parity.harness.core import prices
from parity.harness.core.serving import engines, scenario, sweep, validation
from parity.harness.core.serving.burst import solve  # a burst, else scenario.solve
from parity.harness.core.serving.scenario import Scenario

RATES = ("output_tokens_per_s_per_gpu", "tokens_per_s_per_gpu", "tokens_per_s_per_user")
TIMES = ("tpot_ms", "ttft_ms", "e2e_ms")


def _row(scn: Scenario, spec, mem, res, price_override: float | None) -> dict[str, Any]:
    eng = scenario.setup(scn, spec)[0]  # the engine with the scenario's overrides and limits
    row: dict[str, Any] = {"device": spec.id, "name": spec.name, "status": spec.status, "model": scn.model,
                           "dtype": scn.dtype, "gpus": scn.gpus, "tp": scn.tp, "ep": scn.ep,
                           "attention_dp": scn.attention_dp, "isl": scn.isl, "osl": scn.osl, "engine": scn.engine,
                           "request_rate": scn.request_rate, "requests": scn.requests,
                           "fits": bool(mem.fits and res is not None), "memory_gb_per_gpu": mem.capacity_gb,
                           "memory_needed_gb_per_gpu": mem.needed_gb, "weights_gb_per_gpu": mem.weights_gb,
                           "max_concurrency": mem.max_concurrency, "note": None,
                           "limits": {"from": scn.limits, "max_num_seqs": eng.max_num_seqs,
                                      "max_num_batched_tokens": eng.max_num_batched_tokens},
                           "fixed_costs": {"host_base_ms": eng.host_base_ms, "host_per_seq_us": eng.host_per_seq_us,
                                           "async_scheduling": eng.async_scheduling,
                                           "mixed_prefill": eng.mixed_prefill, "front_end_ms": eng.front_end_ms,
                                           "runtime": eng.runtime, **engines.fitted()[1],
                                           "eager_launch_us": scenario.params(None, eng).eager_launch_us}}
    if res is None:
        row["note"] = (f"does not fit: needs {mem.needed_gb:,.1f} GB per GPU (weights {mem.weights_gb:,.1f} GB + "
                       f"workspace + one sequence's KV cache), {mem.usable_gb:,.1f} GB usable")
        return row
    values = {"output_tokens_per_s_per_gpu": res.output_tps_per_gpu, "tokens_per_s_per_gpu": res.tps_per_gpu,
              "tokens_per_s_per_user": 1.0 / res.tpot_s, "tpot_ms": res.tpot_s * 1e3, "ttft_ms": res.ttft_s * 1e3,
              "e2e_ms": res.e2e_s * 1e3}
    for key, value in values.items():
        low, high = validation.bounds(value, key in TIMES)
        row.update({key: value, f"{key}_low": low, f"{key}_high": high})
    row.update(concurrency=res.concurrency, concurrency_low=res.concurrency, concurrency_high=res.concurrency,
               prefill_share=res.prefill_share, decode_step_ms={k: v * 1e3 for k, v in res.parts.items()},
               note=scenario.add_note(res.note, mem.note) if mem.note else (res.note or None))
    if scn.request_rate is not None and res.concurrency < mem.max_concurrency:
        # Open loop below saturation: the throughput is the offered load, an input like a closed
        # loop's concurrency; the uncertainty is in the latency, and so in the concurrency the
        # rate holds (Little's law: C = rate x e2e).
        for key in ("output_tokens_per_s_per_gpu", "tokens_per_s_per_gpu"):
            row[f"{key}_low"] = row[f"{key}_high"] = row[key]
        row.update(concurrency_low=min(mem.max_concurrency, scn.request_rate * row["e2e_ms_low"] * 1e-3),
                   concurrency_high=min(mem.max_concurrency, scn.request_rate * row["e2e_ms_high"] * 1e-3))
        said = f"open loop at {scn.request_rate:g} requests/s: the throughput is that load; the range is in the latency"
        row["note"] = scenario.add_note(row.get("note") or "", said)
    price = prices.get(spec.id)
    if price_override is not None:
        usd, lo, hi, src = price_override, price_override * 0.999, price_override * 1.001, "--price (given)"
    elif price is not None:
        usd, lo, hi, src = price.usd_per_gpu_hour, price.low, price.high, " | ".join(price.sources)
    else:
        row["price_source"] = "no sourced price for this device (core/prices/; give --price SPEC=USD)"
        return row
    out, out_lo, out_hi = (row["output_tokens_per_s_per_gpu"], row["output_tokens_per_s_per_gpu_low"],
                           row["output_tokens_per_s_per_gpu_high"])
    inp = out * scn.isl / scn.osl
    share = max(res.prefill_share, 1e-6)
    row.update(usd_per_gpu_hour=usd, usd_per_gpu_hour_low=lo, usd_per_gpu_hour_high=hi, price_source=src,
               usd_per_m_output_tokens=usd * 1e6 / (3600 * out),
               usd_per_m_output_tokens_low=lo * 1e6 / (3600 * out_hi),
               usd_per_m_output_tokens_high=hi * 1e6 / (3600 * out_lo),
               usd_per_m_input_tokens=usd * share * 1e6 / (3600 * inp),
               usd_per_m_input_tokens_low=lo * share * 1e6 / (3600 * inp * out_hi / out),
               usd_per_m_input_tokens_high=hi * share * 1e6 / (3600 * inp * out_lo / out))
    return row


def estimate(scn: Scenario, targets: list, concurrencies: list[int] | None, price_overrides: dict[str, float],
             slo_tpot_ms: float | None = None, run=None) -> list[dict[str, Any]]:
    """One row per device (per device and concurrency for a list); with an SLO, the best point.
    With a `run`, its kernels replace the model's on the run's own device (reporting/serving_measured)."""
    scn.check()
    kernels = None
    if run is not None:
        from parity.harness.reporting.serving_measured import RunKernels
        kernels = RunKernels(run)
    rows = []
    for spec in targets:
        first = len(rows)
        _device_rows(rows, scn, spec, concurrencies, price_overrides.get(spec.id), slo_tpot_ms, kernels)
        if kernels is not None and spec.id == kernels.device:
            for row in rows[first:]:
                said = kernels.note() or "the run measured none of this step's kernels at a near shape: the model's"
                row["kernels_from_run"] = bool(kernels.hits)
                row["note"] = "; ".join(n for n in (row.get("note"), said) if n)
    return rows


def _device_rows(rows, scn, spec, concurrencies, override, slo_tpot_ms, measured) -> None:
    first = len(rows)
    _priced_rows(rows, scn, spec, concurrencies, override, slo_tpot_ms, measured)
    if scn.dtype != "bf16" and spec.peak(scn.dtype) is None:
        # Weight-only quantization where the tensor cores lack the format: the engines serve it so
        # (vLLM's Marlin W4A16/W8A16 kernels, TensorRT-LLM's gpt-oss on Hopper), and kernels.gemm_s
        # reads the weights at their width and computes at the BF16 rate.
        said = f"{spec.id} has no {scn.dtype} tensor cores: {scn.dtype} weights computed at the BF16 rate (weight-only)"
        for row in rows[first:]:
            row["note"] = "; ".join(n for n in (row.get("note"), said) if n)


def _priced_rows(rows, scn, spec, concurrencies, override, slo_tpot_ms, measured) -> None:
    if slo_tpot_ms is not None:
        mem, _ = solve(scn, spec, measured=measured)
        best = sweep.best_under_slo(scn, spec, slo_tpot_ms, concurrencies=concurrencies, measured=measured)
        row = _row(scn, spec, mem, best[1] if best else None, override)
        if best is None:
            row["note"] = f"no concurrency meets TPOT <= {slo_tpot_ms:g} ms"
        row["slo_tpot_ms"] = slo_tpot_ms
        rows.append(row)
    elif concurrencies and len(concurrencies) > 1:
        mem, points = sweep.curve(scn, spec, concurrencies, measured=measured)
        rows += [_row(scn, spec, mem, res, override) for _, res in points] or [_row(scn, spec, mem, None, override)]
    else:
        from dataclasses import replace
        one = replace(scn, concurrency=(concurrencies[0] or None) if concurrencies else None)
        mem, res = solve(one, spec, measured=measured)
        rows.append(_row(one, spec, mem, res, override))


def _usd_format(value: float) -> str:
    """Three significant digits, never an exponent: a fixed '.3f' printed 0.000 for the input price
    of a short prompt on a fast GPU (tenths of a thousandth of a dollar per million tokens)."""
    if not value > 0 or not math.isfinite(value):
        return ",.3f"
    return f",.{max(0, 2 - math.floor(math.log10(value)))}f"


def _r(row: dict, key: str, fmt: str | None = None) -> str:
    """value (low-high); fmt None: dollars at three significant digits of the value."""
    if row.get(key) is None:
        return "-"
    fmt = fmt or _usd_format(row[key])
    return f"{format(row[key], fmt)} ({format(row[key + '_low'], fmt)}-{format(row[key + '_high'], fmt)})"


def display_rows(rows: list[dict]) -> list[dict[str, str]]:
    return [{"device": r["device"], "C": f"{r['concurrency']:,.0f}" if r.get("concurrency") else "-",
             "max C": f"{r.get('max_concurrency', 0):,}", "fits": "yes" if r["fits"] else "no",
             "out tok/s/GPU": _r(r, "output_tokens_per_s_per_gpu", ",.0f"),
             "tok/s/user": _r(r, "tokens_per_s_per_user", ",.1f"), "TPOT ms": _r(r, "tpot_ms", ",.1f"),
             "TTFT ms": _r(r, "ttft_ms", ",.0f"), "$/Mtok out": _r(r, "usd_per_m_output_tokens"),
             "$/Mtok in": _r(r, "usd_per_m_input_tokens"), "note": r.get("note") or ""} for r in rows]


def validation_report() -> dict:
    rows = validation.rows()
    return {"entries": rows, "subsets": validation.summary(rows), "skipped": validation.skipped()}


def validation_display(report: dict) -> list[tuple[str, list[dict[str, str]]]]:
    entries = [{"id": r["id"], "subset": r["subset"], "scenario": r["scenario"], "metric": r["metric"],
                "published": f"{r['published']:,.4g}", "estimate": f"{r['estimate']:,.4g}",
                "range": f"{r['low']:,.4g}-{r['high']:,.4g}", "error": f"{r['error']:+.1%}",
                "inside": "yes" if r["inside"] else "no", "source": r["source"][:60]} for r in report["entries"]]
    subsets = [{"subset": k, "entries": str(v["entries"]), "median |error|": f"{v['median_abs_error']:.1%}",
                "worst |error|": f"{v['worst_abs_error']:.1%}", "inside": f"{v['share_inside']:.0%}"}
               for k, v in report["subsets"].items()]
    skipped = [{"id": s["id"], "reason": s["reason"]} for s in report["skipped"]]
    return [("published serving figures against the estimate", entries), ("per subset", subsets), ("skipped", skipped)]
