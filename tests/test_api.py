"""The Python API (parity.measure, run, load, specs, to_torch_benchmark) and the arrows of the
harness: the CLI stands on the API; submit, report and html import no layer above them."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from synthetic import H200, gemm_record, stream_record, write_run
from test_cli import TIMEOUT_S, clean_env

import parity

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, cwd: Path, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env or clean_env(), capture_output=True,
                          text=True, timeout=TIMEOUT_S)


# --- measure ------------------------------------------------------------------------------------------


def test_measure_a_matmul_gives_statistics_and_tflops():
    a, b = torch.randn(67, 61, dtype=torch.float32), torch.randn(61, 59, dtype=torch.float32)
    flops = 2 * 67 * 61 * 59
    r = parity.measure(lambda: a @ b, flops=flops, dtype="fp32", reference=lambda: a.double() @ b.double(),
                       time_cap_s=0.05)
    assert r.n == len(r.samples_ms) >= 1 and r.p10_ms <= r.median_ms <= r.p90_ms
    # the median of the samples (the mean of the middle two for an even count: a loaded machine may
    # leave only two samples inside the time cap, and the upper one can be twice the lower)
    assert r.median_ms == pytest.approx(statistics.median(r.samples_ms), rel=1e-9)
    assert r.tflops == pytest.approx(flops / (r.median_ms * 1e-3) / 1e12)
    assert r.gbps is None  # no bytes declared
    assert r.validation["passed"] is True
    if not torch.cuda.is_available():
        assert r.timing == "wall" and r.pct_of_spec is None and r.spec_id is None  # a CPU matches no spec
    text = str(r)
    assert "median ms" in text and "TFLOPS" in text and "\n" not in text
    table = parity.table([r, r], "text").splitlines()
    assert len(table) == 3 and "median ms" in table[0]


def test_measure_bytes_give_gbps():
    x = torch.randn(10007)
    r = parity.measure(lambda: x.clone(), bytes_read=x.numel() * 4, bytes_written=x.numel() * 4, dtype="fp32",
                       cache="warm", time_cap_s=0.05)
    assert r.gbps == pytest.approx(2 * x.numel() * 4 / (r.median_ms * 1e-3) / 1e9)
    assert r.tflops is None and r.validation is None


def test_measure_with_a_user_check():
    a = torch.randn(33, 17)
    r = parity.measure(lambda: a * 2, reference=lambda: a + a, check=torch.testing.assert_close, time_cap_s=0.02)
    assert r.validation["passed"]
    with pytest.raises(parity.ValidationError, match="check failed"):
        parity.measure(lambda: a * 2.5, reference=lambda: a + a, check=torch.testing.assert_close)
    with pytest.raises(parity.ValidationError, match="check returned False"):
        parity.measure(lambda: a, check=lambda out: bool((out > 10).all()))


def test_measure_refuses_a_wrong_output_before_timing():
    a = torch.randn(31, 29)
    calls = []

    def wrong():
        calls.append(1)
        out = a.clone()
        out[5, 7] += 1.0  # one bad element
        return out

    with pytest.raises(parity.ValidationError, match="does not match the reference") as info:
        parity.measure(wrong, reference=a)
    assert len(calls) == 1  # validated once, never timed
    assert info.value.check.max_abs_error == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(parity.ValidationError, match="shape"):
        parity.measure(lambda: a[:3], reference=a)
    with pytest.raises(parity.ValidationError, match="NaN"):
        parity.measure(lambda: a * float("nan"), reference=a)


def test_measure_default_check_accepts_bf16_rounding():
    a, b = torch.randn(64, 48), torch.randn(48, 40)
    r = parity.measure(lambda: (a.bfloat16() @ b.bfloat16()), reference=lambda: a.bfloat16().double() @ b.bfloat16().double(),
                       flops=2 * 64 * 48 * 40, dtype="bf16", time_cap_s=0.02)
    assert r.validation["passed"] and r.dtype == "bf16"


@pytest.mark.parametrize("kwargs, needle", [
    ({"flops": -1}, "flops"), ({"bytes_read": "lots"}, "bytes_read"), ({"cache": "hot"}, "cache"),
    ({"dtype": ""}, "dtype"), ({"time_cap_s": 0}, "time_cap_s"), ({"bytes_written": float("nan")}, "bytes_written"),
])
def test_measure_bad_arguments_are_one_clear_exception(kwargs, needle):
    with pytest.raises(parity.MeasureError, match=needle) as info:
        parity.measure(lambda: None, **kwargs)
    assert "\n" not in str(info.value)


def test_measure_a_callable_that_raises_is_one_line_with_its_cause():
    def broken():
        raise RuntimeError("CUDA error: an illegal memory access\nmore lines of detail")

    with pytest.raises(parity.MeasureError) as info:
        parity.measure(broken)
    assert str(info.value) == ("test_measure_a_callable_that_raises_is_one_line_with_its_cause.<locals>.broken() "
                               "raised RuntimeError: CUDA error: an illegal memory access more lines of detail")
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(parity.MeasureError, match="callable"):
        parity.measure(42)
    with pytest.raises(parity.MeasureError, match="reference raised ZeroDivisionError"):
        parity.measure(lambda: torch.ones(3), reference=lambda: 1 / 0)


def test_measure_a_callable_that_fails_while_timed():
    state = {"n": 0}

    def flaky():
        state["n"] += 1
        if state["n"] > 2:
            raise ValueError("third call")
        return torch.ones(3)

    with pytest.raises(parity.MeasureError, match="third call.*while being timed"):
        parity.measure(flaky)


def test_measure_normalizes_against_the_matched_spec(monkeypatch):
    """What a GPU run gives, without one: the device is an H200, the callable a fake 'GPU' matmul."""
    from parity.harness.core import device as device_mod
    from parity.harness.core.device import DeviceInfo
    from parity.harness.measurement import flush, telemetry_readers, timing

    h200 = DeviceInfo(backend="cuda", name="NVIDIA H200", arch="sm_90", index=0, memory_bytes=141 * 10**9,
                      multiprocessors=132, l2_bytes=50 << 20, llc_bytes=50 << 20, driver_version=None,
                      runtime_version=None, spec_id="h200")
    monkeypatch.setattr(device_mod, "detect", lambda index=0, select=True: h200)
    monkeypatch.setattr(flush.Flush, "buffer", lambda self: None)
    monkeypatch.setattr(telemetry_readers, "open_reader", lambda device: telemetry_readers.Unavailable("test"))
    monkeypatch.setattr("parity.harness.api_measure._synchronize", lambda device: None)
    samples = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.0, 1.0, 1.0]
    stats = timing.summarize(samples, "noise")
    monkeypatch.setattr(timing, "measure", lambda thunk, kind, policy, flush, window=None, setup=None: stats)
    flops = 495e12 * 1e-3  # 1 ms at 495 TFLOPS: half of H200's dense bf16 peak (989.4)
    r = parity.measure(lambda: None, flops=flops, dtype="bf16")
    assert r.timing == "events" and r.spec_id == "h200" and r.bound == "compute"
    assert r.tflops == pytest.approx(495)
    assert r.pct_of_spec == pytest.approx(495 / 989.4, rel=1e-3)
    assert "% of h200" in str(r)


# --- load, run, to_torch_benchmark -------------------------------------------------------------------


def test_load_gives_one_row_per_record_with_params_as_columns(tmp_path):
    a = write_run(tmp_path / "a", [stream_record(n=1 << 26), stream_record(op="copy", n=5003)], device=H200)
    b = write_run(tmp_path / "b", [gemm_record(m=512, n=256, k=128)], device=H200, run_id="r2")
    df = parity.load(a, str(b))
    assert len(df) == 3
    assert list(df["n"]) == [1 << 26, 5003, 256]  # the stream length, and GEMM's n
    assert list(df["working_set_bytes"][:2]) == [(1 << 26) * 3 * 4, 5003 * 2 * 4]
    assert df["m"].tolist()[2] == 512 and df["k"].tolist()[2] == 128 and df["layout"].tolist()[2] == "tn"
    assert df["dtype"].tolist() == ["fp32", "fp32", "bf16"]
    # Normalized against the H200 spec, as the report is: HBM for the large stream, cache-resident small ones
    assert df["spec_id"].tolist() == ["h200"] * 3
    assert df["pct_of_spec"][0] == pytest.approx(1000 / 4800)
    with pytest.raises(parity.UsageError):
        parity.load()


def test_load_a_missing_run_is_one_clear_error(tmp_path):
    from parity.harness.core.results import ResultsError

    with pytest.raises(ResultsError) as info:
        parity.load(tmp_path / "nothing")
    assert "\n" not in str(info.value)


def test_to_torch_benchmark_feeds_compare(tmp_path):
    from torch.utils.benchmark import Compare

    base = write_run(tmp_path / "a", [stream_record(n=1000, samples=[0.010, 0.011, 0.012]),
                                      stream_record(n=1000, impl="triton", timing="wall-interpret"),
                                      stream_record(n=5003, status="failed")])
    ms = parity.to_torch_benchmark(base)
    assert len(ms) == 2  # the failed record has no times; the interpreter's is kept, marked
    m, interp = ms
    assert interp.description == "triton [interpreter]" and interp.metadata["interpreter"] is True
    assert "interpreter, not performance" in interp.env and m.metadata["interpreter"] is False
    assert (m.label, m.description, m.sub_label) == ("stream/triad", "torch", "fp32 n=1000 working_set=11.7 KiB")
    assert "NVIDIA H200" in m.env and m.median == pytest.approx(0.011e-3)
    compare = Compare(ms)
    assert "stream/triad" in str(compare)


def test_a_script_measures_runs_loads_and_exports(tmp_path, monkeypatch):
    """The issue's script, as a user writes it: import parity, measure a matmul, run, load, Compare.
    Here in this process (the run's case worker is a real process); docs/library.md's first block
    makes the same calls in a fresh interpreter (tests/test_docs.py), and the import is checked
    fresh below."""
    from torch.utils.benchmark import Compare

    monkeypatch.chdir(tmp_path)
    a, b = torch.randn(96, 80), torch.randn(80, 72)
    r = parity.measure(lambda: a @ b, flops=2 * 96 * 80 * 72, dtype="fp32", reference=lambda: a.double() @ b.double(),
                       time_cap_s=0.05)
    assert r.tflops > 0 and r.median_ms > 0, r
    run = parity.run("stream", preset="smoke", impl="torch", dtype="fp32", out="run", time_cap_s=0.02)
    df = parity.load(run)
    assert len(df) == 14 and {"n", "working_set_bytes"} <= set(df.columns), df.columns
    ms = parity.to_torch_benchmark(run)
    assert len(ms) == 14
    assert str(Compare(ms)).count("stream/") == 7 and Path(tmp_path / run).is_dir()


def test_run_refuses_bad_input_before_writing(tmp_path, monkeypatch):
    """In this process (a fresh one is the script above's subject): each bad argument is one
    UsageError of one line, and no folder is made, neither the one asked for nor one under runs/."""
    monkeypatch.chdir(tmp_path)
    for kwargs in ({"preset": "huge"}, {"impl": "cuda-magic"}, {"dtype": "fp128"}):
        with pytest.raises(parity.UsageError) as info:
            parity.run("stream", out="run", **kwargs)
        assert type(info.value).__name__ == "UsageError" and "\n" not in str(info.value), kwargs
    assert list(tmp_path.iterdir()) == []


def test_import_parity_is_light_and_changes_nothing(tmp_path):
    """Nothing heavy is imported and the environment is untouched (an ahead-of-time compile for
    another target, as parity inspect does, needs TRITON_INTERPRET unset); the first call detects."""
    code = """
import json, os, sys
import parity
heavy = [m for m in ("torch", "triton", "pandas", "parity.harness.api") if m in sys.modules]
before = os.environ.get("TRITON_INTERPRET")
device = parity.detect()
print(json.dumps([heavy, before, os.environ.get("TRITON_INTERPRET"), device.is_gpu, parity.specs.get("h200").id]))
"""
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    heavy, before, after, is_gpu, spec = json.loads(proc.stdout)
    assert heavy == [] and before is None and spec == "h200"
    assert after == (None if is_gpu else "1")


def test_a_triton_kernel_decorated_before_detection_gets_a_hint(tmp_path):
    """On a machine without a GPU, a kernel imported before parity switched the interpreter on
    tries to compile for a GPU: the error says what to do."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: a compiled kernel runs")
    code = """
import os
os.environ.pop("TRITON_INTERPRET", None)
import torch, triton, triton.language as tl
@triton.jit
def k(x_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(x_ptr + o, tl.load(x_ptr + o, mask=o < n) + 1, mask=o < n)
import parity
x = torch.zeros(10)
try:
    parity.measure(lambda: k[(1,)](x, 10, BLOCK=16))
except parity.MeasureError as exc:
    print(str(exc))
"""
    (tmp_path / "script.py").write_text(code)  # triton.jit reads the kernel's source file
    proc = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=clean_env(), capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "decorated before the interpreter was switched on" in proc.stdout, proc.stdout
    assert "import it after parity.detect()" in proc.stdout, proc.stdout


def test_specs_api():
    ids = [s.id for s in parity.specs.all()]
    assert ids == sorted(ids) and "h200" in ids and "mi300x" in ids
    assert parity.specs.get("h200").peak("bf16").value == pytest.approx(989.4)
    with pytest.raises(parity.UsageError, match="unknown spec"):
        parity.specs.get("h2000")


# --- arrows: cli -> api -> runner; reporting never imports the scale-out runners ----------------------


@pytest.mark.parametrize("module, forbidden", [
    ("parity.harness.scaleout.submit", ["parity.harness.cli"]),
    ("parity.harness.reporting.report", ["parity.harness.scaleout.multigpu", "parity.harness.scaleout.distributed",
                                         "parity.harness.cli"]),
    ("parity.harness.reporting.html", ["parity.harness.scaleout.multigpu", "parity.harness.scaleout.distributed",
                                       "parity.harness.cli"]),
    ("parity.harness.bench", ["parity.harness.measurement.runner", "parity.harness.cli"]),
    ("parity.harness.measurement.selfcheck", ["parity.harness.cli"]),
    ("parity.harness.api", ["parity.harness.cli"]),
])
def test_imports_run_one_way(module, forbidden, tmp_path):
    code = f"""
import sys, importlib
importlib.import_module({module!r})
print([m for m in {forbidden!r} if m in sys.modules])
"""
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]", (module, proc.stdout)


def test_the_submit_job_starts_a_child_process_not_the_cli(monkeypatch, tmp_path):
    from parity.harness.scaleout import submit

    calls = []
    monkeypatch.setattr(submit.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    result = submit.node_job(["stream", "--preset", "smoke"], str(tmp_path / "node-0"))
    assert result["code"] == 0 and result["part"] == str(tmp_path / "node-0")
    assert calls == [[sys.executable, "-m", "parity", "run", "stream", "--preset", "smoke", "--out",
                      str(tmp_path / "node-0")]]
    assert "parity.harness.cli" not in json.dumps(calls)
