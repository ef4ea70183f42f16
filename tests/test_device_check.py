"""scripts/device-check: on the CPU its dry run says what it would run on a GPU; its step runner
interrupts a step that outruns its limit and goes on."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parity.harness.measurement import registry
from test_cli import clean_env

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device-check"


def load_script():
    loader = importlib.machinery.SourceFileLoader("device_check", str(SCRIPT))
    spec = importlib.util.spec_from_loader("device_check", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["device_check"] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


def test_the_dry_run_lists_every_step_within_eight_minutes(tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run([str(SCRIPT), "--dry-run", str(out)], capture_output=True, text=True, env=clean_env(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert f"within 480 s" in text and not out.exists()  # a dry run writes nothing
    steps = re.findall(r"^\[([\w-]+)\] \(at most (\d+) s\) (.*)$", text, re.M)
    names = [name for name, _, _ in steps]
    assert names[:3] == ["versions", "devices", "smi"]
    commands = {name: cmd for name, _, cmd in steps}
    assert "-m pytest -m gpu" in commands["gpu-tests"]
    assert f"selfcheck --json {out / 'selfcheck.json'}" in commands["selfcheck"]
    for suite in registry.suite_names():
        cmd = commands[f"run-{suite}"]
        assert f"run {suite} --preset quick --time-cap-s " in cmd and f"--out {out / 'runs' / suite}" in cmd
    for fmt in ("md", "csv", "html"):
        assert f"report " in commands[f"report-{fmt}"] and f"--format {fmt}" in commands[f"report-{fmt}"]
    # the order of the issue: tests, selfcheck, runs, then the tables last
    assert names.index("gpu-tests") < names.index("selfcheck") < names.index("run-gemm") < names.index("report-md")
    assert names[-3:] == ["report-md", "report-csv", "report-html"]


def test_without_a_gpu_it_refuses_in_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the check would run for real")
    proc = subprocess.run([str(SCRIPT), str(tmp_path / "check")], capture_output=True, text=True, env=clean_env(),
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no GPU" in proc.stderr
    assert not (tmp_path / "check").exists()


def test_a_step_that_outruns_its_limit_is_interrupted_and_reported(tmp_path):
    dc = load_script()
    (tmp_path / "logs").mkdir()
    slow = dc.Step("slow", [sys.executable, "-c", "import time\ntry:\n time.sleep(60)\nexcept KeyboardInterrupt:\n"
                                                  " print('kept what it had'); raise SystemExit(130)"], 1, "slow.log")
    start = time.monotonic()
    result = dc.run_step(slow, tmp_path, 1.0, dict(clean_env()))
    assert time.monotonic() - start < 15
    assert result["timed_out"] and result["returncode"] == 130 and not dc.passed(result)
    assert "kept what it had" in (tmp_path / "logs" / "slow.log").read_text()  # interrupted like Ctrl-C
    quick = dc.run_step(dc.Step("run-x", [sys.executable, "-c", "raise SystemExit(1)"], 5, "x.log"), tmp_path, 5,
                        dict(clean_env()))
    assert dc.passed(quick)  # a run whose cases failed has measured what it could: its tables say which
    missing = dc.run_step(dc.Step("smi", ["no-such-tool-here"], 5, "smi.log"), tmp_path, 5, dict(clean_env()))
    assert missing["returncode"] == 127 and dc.passed(missing)
