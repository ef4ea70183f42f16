"""Every GPU of a node: the spread report on synthetic runs, the merge, the worker watchdog with
stand-in processes, and `parity run --cpu-workers 2` end to end (CPU workers in place of GPUs)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from parity.harness.scaleout import multigpu
from parity.harness.reporting import report, spread
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, read_records, read_run
from synthetic import CPU, H200, record, write_run
from test_cli import assert_one_error_line, parity

FAST = ["--preset", "smoke", "--impl", "torch", "--dtype", "fp32", "--time-cap-s", "0.02"]


def per_gpu(times_by_gpu: dict[int, float], op="copy", n=1000, timing="events", host=None):
    out = []
    for gpu, t in times_by_gpu.items():
        rec = record(op=op, time_ms=t, bytes_read=4 * n, bytes_written=4 * n, timing=timing,
                     params={"dtype": "fp32", "n": n})
        rec["gpu_index"] = gpu
        if host:
            rec["host"] = host
        out.append(rec)
    return out


def test_a_gpu_behind_its_peers_is_called_out():
    records = []
    for n in (1000, 2000, 4000):
        # GPU 2 takes 5.5 % longer everywhere; GPU 3 1 % longer: within the threshold
        records += per_gpu({0: 1.0, 1: 1.0, 2: 1.055, 3: 1.01}, n=n)
    rows, callouts = spread.spread(records)
    assert len(rows) == 3
    assert all(r["GPUs"] == "4" for r in rows)
    assert all(r["behind > 3 %"] == "GPU 2 (4.7 %)" for r in rows), rows  # 1 - 1.005 / 1.055, the median over 1.055
    assert rows[0]["spread"] == "5.5 %"
    assert rows[0]["time ms (min / median / max)"] == "1 / 1.005 / 1.055"
    assert len(callouts) == 1 and callouts[0].startswith("GPU 2 runs 4.7 % behind")
    assert "in 3)" in callouts[0]
    # a looser threshold calls nobody out
    assert spread.spread(records, threshold=0.06)[1] == []


def test_spread_leaves_out_what_is_no_performance():
    records = per_gpu({0: 1.0, 1: 2.0}, timing="wall-interpret") + per_gpu({0: 1.0}, op="add")
    failed = per_gpu({0: 1.0, 1: 5.0}, op="scale")
    failed[1]["status"] = "failed"
    assert spread.spread(records + failed) == ([], [])


def test_hosts_keep_their_gpus_apart():
    records = per_gpu({0: 1.0, 1: 1.0}, host="node-a") + per_gpu({0: 1.2, 1: 1.0}, host="node-b")
    rows, callouts = spread.spread(records)
    assert rows[0]["GPUs"] == "4" and "node-b GPU 0" in rows[0]["behind > 3 %"]
    assert len(callouts) == 1 and callouts[0].startswith("node-b GPU 0 runs 16.7 % behind")


def test_merge_tags_gpus_and_report_shows_one_device_with_a_row_per_gpu(tmp_path):
    a = write_run(tmp_path / "a", per_gpu({0: 1.0})[:1], device=dict(H200, index=0))
    b = write_run(tmp_path / "b", per_gpu({0: 1.1})[:1], device=dict(H200, index=1))
    for rec_path in (a, b):  # the parts are plain single-GPU runs: no GPU field of their own
        rec = json.loads((rec_path / MEASUREMENTS_FILE).read_text())
        rec.pop("gpu_index")
        (rec_path / MEASUREMENTS_FILE).write_text(json.dumps(rec) + "\n")
    run = multigpu.merge([(a, None), (b, None)], tmp_path / "m", ["test"], {"extra": 1})
    assert [r["gpu_index"] for r in run.records] == [0, 1]
    assert {r.get("host") for r in run.records} == {None}  # one host: not named
    assert run.meta["counts"] == {"ok": 2} and run.meta["extra"] == 1 and len(run.meta["devices"]) == 2
    df = report.frame([run])
    assert list(df["device"]) == ["NVIDIA H200"] * 2 and list(df["part"]) == ["GPU 0", "GPU 1"]
    ((title, group),) = report.sections(df)  # one device, over its two GPUs: one table
    assert title.startswith("NVIDIA H200, over 2 GPUs (a row per GPU")
    assert [r["GPU"] for r in report.display_rows(group)] == ["GPU 0", "GPU 1"]
    rows, _ = spread.spread(run.records)
    assert rows[0]["behind > 3 %"] == "GPU 1 (4.5 %)"
    named = multigpu.merge([(a, None), (b, None)], tmp_path / "n", ["test"], {}, hosts=["x", "y"])
    assert [r["host"] for r in named.records] == ["x", "y"]


def test_merge_keeps_fields_it_does_not_know(tmp_path):
    rec = per_gpu({0: 1.0})[0]
    rec["telemetry"] = {"sm_clock_mhz_median": 1980}
    part = write_run(tmp_path / "a", [rec])
    run = multigpu.merge([(part, 3)], tmp_path / "m", ["test"], {})
    assert run.records[0]["telemetry"] == {"sm_clock_mhz_median": 1980} and run.records[0]["gpu_index"] == 3


def stand_in(code_or_sleep: str):
    return subprocess.Popen([sys.executable, "-c", code_or_sleep])


def test_watchdog_names_a_worker_that_dies(tmp_path):
    parts = [(tmp_path / "gpu-0", 0), (tmp_path / "gpu-1", 1)]
    procs = [stand_in("import time; time.sleep(30)"), stand_in("import sys; sys.exit(5)")]
    try:
        error = multigpu._watch_workers(procs, parts, timeout_s=30)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert "GPU 1" in error and "status 5" in error


def test_watchdog_names_a_worker_without_news(tmp_path):
    parts = [(tmp_path / "gpu-0", 0), (tmp_path / "gpu-1", 1)]
    (tmp_path / "gpu-0").mkdir()
    writer = ("import time, pathlib\np = pathlib.Path(r'%s')\n"
              "for i in range(40):\n    p.open('a').write('x')\n    time.sleep(0.05)\n") % (tmp_path / "gpu-0" / MEASUREMENTS_FILE)
    procs = [stand_in(writer), stand_in("import time; time.sleep(30)")]
    try:
        error = multigpu._watch_workers(procs, parts, timeout_s=0.5)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert "GPU 1" in error and "no record for 0.5 s" in error
    assert multigpu._watch_workers([stand_in("pass"), stand_in("raise SystemExit(1)")], parts, 5) is None


def test_all_gpus_without_a_gpu_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: --all-gpus runs")
    proc = parity("run", "stream", *FAST, "--all-gpus", "--out", tmp_path / "x", cwd=tmp_path)
    assert_one_error_line(proc, "--all-gpus needs GPUs", "--cpu-workers")
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    d = tmp_path_factory.mktemp("workers")
    proc = parity("run", "stream", *FAST, "--cpu-workers", "2", "--out", d / "run", cwd=d)
    return d, proc


def test_cpu_workers_end_to_end(workers):
    d, proc = workers
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = d / "run"
    records, notes = read_records(out / MEASUREMENTS_FILE)
    assert notes == [] and len(records) == 2 * 14
    assert sorted({r["gpu_index"] for r in records}) == [0, 1]
    assert {r["status"] for r in records} == {"ok"}
    for gpu in (0, 1):  # each worker's own run is kept, resumable
        part, _ = read_records(out / "gpus" / f"gpu-{gpu}" / MEASUREMENTS_FILE)
        assert len(part) == 14
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["multi_gpu"]["workers"] == 2 and meta["status"] == "complete"
    assert "Spread between workers" in proc.stdout and "worker 1" in proc.stdout
    assert "over 2 workers (a row per worker" in proc.stdout  # one device with its workers, not a table each
    assert "GPU 0" not in proc.stdout and "GPU 1" not in proc.stdout  # CPU workers are workers, not GPUs
    assert "over 2 workers" in proc.stderr


def test_report_of_a_run_over_gpus(workers):
    d, _ = workers
    proc = parity("report", d / "run", "--format", "md", cwd=d)
    assert proc.returncode == 0, proc.stderr
    assert "### Spread between workers" in proc.stdout
    assert "| worker 0 |" in proc.stdout and "| worker 1 |" in proc.stdout and "GPU 1" not in proc.stdout
    assert proc.stdout.count(", over 2 workers (a row per worker") == 1  # one table for the device


def test_resume_of_a_run_over_gpus_runs_nothing_twice(workers, tmp_path):
    import shutil

    d, _ = workers
    run = tmp_path / "run"
    shutil.copytree(d / "run", run)
    part = run / "gpus" / "gpu-1" / MEASUREMENTS_FILE
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:-2]))  # GPU 1's worker was stopped two cases short
    logs = {gpu: (run / "gpus" / f"gpu-{gpu}.log").read_bytes() for gpu in (0, 1)}
    proc = parity("run", "--resume", run, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records, _ = read_records(run / MEASUREMENTS_FILE)
    assert len(records) == 28 and len({(r["key"], r["gpu_index"]) for r in records}) == 28
    # Worker 0's part was complete: no worker started for it (its log would have grown); worker 1's ran.
    assert (run / "gpus" / "gpu-0.log").read_bytes() == logs[0]
    assert len((run / "gpus" / "gpu-1.log").read_bytes()) > len(logs[1])


def test_resume_of_a_complete_run_over_workers_starts_no_worker(workers, tmp_path):
    import shutil

    d, _ = workers
    run = tmp_path / "run"
    shutil.copytree(d / "run", run)
    logs = {gpu: (run / "gpus" / f"gpu-{gpu}.log").read_bytes() for gpu in (0, 1)}
    proc = parity("run", "--resume", run, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {gpu: (run / "gpus" / f"gpu-{gpu}.log").read_bytes() for gpu in (0, 1)} == logs
    records, _ = read_records(run / MEASUREMENTS_FILE)
    assert len(records) == 28 and json.loads((run / RUN_FILE).read_text())["status"] == "complete"


def test_parity_merge_gathers_node_runs(tmp_path):
    a = write_run(tmp_path / "a", per_gpu({0: 1.0, 1: 1.0}), device=H200)
    b = write_run(tmp_path / "b", per_gpu({0: 1.0, 1: 1.3}), device=H200)
    for folder, host in ((a, "node-a"), (b, "node-b")):
        meta = json.loads((folder / RUN_FILE).read_text())
        meta["host"] = {"hostname": host}
        (folder / RUN_FILE).write_text(json.dumps(meta))
    proc = parity("merge", a, b, "--out", tmp_path / "all", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = read_run(tmp_path / "all")
    assert sorted((r["host"], r["gpu_index"]) for r in run.records) == [
        ("node-a", 0), ("node-a", 1), ("node-b", 0), ("node-b", 1)]
    rows, callouts = spread.spread(run.records)
    assert "node-b GPU 1" in rows[0]["behind > 3 %"] and callouts[0].startswith("node-b GPU 1")
    again = parity("merge", a, b, "--out", tmp_path / "all", cwd=tmp_path)
    assert_one_error_line(again, "already holds a run")


def test_merge_of_a_cpu_run_without_gpu_index(tmp_path):
    rec = record(timing="wall", device="Some CPU")
    part = write_run(tmp_path / "a", [rec], device=CPU)
    run = multigpu.merge([(part, None)], tmp_path / "m", ["t"], {})
    assert run.records[0]["gpu_index"] == 0  # the device's index


def test_the_html_report_carries_the_spread_table():
    from parity.harness.reporting import html
    from synthetic import run

    records = []
    for n in (1000, 2000):
        records += per_gpu({0: 1.0, 1: 1.0, 2: 1.1}, n=n)
    merged = run(records)
    page = html.page([merged], report.frame([merged]), plots=[])
    assert "Spread between GPUs" in page and "GPU 2 runs" in page


def test_a_worker_case_that_kills_its_process_fails_alone(tmp_path):
    """The per-GPU workers supervise their cases as a single run does: GPU 1's third case kills
    the process running it; that case is failed with how, and every other case of both GPUs ran.
    The run is started by main() here; its workers and their case processes are real processes."""
    import os

    proc = parity("run", "stream", *FAST, "--cpu-workers", "2", "--out", tmp_path / "run", cwd=tmp_path,
                  env={"PARITY_FAULT": "1:exit:2"})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and os.path.isdir(tmp_path / "run")
    records, _ = read_records(tmp_path / "run" / MEASUREMENTS_FILE)
    assert len(records) == 28
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["gpu_index"] == 1
    assert failed[0]["reason"] == "the worker running it exited with status 17"
    part, _ = read_records(tmp_path / "run" / "gpus" / "gpu-1" / MEASUREMENTS_FILE)
    assert part[2]["status"] == "failed"
