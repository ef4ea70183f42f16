"""One writer per run folder (runlock.py), and readers that survive a folder written twice."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from parity.harness import cli
from parity.harness.core import runlock
from parity.harness.core.results import MEASUREMENTS_FILE, read_records, read_run
from synthetic import stream_record, write_run
from test_cli import assert_one_error_line, clean_env

HOLDER = textwrap.dedent("""
    import sys, time
    from parity.harness.core import runlock
    with runlock.hold(sys.argv[1], "test"):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def start_holder(folder: Path, seconds: float = 60.0) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(seconds)], stdout=subprocess.PIPE,
                            text=True, env=clean_env())
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def held(tmp_path):
    proc = start_holder(tmp_path / "run")
    yield tmp_path / "run"
    proc.kill()
    proc.wait()


def test_a_second_writer_is_refused_while_the_first_holds(held):
    with pytest.raises(runlock.RunLocked, match=r"is being written by parity test \(pid \d+"):
        with runlock.hold(held):
            pass


def test_the_lock_is_released_at_the_end_and_when_its_holder_is_killed(tmp_path):
    folder = tmp_path / "run"
    proc = start_holder(folder)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9: the kernel drops the flock with the process
    proc.wait()
    with runlock.hold(folder):
        assert (folder / runlock.LOCK_FILE).exists()
        with runlock.hold(folder):  # nested in the holder: no-op
            pass
        # a process the holder starts for the same folder inherits the claim
        child = subprocess.run([sys.executable, "-c", HOLDER, str(folder), "0"], capture_output=True, text=True,
                               env={**clean_env(), runlock.LOCK_ENV: os.environ[runlock.LOCK_ENV]})
        assert child.returncode == 0 and "held" in child.stdout
    assert not (folder / runlock.LOCK_FILE).exists() and runlock.LOCK_ENV not in os.environ
    with runlock.hold(tmp_path / "new" / "deeper"):
        pass
    assert not (tmp_path / "new").exists()  # created for nothing: removed again, parents too


def test_merge_and_publish_are_refused_while_another_writes(tmp_path, held, capsys):
    part = write_run(tmp_path / "part", [stream_record()])
    assert cli.main(["merge", str(part), "--out", str(held)]) == 2
    assert "is being written by" in capsys.readouterr().err
    proc = start_holder(tmp_path / "results")
    try:
        pytest.importorskip("matplotlib")
        assert cli.main(["report", "--publish", "--results", str(tmp_path / "results")]) == 2
        assert "is being written by" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()


def test_a_resume_is_refused_while_the_run_is_written(tmp_path, capsys):
    folder = write_run(tmp_path / "run", [stream_record()])
    meta = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**meta, "status": "interrupted",
                                                 "plan": {"suites": ["stream"], "preset": "smoke"}}))
    proc = start_holder(folder)
    try:
        assert cli.main(["run", "--resume", str(folder)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("parity: error: ") and "is being written by" in err[0]
    finally:
        proc.kill()
        proc.wait()


def test_two_runs_into_one_folder_leave_one_writer_and_no_case_twice(tmp_path):
    """Two real processes race for one folder. The 14 torch cases with 0.3 s of settle each keep
    the winner writing for over 4 s, longer than the two starts differ by (the interpreter's cases
    would only make the same race longer)."""
    out = tmp_path / "same"
    cmd = [sys.executable, "-m", "parity", "run", "stream", "--preset", "smoke", "--impl", "torch", "--dtype", "fp32",
           "--time-cap-s", "0.05", "--settle-s", "0.3", "--out", str(out)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr))
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [(r.returncode, r.stderr[-1500:]) for r in results]
    loser = next(r for r in results if r.returncode == 2)
    line = assert_one_error_line(loser)
    assert "is being written by" in line or "already holds a run" in line
    records, _ = read_records(out / MEASUREMENTS_FILE)
    keys = [r["key"] for r in records]
    assert keys and len(keys) == len(set(keys))
    assert not (out / runlock.LOCK_FILE).exists()


def test_a_reader_keeps_the_later_of_two_records_of_one_case_and_warns(tmp_path):
    first = stream_record(op="copy", gbps=100.0)
    later = stream_record(op="copy", gbps=200.0)
    other = stream_record(op="triad", gbps=300.0)
    per_gpu = [dict(stream_record(op="add"), gpu_index=i) for i in (0, 1)]  # one case on two GPUs: not twice
    folder = write_run(tmp_path / "run", [first, other, later, *per_gpu])
    run = read_run(folder)
    copies = [r for r in run.records if r["op"] == "copy"]
    assert copies == [later] and len(run.records) == 4
    assert any("recorded more than once" in w and first["key"] in w for w in run.warnings)
    proc = subprocess.run([sys.executable, "-m", "parity", "report", str(folder), "--format", "csv"],
                          cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "recorded more than once" in proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["op"] for r in rows].count("copy") == 1 and len(rows) == 4
    clean = write_run(tmp_path / "clean", [first, other])
    assert read_run(clean).warnings == () and json.loads(json.dumps(read_run(clean).records[0])) == first
