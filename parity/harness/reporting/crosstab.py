"""Several runs side by side: one row per case, each device's rate and its % of its OWN spec, and
each device's rate over the first one's, so that "MI300X vs H200 on FP8 GEMM at 8192^3" is a row.

Rows come from report.frame, so the normalization is the report's. Timing kinds are never mixed
(one table per kind; GPU events beside the CPU's wall clock would compare a GPU with a CPU through
two different clocks), and interpreter timings, which get no rates, get no side-by-side table.
"""
from __future__ import annotations

import pandas as pd

from parity.harness.core.model import TIMING_INTERPRET
from parity.harness.reporting.report import SECTION_ORDER, SECTION_TITLES, _above_peak, _missing, _pct, _rate, render

CASE_COLUMNS = ("suite", "op", "impl", "dtype", "params")


def _column_labels(group: pd.DataFrame) -> dict[tuple, str]:
    """A column per (run, device): the device name, with the run id where one device ran twice. The
    GPUs or workers of one run over several are parts of one device, not devices: one column (their
    spread is the spread table's)."""
    pairs = list(dict.fromkeys(zip(group["run_id"], group["device_name"])))
    names = [device for _, device in pairs]
    return {pair: (pair[1] if names.count(pair[1]) == 1 else f"{pair[1]} [{pair[0]}]") for pair in pairs}


def _rate_value(row) -> float | None:
    value = row["gbps"] if row["metric"] == "GB/s" else row["tflops"]
    return None if _missing(value) or _above_peak(row) else float(value)


def _one(rows: list) -> object:
    """The case on one device: the record itself, or over its parts the one of median rate."""
    if len(rows) == 1:
        return rows[0]
    rated = sorted((r for r in rows if _rate_value(r) is not None), key=_rate_value)
    return rated[(len(rated) - 1) // 2] if rated else rows[0]


def side_by_side(df: pd.DataFrame) -> list[tuple[str, list[dict[str, str]]]]:
    """Titled tables (for report.render): one per timing kind that has at least two devices. A
    column of "% of spec" that no device has a spec for is left out, and the title says so."""
    if df.empty:
        return []
    df = df if "device_name" in df else df.assign(device_name=df["device"])
    timed = df[(df["status"] == "ok") & (df["timing"] != TIMING_INTERPRET)]
    out = []
    order = {k: i for i, k in enumerate(SECTION_ORDER)}
    for timing in sorted(timed["timing"].dropna().unique(), key=lambda t: (order.get(t, len(order)), t)):
        group = timed[timed["timing"] == timing]
        labels = _column_labels(group)
        if len(labels) < 2:
            continue
        parts = {pair: group[(group["run_id"] == pair[0]) & (group["device_name"] == pair[1])]["gpu_index"].nunique()
                 for pair in labels}
        first = next(iter(labels.values()))
        cells: dict[tuple, dict[str, list]] = {}  # case -> {label: rows}, in sweep order
        for _, r in group.iterrows():
            case = tuple("" if _missing(r[c]) else r[c] for c in CASE_COLUMNS)
            cells.setdefault(case, {}).setdefault(labels[(r["run_id"], r["device_name"])], []).append(r)
        with_spec = [label for pair, label in labels.items() if _spec_of(group, pair) != "no spec"]
        rows = []
        alone = sum(len(by_label) < 2 for by_label in cells.values())
        for case, by_rows in cells.items():
            if len(by_rows) < 2:
                continue  # measured on one device only: nothing to put beside it
            by_label = {label: _one(rs) for label, rs in by_rows.items()}
            row = dict(zip(("suite", "op", "impl", "dtype", "case"), case))
            base = by_label.get(first)
            for label in labels.values():
                r = by_label.get(label)
                row[f"{label} rate"] = "-" if r is None else _rate(r)
                if label in with_spec:
                    row[f"{label} % of spec"] = "-" if r is None or _above_peak(r) else _pct(r["pct_of_spec"])
            for label in list(labels.values())[1:]:
                r = by_label.get(label)
                a = None if base is None else _rate_value(base)
                b = None if r is None else _rate_value(r)
                row[f"{label} / {first}"] = "-" if not a or b is None else f"{b / a:.2f}x"
            rows.append(row)
        specs = ", ".join(f"{label}: {_spec_of(group, pair)}" for pair, label in labels.items())
        several = [f"{label}: median of {parts[pair]}" for pair, label in labels.items() if parts[pair] > 1]
        title = (f"Side by side: {SECTION_TITLES.get(timing, timing)}; each device against its own spec "
                 f"({specs}{'; no % of spec without one' if len(with_spec) < len(labels) else ''}); "
                 f"the ratio is of rates, above 1 is faster than {first}"
                 + (f"; a device run over several parts shows the part of median rate ({', '.join(several)})"
                    if several else "")
                 + (f"; {alone} case(s) measured on one device only are left out" if alone else ""))
        if rows:
            out.append((title, rows))
    return out


def _spec_of(group: pd.DataFrame, pair: tuple) -> str:
    ids = group[(group["run_id"] == pair[0]) & (group["device_name"] == pair[1])]["spec_id"].dropna().unique()
    return ids[0] if len(ids) else "no spec"


def to_markdown(df: pd.DataFrame) -> str:
    """The side-by-side tables as markdown; empty where the frame holds one device."""
    return render(side_by_side(df), "md")
