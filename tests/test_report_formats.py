"""parity report's formats through the entry point: md with the side-by-side table, html, csv,
parquet, plots as PNG files, and one clear line where an optional dependency is missing."""
from __future__ import annotations


import pandas as pd
import pytest

from synthetic import MI300X, gemm_record, write_run
from test_cli import assert_one_error_line, clean_env, parity  # noqa: F401

pytest.importorskip("matplotlib", reason="the test extra pulls in matplotlib")
pytest.importorskip("pyarrow", reason="the test extra pulls in pyarrow")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("formats")
    h200 = write_run(cwd / "h200", [gemm_record(m=8192, dtype="fp8", tflops=1385.3),
                                    gemm_record(m=4096, tflops=600.0)], run_id="h")
    mi = write_run(cwd / "mi300x", [gemm_record(m=8192, dtype="fp8", tflops=1569.0, device="AMD Instinct MI300X")],
                   device=MI300X, run_id="m")
    return cwd, h200, mi


def shadow(cwd, module: str):
    """A folder that makes `import module` fail, as on a machine without it."""
    folder = cwd / f"without-{module}"
    folder.mkdir(exist_ok=True)
    (folder / f"{module}.py").write_text(f"raise ImportError('No module named {module}')\n")
    return folder


def parity_without(module, *args, cwd):
    import os
    import subprocess
    import sys

    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(shadow(cwd, module)), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "parity", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_report_formats(two_runs):
    cwd, h200, mi = two_runs
    calls = {
        "md": lambda: parity("report", h200, mi, "--format", "md", cwd=cwd),
        "html": lambda: parity("report", h200, mi, "--format", "html", "--out", cwd / "r.html", "--plots",
                               cwd / "png", cwd=cwd),
        "parquet": lambda: parity("report", h200, mi, "--format", "parquet", "--out", cwd / "r.parquet", cwd=cwd),
        "parquet-stdout": lambda: parity("report", h200, "--format", "parquet", cwd=cwd),
        "no-runs": lambda: parity("report", cwd=cwd),
        "no-matplotlib": lambda: parity_without("matplotlib", "report", h200, "--format", "html", cwd=cwd),
        "no-pyarrow": lambda: parity_without("pyarrow", "report", h200, "--format", "parquet", "--out",
                                             cwd / "x.parquet", cwd=cwd),
        "md-no-matplotlib": lambda: parity_without("matplotlib", "report", h200, "--format", "md", cwd=cwd),
    }
    proc = {name: call() for name, call in calls.items()}

    assert proc["md"].returncode == 0, proc["md"].stderr
    assert ("| gemm | gemm | torch | fp8 | m=8192 n=8192 k=8192 layout=tn | 1,385.3 TFLOPS | 70.0 % | 1,569.0 TFLOPS "
            "| 60.0 % | 1.13x |") in proc["md"].stdout

    assert proc["html"].returncode == 0, proc["html"].stderr
    page = (cwd / "r.html").read_text()
    assert page.startswith("<!doctype html>") and page.count("data:image/png;base64,") == 4
    assert sorted(p.name for p in (cwd / "png").iterdir()) == [
        "amd-instinct-mi300x-events-gemm.png", "amd-instinct-mi300x-events-roofline.png",
        "nvidia-h200-events-gemm.png", "nvidia-h200-events-roofline.png"]

    assert proc["parquet"].returncode == 0, proc["parquet"].stderr
    back = pd.read_parquet(cwd / "r.parquet")
    assert len(back) == 3 and {"tflops", "pct_of_spec", "spec_id", "flag", "validated"} <= set(back.columns)
    assert sorted(back["spec_id"]) == ["h200", "h200", "mi300x"]

    assert_one_error_line(proc["parquet-stdout"], "--out")
    assert_one_error_line(proc["no-runs"], "run folders")
    assert_one_error_line(proc["no-matplotlib"], "matplotlib", "parity[report]")
    assert_one_error_line(proc["no-pyarrow"], "pyarrow", "parity[report]")
    assert not (cwd / "x.parquet").exists()
    assert proc["md-no-matplotlib"].returncode == 0  # markdown needs no plots


def test_parquet_keeps_extra_columns(tmp_path):
    from parity.harness.reporting import report
    from synthetic import record, run

    df = report.frame([run([record(op="copy", bytes_read=10**9), record(op="dot", status="skipped")])])
    df["watts"] = [512.5, None]  # telemetry columns are added to the frame on another branch
    (tmp_path / "t.parquet").write_bytes(report.to_parquet(df))
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert list(back.columns) == list(df.columns) and back["watts"].iloc[0] == 512.5
