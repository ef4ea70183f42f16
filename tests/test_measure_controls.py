"""parity.measure's and parity.run's controls, the CPU thread count, the interpreter's label, an
Impl's declared dtypes and layouts, and CPU timings on a loaded machine (issue 22)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

import parity
from parity.harness.core.model import Impl, UsageError
from parity.harness.core.results import MEASUREMENTS_FILE, read_records
from parity.harness.measurement import threads
from parity.harness.measurement.runner import RunPlan, execute
from tests.test_runner import _good, toy_suite, use_toy  # noqa: F401 - the fixture

X = torch.randn(4096, generator=torch.Generator().manual_seed(0))


def test_name_warmup_samples_and_threads_are_the_callers():
    r = parity.measure(lambda: X.sum(), name="my sum", warmup_ms=0, max_samples=7, threads=1, dtype="fp32")
    assert r.name == "my sum" and r.n == 7 and r.stop == "max-samples"
    assert r.threads == 1 and r.timing == "wall"
    assert torch.get_num_threads() == threads.default_threads() or torch.get_num_threads() >= 1  # restored


def test_the_default_thread_count_is_one_per_physical_core_and_restored():
    before = torch.get_num_threads()
    r = parity.measure(lambda: X.sum(), max_samples=5, dtype="fp32")
    assert r.threads == threads.default_threads() == threads.physical_cores()
    assert torch.get_num_threads() == before


def test_setup_runs_before_the_check_and_every_sample_outside_the_clock():
    calls = {"setup": 0, "fn": 0}
    acc = torch.zeros(8)

    def setup():
        calls["setup"] += 1
        acc.zero_()  # the op accumulates: without the reset a second call would fail its check

    def fn():
        calls["fn"] += 1
        acc.add_(1.0)
        return acc.clone()

    r = parity.measure(fn, setup=setup, reference=torch.ones(8), max_samples=6, dtype="fp32")
    assert r.validation["passed"]
    assert calls["setup"] >= r.n + 1 and calls["setup"] <= calls["fn"]


def test_min_time_keeps_sampling():
    start = time.perf_counter()
    r = parity.measure(lambda: X.sum(), min_time_s=0.2, time_cap_s=0.3, dtype="fp32")
    assert time.perf_counter() - start >= 0.2 and r.n >= 5


@pytest.mark.parametrize("kwargs, words", [
    ({"dtype": "fp9"}, "one of fp64, fp32"),
    ({"max_samples": 0}, "max_samples"),
    ({"max_samples": 2.5}, "max_samples"),
    ({"threads": 0}, "threads"),
    ({"threads": 10**6}, "threads"),
    ({"warmup_ms": float("nan")}, "warmup_ms"),
    ({"warmup_ms": 1e308}, "warmup_ms"),
    ({"warmup_ms": 1, "warmup": 1}, "not both"),
    ({"min_time_s": -1}, "min_time_s"),
    ({"name": ""}, "name"),
    ({"setup": 3}, "setup"),
])
def test_bad_controls_are_one_line(kwargs, words):
    with pytest.raises(parity.MeasureError, match=words) as caught:
        parity.measure(lambda: X.sum(), **kwargs)
    assert "\n" not in str(caught.value)


def test_interpreted_triton_is_labelled_and_gets_no_rate():
    parity.detect()
    import triton
    import triton.language as tl

    @triton.jit
    def double(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(out_ptr + i, 2 * tl.load(x_ptr + i, mask=i < n), mask=i < n)

    x = torch.randn(37)
    out = torch.empty_like(x)

    def fn():
        double[(2,)](x, out, 37, BLOCK=32)
        return out

    r = parity.measure(fn, reference=lambda: 2 * x, bytes_read=4 * 37, bytes_written=4 * 37, dtype="fp32",
                       max_samples=3)
    assert r.timing == "wall-interpret"
    assert r.gbps is None and r.pct_of_spec is None and r.row()["GB/s"] == "-"


def test_the_detect_hint_only_where_it_is_the_fix():
    from parity.harness.api_measure import _hint
    from parity.harness.core.device import detect

    cpu = detect()

    def raised_in(module: str) -> BaseException:
        code = compile("def f():\n    raise RuntimeError('0 active drivers')\n", module, "exec")
        scope = {"__name__": module}
        exec(code, scope)
        try:
            scope["f"]()
        except RuntimeError as exc:
            return exc

    assert "parity.detect()" in _hint(raised_in("triton.runtime.driver"), cpu)  # the GPU path asked for a driver
    assert _hint(raised_in("triton.runtime.jit"), cpu) == ""  # a heuristic's KeyError passes here too: no hint
    assert _hint(raised_in("triton.runtime.autotuner"), cpu) == ""
    assert _hint(raised_in("mymodule"), cpu) == ""
    try:  # the driver's error as the cause of another (a wrapper's): the cause counts
        try:
            raise raised_in("triton.runtime.driver")
        except RuntimeError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        chained = outer
    assert "parity.detect()" in _hint(chained, cpu)


def test_run_takes_the_cli_controls(tmp_path):
    out = parity.run(["stream"], preset="smoke", impl="torch", dtype="fp32", sizes="64KiB,128KiB",
                     out=tmp_path / "r", time_cap_s=0.05, case_timeout_s=60, threads=1, min_time_s=0)
    records, _ = read_records(out / MEASUREMENTS_FILE)
    sizes = {r["params"]["working_set_bytes"] for r in records}  # each op rounds to its element count
    assert records and all(min(abs(s - 65536), abs(s - 131072)) <= 16 for s in sizes) and len(sizes) >= 2
    ok = [r for r in records if r["status"] == "ok"]
    assert ok and all(r["time_ms"]["threads"] == 1 for r in ok)


@pytest.mark.parametrize("kwargs, words", [
    ({"sizes": "12 parsecs"}, "cannot read size"),
    ({"sizes": [0]}, "positive"),
    ({"shapes": "4096x0x4096"}, "zero dimension"),
    ({"shapes": [(4096, -1, 2)]}, "not a shape"),
    ({"threads": 10**6}, "--cpu-threads"),
    ({"threads": 1.5}, "whole number"),
    ({"case_timeout_s": 1e308}, "case_timeout_s"),
])
def test_run_refuses_bad_controls_before_creating_anything(tmp_path, kwargs, words):
    with pytest.raises(UsageError, match=words):
        parity.run(["stream"], preset="smoke", out=tmp_path / "r", **kwargs)
    assert not (tmp_path / "r").exists()


def test_an_impl_declares_its_dtypes_and_layouts(tmp_path, cpu_device, use_toy):  # noqa: F811
    fp16_only = Impl("fp16-only", "double", "torch", _good, dtypes=("fp16",))
    nn_only = Impl("nn-only", "double", "torch", _good, layouts=("NN",))
    assert fp16_only.skip_reason(cpu_device, {"dtype": "fp32"}) == "fp16-only declares dtypes fp16; not fp32"
    assert nn_only.skip_reason(cpu_device, {"layout": "TN"}) == "nn-only declares layouts NN; not TN"
    assert nn_only.skip_reason(cpu_device, {"layout": "NN", "dtype": "fp32"}) is None
    use_toy(toy_suite(fp16_only, Impl("good", "double", "torch", _good)))
    execute(RunPlan(suites=("toy",), preset="smoke", time_cap_s=0.05), cpu_device, tmp_path / "toy", ["test"])
    records, _ = read_records(tmp_path / "toy" / MEASUREMENTS_FILE)
    by = {r["impl"]: r for r in records}
    assert by["fp16-only"]["status"] == "skipped" and "declares dtypes fp16" in by["fp16-only"]["reason"]
    assert by["good"]["status"] == "ok"


LOAD = "import time\nend = time.time() + {s}\nwhile time.time() < end:\n    pass\n"


def test_a_loaded_machine_gives_a_median_within_2x_of_the_unloaded_minimum_or_a_flag():
    """Busy processes on every CPU beside the timed op: the median reported is the op's (within 2x
    of its unloaded fastest sample) or the record says it is noisy, never a plateau of the load."""
    x = torch.randn(1 << 17)  # above PyTorch's grain (32768): the add runs on every OpenMP thread
    out = torch.empty_like(x)

    def op():
        return torch.add(x, x, out=out)

    quiet = parity.measure(op, max_samples=200, time_cap_s=0.3, dtype="fp32")
    hogs = [subprocess.Popen([sys.executable, "-c", LOAD.format(s=3)]) for _ in range(threads.limit() + 1)]
    try:
        time.sleep(0.2)
        loaded = parity.measure(op, time_cap_s=0.5, dtype="fp32")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert loaded.median_ms <= 2 * min(quiet.samples_ms) or loaded.noisy, (loaded.median_ms, min(quiet.samples_ms))


def test_a_noisy_record_is_flagged_in_the_report():
    from parity.harness.reporting import report
    from tests.synthetic import run, stream_record

    clean, noisy = stream_record(), stream_record(op="copy")
    noisy["time_ms"] = {**noisy["time_ms"], "noisy": "two modes: 0.01 ms (60%) and 8 ms (40%)"}
    df = report.frame([run([clean, noisy])]).set_index("op")
    assert df.loc["copy", "flag"].startswith("noisy, two modes") and not isinstance(df.loc["triad", "flag"], str)
