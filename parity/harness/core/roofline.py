"""The roofline of one call on one spec: the time its work needs at the spec's peaks.

t = max(flops / peak_flops, bytes / bandwidth) (Williams, Waterman and Patterson, "Roofline",
CACM 2009). Whichever term is larger bounds the case: compute or memory. The measured efficiency
of a case is t_roofline / t_measured, which is also its fraction of the bounding peak.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Roof:
    seconds: float  # the roofline time at the spec's primary figures
    bound: str  # "compute" | "memory" | "interconnect"
    figure: str  # what bounds it, e.g. "bf16 peak 989.4 TFLOPS" or "memory 4800 GB/s"
    confidence: str
    seconds_range: tuple[float, float]  # over the spec's published range (fastest, slowest)


def roof(work: dict[str, Any], spec, math_dtype: str | None = None) -> Roof | None:
    """The roofline of `work` on `spec`; None where the spec gives neither roof for it.

    `math_dtype` overrides the work's (an emulated path is bounded by the dtype that runs).
    """
    flops = work.get("flops") or 0
    nbytes = (work.get("bytes_read") or 0) + (work.get("bytes_written") or 0)
    dtype = math_dtype or work.get("math_dtype")
    peak = spec.peak(dtype)
    bandwidth, where = spec.figure("memory_bandwidth_tbps"), "memory"
    if work.get("bytes_over") == "interconnect":  # a collective's bus bytes, per direction
        link = spec.figure("interconnect_gbps_per_direction")
        bandwidth, where = (None if link is None else _tbps(link)), "interconnect"
    terms = []  # (seconds, slowest-case seconds, fastest-case seconds, bound, label, confidence)
    if peak is not None and flops:
        lo, hi = peak.bounds
        terms.append((flops / (peak.value * 1e12), flops / (lo * 1e12), flops / (hi * 1e12), "compute",
                      f"{dtype} peak {peak.value:g} TFLOPS", peak.confidence))
    if bandwidth is not None and bandwidth.value and nbytes:
        lo, hi = bandwidth.bounds
        terms.append((nbytes / (bandwidth.value * 1e12), nbytes / (lo * 1e12), nbytes / (hi * 1e12), where,
                      f"{where} {bandwidth.value * 1e3:g} GB/s{' per direction' if where != 'memory' else ''}",
                      bandwidth.confidence))
    if not terms:
        return None
    seconds, _, _, bound, label, confidence = max(terms)
    return Roof(seconds=seconds, bound=bound, figure=label, confidence=confidence,
                seconds_range=(max(t[2] for t in terms), max(t[1] for t in terms)))


def _tbps(fig):
    """A GB/s figure as the TB/s one the memory roof uses (same sources, range and confidence)."""
    scale = lambda v: None if v is None else v / 1e3  # noqa: E731
    return replace(fig, value=scale(fig.value), range=None if fig.range is None else tuple(map(scale, fig.range)))


def rates(work: dict[str, Any], seconds: float) -> tuple[float, float]:
    """Decimal GB/s (all bytes read and written) and TFLOPS of one call that took `seconds`."""
    nbytes = (work.get("bytes_read") or 0) + (work.get("bytes_written") or 0)
    return nbytes / seconds / 1e9, (work.get("flops") or 0) / seconds / 1e12


def emulated_format(record: dict[str, Any]) -> str | None:
    """The format an emulated record would wrongly be held to: its math dtype is still the format
    it emulates (a suite that upcasts declares the dtype that really runs, which is allowed)."""
    dtype = (record.get("work") or {}).get("math_dtype")
    if record.get("path") == "emulated" and dtype == (record.get("params") or {}).get("dtype"):
        return dtype
    return None
