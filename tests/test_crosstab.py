"""Several devices side by side, each normalized against its own spec (crosstab.py)."""
from __future__ import annotations

import pytest

from parity.harness.reporting import crosstab, report
from synthetic import CPU, H100, MI300X, gemm_record, record, run, stream_record

MI = "AMD Instinct MI300X"


def two_devices():
    h200 = run([gemm_record(m=8192, dtype="fp8", tflops=1385.3), gemm_record(m=4096, dtype="bf16", tflops=692.6),
                stream_record(op="triad", n=1 << 28, gbps=4300.0), gemm_record(m=1024, dtype="bf16", tflops=173.1)],
               run_id="h200-run")
    mi300x = run([gemm_record(m=8192, dtype="fp8", tflops=1569.0, device=MI),
                  gemm_record(m=4096, dtype="bf16", tflops=784.2, device=MI),
                  stream_record(op="triad", n=1 << 28, gbps=4200.0, device=MI)], device=MI300X, run_id="mi-run")
    return h200, mi300x


GOLDEN = """\
### Side by side: GPU, timed with device events; each device against its own spec (NVIDIA H200: h200, AMD Instinct MI300X: mi300x); the ratio is of rates, above 1 is faster than NVIDIA H200; 1 case(s) measured on one device only are left out

| suite | op | impl | dtype | case | NVIDIA H200 rate | NVIDIA H200 % of spec | AMD Instinct MI300X rate | AMD Instinct MI300X % of spec | AMD Instinct MI300X / NVIDIA H200 |
|---|---|---|---|---|---|---|---|---|---|
| gemm | gemm | torch | fp8 | m=8192 n=8192 k=8192 layout=tn | 1,385.3 TFLOPS | 70.0 % | 1,569.0 TFLOPS | 60.0 % | 1.13x |
| gemm | gemm | torch | bf16 | m=4096 n=4096 k=4096 layout=tn | 692.6 TFLOPS | 70.0 % | 784.2 TFLOPS | 60.0 % | 1.13x |
| stream | triad | torch | fp32 | n=268435456 working_set=3 GiB | 4,300.0 GB/s | 89.6 % | 4,200.0 GB/s | 79.2 % | 0.98x |

"""


def test_golden_side_by_side_markdown():
    # MI300X: fp8 peak 2614.9, bf16 1307.4, 5.3 TB/s; H200: fp8 1978.9, bf16 989.4, 4.8 TB/s
    assert crosstab.to_markdown(report.frame(list(two_devices()))) == GOLDEN


def test_each_device_is_normalized_against_its_own_spec():
    df = report.frame(list(two_devices()))
    fp8 = df[(df["dtype"] == "fp8")].set_index("spec_id")
    assert fp8.loc["h200", "pct_of_spec"] == pytest.approx(1385.3 / 1978.9, rel=1e-3)
    assert fp8.loc["mi300x", "pct_of_spec"] == pytest.approx(1569.0 / 2614.9, rel=1e-3)


def test_one_device_or_interpreter_timings_give_no_side_by_side():
    h200, _ = two_devices()
    assert crosstab.side_by_side(report.frame([h200])) == []
    interp = [record(op="copy", impl="triton", timing="wall-interpret", device="Some CPU", bytes_read=10**9)]
    other = [record(op="copy", impl="triton", timing="wall-interpret", device="Other CPU", bytes_read=10**9)]
    df = report.frame([run(interp, device=CPU, run_id="a"), run(other, device=dict(CPU, name="Other CPU"), run_id="b")])
    assert crosstab.side_by_side(df) == []


def test_gpu_and_cpu_rows_never_share_a_side_by_side_table():
    gpu = run([record(op="copy", bytes_read=10**9)], run_id="g")
    h100 = run([record(op="copy", bytes_read=10**9, device="NVIDIA H100 80GB HBM3")], device=H100, run_id="h")
    cpu = run([record(op="copy", timing="wall", device="Some CPU", bytes_read=10**9)], device=CPU, run_id="c")
    tables = crosstab.side_by_side(report.frame([gpu, h100, cpu]))
    assert len(tables) == 1  # the CPU's wall clock has no second device to sit beside
    assert "Some CPU rate" not in tables[0][1][0] and "NVIDIA H100 80GB HBM3 rate" in tables[0][1][0]


def test_one_device_twice_gets_run_ids_and_extra_columns_do_not_break_it():
    a = run([record(op="copy", time_ms=2.0, bytes_read=10**9)], run_id="before")
    b = run([record(op="copy", time_ms=1.0, bytes_read=10**9)], run_id="after")
    df = report.frame([a, b])
    df["watts"] = 500.0  # another branch adds telemetry columns to the frame
    (title, rows), = crosstab.side_by_side(df)
    assert rows[0]["NVIDIA H200 [after] / NVIDIA H200 [before]"] == "2.00x"
