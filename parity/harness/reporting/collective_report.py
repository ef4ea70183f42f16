"""The collectives table: nccl-tests' columns (size, time, algorithm and bus bandwidth) and the bus
bandwidth as a share of the spec's interconnect bandwidth per direction.

algbw = S / t and busbw = algbw x factor (nccl-tests `doc/PERFORMANCE.md`; GB = 1e9 B); the suite
declares S as `size_bytes` and S x factor as the call's interconnect bytes (`work.bytes_read` with
`bytes_over = "interconnect"`), so busbw is the report's rate of the record. Bus bandwidth is
what a link's speed bounds: it is compared with the per-direction figure of the spec the run's
device matches. A run on the CPU (gloo) matches no spec, and says so.
"""
from __future__ import annotations

from typing import Any

from parity.harness.core import roofline
from parity.harness.core.model import TIMING_INTERPRET
from parity.harness.core.results import is_collective
from parity.harness.reporting.tables import human_bytes, spec_for


def bandwidths(rec: dict[str, Any]) -> tuple[float, float]:
    """(algbw, busbw) in GB/s from the record's median time."""
    seconds = rec["time_ms"]["median"] * 1e-3
    busbw, _ = roofline.rates(rec.get("work") or {}, seconds)
    return _size(rec) / seconds / 1e9, busbw


def _size(rec: dict[str, Any]) -> float | None:
    """The collective's payload S in bytes, or None where the record does not state a usable one."""
    size = rec["params"].get("size_bytes")
    ok = isinstance(size, (int, float)) and not isinstance(size, bool) and 0 < size < 1e30
    return size if ok else None


def tables(runs) -> list[tuple[str, list[dict[str, str]]]]:

    out = []
    for run in runs:
        records = [r for r in run.records if is_collective(r) and r.get("status") == "ok"
                   and r.get("timing") != TIMING_INTERPRET and (r.get("time_ms") or {}).get("median")
                   and _size(r) is not None]
        if not records:
            continue
        spec = spec_for(run)
        link = spec.figure("interconnect_gbps_per_direction") if spec else None
        rows = []
        for rec in records:
            algbw, busbw = bandwidths(rec)
            t = rec["time_ms"]
            spread = ["-" if t.get(k) is None else f"{1e3 * t[k]:.4g}" for k in ("p10", "p90")]
            row = {"op": rec["op"], "dtype": str(rec["params"].get("dtype", "-")),
                   "ranks": str(rec["params"].get("ranks", "-")), "size": human_bytes(_size(rec)),
                   "time us (median [p10, p90])": f"{1e3 * t['median']:.4g} [{spread[0]}, {spread[1]}]",
                   "algbw GB/s": f"{algbw:.3g}", "busbw GB/s": f"{busbw:.3g}"}
            if link is not None and link.value:
                share = busbw / link.value
                row["busbw % of link"] = f"{100 * share:.1f} %" if share <= 1 else "above spec: a measurement error"
            rows.append(row)
        device = run.meta.get("device", {}).get("name")
        against = (f"busbw against {spec.id}'s interconnect, {link.value:g} GB/s per direction ({link.confidence})"
                   if link is not None and link.value else
                   "no spec matches this device (gloo on a CPU, or an unknown GPU): bus bandwidth is not normalized")
        out.append((f"{device}: collectives, nccl-tests bandwidths (GB = 1e9 B); {against}", rows))
    return out
