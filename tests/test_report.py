"""The report on synthetic runs: rates, normalization against the spec, flags, and the tables."""
from __future__ import annotations

import pandas as pd
import pytest

from parity.harness.reporting import report
from parity.harness.core import specs
from synthetic import CPU, record, run

GB = 10**9


def one(df, **match):
    rows = df
    for k, v in match.items():
        rows = rows[rows[k] == v]
    assert len(rows) == 1, match
    return rows.iloc[0]


def test_rates_are_decimal_and_from_the_median():
    df = report.frame([run([record(time_ms=2.0, bytes_read=4 * GB, bytes_written=4 * GB)])])
    row = df.iloc[0]
    assert row["gbps"] == pytest.approx(4000.0)  # 8e9 B in 2 ms
    assert row["tflops"] == 0


def test_memory_bound_case_normalized_against_the_bandwidth_of_the_matched_spec():
    df = report.frame([run([record(time_ms=2.0, bytes_read=4 * GB, bytes_written=4 * GB, flops=2 * GB)])])
    row = df.iloc[0]
    assert row["spec_id"] == "h200"
    assert row["bound"] == "memory"
    assert row["pct_of_spec"] == pytest.approx(4000 / 4800)
    assert row["flag"] is None


def test_compute_bound_case_normalized_against_its_math_dtype_peak():
    flops = 2 * 8192**3
    rec = record(op="gemm", suite="gemm", metric="TFLOPS", dtype="bf16", time_ms=1.6, flops=flops,
                 bytes_read=2 * 2 * 8192**2, bytes_written=2 * 8192**2)
    row = report.frame([run([rec])]).iloc[0]
    assert row["bound"] == "compute"
    assert row["tflops"] == pytest.approx(flops / 1.6e-3 / 1e12)
    assert row["pct_of_spec"] == pytest.approx(row["tflops"] / 989.4)


def test_clock_adjusted_efficiency_uses_the_clock_the_peak_assumes():
    flops = 2 * 8192**3
    rec = record(op="gemm", suite="gemm", metric="TFLOPS", dtype="bf16", time_ms=1.6, flops=flops,
                 telemetry={"sm_clock_mhz_median": 1500})
    row = report.frame([run([rec])]).iloc[0]
    assert row["pct_of_spec_at_clock"] == pytest.approx(row["pct_of_spec"] * 1830 / 1500)
    memory = report.frame([run([record(time_ms=2.0, bytes_read=GB, telemetry={"sm_clock_mhz_median": 1500})])])
    assert pd.isna(memory.iloc[0]["pct_of_spec_at_clock"])  # the SM clock does not bound a memory-bound case


def test_above_peak_is_flagged_and_kept_out_of_the_tables():
    fast = record(op="copy", time_ms=1.0, bytes_read=3 * GB, bytes_written=3 * GB)  # 6000 GB/s > 4800
    fine = record(op="scale", time_ms=2.0, bytes_read=4 * GB, bytes_written=4 * GB)
    df = report.frame([run([fast, fine])])
    bad = one(df, op="copy")
    assert bad["pct_of_spec"] > 1 and "measurement error" in bad["flag"]
    md = report.to_markdown(df)
    assert "6,000.0" not in md and "125.0 %" not in md
    assert "above spec: not published" in md
    # an error is no ceiling: the good case is the best of the run
    assert one(df, op="scale")["pct_of_best"] == pytest.approx(1.0)


def test_a_warm_working_set_that_fits_the_llc_is_a_cache_plateau_not_an_error():
    # H200: 50 MiB L2. 16 MiB read + 16 MiB written at 8000 GB/s (8e12 B/s) is above HBM's 4800 by design.
    mib = 1 << 20
    cached = record(op="copy", time_ms=32 * mib / 8e12 * 1e3, bytes_read=16 * mib, bytes_written=16 * mib)
    rows = report.frame([run([cached])])
    row = rows.iloc[0]
    assert row["bound"] == "cache" and "cache-resident" in row["roof"]
    assert pd.isna(row["pct_of_spec"]) and row["flag"] is None
    assert "8,000.0" in report.to_markdown(rows)  # the plateau is published, as a rate
    # one byte beyond the LLC, the same rate is judged against HBM and flagged
    spilled = record(op="copy", time_ms=(50 * mib + 2) / 8e12 * 1e3, bytes_read=25 * mib + 1,
                     bytes_written=25 * mib + 1)
    row = report.frame([run([spilled])]).iloc[0]
    assert row["bound"] == "memory" and "measurement error" in row["flag"]
    # a cold op (GEMM, attention) of the same size is never excused
    cold = dict(cached, cache="cold")
    assert report.frame([run([cold])]).iloc[0]["bound"] == "memory"


def test_emulated_path_is_not_normalized_against_the_format_it_emulates():
    flops = 2 * 4096**3
    emulated = record(op="gemm", suite="gemm", metric="TFLOPS", dtype="fp4", time_ms=1.0, flops=flops,
                      path="emulated")
    row = report.frame([run([emulated])]).iloc[0]
    assert pd.isna(row["pct_of_spec"])
    assert "emulated" in row["flag"]
    as_bf16 = record(op="gemm", suite="gemm", metric="TFLOPS", dtype="fp4", math_dtype="bf16", time_ms=1.0,
                     flops=flops, path="emulated")
    row = report.frame([run([as_bf16])]).iloc[0]
    assert row["pct_of_spec"] == pytest.approx(flops / 1e-3 / 1e12 / 989.4)


def test_percent_of_best_per_metric_within_one_run():
    recs = [record(op="copy", time_ms=2.0, bytes_read=4 * GB, bytes_written=4 * GB),
            record(op="read", time_ms=1.0, bytes_read=4 * GB)]
    df = report.frame([run(recs)])
    assert one(df, op="copy")["pct_of_best"] == pytest.approx(1.0)
    assert one(df, op="read")["pct_of_best"] == pytest.approx(1.0)  # 4000 GB/s both
    recs[1] = record(op="read", time_ms=2.0, bytes_read=4 * GB)
    df = report.frame([run(recs)])
    assert one(df, op="read")["pct_of_best"] == pytest.approx(0.5)


def test_no_spec_means_own_ceilings_only():
    recs = [record(op="copy", timing="wall", device="Some CPU", time_ms=1.0, bytes_read=GB, bytes_written=GB),
            record(op="read", timing="wall", device="Some CPU", time_ms=1.0, bytes_read=GB)]
    df = report.frame([run(recs, device=CPU)])
    assert df["spec_id"].isna().all()
    assert one(df, op="read")["pct_of_best"] == pytest.approx(0.5)
    text = report.to_markdown(df)
    assert "no spec: % of best only" in text and "% of spec" not in text


def test_report_to_another_spec():
    df = report.frame([run([record(time_ms=2.0, bytes_read=4 * GB, bytes_written=4 * GB)])],
                      to_spec=specs.get("mi300x"))
    assert df.iloc[0]["spec_id"] == "mi300x"
    assert df.iloc[0]["pct_of_spec"] == pytest.approx(4000 / 5300)


def test_interpreter_timings_get_no_rate_and_their_own_table():
    recs = [record(op="copy", impl="triton", timing="wall-interpret", device="Some CPU", bytes_read=GB, bytes_written=GB),
            record(op="copy", impl="torch", timing="wall", device="Some CPU", bytes_read=GB, bytes_written=GB)]
    df = report.frame([run(recs, device=CPU)])
    assert pd.isna(one(df, impl="triton")["gbps"])
    assert one(df, impl="torch")["gbps"] == pytest.approx(2000)
    titles = [title for title, _ in report.sections(df)]
    assert len(titles) == 2 and "interpreter" in titles[1] and "wall clock" in titles[0]


def test_gpu_and_cpu_runs_never_share_a_table():
    gpu = run([record(op="copy", bytes_read=GB)], run_id="g")
    cpu = run([record(op="copy", timing="wall", device="Some CPU", bytes_read=GB)], device=CPU, run_id="c")
    sections = report.sections(report.frame([gpu, cpu]))
    assert len(sections) == 2
    for _, group in sections:
        assert group["timing"].nunique() == 1 and group["device"].nunique() == 1


GOLDEN = """\
### NVIDIA H200: GPU, timed with device events (normalized against spec h200)

| suite | op | impl | dtype | case | time ms (median [p10, p90]) | n | rate | bound | % of spec | % of best | check | status |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
| stream | copy | torch | fp32 | n=1000000000 | 2 [1.96, 2.04] | 3 | 4,000.0 GB/s | memory | 83.3 % | 100.0 % | pass | ok |
| stream | read | triton | fp32 | n=1000000000 | 1 [0.98, 1.02] | 3 | 4,000.0 GB/s | memory | 83.3 % | 100.0 % | pass | ok |
| stream | write | torch | fp32 | n=1 | - |  | - | - | - | - | - | skipped: because |

"""


def test_golden_markdown_table():
    recs = [record(op="copy", time_ms=2.0, bytes_read=4 * GB, bytes_written=4 * GB),
            record(op="read", impl="triton", time_ms=1.0, bytes_read=4 * GB),
            record(op="write", status="skipped")]
    recs[2]["validation"] = None
    assert report.to_markdown(report.frame([run(recs)])) == GOLDEN


def test_csv_has_every_column_and_parses(tmp_path):
    df = report.frame([run([record(time_ms=2.0, bytes_read=4 * GB, bytes_written=4 * GB)])])
    path = tmp_path / "t.csv"
    path.write_text(report.to_csv(df))
    back = pd.read_csv(path)
    for column in ("gbps", "pct_of_spec", "pct_of_best", "bound", "spec_id", "time_ms_median", "validated"):
        assert column in back


def test_two_runs_of_one_device_get_a_table_each():
    a = run([record(time_ms=2.0, bytes_read=4 * GB, bytes_written=4 * GB)], run_id="before")
    b = run([record(time_ms=1.9, bytes_read=4 * GB, bytes_written=4 * GB)], run_id="after")
    titles = [title for title, _ in report.sections(report.frame([a, b]))]
    assert len(titles) == 2 and "[run before]" in titles[0] + titles[1] and "[run after]" in titles[0] + titles[1]
    assert "[run" not in report.sections(report.frame([a]))[0][0]  # one run: no run in the title


def test_small_rates_keep_three_significant_digits():
    assert report.rate_text(0.0412) == "0.0412" and report.rate_text(4312.44) == "4,312.4"
    assert report.rate_text(9.876) == "9.88"


def test_side_by_side_of_two_runs_over_several_gpus_is_a_column_per_device():
    # each run has two GPUs; the devices are the columns (the GPU of median rate), not four "devices"
    from synthetic import H200, MI300X, gemm_record
    from parity.harness.reporting import crosstab

    def multi(device, name, rates, run_id):
        recs = [dict(gemm_record(m=4096, dtype="bf16", tflops=t, device=name), gpu_index=i) for i, t in enumerate(rates)]
        return run(recs, device=device, run_id=run_id)

    runs = [multi(H200, "NVIDIA H200", (600.0, 700.0, 650.0), "h"), multi(MI300X, "AMD Instinct MI300X", (800.0, 900.0, 850.0), "m")]
    (title, rows), = crosstab.side_by_side(report.frame(runs))
    (row,) = rows
    rates = [k for k in row if k.endswith(" rate")]
    assert rates == ["NVIDIA H200 rate", "AMD Instinct MI300X rate"], list(row)
    assert row["AMD Instinct MI300X / NVIDIA H200"] == f"{850 / 650:.2f}x"  # median GPU over median GPU
    assert "NVIDIA H200: median of 3" in title and "AMD Instinct MI300X: median of 3" in title
    assert all(v != "-" for v in row.values())
