"""The report's figures, drawn with matplotlib (Agg, no display), as PNG bytes.

Per device and timing kind: a roofline (Williams, Waterman and Patterson, CACM 2009) with the
measured points under the spec's memory and compute roofs; stream bandwidth against working set
with the caches marked, so the L2, last-level and HBM plateaus show (BabelStream-style sweep);
GEMM TFLOPS against size per dtype and implementation; attention TFLOPS against sequence length.
A plot whose suite has no timed records is skipped with a note. Interpreter timings get no rates
and so no plots. matplotlib is imported here only, and only when a figure is drawn, so
`parity run` never needs it.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from parity.harness.core import roofline, specs
from parity.harness.core.model import TIMING_INTERPRET
from parity.harness.core.results import Run
from parity.harness.reporting.report import SECTION_TITLES, _above_peak
from parity.harness.reporting.tables import human_bytes

DPI = 100
INSTALL_HINT = "pip install 'parity[report]'"


@dataclass(frozen=True)
class Plot:
    name: str  # file name stem, unique within one report
    title: str
    png: bytes | None  # None: skipped, see note
    note: str | None = None


def problem() -> str | None:
    """None if matplotlib imports; otherwise one line saying what to install."""
    try:
        import matplotlib  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure to import is reported the same way
        return f"plots need matplotlib, which does not import ({type(exc).__name__}: {exc}): {INSTALL_HINT}"
    return None


def case_params(row) -> dict[str, Any]:
    """The parameters of a frame row, from its key (`suite/op/impl/<params as JSON>`, model.Case.key)."""
    prefix = f"{row['suite']}/{row['op']}/{row['impl']}/"
    key = row.get("key")
    if isinstance(key, str) and key.startswith(prefix):
        try:
            return json.loads(key[len(prefix):])
        except ValueError:
            pass
    return {}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower()


def _figure(width: float = 7.5, height: float = 4.6, cols: int = 1):
    from matplotlib.figure import Figure

    # several panels stack in a column: each panel's legend sits to its right (_legend), where a
    # row of panels would put it over the next panel's data
    fig = Figure(figsize=(width, height * (1 if cols == 1 else 0.8 * cols)))
    axes = fig.subplots(cols, 1, squeeze=False)[:, 0]
    return fig, list(axes)


def _legend(ax, fontsize: float) -> None:
    """The legend beside the axes, right of them, never over the data: a sweep has many series,
    and inside the axes ("best" included) a legend covers the points it names. savefig's
    bbox_inches="tight" widens the image to hold it."""
    ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _rate_column(metric: str) -> str:
    return "gbps" if metric == "GB/s" else "tflops"


def _published(rows: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, int]:
    """Rows with a rate of `metric` that may be shown; and how many were held back as above peak."""
    rows = rows[(rows["metric"] == metric) & rows[_rate_column(metric)].notna()]
    above = rows.apply(_above_peak, axis=1) if len(rows) else pd.Series([], dtype=bool)
    return rows[~above], int(above.sum())


def _emulated(row) -> bool:
    return roofline.emulated_format({"path": row["path"], "params": {"dtype": row["dtype"]},
                                     "work": {"math_dtype": row["math_dtype"]}}) is not None


# --- roofline ---------------------------------------------------------------------------------


def roofline_plot(rows: pd.DataFrame, spec, title: str, name: str) -> Plot:
    timed = rows[rows["tflops"].notna() & (rows["flops"].fillna(0) > 0)
                 & ((rows["bytes_read"].fillna(0) + rows["bytes_written"].fillna(0)) > 0)]
    above = timed.apply(_above_peak, axis=1) if len(timed) else pd.Series([], dtype=bool)
    points = timed[~above]
    no_flops = int((rows["tflops"].notna() & (rows["flops"].fillna(0) == 0)).sum())
    notes = []
    if no_flops:
        notes.append(f"{no_flops} timed case(s) do no FLOPs (e.g. copy, write) and have no place on a roofline")
    if above.any():
        notes.append(f"{int(above.sum())} point(s) above the spec's roofs are not drawn (the report flags them; "
                     "stream working sets that fit in a cache do beat the HBM roof)")
    if points.empty:
        return Plot(name, title, None, "; ".join(["roofline skipped: no timed case with FLOPs and bytes"] + notes))
    fig, (ax,) = _figure()
    intensity = points["flops"] / (points["bytes_read"].fillna(0) + points["bytes_written"].fillna(0))
    colors = _colors(points["math_dtype"].fillna("?").unique())
    markers = dict(zip(points["suite"].unique(), "osD^v<>ph*"))
    for (suite, dtype, emulated), group in points.groupby(
            [points["suite"], points["math_dtype"].fillna("?"), points.apply(_emulated, axis=1)]):
        x = intensity[group.index]
        ax.scatter(x, group["tflops"], s=22, marker=markers[suite], label=f"{suite} {dtype}{' (emulated)' if emulated else ''}",
                   facecolors="none" if emulated else colors[dtype], edgecolors=colors[dtype], zorder=3)
    lo, hi = float(intensity.min()) / 4, float(intensity.max()) * 4
    top = float(points["tflops"].max()) * 3
    if spec is not None and spec.memory_gbps:
        tbps = spec.memory_gbps / 1e3
        for dtype in points["math_dtype"].dropna().unique():
            peak = spec.peak(dtype)
            if peak is None:
                continue
            hi = max(hi, 4 * peak.value / tbps)  # past the ridge point, where the roofs meet
        xs = np.geomspace(lo, hi, 200)
        ax.plot(xs, tbps * xs, color="0.4", lw=1, ls="--", label=f"memory {spec.memory_gbps:,.0f} GB/s")
        for dtype in points["math_dtype"].dropna().unique():
            peak = spec.peak(dtype)
            if peak is not None:
                ax.plot(xs, np.minimum(tbps * xs, peak.value), color=colors[dtype], lw=1.2,
                        label=f"{dtype} roof {peak.value:,.0f} TFLOPS")
                top = max(top, peak.value * 3)
        roof_note = f"roofs from spec {spec.id} ({spec.status})"
    else:
        roof_note = "no spec: measured points only"
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_ticks(ax.xaxis)
    _plain_ticks(ax.yaxis)
    ax.set_xlim(lo, hi)
    ax.set_ylim(float(points["tflops"].min()) / 4, top)
    ax.set_xlabel("arithmetic intensity, FLOP/byte")
    ax.set_ylabel("TFLOPS")
    ax.set_title(f"{title}\n{roof_note}", fontsize=9)
    ax.grid(True, which="major", alpha=0.25)
    _legend(ax, fontsize=7)
    return Plot(name, title, _png(fig), "; ".join(notes) or None)


def _colors(keys: Iterable[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {k: cmap(i % 10) for i, k in enumerate(keys)}


# --- lines against a swept parameter ----------------------------------------------------------


def _series(rows: pd.DataFrame, exclude: set[str]) -> tuple[list[str], list[tuple]]:
    """Series of a line plot: rows that agree on every parameter but the swept ones. A label
    names the implementation and dtype, then only what varies, so labels stay short."""
    parts = rows["part"] if "part" in rows else pd.Series(None, index=rows.index)
    params = [{"op": r["op"], "impl": r["impl"], **case_params(r),  # a line per GPU or worker of one device
               **({} if not isinstance(parts[i], str) else {"part": parts[i]})} for i, r in rows.iterrows()]
    names = list(dict.fromkeys(k for p in params for k in p if k not in exclude))
    varying = [k for k in names if k in ("impl", "dtype")
               or len({json.dumps(p.get(k), sort_keys=True) for p in params}) > 1]
    varying.sort(key=lambda k: ("impl", "dtype", "op", "part").index(k) if k in ("impl", "dtype", "op", "part") else 4)
    keys = [tuple(p.get(k) for k in varying) for p in params]
    return varying, keys


def _label(varying: list[str], key: tuple) -> str:
    return " ".join(str(v) if k in ("impl", "dtype", "op", "part") else f"{k}={v}" for k, v in zip(varying, key)) or "all"


def _lines(ax, rows: pd.DataFrame, x: pd.Series, y: str, exclude: set[str]) -> None:
    varying, keys = _series(rows, exclude)
    frame = pd.DataFrame({"x": x.to_numpy(), "y": rows[y].to_numpy(), "series": keys})
    styles = ("-", "--", ":", "-.")
    impls = list(dict.fromkeys(rows["impl"]))
    for i, (key, group) in enumerate(frame.groupby("series", sort=False)):
        group = group.sort_values("x")
        impl = key[varying.index("impl")] if "impl" in varying else impls[0]
        ax.plot(group["x"], group["y"], marker="o", ms=3, lw=1.2, ls=styles[impls.index(impl) % len(styles)],
                color=_colors(range(10))[i % 10], label=_label(varying, key))


def stream_plot(rows: pd.DataFrame, device: dict[str, Any], spec, title: str, name: str) -> Plot:
    rows = rows[(rows["suite"] == "stream") & (rows["metric"] == "GB/s") & rows["gbps"].notna()]
    if rows.empty:
        return Plot(name, title, None, "stream plot skipped: no timed stream records")
    sizes = pd.Series([case_params(r).get("working_set_bytes") for _, r in rows.iterrows()], index=rows.index)
    rows, sizes = rows[sizes.notna()], sizes[sizes.notna()].astype(float)
    if rows.empty:
        return Plot(name, title, None, "stream plot skipped: no record says its working-set size")
    dtypes = list(dict.fromkeys(rows["dtype"].fillna("?")))
    fig, axes = _figure(cols=len(dtypes))
    l2 = device.get("l2_bytes") or _spec_bytes(spec, "l2_cache_mib")
    llc = device.get("llc_bytes") or _spec_bytes(spec, "llc_mib")
    for ax, dtype in zip(axes, dtypes):
        sub = rows[rows["dtype"].fillna("?") == dtype]
        _lines(ax, sub, sizes[sub.index], "gbps", {"n", "working_set_bytes", "dtype"})
        _bytes_axis(ax, sizes[sub.index])
        marks = [(l2, "L2")] + ([(llc, "last-level cache")] if llc and llc != l2 else [])
        for size, label in marks:
            if size:
                ax.axvline(size, color="0.3", lw=0.8, ls=":")
                ax.text(size, 0.98, f" {label} {human_bytes(size)}", transform=ax.get_xaxis_transform(),
                        fontsize=7, va="top", rotation=90)
        if spec is not None and spec.memory_gbps:
            ax.axhline(spec.memory_gbps, color="0.4", lw=1, ls="--", label=f"{spec.id} HBM {spec.memory_gbps:,.0f} GB/s")
        ax.set_xlabel("working set (all arrays of one call)")
        ax.set_ylabel("GB/s (decimal)")
        ax.set_title(dtype, fontsize=9)
        ax.grid(True, alpha=0.25)
        _legend(ax, fontsize=6)
    fig.suptitle(title, fontsize=10)
    note = ("working sets that fit in a cache can exceed the HBM line; sizes of 4x the last-level cache "
            "and above are HBM numbers") if spec is not None and spec.memory_gbps else None
    return Plot(name, title, _png(fig), note)


def _bytes_axis(ax, sizes: pd.Series) -> None:
    """A log2 axis of byte sizes, ticked at powers of 4 (every other power of 2 when few)."""
    ax.set_xscale("log", base=2)
    lo, hi = int(np.floor(np.log2(sizes.min()))), int(np.ceil(np.log2(sizes.max())))
    step = 1 if hi - lo <= 8 else 2
    ticks = [2.0**e for e in range(lo + (lo % step), hi + 1, step)]
    ax.set_xticks(ticks, [human_bytes(t) for t in ticks], rotation=45, ha="right", fontsize=7)
    ax.minorticks_off()


def _plain_ticks(axis) -> None:
    """Tick labels as plain numbers (1024, 0.1, 10,000) rather than powers in mathtext, which is
    also much slower to lay out."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _count_axis(ax) -> None:
    """A log2 axis of counts (sizes, lengths)."""
    ax.set_xscale("log", base=2)
    _plain_ticks(ax.xaxis)


def _spec_bytes(spec, figure: str) -> int | None:
    mib = spec.value(figure) if spec is not None else None
    return int(mib * 2**20) if mib else None


def gemm_plot(rows: pd.DataFrame, spec, title: str, name: str) -> Plot:
    rows, held = _published(rows[rows["suite"] == "gemm"], "TFLOPS")
    if rows.empty:
        return Plot(name, title, None, "GEMM plot skipped: no timed gemm records")
    params = [case_params(r) for _, r in rows.iterrows()]
    mnk = [(p.get("m"), p.get("n"), p.get("k")) for p in params]
    square = all(m == n == k for m, n, k in mnk)
    x = pd.Series([m if square else round((m * n * k) ** (1 / 3)) for m, n, k in mnk], index=rows.index, dtype=float)
    fig, (ax,) = _figure()
    _lines(ax, rows, x, "tflops", {"m", "n", "k"})
    _peaks(ax, rows, spec)
    _count_axis(ax)
    ax.set_xlabel("m = n = k" if square else "(m·n·k)^(1/3)")
    ax.set_ylabel("TFLOPS")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.25)
    _legend(ax, fontsize=6)
    return Plot(name, title, _png(fig), f"{held} point(s) above the spec's peak are not drawn" if held else None)


def attention_plot(rows: pd.DataFrame, spec, title: str, name: str) -> Plot:
    att = rows[rows["suite"] == "attention"]
    compute, held = _published(att, "TFLOPS")
    decode, held_decode = _published(att, "GB/s")
    if compute.empty and decode.empty:
        return Plot(name, title, None, "attention plot skipped: no timed attention records")
    panels = [(compute, "tflops", "TFLOPS"), (decode, "gbps", "GB/s (decode)")]
    panels = [p for p in panels if not p[0].empty]
    fig, axes = _figure(cols=len(panels))
    for ax, (sub, column, ylabel) in zip(axes, panels):
        params = [case_params(r) for _, r in sub.iterrows()]
        x = pd.Series([p.get("seq_k", p.get("seq_q")) for p in params], index=sub.index, dtype=float)
        _lines(ax, sub, x, column, {"seq_q", "seq_k"})
        if column == "tflops":
            _peaks(ax, sub, spec)
        elif spec is not None and spec.memory_gbps:
            ax.axhline(spec.memory_gbps, color="0.4", lw=1, ls="--", label=f"{spec.id} HBM {spec.memory_gbps:,.0f} GB/s")
        _count_axis(ax)
        ax.set_xlabel("sequence length (keys)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.25)
        _legend(ax, fontsize=6)
    fig.suptitle(title, fontsize=10)
    held += held_decode
    return Plot(name, title, _png(fig), f"{held} point(s) above the spec's peak are not drawn" if held else None)


def _peaks(ax, rows: pd.DataFrame, spec) -> None:
    """Dashed lines at the spec's dense peak of each math dtype drawn (emulated formats have none)."""
    if spec is None:
        return
    for dtype in rows["math_dtype"].dropna().unique():
        peak = spec.peak(dtype)
        if peak is not None:
            ax.axhline(peak.value, lw=0.8, ls="--", color="0.5", label=f"{spec.id} {dtype} peak {peak.value:,.0f}")


# --- all plots of a report --------------------------------------------------------------------


def make_plots(runs: list[Run], df: pd.DataFrame) -> list[Plot]:
    """Every figure for the frame of `runs`: per run, device and timing kind (interpreter
    timings excluded), a roofline and the stream, GEMM and attention plots."""
    if df.empty:
        return []
    meta = {run.meta.get("run_id"): run.meta.get("device") or {} for run in runs}
    timed = df[(df["status"] == "ok") & (df["timing"] != TIMING_INTERPRET)]
    out = []
    devices = list(dict.fromkeys(df["device"]))
    for (run_id, device, timing), rows in timed.groupby(["run_id", "device", "timing"], sort=False, dropna=False):
        spec_ids = rows["spec_id"].dropna().unique()
        spec = _spec(spec_ids[0]) if len(spec_ids) else None
        twice = df[df["device"] == device]["run_id"].nunique() > 1
        head = f"{device}{f' [{run_id}]' if twice else ''}: {SECTION_TITLES.get(timing, timing).split(',')[0]}"
        stem = _slug(f"{device}-{run_id if twice else ''}-{timing}")
        out.append(roofline_plot(rows, spec, f"{head}, roofline", f"{stem}-roofline"))
        out.append(stream_plot(rows, meta.get(run_id, {}), spec, f"{head}, stream bandwidth against working set",
                               f"{stem}-stream"))
        out.append(gemm_plot(rows, spec, f"{head}, GEMM TFLOPS against size", f"{stem}-gemm"))
        out.append(attention_plot(rows, spec, f"{head}, attention against sequence length", f"{stem}-attention"))
    untimed = [d for d in devices if d not in set(timed["device"])]
    for device in untimed:
        out.append(Plot(_slug(f"{device}-none"), f"{device}", None,
                        "no plots: no record with a rate (interpreter timings measure the interpreter)"))
    return out


def _spec(spec_id: str):
    try:
        return specs.get(spec_id)
    except Exception:  # noqa: BLE001 - a spec the report matched must load; if not, no roofs
        return None


def write_pngs(plots: list[Plot], folder) -> list:
    """Writes each drawn plot as folder/<name>.png; returns the paths."""
    from pathlib import Path

    from parity.harness.core import safeio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for plot in plots:
        if plot.png is not None:
            path = folder / f"{plot.name}.png"
            safeio.write_bytes(path, plot.png, "--plots")
            paths.append(path)
    return paths
