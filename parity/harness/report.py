"""Turns records into tables: the only place where work and time become GB/s and TFLOPS.

Rates are decimal (1 GB/s = 1e9 B/s, 1 TFLOPS = 1e12 FLOP/s) from the median time. Timings taken
different ways are never put in one table: GPU events, the CPU's wall clock for PyTorch, and the
Triton interpreter's wall clock each get their own; the interpreter's get no rates at all, since
they measure the interpreter, not a kernel.
"""
from __future__ import annotations

import io
from typing import Any, Iterable

import pandas as pd

from parity.harness.model import TIMING_EVENTS, TIMING_INTERPRET, TIMING_WALL
from parity.harness.results import Run

SECTION_TITLES = {
    TIMING_EVENTS: "GPU, timed with device events",
    TIMING_WALL: "PyTorch on the CPU, timed with the wall clock",
    TIMING_INTERPRET: ("Triton CPU interpreter, wall clock: these runs check correctness; their times "
                       "measure the interpreter, not a kernel, and get no rates"),
}
SECTION_ORDER = (TIMING_EVENTS, TIMING_WALL, TIMING_INTERPRET)


def human_bytes(n: float) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{int(n)} B"


def params_text(params: dict[str, Any]) -> str:
    parts = []
    for key, value in params.items():
        if key == "dtype":
            continue
        if key.endswith("_bytes"):
            parts.append(f"{key[:-6]}={human_bytes(value)}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def frame(runs: Iterable[Run]) -> pd.DataFrame:
    """One row per record, with the derived rates; `samples` stay in the files, not the frame."""
    rows = []
    for run in runs:
        for rec in run.records:
            t = rec.get("time_ms") or {}
            work = rec.get("work") or {}
            val = rec.get("validation")
            median = t.get("median")
            timed = rec.get("status") == "ok" and median and rec.get("timing") != TIMING_INTERPRET
            seconds = median * 1e-3 if timed else None
            rows.append({
                "run_id": run.meta.get("run_id"),
                "device": rec.get("device"),
                "suite": rec.get("suite"), "op": rec.get("op"), "impl": rec.get("impl"),
                "backend": rec.get("backend"),
                "dtype": rec.get("params", {}).get("dtype"),
                "params": params_text(rec.get("params", {})),
                "timing": rec.get("timing"), "cache": rec.get("cache"), "metric": rec.get("metric"),
                "status": rec.get("status"), "reason": rec.get("reason"),
                "time_ms_median": median, "time_ms_p10": t.get("p10"), "time_ms_p90": t.get("p90"),
                "samples_n": t.get("n"), "noise_rel": t.get("noise_rel"),
                "flops": work.get("flops"), "bytes_read": work.get("bytes_read"),
                "bytes_written": work.get("bytes_written"),
                "gbps": (work.get("bytes_read", 0) + work.get("bytes_written", 0)) / seconds / 1e9 if seconds else None,
                "tflops": work.get("flops", 0) / seconds / 1e12 if seconds else None,
                "validated": None if val is None else bool(val.get("passed")),
                "max_abs_error": None if val is None else val.get("max_abs_error"),
            })
    return pd.DataFrame(rows)


def _rate(row) -> str:
    value = row["gbps"] if row["metric"] == "GB/s" else row["tflops"]
    if value is None or pd.isna(value):
        return "-"
    unit = "GB/s" if row["metric"] == "GB/s" else "TFLOPS"
    return f"{value:,.1f} {unit}" if value >= 10 else f"{value:.3g} {unit}"


def _time(row) -> str:
    if row["time_ms_median"] is None or pd.isna(row["time_ms_median"]):
        return "-"
    return f"{row['time_ms_median']:.4g} [{row['time_ms_p10']:.4g}, {row['time_ms_p90']:.4g}]"


def _outcome(row) -> str:
    if row["status"] == "ok":
        return "ok"
    return f"{row['status']}: {row['reason']}" if row["reason"] else row["status"]


def display_rows(df: pd.DataFrame) -> list[dict[str, str]]:
    return [{
        "suite": r["suite"], "op": r["op"], "impl": r["impl"], "dtype": r["dtype"] or "",
        "case": r["params"], "time ms (median [p10, p90])": _time(r), "n": "" if pd.isna(r["samples_n"]) else str(int(r["samples_n"])),
        "rate": _rate(r),
        "check": {True: "pass", False: "FAIL", None: "-"}[None if pd.isna(r["validated"]) else bool(r["validated"])],
        "status": _outcome(r),
    } for _, r in df.iterrows()]


def sections(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Tables by (timing kind, device), in a fixed order; each row sorted by case."""
    if df.empty:
        return []
    out = []
    df = df.assign(_order=df["timing"].map({k: i for i, k in enumerate(SECTION_ORDER)}).fillna(len(SECTION_ORDER)))
    for (_, device, timing), group in df.groupby(["_order", "device", "timing"], sort=True, dropna=False):
        title = f"{device}: {SECTION_TITLES.get(timing, timing)}"
        out.append((title, group.drop(columns="_order")))
    return out


def to_markdown(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    for title, group in sections(df):
        rows = display_rows(group)
        headers = list(rows[0])
        buf.write(f"### {title}\n\n| " + " | ".join(headers) + " |\n|" + "|".join("---" for _ in headers) + "|\n")
        for row in rows:
            buf.write("| " + " | ".join(str(row[h]).replace("|", "\\|") for h in headers) + " |\n")
        buf.write("\n")
    return buf.getvalue()


def to_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False)


def print_tables(df: pd.DataFrame, console) -> None:
    from rich.table import Table

    for title, group in sections(df):
        rows = display_rows(group)
        table = Table(title=title, title_justify="left", show_lines=False)
        for header in rows[0]:
            table.add_column(header, overflow="fold",
                             justify="right" if header in ("n", "rate", "time ms (median [p10, p90])") else "left")
        for row in rows:
            table.add_row(*row.values())
        console.print(table)
