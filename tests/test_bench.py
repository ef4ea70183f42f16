"""The pytest-benchmark path, end to end in interpret mode: `pytest --benchmark-only` on the smoke
preset, its JSON holding parity's cases with their work, status and normalization in extra_info."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from parity.harness import bench
from parity.harness.core.model import UsageError
from test_cli import TIMEOUT_S, clean_env

ROOT = Path(__file__).resolve().parents[1]


def test_settings_from_the_environment():
    s = bench.Settings.from_env({"PARITY_BENCH_PRESET": "quick", "PARITY_BENCH_SUITES": "stream, gemm",
                                 "PARITY_BENCH_IMPLS": "torch", "PARITY_BENCH_TIME_CAP_S": "0.5"})
    assert (s.preset, s.suites, s.impls, s.dtypes, s.time_cap_s) == ("quick", ("stream", "gemm"), ("torch",), (), 0.5)
    assert bench.Settings.from_env({}) == bench.Settings()
    with pytest.raises(UsageError, match="TIME_CAP_S"):
        bench.Settings.from_env({"PARITY_BENCH_TIME_CAP_S": "soon"})


@pytest.fixture(scope="module")
def benchmark_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = clean_env()
    env.update(PARITY_BENCH_SUITES="stream", PARITY_BENCH_DTYPES="fp32", PARITY_BENCH_TIME_CAP_S="0.02")
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_benchmarks.py", "--benchmark-only", "-q",
                           "-p", "no:cacheprovider", f"--benchmark-json={out}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_benchmark_only_runs_every_smoke_case_with_parity_extra_info(benchmark_json):
    benchmarks = benchmark_json["benchmarks"]
    assert len(benchmarks) == 7 * 2 * 2  # stream ops x smoke sizes x impls (fp32 only)
    for b in benchmarks:
        info = b["extra_info"]
        assert info["suite"] == "stream" and info["status"] == "ok" and info["validation"]["passed"]
        assert info["work"]["bytes_read"] + info["work"]["bytes_written"] > 0
        assert b["group"] == f"stream {info['op']}" and b["stats"]["rounds"] >= 3
        assert info["time_ms"]["median"] == pytest.approx(b["stats"]["median"] * 1e3)
        norm = info["normalization"]
        if info["impl"] == "triton":  # the interpreter: correctness only, never a rate
            assert info["timing"] == "wall-interpret" and norm["gbps"] is None
        else:
            assert info["timing"] == "wall"
            nbytes = info["work"]["bytes_read"] + info["work"]["bytes_written"]
            assert norm["gbps"] == pytest.approx(nbytes / (b["stats"]["median"]) / 1e9)
            assert norm["spec_id"] is None  # a CPU matches no spec

