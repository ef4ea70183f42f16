"""`parity submit` end to end with submitit's local executor: two "nodes" (jobs of a job array on
this machine), each a `parity run`, gathered into one run."""
from __future__ import annotations

import json

import pytest

from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, read_records
from test_cli import assert_one_error_line, parity

pytest.importorskip("submitit", reason="parity submit needs submitit (the slurm extra)")

RUN = ["stream", "--preset", "smoke", "--impl", "torch", "--dtype", "fp32", "--time-cap-s", "0.02"]


def test_submit_two_local_nodes(tmp_path):
    out = tmp_path / "cluster"
    proc = parity("submit", "--local", "--nodes", "2", "--out", out, "--", *RUN, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted 2 job(s)" in proc.stderr and "gathered" in proc.stderr
    records, notes = read_records(out / MEASUREMENTS_FILE)
    assert notes == [] and len(records) == 2 * 14 and {r["status"] for r in records} == {"ok"}
    hosts = sorted({r["host"] for r in records})
    assert len(hosts) == 2 and hosts[0].endswith("#0") and hosts[1].endswith("#1")  # one machine, two nodes
    for node in (0, 1):
        part, _ = read_records(out / "nodes" / f"node-{node}" / MEASUREMENTS_FILE)
        assert len(part) == 14
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["command"][:2] == ["parity", "submit"] and len(meta["nodes"]) == 2 and meta["status"] == "complete"
    assert (out / "slurm").is_dir()  # submitit's scripts and logs
    assert "Spread between workers" in proc.stdout  # CPU workers are workers, never GPUs


@pytest.mark.parametrize("args,needle", [
    (["--local", "--out", "{x}"], "after --"),
    (["--local", "--out", "{x}", "--", "stream", "--out", "elsewhere"], "chooses each node's folder"),
    (["--local", "--out", "{x}", "--", "stream", "--frobnicate"], "--frobnicate"),
    (["--local", "--nodes", "0", "--out", "{x}", "--", "stream"], "--nodes"),
    (["--out", "{x}", "--", "stream"], "sbatch"),
])
def test_submit_bad_input_is_one_line(tmp_path, args, needle):
    import shutil

    if needle == "sbatch" and shutil.which("sbatch"):
        pytest.skip("Slurm is installed here")
    proc = parity("submit", *[a.format(x=tmp_path / "x") for a in args], cwd=tmp_path)
    assert_one_error_line(proc, needle)
    assert not (tmp_path / "x").exists()


def test_submit_no_wait_then_merge(tmp_path):
    import time

    out = tmp_path / "cluster"
    proc = parity("submit", "--local", "--no-wait", "--nodes", "1", "--out", out, "--", *RUN, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not waiting" in proc.stderr and not (out / MEASUREMENTS_FILE).exists()
    submitted = json.loads((out / "submitted.json").read_text())
    assert submitted["gather"][:2] == ["parity", "merge"] and len(submitted["jobs"]) == 1
    part = out / "nodes" / "node-0" / RUN_FILE
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (part.exists() and json.loads(part.read_text()).get("status") == "complete"):
        time.sleep(0.5)
    assert part.exists(), "the job never wrote its run"
    merged = parity(*submitted["gather"][1:], cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr[-3000:]
    records, _ = read_records(out / MEASUREMENTS_FILE)
    assert len(records) == 14 and {r["status"] for r in records} == {"ok"}
