"""`parity selfcheck`: the verdict of each check on made-up figures, the independent CPU timer, and
the command through its entry point on the CPU."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from parity.harness.measurement import selfcheck
from parity.harness.measurement.selfcheck import FAIL, PASS, SKIP

TIMEOUT_S = 120


def test_agreement_verdicts():
    ok = selfcheck.judge_agreement("gemm", 1.01, 1.0, "do_bench", 0.02)
    assert ok.status == PASS and ok.value == pytest.approx(0.01) and ok.threshold == "<= 2 %"
    assert "harness 1.01 ms, do_bench 1 ms: 1.00 % apart" == ok.figure
    assert selfcheck.judge_agreement("gemm", 0.97, 1.0, "do_bench", 0.02).status == FAIL
    assert selfcheck.judge_agreement("gemm", 1.0199, 1.0, "do_bench", 0.02).status == PASS


def test_agreement_figure_carries_the_clock_power_and_energy():
    summary = {"source": "nvml", "sm_clock_mhz_median": 1755.0, "power_w_median": 690.4,
               "energy_j_per_call": 0.9712, "throttled_fraction": 0.25}
    result = selfcheck.judge_agreement("gemm", 1.4, 1.39, "do_bench", 0.02, summary)
    assert "(1755 MHz, 690 W, 0.971 J/call, throttled 25%)" in result.figure
    assert result.detail["telemetry"] is summary


def test_spread_verdicts():
    ok = selfcheck.judge_spread("copy", [1.0, 1.004, 0.998, 1.002, 1.001], 0.01)
    assert ok.status == PASS and ok.value == pytest.approx(0.006 / 1.001)  # over the median of the medians
    assert selfcheck.judge_spread("copy", [1.0, 1.02, 1.0], 0.01).status == FAIL


def test_flush_verdicts():
    assert selfcheck.judge_flush("read", 0.010, 0.016, 1.2).status == PASS
    bad = selfcheck.judge_flush("read", 0.010, 0.0105, 1.2)  # the flush did not evict the buffer
    assert bad.status == FAIL and bad.value == pytest.approx(1.05)


def test_telemetry_verdicts():
    full = {"source": "nvml", "sm_clock_mhz_median": 1980.0, "power_w_median": 500.0, "energy_j_per_call": 0.1}
    assert selfcheck.judge_telemetry({"a": full, "b": full}).status == PASS
    partial = selfcheck.judge_telemetry({"a": full, "b": {**full, "energy_j_per_call": None}})
    assert partial.status == FAIL and partial.detail["missing"] == {"b": ["energy_j_per_call"]}
    none = selfcheck.judge_telemetry({"a": {"source": "none", "reason": "pynvml could not open GPU 0: X"}})
    assert none.status == FAIL and "pynvml could not open GPU 0: X" in none.figure
    assert selfcheck.judge_telemetry({}).status == SKIP


def test_plain_loop_takes_the_least_disturbed_block():
    ticks = iter(range(10_000))
    clock = lambda: next(ticks) * 1e-3  # noqa: E731 - every clock() call is one more millisecond
    # Each call reads the clock zero times, so a block of k calls spans exactly one tick: 1 ms / k.
    ms = selfcheck.loop_ms(lambda: None, budget_s=0.05, blocks=5, clock=clock)
    assert ms == pytest.approx(1.0 / 10)  # one call "took" 1 ms -> 10 calls per 10 ms block


def test_plain_loop_ignores_interrupted_blocks():
    """Three of five blocks lose 20 ms to another process: the median block would say so."""
    now = {"t": 0.0, "calls": 0}

    def thunk():
        now["calls"] += 1
        now["t"] += 1e-3
        if now["calls"] in (15, 25, 35):  # inside blocks 1, 2 and 3 (calls 3-12 are block 0)
            now["t"] += 0.02

    ms = selfcheck.loop_ms(thunk, budget_s=0.05, blocks=5, clock=lambda: now["t"])
    assert ms == pytest.approx(1.0)


def test_failed_is_any_fail():
    results = [selfcheck.skipped("flush", "x", "why"), selfcheck.judge_flush("r", 1.0, 2.0, 1.2)]
    assert not selfcheck.failed(results)
    assert selfcheck.failed(results + [selfcheck.judge_flush("r", 1.0, 1.0, 1.2)])
    assert [r["result"] for r in selfcheck.rows(results)] == [SKIP, PASS]


def test_run_on_the_cpu(cpu_device, monkeypatch):
    if cpu_device.is_gpu:
        pytest.skip("the CPU variant of the checks")
    threads, seen = torch.get_num_threads(), []
    real_loop = selfcheck.loop_ms
    monkeypatch.setattr(selfcheck, "loop_ms", lambda thunk: seen.append(torch.get_num_threads()) or real_loop(thunk))
    results = selfcheck.run(cpu_device, repeats=3, settle_s=0.0)
    assert seen == [1] * 2 * selfcheck.AGREEMENT_ROUNDS and torch.get_num_threads() == threads  # one thread only
    by = {(r.check, r.subject.split()[0]): r for r in results}
    assert [r.check for r in results] == ["agreement", "agreement", "spread", "flush", "dirty-lines", "clock",
                                          "small-kernel", "telemetry"]
    for key in (("agreement", "copy"), ("agreement", "matmul"), ("spread", "copy")):
        r = by[key]
        assert r.status in (PASS, FAIL) and r.value is not None and r.value >= 0
        assert (r.status == PASS) == (r.value <= selfcheck.CPU_AGREEMENT if r.check == "agreement"
                                      else r.value < selfcheck.CPU_SPREAD)
    assert by[("agreement", "copy")].detail["independent"] == "plain loop"
    assert len(by[("spread", "copy")].detail["medians_ms"]) == 3
    assert by[("flush", "cold")].status == SKIP and "only on a GPU" in by[("flush", "cold")].figure
    for check in ("dirty-lines", "clock", "small-kernel"):
        (r,) = [r for r in results if r.check == check]
        assert r.status == SKIP and "GPU only" in r.figure
    assert by[("telemetry", "clocks,")].status == SKIP and "no GPU" in by[("telemetry", "clocks,")].figure


def test_a_check_that_raises_fails_alone(cpu_device, monkeypatch):
    if cpu_device.is_gpu:
        pytest.skip("the CPU variant of the checks")

    def broken(thunk):
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(selfcheck, "loop_ms", broken)
    monkeypatch.setattr(selfcheck, "CPU_TIME_CAP_S", 0.05)  # the figures do not matter here
    results = selfcheck.run(cpu_device, repeats=2, settle_s=0.0)
    assert [(r.check, r.status) for r in results[:2]] == [("agreement", FAIL)] * 2
    assert results[0].figure == "error: RuntimeError: out of memory second line"
    assert results[2].check == "spread" and results[2].status in (PASS, FAIL) and results[2].value is not None
    monkeypatch.setattr(selfcheck, "reference_kernels", lambda device: broken(None))
    (setup,) = selfcheck.run(cpu_device)
    assert (setup.check, setup.status) == ("setup", FAIL)


def test_a_failed_check_is_exit_status_1(monkeypatch, capsys):
    from parity.harness import cli

    monkeypatch.setattr(selfcheck, "run", lambda device, **kw: [selfcheck.judge_flush("read", 1.0, 1.0, 1.2)])
    assert cli.main(["selfcheck", "--format", "md"]) == 1
    assert "| flush | read | warm 1 ms, cold 1 ms: cold/warm 1.00 | >= 1.2 | FAIL |" in capsys.readouterr().out
    monkeypatch.setattr(selfcheck, "run", lambda device, **kw: [selfcheck.judge_flush("read", 1.0, 2.0, 1.2)])
    assert cli.main(["selfcheck", "--format", "md"]) == 0


def _parity(*args, cwd):
    from test_cli import clean_env

    return subprocess.run([sys.executable, "-m", "parity", *map(str, args)], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def test_selfcheck_through_the_entry_point(tmp_path):
    out = tmp_path / "selfcheck.json"
    proc = _parity("selfcheck", "--repeats", "3", "--settle-s", "0", "--format", "md", "--json", out, cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["schema"] == "parity.selfcheck/1" and data["device"]["backend"]
    assert proc.returncode == (0 if data["passed"] else 1), proc.stderr
    assert data["passed"] == all(c["status"] != FAIL for c in data["checks"])
    assert {c["check"] for c in data["checks"]} == {"agreement", "spread", "flush", "dirty-lines", "clock",
                                                    "small-kernel", "telemetry"}
    assert "| check | subject | figure | threshold | result |" in proc.stdout
    for check in data["checks"]:
        assert f"| {check['status']} |" in proc.stdout
    assert "parity: selfcheck: agreement:" in proc.stderr  # progress goes to stderr


@pytest.mark.parametrize("args, needle", [
    (["--repeats", "1"], "--repeats must be at least 2"),
    (["--settle-s", "-1"], "--settle-s -1.0 is not 0 or more and at most 3600 s"),
    (["--json", "/nonexistent-folder/x.json"], "no folder /nonexistent-folder"),
    (["--bogus"], "unrecognized arguments"),
])
def test_selfcheck_bad_input_is_one_line(tmp_path, args, needle):
    """Through main() in this process (tests/test_badinput.py sends bad input through real processes)."""
    from test_cli import assert_one_error_line, parity_main

    assert_one_error_line(parity_main("selfcheck", *args, cwd=tmp_path), needle)


@pytest.mark.gpu
def test_selfcheck_on_a_gpu(cpu_device):
    results = selfcheck.run(cpu_device, repeats=3)
    by = {r.check: r for r in results}
    assert by["flush"].status != SKIP and by["telemetry"].status == PASS, by["telemetry"].figure
    assert all(r.status != SKIP for r in results if r.check == "agreement"), [r.figure for r in results]


# --- issue 13: interleaving, the warm buffer, flush variants, clock, small kernels, duty ------------


def test_the_harness_and_the_independent_timer_interleave(cpu_device, monkeypatch):
    from parity.harness.measurement.timing import summarize

    order = []
    monkeypatch.setattr(selfcheck, "measure", lambda thunk, timing, policy, flush, window: (
        order.append("harness"), window.start(), window.stop(5, busy_s=0.0), summarize([1.0] * 5, "noise"))[-1])
    monkeypatch.setattr(selfcheck, "loop_ms", lambda thunk: order.append("loop") or 1.01)
    monkeypatch.setattr(selfcheck, "do_bench_ms", lambda thunk: order.append("loop") or 1.01)  # on a GPU host
    harness = selfcheck._Harness(cpu_device, selfcheck.telemetry.Unavailable("test"), 0.0)
    result = selfcheck._agreement(harness, "copy", lambda: None, rounds=3)
    assert order == ["harness", "loop"] * 3  # A B A B A B, not A A A B B B
    assert result.detail["order"] == ["harness", result.detail["independent"]] * 3 and result.value == pytest.approx(0.01 / 1.01)


def test_the_warm_read_is_a_quarter_of_the_llc():
    assert selfcheck.warm_read_bytes(50 << 20) == 12.5 * (1 << 20)
    assert selfcheck.warm_read_bytes(256 << 20) == 64 << 20


def test_flush_reports_both_variants():
    r = selfcheck.judge_flush("read", 0.010, 0.016, 1.2, dirty_cold_ms=0.019)
    assert r.status == PASS and r.value == pytest.approx(1.6)
    assert "(memset flush: cold 0.019 ms, cold/warm 1.90)" in r.figure and r.detail["ratio_dirty"] == pytest.approx(1.9)


def test_dirty_lines_clock_and_small_kernel_are_information():
    dirty = selfcheck.judge_dirty_lines("gemm", 0.020, 0.030)
    assert dirty.status == selfcheck.INFO and dirty.value == pytest.approx(0.5)
    assert "dirty lines add 10 us (+50.0 %)" in dirty.figure
    clock = selfcheck.judge_clock("mm", {"sm_clock_mhz_first": 1980.0, "sm_clock_mhz_last": 1650.0,
                                         "clock_state": "burst"})
    assert clock.status == selfcheck.INFO and "1980 MHz" in clock.figure and "records burst" in clock.figure
    assert selfcheck.judge_clock("mm", {"reason": "no nvml"}).status == SKIP
    from parity.harness.measurement.timing import summarize

    single = summarize([0.0025] * 20, "time-cap")
    several = summarize([0.0023] * 20, "noise", launches_per_sample=40, timing_mode="back-to-back")
    small = selfcheck.judge_launches("copy 64 KiB", single, several)
    assert small.status == selfcheck.INFO and "40 back-to-back: 2.3 us" in small.figure
    assert not selfcheck.failed([dirty, clock, small])


def test_telemetry_text_shows_duty_and_clock_state():
    text = selfcheck._tel_text({"source": "nvml", "sm_clock_mhz_median": 1755.0, "duty": 0.42,
                                "clock_state": "sustained"})
    assert text == " (1755 MHz, duty 42%, clock sustained)"
