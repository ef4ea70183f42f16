"""`parity history`: each case's trend over the published runs of one device, with the compare
verdicts between neighbouring runs, through the entry point."""
from __future__ import annotations

import json

from synthetic import CPU, H200, stream_record, write_run
from test_cli import assert_one_error_line, parity


def publish(results, run_id, day, scale, device=H200, ops=("triad", "copy")):
    recs = [stream_record(op=op, n=1 << 26, gbps=1000 / scale, samples=[scale * x for x in (0.99, 1.0, 1.01) * 4])
            for op in ops]
    folder = write_run(results / run_id, recs, device=device, run_id=run_id)
    meta = json.loads((folder / "run.json").read_text())
    meta["started_at"] = f"2026-01-{day:02d}T00:00:00+00:00"
    (folder / "run.json").write_text(json.dumps(meta))


def test_history_shows_the_trend_and_the_verdicts_between_neighbours(tmp_path):
    results = tmp_path / "results"
    publish(results, "c-late", 3, 1.2, ops=("triad",))  # written first, started last: order is by start time
    publish(results, "a-first", 1, 1.0)
    publish(results, "b-second", 2, 1.0)
    publish(results, "cpu-run", 2, 1.0, device=CPU)
    proc = parity("history", results, "--device", "NVIDIA H200", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (device,) = json.loads(proc.stdout)["devices"]
    assert [run.split("/")[-1] for run in device["runs"]] == ["a-first", "b-second", "c-late"]
    triad = next(c for c in device["cases"] if c["op"] == "triad")
    verdicts = [p["verdict"] for p in triad["points"]]
    assert verdicts[0] is None and verdicts[1] in ("same", "uncertain") and verdicts[2] == "slower"
    assert triad["last_over_first"] > 1.15
    copy = next(c for c in device["cases"] if c["op"] == "copy")
    assert copy["points"][2]["median_ms"] is None  # not in the last run
    text = parity("history", results, "--format", "md", cwd=tmp_path)
    assert text.returncode == 0 and "slower (1.200x)" in text.stdout and "Some CPU" in text.stdout


def test_history_bad_input_is_one_line(tmp_path):
    assert_one_error_line(parity("history", tmp_path / "nothing", cwd=tmp_path), "no such results folder")
    publish(tmp_path / "results", "a", 1, 1.0)
    assert_one_error_line(parity("history", tmp_path / "results", "--device", "MI999", cwd=tmp_path),
                          "no published run of 'MI999'", "NVIDIA H200")


def test_history_html_has_the_trend_plot_and_the_table(tmp_path):
    import pytest

    pytest.importorskip("matplotlib", reason="the HTML history plots with matplotlib (the report extra)")
    results = tmp_path / "results"
    publish(results, "a-first", 1, 1.0)
    publish(results, "b-second", 2, 1.2)
    out = tmp_path / "history.html"
    proc = parity("history", results, "--format", "html", "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 1 and "median time over the first" in page
    assert "slower (1.200x)" in page and "<table" in page and "http" not in page.split("<body>")[1][:200]
    assert_one_error_line(parity("history", results, "--format", "html", cwd=tmp_path), "--out")


def test_a_damaged_run_is_left_out_with_a_warning_and_the_rest_shown(tmp_path):
    results = tmp_path / "results"
    write_run(results / "a", [stream_record()], H200, run_id="a")
    write_run(results / "b", [stream_record()], H200, run_id="b")
    (results / "b" / "measurements.jsonl").write_text('{"schema": "parity.measurement/1", "suite": "stream"}\n')
    proc = parity("history", results, "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warned = [ln for ln in proc.stderr.splitlines() if ln.startswith("parity: warning:")]
    assert len(warned) == 1 and "left out of the history" in warned[0] and str(results / "b") in warned[0]
    runs = [r for d in json.loads(proc.stdout)["devices"] for r in d["runs"]]
    assert runs == [str(results / "a")]
