"""The spread between GPUs of one run (`--all-gpus`, `parity submit`): which GPU and host each
record came from, the same case's time on every GPU, and the GPUs that fall behind their peers.

A report section, so it reads records only: the report and the HTML page take it from here, never
from the multi-GPU runner (scaleout/multigpu.py).
"""
from __future__ import annotations

import statistics
import sys
from typing import Any

from parity.harness.core.model import TIMING_INTERPRET
from parity.harness.reporting.tables import gpu_label, params_text, render, worker_unit

BEHIND_THRESHOLD = 0.03  # a GPU more than 3 % slower than the median of its peers is called out


def spread(records, threshold: float = BEHIND_THRESHOLD, unit: str = "GPU") -> tuple[list[dict[str, str]], list[str]]:
    """Per case run on two or more GPUs: min, median and max time and the GPUs more than
    `threshold` behind the median (rate lost: 1 - t_median / t_gpu); per GPU, the median of that
    over the cases, called out above the threshold. Interpreter timings are no performance: left out."""

    by_case: dict[str, dict[str, Any]] = {}
    hosts = len({r.get("host") for r in records if r.get("gpu_index") is not None})
    for rec in records:
        t = (rec.get("time_ms") or {}).get("median")
        if rec.get("gpu_index") is None or rec.get("status") != "ok" or not t or rec.get("timing") == TIMING_INTERPRET:
            continue
        entry = by_case.setdefault(rec["key"], {"rec": rec, "times": {}})
        entry["times"][gpu_label(rec, hosts, unit)] = t
    rows, behind_by_gpu = [], {}
    for entry in by_case.values():
        times = entry["times"]
        if len(times) < 2:
            continue
        med = statistics.median(times.values())
        behind = {gpu: 1 - med / t for gpu, t in times.items()}
        for gpu, b in behind.items():
            behind_by_gpu.setdefault(gpu, []).append(b)
        late = sorted((b, gpu) for gpu, b in behind.items() if b > threshold)
        rec = entry["rec"]
        rows.append({"suite": rec["suite"], "op": rec["op"], "impl": rec["impl"],
                     "dtype": (rec.get("params") or {}).get("dtype") or "", "case": params_text(rec.get("params") or {}),
                     f"{unit}s": str(len(times)),
                     "time ms (min / median / max)": f"{min(times.values()):.4g} / {med:.4g} / {max(times.values()):.4g}",
                     "spread": f"{100 * (max(times.values()) - min(times.values())) / med:.1f} %",
                     f"behind > {100 * threshold:g} %": ", ".join(f"{gpu} ({100 * b:.1f} %)" for b, gpu in reversed(late))})
    callouts = []
    for gpu, values in sorted(behind_by_gpu.items()):
        typical = statistics.median(values)
        if typical > threshold:
            late = sum(v > threshold for v in values)
            callouts.append(f"{gpu} runs {100 * typical:.1f} % behind the median of its peers "
                            f"(median over {len(values)} cases; more than {100 * threshold:g} % behind in {late})")
    return rows, callouts


def extra_tables(runs) -> list[tuple[str, list[dict[str, str]]]]:
    """The sections a run over several GPUs adds to the report: the spread, then collectives."""
    from parity.harness.reporting import collective_report

    tables = []
    for run in runs:
        unit = worker_unit(run.meta)
        rows, callouts = spread(run.records, unit=unit)
        if rows:
            title = f"Spread between {unit}s ({run.meta.get('run_id')}): the same case on every {unit}"
            if callouts:
                title += "; " + "; ".join(callouts)
            tables.append((title, rows))
    return tables + collective_report.tables(runs)


def print_extra(runs, console) -> None:
    """After a run: the spread and collectives tables on the console, the GPUs behind on stderr."""
    render(extra_tables(runs), "text", console)
    for line in spread_warnings(runs):
        print(f"parity: warning: {line}", file=sys.stderr)


def spread_warnings(runs) -> list[str]:
    """The GPUs called out for being behind their peers, one line each, over all the runs."""
    return [line for run in runs for line in spread(run.records, unit=worker_unit(run.meta))[1]]
