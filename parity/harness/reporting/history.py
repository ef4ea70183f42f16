"""`parity history [RESULTS_DIR]`: each case's trend over every published run of one device, with
the compare verdicts (compare.py: bootstrap interval and Mann-Whitney) between neighbouring runs.

Reads the results folder only: every folder under it holding a run.json, grouped by device name
and ordered by start time. Interpreter times are correctness runs, not performance: left out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from parity.harness.core import safeio
from parity.harness.core.model import TIMING_INTERPRET, UsageError
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, ResultsError, Run, read_run
from parity.harness.reporting.stats import Settings
from parity.harness.reporting.tables import params_text
from parity.harness.reporting.verdicts import judge  # compare's verdict, without compare's pandas


def find_runs(results: Path, skipped: list[str] | None = None) -> list[Run]:
    """Every run under `results`, oldest first (start time, then run id). A damaged run is left
    out, and why goes into `skipped`: one bad folder does not hide a device's whole history."""
    if not results.is_dir():
        raise UsageError(safeio.not_a_folder(results, "a results folder") or f"{results}: no such results folder")
    runs = []
    for path in sorted(results.glob(f"**/{RUN_FILE}")):
        if not (path.parent / MEASUREMENTS_FILE).exists():
            continue
        try:
            runs.append(read_run(path.parent))
        except ResultsError as exc:
            if skipped is None:
                raise
            skipped.append(f"{exc} (left out of the history)")
    return sorted(runs, key=lambda r: (str(r.meta.get("started_at") or ""), str(r.meta.get("run_id") or "")))


def by_device(runs: list[Run]) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = {}
    for run in runs:
        out.setdefault((run.meta.get("device") or {}).get("name") or "unknown device", []).append(run)
    return out


def _timed(run: Run) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in run.records
            if r.get("status") == "ok" and r.get("timing") != TIMING_INTERPRET and (r.get("time_ms") or {}).get("median")}


def _samples(rec: dict[str, Any]) -> list[float]:
    t = rec["time_ms"]
    return [float(s) for s in t.get("samples") or ()] or [float(t["median"])]


def trend(runs: list[Run], settings: Settings = Settings()) -> list[dict[str, Any]]:
    """One entry per case timed in at least one run: its median per run (None where absent) and the
    verdict of each run against the previous run that timed it."""
    timed = [_timed(run) for run in runs]
    keys = list(dict.fromkeys(k for t in timed for k in t))
    out = []
    for key in keys:
        rec = next(t[key] for t in timed if key in t)
        points, previous = [], None
        for run, t in zip(runs, timed):
            cur = t.get(key)
            point = {"run_id": run.meta.get("run_id"), "median_ms": None, "verdict": None, "ratio": None}
            if cur is not None:
                point["median_ms"] = cur["time_ms"]["median"]
                if previous is not None and previous.get("timing") == cur.get("timing"):
                    v = judge(_samples(previous), _samples(cur), settings)
                    point.update(verdict=v.verdict, ratio=v.ratio)
                previous = cur
            points.append(point)
        medians = [p["median_ms"] for p in points if p["median_ms"] is not None]
        out.append({"key": key, "suite": rec.get("suite"), "op": rec.get("op"), "impl": rec.get("impl"),
                    "dtype": (rec.get("params") or {}).get("dtype"), "case": params_text(rec.get("params") or {}),
                    "timing": rec.get("timing"), "points": points,
                    "last_over_first": medians[-1] / medians[0] if len(medians) > 1 else None})
    return out


def rows(entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Display rows: a column per run, "median ms" and the verdict against the previous run."""
    out = []
    for e in entries:
        row = {"suite": e["suite"], "op": e["op"], "impl": e["impl"], "dtype": e["dtype"] or "", "case": e["case"]}
        for i, p in enumerate(e["points"]):
            cell = "-" if p["median_ms"] is None else f"{p['median_ms']:.4g}"
            if p["verdict"] in ("faster", "slower"):
                cell += f" {p['verdict']} ({p['ratio']:.3f}x)"
            row[f"{i + 1}: {p['run_id']}"] = cell
        ratio = e["last_over_first"]
        row["last/first"] = "-" if ratio is None else f"{ratio:.3f}"
        out.append(row)
    return out


MAX_PLOTTED_CASES = 12  # the cases that moved most; a plot of hundreds of lines shows nothing


def plot(device: str, runs: list[Run], entries: list[dict[str, Any]]):
    """Each case's median over its first median, run by run (the cases that moved most): a Plot."""
    from parity.harness.reporting.plots import Plot, problem

    name = "history-" + "".join(c if c.isalnum() else "-" for c in device.lower()).strip("-")
    title = f"{device}: median time over the first run's, per case"
    moved = sorted((e for e in entries if e["last_over_first"] is not None),
                   key=lambda e: -abs(e["last_over_first"] - 1))[:MAX_PLOTTED_CASES]
    if problem() or not moved:
        return Plot(name, title, None, problem() or "no case was timed in two runs")
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.6))
    for e in moved:
        first = next(p["median_ms"] for p in e["points"] if p["median_ms"] is not None)
        xs = [i for i, p in enumerate(e["points"]) if p["median_ms"] is not None]
        ax.plot(xs, [e["points"][i]["median_ms"] / first for i in xs], marker="o",
                label=f"{e['suite']} {e['op']} {e['impl']} {e['dtype'] or ''} {e['case']}"[:60])
    ax.axhline(1.0, color="#888", linewidth=0.8)
    ax.set_xticks(range(len(runs)), [str(r.meta.get("run_id")) for r in runs], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("median time / first median (lower is faster)")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)  # beside, not over the data
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    note = f"the {len(moved)} cases that moved most" if len(entries) > len(moved) else None
    return Plot(name, title, buf.getvalue(), note)


def page(groups: dict[str, list[Run]], trends: dict[str, list[dict[str, Any]]]) -> str:
    """One self-contained HTML page: per device, the trend plot and the history table."""
    from html import escape

    from parity.harness.reporting import html

    body = []
    for device, entries in trends.items():
        runs = groups[device]
        body += [f"<h2>{escape(device)}</h2>", html.figure(plot(device, runs, entries)),
                 html.table(f"median ms over {len(runs)} run(s), oldest first; faster/slower against the previous "
                            "run (compare's verdict)", rows(entries))]
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>parity history</title>"
            f"<style>{html.STYLE}</style></head><body>\n<h1>parity history</h1>\n" + "\n".join(body)
            + f"\n<script>{html.SCRIPT}</script>\n</body></html>\n")
