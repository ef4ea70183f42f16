"""parity report --publish: every run under the results folder rendered beside it, and the index."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("matplotlib", reason="publication draws plots: matplotlib (the test extra pulls it in)")

from parity.harness.reporting import publish  # noqa: E402
from parity.harness.core.model import UsageError  # noqa: E402
from parity.harness.core.results import RUN_FILE  # noqa: E402
from synthetic import CPU, MI300X, gemm_record, record, stream_record, write_run  # noqa: E402
from test_cli import assert_one_error_line, parity  # noqa: E402



def add_meta(folder, **fields):
    meta = json.loads((folder / RUN_FILE).read_text())
    meta.update(fields)
    (folder / RUN_FILE).write_text(json.dumps(meta))
    return folder


def results_root(tmp_path):
    root = tmp_path / "results"
    h200 = write_run(root / "2026-11-20-h200", [stream_record(op="triad", n=1 << 28, gbps=4300.0),
                                                gemm_record(m=8192, dtype="fp8", tflops=1385.3)], run_id="h200-run")
    add_meta(h200, started_at="2026-11-20T09:00:00+00:00",
             versions={"parity": "0.1.0", "torch": "2.9.0+cu128", "triton": "3.5.0", "cuda_runtime": "12.8",
                       "driver": "575.51"})
    mi = write_run(root / "amd" / "2026-11-21-mi300x",
                   [gemm_record(m=8192, dtype="fp8", tflops=1569.0, device="AMD Instinct MI300X")],
                   device=MI300X, run_id="mi-run")
    add_meta(mi, started_at="2026-11-21T09:00:00+00:00", versions={"torch": "2.9.0+rocm6.4", "hip_runtime": "6.4"})
    return root


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = results_root(tmp_path_factory.mktemp("publish"))
    return root, publish.publish(root)


def test_publish_renders_every_run_and_the_index(published):
    root, out = published
    assert [p.relative_to(root).as_posix() for p in out.runs] == ["2026-11-20-h200", "amd/2026-11-21-mi300x"]
    index = (root / "README.md").read_text()
    lines = [line for line in index.splitlines() if line.startswith("| [")]
    assert len(lines) == 2 and "2026-11-21-mi300x" in lines[0]  # newest first
    h200 = lines[1]
    for text in ("[2026-11-20-h200](2026-11-20-h200/)", "NVIDIA H200", "| h200 |", "2026-11-20",
                 "torch 2.9.0+cu128, triton 3.5.0, CUDA 12.8, driver 575.51, parity 0.1.0",
                 "stream HBM 4,300.0 GB/s (89.6 % of h200)", "gemm fp8 1,385.3 TFLOPS (70.0 % of h200)",
                 "2 ok", "[md](2026-11-20-h200/report.md), [html](2026-11-20-h200/report.html)"):
        assert text in h200, text
    assert "[amd/2026-11-21-mi300x](amd/2026-11-21-mi300x/)" in lines[0] and "HIP 6.4" in lines[0]
    for folder in out.runs:
        md = (folder / "report.md").read_text()
        assert "| gemm | gemm | torch | fp8 |" in md and "](plots/" in md
        for link in [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]:
            assert (folder / link).is_file(), link
        assert (folder / "report.html").read_text().startswith("<!doctype html>")


def test_publishing_twice_changes_nothing(published):
    root, _ = published
    first = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    publish.publish(root)
    assert {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} == first


def test_an_empty_results_folder_says_so(tmp_path):
    out = publish.publish(tmp_path / "results")
    assert out.runs == [] and "No run has been published yet." in out.index.read_text()


def test_a_run_is_copied_in_and_a_different_one_of_the_same_name_refused(tmp_path):
    root = tmp_path / "results"
    mine = write_run(tmp_path / "runs" / "cpu-run", [record(op="copy", timing="wall", device="Some CPU",
                                                            bytes_read=10**6)], device=CPU, run_id="cpu")
    publish.publish(root, add=[mine])
    assert (root / "cpu-run" / "measurements.jsonl").read_bytes() == (mine / "measurements.jsonl").read_bytes()
    assert "Some CPU" in (root / "README.md").read_text()
    publish.publish(root, add=[mine])  # the same run again: nothing to do
    other = write_run(tmp_path / "elsewhere" / "cpu-run", [record(op="read", timing="wall", device="Some CPU")],
                      device=CPU, run_id="other")
    with pytest.raises(UsageError, match="already holds a different run"):
        publish.publish(root, add=[other])


def test_cli_publish(tmp_path):
    root = tmp_path / "results"
    write_run(root / "one", [gemm_record(m=1024)], run_id="one")
    proc = parity("report", "--publish", "--results", root, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 run(s) rendered" in proc.stderr and "[one](one/)" in (root / "README.md").read_text()
    assert_one_error_line(parity("report", "--publish", "--format", "md", "--results", root, cwd=tmp_path),
                          "--publish")
