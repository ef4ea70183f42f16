"""`parity estimate`: a model's inference step from its kernels, on every GPU asked for.

One step (core/llm.step) is a list of kernels with their work. Each kernel's time on a device is
its roofline time (core/roofline) over an efficiency, taken in this order:
1. measured: RUN holds the same op at the same or a near shape (each GEMM dimension, or the
   attention context, within a factor of 2) on this very device;
2. carried: RUN measured it on another device; its efficiency is carried across the software
   stacks as `parity project` does (reporting/project.carry_factor);
3. prior: the device's published achieved efficiency for the kernel's op class (core/priors):
   HBM copy for a memory-bound kernel, the GEMM or attention class for a compute-bound one;
   measured figures, or the vendor's trend for a part without them;
4. assumed: the all-reduce runs at the interconnect's per-direction peak (no published all-reduce
   efficiency is in the priors), ring algorithm: 2 (n - 1) / n of the payload per GPU.
The step is the sum of its kernels (no overlap: an upper bound on the time of a stack that
overlaps communication). Memory: weights + KV cache + a runtime reserve, stated (default 10 %,
vLLM's default gpu_memory_utilization of 0.9). Prices come from core/prices;
usd_per_mtok = usd_per_gpu_hour x 1e6 / (3600 x tokens_per_s_per_gpu), as InferenceX computes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parity.harness.core import llm, prices, priors, roofline, specs
from parity.harness.core.model import TIMING_INTERPRET, UsageError
from parity.harness.core.results import Run

TP_SIZES = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_RESERVE = 0.10  # vLLM's gpu_memory_utilization defaults to 0.9 (vllm EngineArgs)
NEAR = 2.0  # a measured shape counts for a kernel when each dimension is within this factor


@dataclass(frozen=True)
class Request:
    model: str
    phase: str
    batch: int
    context: int
    dtype: str
    output_tokens: int = 0
    tp: int | None = None
    reserve: float = DEFAULT_RESERVE

    def check(self) -> None:
        if self.batch < 1 or self.context < 1:
            raise UsageError("--batch and --context must be at least 1")
        if self.output_tokens < 0:
            raise UsageError("--output-tokens must be 0 or more")
        if self.tp is not None and self.tp not in TP_SIZES:
            raise UsageError(f"--tp must be one of {', '.join(map(str, TP_SIZES))}")
        if not 0 <= self.reserve < 1:
            raise UsageError("--reserve must be a fraction between 0 and 1")


@dataclass(frozen=True)
class Source:
    """What a run measured: GPU records by kind, with the spec they were measured on."""
    spec: Any
    gemm: tuple[tuple[tuple[int, int, int], str, float, dict], ...]  # (m, n, k), math class, efficiency, rec
    attention: tuple[tuple[str, int, int, float, dict], ...]  # op, seq_k, head_dim, efficiency, rec


def source_of(run: Run) -> Source:
    """The run's timed GPU records with their measured efficiency; a CPU run is refused."""
    from parity.harness.reporting import project  # here, not above: pandas is no part of a refusal

    spec = project.source_spec(run)
    gemm, attention = [], []
    for rec in run.records:
        if rec.get("status") != "ok" or rec.get("timing") == TIMING_INTERPRET or roofline.emulated_format(rec):
            continue
        roof = roofline.roof(rec.get("work") or {}, spec)
        if roof is None:
            continue
        eff = roof.seconds / (rec["time_ms"]["median"] * 1e-3)
        if not 0 < eff <= 1:
            continue  # above the roof: a measurement error, never carried
        p = rec.get("params") or {}
        if rec.get("suite") == "gemm" and all(isinstance(p.get(k), int) for k in "mnk"):
            cls = project.GEMM_CLASS.get((rec.get("work") or {}).get("math_dtype") or p.get("dtype") or "")
            if cls:
                gemm.append(((p["m"], p["n"], p["k"]), cls, eff, rec))
        elif rec.get("suite") == "attention" and p.get("direction", "fwd") == "fwd":
            attention.append((rec.get("op"), int(p.get("seq_k") or 0), int(p.get("head_dim") or 0), eff, rec))
    return Source(spec, tuple(gemm), tuple(attention))


def _near(a: float, b: float) -> bool:
    return a > 0 and b > 0 and max(a, b) / min(a, b) <= NEAR


def nearest_gemm(source: Source, math_class: str | None, shape: tuple):
    """(efficiency, record, exact) of the run's GEMM of `math_class` nearest to `shape` (each of m,
    n, k within NEAR; the least sum of relative distances), or None."""
    best = None
    for have, cls, eff, rec in source.gemm:
        if cls == math_class and all(_near(a, b) for a, b in zip(have, shape)):
            distance = sum(abs((a / b) - 1) for a, b in zip(have, shape))
            if best is None or distance < best[0]:
                best = (distance, eff, rec, tuple(have) == tuple(shape))
    return None if best is None else best[1:]


def _measured(source: Source | None, kernel: llm.Kernel, phase: str):
    """(efficiency, record, exact) of the closest measurement of this kernel in the run, or None."""
    from parity.harness.reporting import project

    if source is None:
        return None
    if kernel.kind == "gemm":
        return nearest_gemm(source, project.GEMM_CLASS.get(kernel.math_dtype), kernel.shape)
    if kernel.kind == "attention":
        seq_k, head_dim = kernel.shape[4], kernel.shape[5]
        found = [(abs(s / seq_k - 1), eff, rec, s == seq_k) for op, s, d, eff, rec in source.attention
                 if op == phase and d == head_dim and _near(s, seq_k)]
        return min(found, key=lambda f: f[0])[1:] if found else None
    return None


def _prior_class(kernel: llm.Kernel, bound: str) -> str | None:
    from parity.harness.reporting import project

    if bound == "memory":
        return "hbm_copy"
    if kernel.kind == "gemm":
        cls = project.GEMM_CLASS.get(kernel.math_dtype)
        return f"gemm_{cls}_best" if cls else None
    if kernel.kind == "attention":
        return "attention_fwd_d128"
    return None


def kernel_time(kernel: llm.Kernel, spec, tp: int, phase: str, source: Source | None) -> dict[str, Any]:
    """One kernel on one device: seconds per call (and its range), its bound, and what it rests on."""
    from parity.harness.reporting import project

    work = kernel.work
    if kernel.kind == "allreduce":
        work = dict(work, bytes_read=2 * (tp - 1) / tp * kernel.bytes, bytes_over="interconnect")
    roof = roofline.roof(work, spec)
    if roof is None:
        raise UsageError(f"{spec.id} has no roof for {kernel.name} ({kernel.math_dtype})")
    row = {"kernel": kernel.name, "calls": kernel.count, "shape": "x".join(map(str, kernel.shape)),
           "bound": roof.bound, "roofline_ms": roof.seconds * 1e3}
    if kernel.kind == "allreduce":
        eff = low = high = 1.0
        basis = "assumed: ring all-reduce at the interconnect's per-direction peak (no published efficiency in the priors)"
    else:
        found = _measured(source, kernel, phase)
        cls = _prior_class(kernel, roof.bound)
        if found is not None:
            measured_eff, rec, exact = found
            how = "same shape" if exact else "near shape"
            if source.spec.id == spec.id:
                eff = low = high = measured_eff
                basis = f"measured ({how}: {rec.get('impl')} {rec.get('key')})"
            else:
                factor, f_low, f_high, carried, _ = project.carry_factor(source.spec.id, spec.id, cls)
                eff, low, high = (min(1.0, measured_eff * f) for f in (factor, f_low, f_high))
                basis = f"carried from the {source.spec.id} run ({how}, {measured_eff:.1%} there; {carried or 'no prior'})"
        else:
            prior = priors.prior(spec.id, cls) if cls else None
            if prior is None:
                raise UsageError(f"no published efficiency for {cls or kernel.name} on {spec.id} or its vendor")
            eff, low, high = prior.efficiency, prior.low, prior.high
            basis = f"roofline x prior {cls} {prior.text}"
    row.update(efficiency=eff, ms=roof.seconds / eff * 1e3, ms_low=roof.seconds_range[0] / high * 1e3,
               ms_high=roof.seconds_range[1] / low * 1e3, basis=basis)
    return row


def _least_gpus(model, req: Request, capacity: float, context: int) -> tuple[int | None, float, float]:
    """The least TP size whose per-GPU weights + KV cache fit in the usable memory."""
    for n in ([req.tp] if req.tp else TP_SIZES):
        try:
            llm.step(model, req.phase, 1, 1, req.dtype, n)  # divisibility of heads, FFN, experts
        except UsageError:
            if req.tp:
                raise
            continue
        weights, kv = llm.memory_bytes(model, req.dtype, n, req.batch, context)
        if weights + kv <= capacity * (1 - req.reserve):
            return n, weights, kv
    n = req.tp or TP_SIZES[-1]
    weights, kv = llm.memory_bytes(model, req.dtype, n, req.batch, context)
    return None, weights, kv


def estimate_device(req: Request, spec, source: Source | None) -> dict[str, Any]:
    model = llm.get(req.model)
    row: dict[str, Any] = {"device": spec.id, "name": spec.name, "status": spec.status, "model": model.id,
                           "phase": req.phase, "batch": req.batch, "context": req.context, "dtype": req.dtype,
                           "output_tokens": req.output_tokens, "gpus": None, "fits": False, "note": None}
    if spec.peak(req.dtype) is None:
        row["note"] = f"{spec.id} has no {req.dtype} peak (no native {req.dtype}): not estimated"
        return row
    capacity = spec.memory_bytes or 0.0
    cache_tokens = req.context + (req.output_tokens if req.phase == "decode" else 0)
    gpus, weights, kv = _least_gpus(model, req, capacity, cache_tokens)
    usable = capacity * (1 - req.reserve)
    row.update(memory_gb_per_gpu=capacity / 1e9, weights_gb_per_gpu=weights / 1e9, kv_cache_gb_per_gpu=kv / 1e9,
               reserve_gb_per_gpu=capacity * req.reserve / 1e9)
    if gpus is None:
        where = f"on {req.tp} GPU(s)" if req.tp else f"on up to {TP_SIZES[-1]} GPUs"
        row["note"] = (f"does not fit {where}: needs {(weights + kv) / 1e9:,.1f} GB per GPU "
                       f"(weights {weights / 1e9:,.1f} + KV cache {kv / 1e9:,.1f}), {usable / 1e9:,.1f} GB usable "
                       f"after the {req.reserve:.0%} reserve")
        return row
    row.update(gpus=gpus, fits=True)
    memory = spec.figure("memory_gb")
    if memory is not None and memory.bounds and memory.bounds[0] < memory.value:
        # an unreleased part with a range of published capacities (MI455X: 288-432 GB): how many GPUs
        # the lowest reading would need, so the memory argument is shown at both ends
        low_gpus, _, _ = _least_gpus(model, req, specs.device_bytes(memory.bounds[0]), cache_tokens)
        row["gpus_at_memory_low"] = low_gpus
        row["note"] = (f"at the lowest published memory ({memory.bounds[0]:g} GB): "
                       + (f"{low_gpus} GPU(s)" if low_gpus else "does not fit"))
    # Decode's attention sees the context grow by one token per output token: its mean is used.
    context = req.context + (req.output_tokens // 2 if req.phase == "decode" else 0)
    step = llm.step(model, req.phase, req.batch, context, req.dtype, gpus)
    kernels = [kernel_time(k, spec, gpus, req.phase, source) for k in step.kernels]
    total = {key: sum(k[key] * k["calls"] for k in kernels) * 1e-3 for key in ("ms", "ms_low", "ms_high")}
    by_bound: dict[str, float] = {}
    for k in kernels:
        by_bound[k["bound"]] = by_bound.get(k["bound"], 0.0) + k["ms"] * k["calls"]
    bound = max(by_bound, key=by_bound.get)
    rate = {key: step.tokens / total[t] / gpus for key, t in
            (("tokens_per_s_per_gpu", "ms"), ("tokens_per_s_per_gpu_low", "ms_high"),
             ("tokens_per_s_per_gpu_high", "ms_low"))}
    row.update(rate, bound=bound, bound_share=by_bound[bound] / sum(by_bound.values()),
               step_ms=total["ms"] * 1e3, step_ms_low=total["ms_low"] * 1e3, step_ms_high=total["ms_high"] * 1e3,
               kernels=kernels,
               kernels_measured=sum(k["basis"].startswith("measured") for k in kernels),
               kernels_carried=sum(k["basis"].startswith("carried") for k in kernels),
               kernels_prior=sum(k["basis"].startswith("roofline") for k in kernels),
               kernels_assumed=sum(k["basis"].startswith("assumed") for k in kernels))
    key = "ms_per_output_token" if req.phase == "decode" else "ttft_ms"
    row.update({key: total["ms"] * 1e3, f"{key}_low": total["ms_low"] * 1e3, f"{key}_high": total["ms_high"] * 1e3})
    price = prices.get(spec.id)
    if price is not None:
        row.update(usd_per_gpu_hour=price.usd_per_gpu_hour, usd_per_gpu_hour_low=price.low,
                   usd_per_gpu_hour_high=price.high, price_projected=price.projected,
                   price_source=" | ".join(price.sources),
                   usd_per_mtok=usd_per_mtok(price.usd_per_gpu_hour, rate["tokens_per_s_per_gpu"]),
                   usd_per_mtok_low=usd_per_mtok(price.low, rate["tokens_per_s_per_gpu_high"]),
                   usd_per_mtok_high=usd_per_mtok(price.high, rate["tokens_per_s_per_gpu_low"]))
    else:
        row["price_source"] = "no sourced price for this device (core/prices/)"
    tdp = spec.value("tdp_w")
    if tdp:
        row.update(tdp_w=tdp, joules_per_token=tdp / rate["tokens_per_s_per_gpu"])
    return row


def usd_per_mtok(usd_per_gpu_hour: float, tokens_per_s_per_gpu: float) -> float:
    """Dollars per million tokens (InferenceX's definition, reference/anchors-2026.md)."""
    return usd_per_gpu_hour * 1e6 / (3600 * tokens_per_s_per_gpu)


def estimate(req: Request, targets: list, run: Run | None = None) -> list[dict[str, Any]]:
    req.check()
    llm.get(req.model)
    source = source_of(run) if run is not None else None
    return [estimate_device(req, spec, source) for spec in targets]


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _range(row: dict, key: str, fmt: str) -> str:
    if row.get(key) is None:
        return "-"
    return f"{format(row[key], fmt)} ({format(row[key + '_low'], fmt)}-{format(row[key + '_high'], fmt)})"


def display_rows(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for r in rows:
        latency = "ms_per_output_token" if r["phase"] == "decode" else "ttft_ms"
        out.append({"device": r["device"], "gpus": _num(r.get("gpus"), "d"), "fits": "yes" if r["fits"] else "no",
                    "tokens/s per GPU": _range(r, "tokens_per_s_per_gpu", ",.1f"),
                    "ms/token" if r["phase"] == "decode" else "TTFT ms": _range(r, latency, ",.2f"),
                    "bound": f"{r['bound']} ({r['bound_share']:.0%})" if r.get("bound") else "-",
                    "$/GPU-h": _num(r.get("usd_per_gpu_hour"), ".2f") + (" (projected)" if r.get("price_projected") else ""),
                    "$/Mtok": _range(r, "usd_per_mtok", ",.3f"),
                    "J/token": _num(r.get("joules_per_token"), ".3g"),
                    "kernels m/c/p/a": (f"{r['kernels_measured']}/{r['kernels_carried']}/{r['kernels_prior']}/"
                                        f"{r['kernels_assumed']}" if r.get("kernels") else "-"),
                    "note": r.get("note") or ""})
    return out


def kernel_rows(row: dict[str, Any]) -> list[dict[str, str]]:
    return [{"kernel": k["kernel"], "calls": str(k["calls"]), "shape": k["shape"], "bound": k["bound"],
             "efficiency": f"{k['efficiency']:.1%}", "ms per step": f"{k['ms'] * k['calls']:.4g}",
             "basis": k["basis"]} for k in row.get("kernels") or []]


def plot(rows: list[dict[str, Any]], title: str):
    """Tokens/s per GPU against $/Mtok, one point per priced device with its ranges as error bars."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from parity.harness.reporting.plots import DPI, Plot

    priced = [r for r in rows if r.get("usd_per_mtok") is not None]
    unpriced = [r["device"] for r in rows if r.get("fits") and r.get("usd_per_mtok") is None]
    note = f"no sourced price: {', '.join(unpriced)}" if unpriced else None
    if not priced:
        return Plot("estimate", title, None, note or "no device fits with a sourced price")
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=DPI)
    for r in priced:
        x, y = r["tokens_per_s_per_gpu"], r["usd_per_mtok"]
        ax.errorbar(x, y, xerr=[[x - r["tokens_per_s_per_gpu_low"]], [r["tokens_per_s_per_gpu_high"] - x]],
                    yerr=[[y - r["usd_per_mtok_low"]], [r["usd_per_mtok_high"] - y]], fmt="o", capsize=4)
        ax.annotate(f"{r['device']} x{r['gpus']}", (x, y), textcoords="offset points", xytext=(6, 6))
    ax.set_xlabel("tokens/s per GPU")
    ax.set_ylabel("$ per million tokens")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Plot("estimate", title, buf.getvalue(), note)


def html_page(rows: list[dict[str, Any]], title: str) -> str:
    from html import escape

    from parity.harness.reporting import html

    parts = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
             f"<style>{html.STYLE}</style></head><body><h1>{escape(title)}</h1>",
             "<p class=\"lede\">Each kernel's time from a run where measured, carried across stacks, or the roofline "
             "times the published achieved efficiency; ranges from the spec and prior spreads and the price range.</p>",
             html.figure(plot(rows, title)), html.table("per device", display_rows(rows))]
    for r in rows:
        if r.get("kernels"):
            parts.append(html.table(f"{r['device']}: one step on {r['gpus']} GPU(s)", kernel_rows(r)))
    sources = sorted({r["price_source"] for r in rows if r.get("usd_per_gpu_hour") is not None})
    parts.append("<footer><h3>prices</h3><ul>" + "".join(f"<li>{escape(s)}</li>" for s in sources) + "</ul></footer>")
    parts.append(f"<script>{html.SCRIPT}</script></body></html>\n")
    return "".join(parts)
