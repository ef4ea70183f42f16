"""Turns records into tables: the only place where work and time become GB/s and TFLOPS.

Rates are decimal (1 GB/s = 1e9 B/s, 1 TFLOPS = 1e12 FLOP/s) from the median time. Timings taken
different ways are never put in one table: GPU events, the CPU's wall clock for PyTorch, and the
Triton interpreter's wall clock each get their own; the interpreter's get no rates at all, since
they measure the interpreter, not a kernel.
"""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from parity.harness.core import roofline
from parity.harness.core.model import TIMING_EVENTS, TIMING_INTERPRET, TIMING_WALL
from parity.harness.core.results import DUTY_MIN, Run
from parity.harness.reporting.tables import params_text, part_label, record_spec, render, spec_for, worker_unit

SECTION_TITLES = {
    TIMING_EVENTS: "GPU, timed with device events",
    TIMING_WALL: "PyTorch on the CPU, timed with the wall clock",
    TIMING_INTERPRET: ("Triton CPU interpreter, wall clock: these runs check correctness; their times "
                       "measure the interpreter, not a kernel, and get no rates"),
}


SECTION_ORDER = (TIMING_EVENTS, TIMING_WALL, TIMING_INTERPRET)


def _normalize(rec: dict[str, Any], spec, gbps, tflops) -> dict[str, Any]:
    """Bound, % of the spec's roof, and % at the clock held, for one timed record."""
    out = {"spec_id": spec.id if spec else None, "bound": None, "roof": None, "roof_confidence": None,
           "pct_of_spec": None, "pct_of_spec_at_clock": None, "flag": None}
    if spec is None or (gbps is None and tflops is None):
        return out
    work = rec.get("work") or {}
    dtype = work.get("math_dtype")
    if roofline.emulated_format(rec):
        out["flag"] = f"emulated {dtype}: not normalized against the {dtype} peak"
        return out
    r = roofline.roof(work, spec)
    if r is None:
        return out
    if r.bound == "memory" and rec.get("cache") == "warm" and _cache_resident(work, spec):
        # A warm working set that fits in the last-level cache is served from the cache, not HBM:
        # a rate above HBM bandwidth is the point of the sweep there, not an error, and a % of
        # HBM would mean nothing. These rows show the cache plateau and carry no % of spec.
        out.update(bound="cache", roof=f"cache-resident (working set <= LLC {spec.llc_bytes >> 20} MiB)")
        return out
    median_s = rec["time_ms"]["median"] * 1e-3
    pct = r.seconds / median_s
    out.update(bound=r.bound, roof=r.figure, roof_confidence=r.confidence, pct_of_spec=pct)
    clock = (rec.get("telemetry") or {}).get("sm_clock_mhz_median")
    peak = spec.peak(dtype)
    if r.bound == "compute" and clock and peak is not None:
        # A peak assumes a clock; at a lower held clock the same kernel is closer to its peak.
        rated = peak.extra.get("clock_mhz") or spec.value("boost_clock_mhz")
        if rated:
            out["pct_of_spec_at_clock"] = pct * rated / clock
    if pct > 1.0:
        out["flag"] = f"{pct:.0%} of the spec's {r.figure}: above the peak, a measurement error"
    return out


def _cache_resident(work: dict[str, Any], spec) -> bool:
    """Whether a call's bytes (its working set, for a streaming op) fit in the spec's LLC."""
    llc = spec.llc_bytes
    return bool(llc) and (work.get("bytes_read") or 0) + (work.get("bytes_written") or 0) <= llc


def _telemetry(rec: dict[str, Any], gbps, tflops) -> dict[str, Any]:
    """What the card did while the record was timed, and performance per watt at the median power
    held over the timed window (GFLOPS/W for compute, GB/s per W for memory). Where the GPU was
    busy with timed calls for less than DUTY_MIN of the window (holds, flushes and host work in
    between), power, energy and per-watt figures describe a part-idle GPU: they are withheld."""
    tel = rec.get("telemetry") or {}
    duty = tel.get("duty")
    withheld = duty is not None and duty < DUTY_MIN and tel.get("power_w_median") is not None
    watts = None if withheld else tel.get("power_w_median")
    per_watt = watts is not None and watts > 0 and gbps is not None
    reasons = tel.get("throttle_reasons")
    return {"telemetry_source": tel.get("source"), "sm_clock_mhz_median": tel.get("sm_clock_mhz_median"),
            "power_w_median": watts, "energy_j_per_call": None if withheld else tel.get("energy_j_per_call"),
            "duty": duty, "power_withheld": withheld, "clock_state": tel.get("clock_state"),
            "temp_c_max": tel.get("temp_c_max"), "throttled_fraction": tel.get("throttled_fraction"),
            "throttle_reasons": ", ".join(reasons) if reasons else None,
            "gflops_per_w": tflops * 1e3 / watts if per_watt else None,
            "gbps_per_w": gbps / watts if per_watt else None}


def frame(runs: Iterable[Run], to_spec=None) -> pd.DataFrame:
    """One row per record, with derived rates and normalization; `samples` stay in the files."""
    rows = []
    for run in runs:
        run_spec, by_part = spec_for(run, to_spec), {}
        unit = worker_unit(run.meta)
        hosts = len({r.get("host") for r in run.records if r.get("gpu_index") is not None})
        for rec in run.records:
            spec = record_spec(run, rec, run_spec, to_spec, by_part)  # a merged run: each device its own
            t = rec.get("time_ms") or {}
            work = rec.get("work") or {}
            val = rec.get("validation")
            median = t.get("median")
            timed = rec.get("status") == "ok" and median and rec.get("timing") != TIMING_INTERPRET
            seconds = median * 1e-3 if timed else None
            gbps, tflops = roofline.rates(work, seconds) if seconds else (None, None)
            flops_fa = work.get("flops_fa")
            rows.append({
                "run_id": run.meta.get("run_id"),
                # The GPUs or CPU workers of a run over several are parts of one device: one table
                # for the device, a row per part ("GPU 3", "node-b GPU 3", "worker 1").
                "device": rec.get("device"), "device_name": rec.get("device"),
                "part": part_label(rec, hosts, unit), "part_unit": unit if rec.get("gpu_index") is not None else None,
                "gpu_index": rec.get("gpu_index"), "host": rec.get("host"),
                "suite": rec.get("suite"), "op": rec.get("op"), "impl": rec.get("impl"),
                "backend": rec.get("backend"), "path": rec.get("path"),
                "dtype": rec.get("params", {}).get("dtype"),
                "params": params_text(rec.get("params", {})),
                "key": rec.get("key"),
                "timing": rec.get("timing"), "cache": rec.get("cache"), "metric": rec.get("metric"),
                "status": rec.get("status"), "reason": rec.get("reason"),
                "time_ms_median": median, "time_ms_p10": t.get("p10"), "time_ms_p90": t.get("p90"),
                "samples_n": t.get("n"), "noise_rel": t.get("noise_rel"),
                "flops": work.get("flops"), "bytes_read": work.get("bytes_read"),
                "bytes_written": work.get("bytes_written"), "math_dtype": work.get("math_dtype"),
                "bytes_over": work.get("bytes_over", "memory"),
                "gbps": gbps, "tflops": tflops,
                "flops_fa": flops_fa, "tflops_fa": flops_fa / seconds / 1e12 if seconds and flops_fa else None,
                "validated": None if val is None else bool(val.get("passed")),
                "max_abs_error": None if val is None else val.get("max_abs_error"),
                **_normalize(rec, spec, gbps, tflops),
                **_telemetry(rec, gbps, tflops),
                "noisy": t.get("noisy"),  # samples of two levels or a plateau (noisy.judge): not a clean median
            })
            if rows[-1]["noisy"]:
                flag = rows[-1]["flag"]
                rows[-1]["flag"] = f"noisy, {rows[-1]['noisy']}" + (f"; {flag}" if flag else "")
    df = pd.DataFrame(rows)
    if not df.empty:
        df["pct_of_best"] = _pct_of_best(df)
    return df


def _pct_of_best(df: pd.DataFrame) -> pd.Series:
    """Each rate over the best rate of the same kind measured on the same device in the same run
    (GB/s against all GB/s; TFLOPS against TFLOPS of the same math dtype)."""
    rate = df["gbps"].where(df["metric"] == "GB/s", df["tflops"]).astype(float)
    rate = rate.where(df["flag"].isna() | df["pct_of_spec"].isna())  # an error is no ceiling
    kind = df["math_dtype"].where(df["metric"] != "GB/s", df["bytes_over"])  # memory and link bytes apart
    best = rate.groupby([df["run_id"], df["device"], df["timing"], df["metric"], kind], dropna=False).transform("max")
    return rate / best


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _rate(row) -> str:
    value = row["gbps"] if row["metric"] == "GB/s" else row["tflops"]
    if _missing(value):
        return "-"
    if _above_peak(row):
        return "above spec: not published"
    return f"{rate_text(value)} {'GB/s' if row['metric'] == 'GB/s' else 'TFLOPS'}"


def rate_text(value: float) -> str:
    """A rate with one decimal from 10 up, three significant digits below (0.0412, not 0.0)."""
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def _above_peak(row) -> bool:
    return not _missing(row["pct_of_spec"]) and row["pct_of_spec"] > 1.0


def _pct(value) -> str:
    return "-" if _missing(value) else f"{100 * value:.1f} %"


def _time(row) -> str:
    if _missing(row["time_ms_median"]):
        return "-"
    spread = [_figure(row[k], ".4g") for k in ("time_ms_p10", "time_ms_p90")]  # a record may lack them
    return f"{row['time_ms_median']:.4g} [{spread[0]}, {spread[1]}]"


def _outcome(row) -> str:
    text = row["status"] if _missing(row["reason"]) else f"{row['status']}: {row['reason']}"
    throttled = row.get("throttled_fraction")
    if not _missing(throttled) and throttled > 0:
        text += f"; throttled in {throttled:.0%} of telemetry samples ({row['throttle_reasons']})"
    if row.get("power_withheld") is True:
        text += f"; power withheld: duty {row['duty']:.0%} (< {DUTY_MIN:.0%})"
    if row.get("clock_state") == "burst":
        text += "; the clock fell during the window: not all in the sustained state"
    return text if _missing(row["flag"]) else f"{text}; {row['flag']}"


def _per_watt(row) -> str:
    value = row["gbps_per_w"] if row["metric"] == "GB/s" else row["gflops_per_w"]
    if _missing(value) or _above_peak(row):
        return "-"
    return f"{value:.3g} {'GB/s' if row['metric'] == 'GB/s' else 'GFLOPS'}/W"


def _figure(value, fmt: str) -> str:
    return "-" if _missing(value) else format(value, fmt)


def display_rows(df: pd.DataFrame) -> list[dict[str, str]]:
    """The columns people read; % of spec only where a spec was matched, at-clock where measured."""
    with_spec = df["spec_id"].notna().any()
    with_clock = df["pct_of_spec_at_clock"].notna().any()
    with_power = "power_w_median" in df and (df["power_w_median"].notna().any()
                                             or ("power_withheld" in df and (df["power_withheld"] == True).any()))  # noqa: E712
    with_fa = "tflops_fa" in df and df["tflops_fa"].notna().any()
    units = df["part_unit"].dropna().unique() if "part_unit" in df else ()
    rated = (df["timing"] != TIMING_INTERPRET).any()  # interpreter times get no rate: no column of "-"
    rows = []
    for _, r in df.iterrows():
        emulated = " (emulated)" if r["path"] == "emulated" else ""  # every row says what ran
        row = {"suite": r["suite"], "op": r["op"], "impl": r["impl"], "dtype": ("" if _missing(r["dtype"]) else r["dtype"]) + emulated,
               "case": r["params"]}
        if len(units):  # a device run over several parts: which part ran the row
            row[units[0]] = "-" if _missing(r["part"]) else r["part"]
        row["time ms (median [p10, p90])"] = _time(r)
        row["n"] = "" if _missing(r["samples_n"]) else str(int(r["samples_n"]))
        if rated:
            row["rate"] = _rate(r)
        if with_spec:
            row["bound"] = "-" if _missing(r["bound"]) else r["bound"]
            row["% of spec"] = "-" if _above_peak(r) else _pct(r["pct_of_spec"])
        if with_clock:
            row["% of spec at clock"] = "-" if _above_peak(r) else _pct(r["pct_of_spec_at_clock"])
        if with_fa:  # the FlashAttention-convention rate, to compare with published tables
            fa = r["tflops_fa"]
            row["TFLOPS (FA convention)"] = "-" if _missing(fa) or _above_peak(r) else rate_text(fa)
        if rated:
            row["% of best"] = _pct(r["pct_of_best"])
        if with_power:
            row["clock MHz"] = _figure(r["sm_clock_mhz_median"], ".0f")
            row["W"] = _figure(r["power_w_median"], ".0f")
            row["per W"] = _per_watt(r)
            row["J/call"] = _figure(r["energy_j_per_call"], ".3g")
        row["check"] = {True: "pass", False: "FAIL", None: "-"}[None if _missing(r["validated"]) else bool(r["validated"])]
        row["status"] = _outcome(r)
        rows.append(row)
    return rows


def sections(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Tables by (timing kind, device), in a fixed order; each row sorted by case."""
    if df.empty:
        return []
    out = []
    df = df.assign(_order=df["timing"].map({k: i for i, k in enumerate(SECTION_ORDER)}).fillna(len(SECTION_ORDER)))
    several_runs = df["run_id"].nunique(dropna=False) > 1  # then a table per run: rows would look alike
    keys = ["_order", "device", "timing"] + (["run_id"] if several_runs else [])
    for values, group in df.groupby(keys, sort=True, dropna=False):
        device, timing = values[1], values[2]
        spec_ids = group["spec_id"].dropna().unique()
        against = f" (normalized against spec {spec_ids[0]})" if len(spec_ids) else " (no spec: % of best only)"
        run = f" [run {values[3]}]" if several_runs else ""
        group, parts = _by_part(group)
        title = f"{device}{run}{parts}: {SECTION_TITLES.get(timing, timing)}{against if timing != TIMING_INTERPRET else ''}"
        out.append((title, group.drop(columns="_order")))
    return out


def _by_part(group: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """A device's rows over its parts (GPUs, CPU workers): each case's rows together, in part order,
    and what the title says of them ("over 2 workers, a row per worker")."""
    if "part" not in group or group["part"].isna().all():
        return group, ""
    unit = group["part_unit"].dropna().iloc[0]
    count = group["part"].nunique()
    first = {key: i for i, key in enumerate(dict.fromkeys(group["key"]))}
    order = group.assign(_case=group["key"].map(first), _gpu=pd.to_numeric(group["gpu_index"], errors="coerce"))
    group = order.sort_values(["_case", "host", "_gpu"], kind="stable", na_position="first").drop(columns=["_case", "_gpu"])
    return group, f", over {count} {unit}{'s' if count != 1 else ''} (a row per {unit}; their spread in its own table)"


def to_markdown(df: pd.DataFrame) -> str:
    return render([(title, display_rows(group)) for title, group in sections(df)], "md")


def to_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False)


def print_tables(df: pd.DataFrame, console) -> None:
    render([(title, display_rows(group)) for title, group in sections(df)], "text", console)


def to_parquet(df: pd.DataFrame) -> bytes:
    """The frame as the bytes of a parquet file (needs pyarrow, the `report` extra), for the one
    writer (core.safeio) to put where asked. Columns whose values mix
    types (the flags and reasons are text or None) are written as text."""
    out = df.copy()
    for column in out.columns[out.dtypes == object]:
        kinds = {type(v) for v in out[column] if v is not None and not (isinstance(v, float) and pd.isna(v))}
        if len(kinds) > 1:
            out[column] = out[column].map(lambda v: None if _missing(v) else str(v))
    import io

    buf = io.BytesIO()
    out.to_parquet(buf, index=False)
    return buf.getvalue()


def print_run(run: Run, console) -> None:
    """After a run (--all-gpus, parity submit): its tables, then the spread and collectives tables."""
    from parity.harness.reporting import spread

    df = frame([run])
    if not df.empty:
        print_tables(df, console)
    spread.print_extra([run], console)
