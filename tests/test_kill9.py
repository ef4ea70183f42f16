"""kill -9 at any point loses nothing: a run killed at random points and resumed ends with every
case recorded exactly once, run.json complete, and the same case list as an uninterrupted run.

The seeded trials fork this process (already holding every import) and run the real runner and
writer in the child, with a small pure-Python suite of 12 cases of about 15 ms each (the wall
timing's warm-up), so a trial costs a fraction of a second; the parent kills the child with SIGKILL
at a random moment (before run.json exists, between cases, mid-record, while run.json is replaced)
and resumes. Kills are drawn within the run's measured length, so the run's phases are hit in
proportion to their length whatever the number of cases: 12 cases (2 impls x 6 sizes) give every
phase the run has, and 20 trials (with their resumes, each killed again at random) must land at least
10 kills in all (seed 17 lands 24-31, in every trial, on a 2-core machine, also beside two busy
processes; the run that is timed comes after one that pays the process's one-time costs, which
would make the kills fewer). One
more trial kills a real `parity run` (the supervisor and its worker) and resumes it through the CLI.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parity.harness.measurement import registry
from parity.harness.core.model import Check, Impl, Op, Suite, Work
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, read_records
from parity.harness.measurement.runner import RunPlan, execute
from test_cli import clean_env, parity_main

TRIALS = 20
SEED = 17


def _inputs(params, device):
    return [float(i % 7) + 1.0 for i in range(params["n"])]


def _double(inputs, params):
    def thunk():
        time.sleep(0.0005)  # a case of a few milliseconds, so kills land inside the walk
        return [2.0 * x for x in inputs]
    return thunk


def _check(output, expected, inputs, params):
    err = max(abs(a - b) for a, b in zip(output, expected))
    return Check(passed=err == 0, max_abs_error=err, tolerance={"atol": 0.0})


OP = Op(name="double", inputs=_inputs, work=lambda p: Work(p["n"], 8 * p["n"], 8 * p["n"], "fp64"),
        reference=lambda inputs, p: [2.0 * x for x in inputs], check=_check, cache="warm", metric="GB/s")
SUITE = Suite(name="kill9", description="pure-Python cases of a few milliseconds", ops=(OP,),
              impls=(Impl("py", "double", "torch", _double), Impl("py2", "double", "torch", _double)),
              presets=("smoke",), dtypes=("fp64",),
              params_for=lambda preset, device, dtypes, sizes: [("double", {"dtype": "fp64", "n": n})
                                                                 for n in range(10, 70, 10)])
PLAN = RunPlan(suites=("kill9",), preset="smoke", time_cap_s=0.002, settle_s=0.0)


@pytest.fixture
def kill9_suite(monkeypatch):
    real = registry.load
    monkeypatch.setattr(registry, "load", lambda name: SUITE if name == SUITE.name else real(name))


def _run_in_child(out, device, resume: bool) -> int:
    pid = os.fork()
    if pid == 0:  # the child: the real runner and writer, nothing else
        try:
            execute(PLAN, device, out, ["parity", "run", "kill9"], resume=resume)
            os._exit(0)
        except BaseException:  # noqa: BLE001 - the parent sees a nonzero status
            os._exit(1)
    return pid


def _finish(out, device, rng, kill_within_s: float) -> int:
    """Start (or resume) the run; kill it at a random moment; repeat until a run ends by itself.
    The first kill falls within the run's length, later ones within twice it, so resumes finish."""
    kills = 0
    while True:
        resume = (out / RUN_FILE).exists()
        pid = _run_in_child(out, device, resume)
        deadline = time.monotonic() + rng.uniform(0.0, kill_within_s * (2.0 if kills else 1.0))
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.001)
        else:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            kills += 1
            continue
        assert os.waitstatus_to_exitcode(status) == 0, f"a resume failed in {out}"
        return kills


def _keys_and_meta(out):
    records, notes = read_records(out / MEASUREMENTS_FILE)
    return [r["key"] for r in records], json.loads((out / RUN_FILE).read_text()), notes


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_kill9_at_random_points_then_resume_loses_nothing(tmp_path, cpu_device, kill9_suite):
    if cpu_device.is_gpu:
        pytest.skip("the forked children run on the CPU; a GPU context does not survive fork")
    whole = tmp_path / "whole"
    execute(PLAN, cpu_device, whole, ["parity", "run", "kill9"])  # pays this process's one-time costs
    began = time.monotonic()
    execute(PLAN, cpu_device, tmp_path / "timed", ["parity", "run", "kill9"])
    run_s = time.monotonic() - began  # a trial's length: kills are drawn within it, so most land mid-run
    expected, meta, _ = _keys_and_meta(whole)
    assert len(expected) == 12 and meta["status"] == "complete"
    rng = random.Random(SEED)
    total_kills = 0
    for trial in range(TRIALS):
        out = tmp_path / f"trial-{trial}"
        total_kills += _finish(out, cpu_device, rng, kill_within_s=run_s)
        keys, meta, notes = _keys_and_meta(out)
        assert sorted(keys) == sorted(expected), f"trial {trial}: lost or extra records"
        assert len(keys) == len(set(keys)), f"trial {trial}: a case recorded twice"
        assert meta["status"] == "complete" and meta["counts"] == {"ok": 12}, trial
        assert all("truncated" in n for n in notes), notes
    assert total_kills >= TRIALS // 2  # the kills really happened, in most trials


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_kill9_of_a_real_supervised_run_then_resume(tmp_path):
    """The CLI: the supervisor (the writer) killed with SIGKILL mid-run; its worker goes with it;
    `parity run --resume` (main() in this process) finishes the run with every case once."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "parity", "run", "stream", "--preset", "smoke", "--impl", "torch",
            "--dtype", "fp32", "--time-cap-s", "0.05", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=tmp_path, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    measurements = out / MEASUREMENTS_FILE
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if measurements.exists() and measurements.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    workers = [int(p) for p in children.read_text().split()] if children.exists() else []
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for pid in workers:  # the orphaned worker ends itself instead of finishing its case
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        assert not _alive(pid), f"the worker {pid} outlived its supervisor"
    kept, _ = read_records(measurements)
    assert 3 <= len(kept) < 14
    # The resume is main() in this process: the kill, not the resume, needs the run in a process of its own.
    resumed = parity_main("run", "--resume", out, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    records, _ = read_records(measurements)
    keys = [r["key"] for r in records]
    assert len(keys) == 14 and len(set(keys)) == 14 and keys[:len(kept)] == [r["key"] for r in kept]
    assert json.loads((out / RUN_FILE).read_text())["status"] == "complete"
