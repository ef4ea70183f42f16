"""The report's telemetry columns on synthetic runs: performance per watt, energy per call, clock
and throttling, shown only where telemetry exists."""
from __future__ import annotations

import pandas as pd
import pytest

from parity.harness.reporting import report
from synthetic import CPU, record, run

GB = 10**9
FLOPS = 2 * 8192**3


def tel(**kw):
    base = {"source": "nvml", "sm_clock_mhz_median": 1755.0, "power_w_median": 500.0, "energy_j_per_call": 0.8,
            "temp_c_max": 70.0, "throttled_fraction": 0.0, "throttle_reasons": []}
    return {**base, **kw}


def gemm(**kw):
    return record(op="gemm", suite="gemm", metric="TFLOPS", dtype="bf16", time_ms=1.6, flops=FLOPS, **kw)


def test_performance_per_watt_for_compute_and_memory_rows():
    rows = report.frame([run([gemm(telemetry=tel(power_w_median=640.0)),
                              record(time_ms=2.0, bytes_read=4 * GB, bytes_written=4 * GB,
                                     telemetry=tel(power_w_median=400.0))])])
    compute, memory = rows.iloc[0], rows.iloc[1]
    assert compute["gflops_per_w"] == pytest.approx(compute["tflops"] * 1e3 / 640.0)
    assert memory["gbps_per_w"] == pytest.approx(4000.0 / 400.0)
    assert compute["power_w_median"] == 640.0 and compute["energy_j_per_call"] == 0.8
    assert compute["telemetry_source"] == "nvml" and compute["sm_clock_mhz_median"] == 1755.0


def test_no_power_no_per_watt_and_no_columns():
    df = report.frame([run([gemm(telemetry=tel(power_w_median=None, source="none")), gemm(params={"dtype": "bf16", "m": 1})])])
    assert df["gflops_per_w"].isna().all()
    headers = report.display_rows(df)[0]
    assert "per W" not in headers and "J/call" not in headers


def test_columns_show_where_power_was_recorded():
    df = report.frame([run([gemm(telemetry=tel(power_w_median=640.0, energy_j_per_call=1.23456)),
                            record(time_ms=2.0, bytes_read=4 * GB, bytes_written=4 * GB, telemetry=tel()),
                            record(op="write", status="skipped")])])
    rows = report.display_rows(df)
    by_op = {r["op"]: r for r in rows}
    assert by_op["gemm"]["per W"].endswith(" GFLOPS/W") and by_op["gemm"]["W"] == "640"
    assert by_op["gemm"]["J/call"] == "1.23" and by_op["gemm"]["clock MHz"] == "1755"
    assert by_op["copy"]["per W"] == "8 GB/s/W"
    assert by_op["write"]["per W"] == "-" and by_op["write"]["J/call"] == "-"
    assert "% of spec at clock" in by_op["gemm"]


def test_throttled_rows_say_so_in_their_status():
    df = report.frame([run([gemm(telemetry=tel(throttled_fraction=0.35, throttle_reasons=["SwPowerCap"]))])])
    status = report.display_rows(df)[0]["status"]
    assert status == "ok; throttled in 35% of telemetry samples (SwPowerCap)"
    quiet = report.frame([run([gemm(telemetry=tel())])])
    assert report.display_rows(quiet)[0]["status"] == "ok"


def test_above_peak_rows_publish_no_per_watt():
    fast = record(op="copy", time_ms=1.0, bytes_read=3 * GB, bytes_written=3 * GB, telemetry=tel())  # > 4800 GB/s
    row = report.display_rows(report.frame([run([fast])]))[0]
    assert row["per W"] == "-"


def test_cpu_runs_without_telemetry_keep_their_table(tmp_path):
    df = report.frame([run([record(time_ms=2.0, bytes_read=GB, timing="wall", device="Some CPU",
                                   telemetry={"source": "none", "reason": "no GPU"})], device=CPU)])
    assert pd.isna(df.iloc[0]["power_w_median"]) and df.iloc[0]["telemetry_source"] == "none"
    assert "per W" not in report.display_rows(df)[0]
