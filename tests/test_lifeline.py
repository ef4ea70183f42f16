"""A process parity starts ends with its parent, however the parent died (core/lifeline.py), and a
multi-worker run killed outright leaves no process behind and resumes (scaleout/multigpu.py).

The mechanism is checked on a small parent (no torch: a fraction of a second each) for kill -9,
SIGTERM and SIGINT, with each guard alone (the pipe; PR_SET_PDEATHSIG) so neither can hide the
other's fault. One real `parity run --cpu-workers 2` is killed with SIGKILL once its workers and
their case supervisors are up, then resumed: every case once, the run complete.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE
from test_cli import clean_env, parity_main

ROOT = Path(__file__).resolve().parents[1]
GONE_S = 2.0  # the bound: a child ends within 2 s of its parent's death

PARENT = r"""
import os, subprocess, sys, time
from parity.harness.core import lifeline
env, fds = lifeline.child()
code = "from parity.harness.core import lifeline; lifeline.hold(); print('held', flush=True); import time; time.sleep(60)"
if sys.argv[1] == "pipe":  # the pipe alone: the child's PR_SET_PDEATHSIG is switched off
    code = "from parity.harness.core import lifeline; lifeline._pdeathsig = lambda: None; " + code.split('; ', 1)[1]
elif sys.argv[1] == "pdeathsig":  # PR_SET_PDEATHSIG alone: the pipe is not handed over
    fds = ()
child = subprocess.Popen([sys.executable, "-c", code], env=env, pass_fds=fds, stdout=subprocess.PIPE, text=True)
print(child.pid, flush=True)
assert child.stdout.readline().strip() == "held"  # the child's hold() has returned: its guards are armed
print("ready", flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def _gone_within(pids, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.02)
    return [p for p in pids if _alive(p)]


def _env():
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("guard", ["both", "pipe", "pdeathsig"])
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_child_ends_with_its_parent(how, guard):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, guard], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"
        assert _alive(child)
        parent.send_signal(how)
        parent.wait(timeout=10)
        assert _gone_within([child], GONE_S) == [], f"the child outlived its parent by {GONE_S} s ({guard})"
    finally:
        parent.kill()
        parent.wait()
        with_child = locals().get("child")
        if with_child and _alive(with_child):
            os.kill(with_child, signal.SIGKILL)


def _tree(root: int) -> list[int]:
    """root and every process below it, from /proc."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack += kids.get(pid, [])
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill9_of_a_cpu_workers_run_leaves_no_orphan_and_resumes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "parity", "run", "stream", "--preset", "smoke", "--impl", "torch", "--dtype", "fp32",
           "--size", "4KiB", "--time-cap-s", "0.02", "--cpu-workers", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        # Killed once both workers and both case supervisors are up (5 processes), before they finish:
        # a case supervisor is seen while it still imports torch, so short cases (the 0.02 s cap,
        # which the resume keeps from the recorded plan) still end after the kill.
        while time.monotonic() < deadline and proc.poll() is None and len(_tree(proc.pid)) < 5:
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        top = json.loads((out / RUN_FILE).read_text())  # written before any worker started
        assert top["status"] == "running" and top["multi_gpu"]["workers"] == 2 and top["plan"]["suites"] == ["stream"]
        below = _tree(proc.pid)[1:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert _gone_within(below, GONE_S) == [], "a worker or a case supervisor outlived the killed run"
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    # The resume is main() in this process (its workers are real processes): the kill needed a
    # process of its own, the resume does not.
    done = parity_main("run", "--resume", out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["status"] == "complete"
    records = [json.loads(line) for line in (out / MEASUREMENTS_FILE).read_text().splitlines()]
    per_worker = {}
    for rec in records:
        per_worker.setdefault(rec["gpu_index"], []).append(rec["key"])
    assert sorted(per_worker) == [0, 1]
    for keys in per_worker.values():  # every case of every worker, once
        assert len(keys) == len(set(keys)) == 7 and all(r["status"] == "ok" for r in records)
    for i in (0, 1):
        part = [json.loads(line) for line in (out / "gpus" / f"gpu-{i}" / MEASUREMENTS_FILE).read_text().splitlines()]
        assert len(part) == len({r["key"] for r in part}) == 7  # resumed, not run twice
