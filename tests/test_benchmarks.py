"""parity's cases as pytest-benchmark benchmarks (parity/harness/bench.py).

`python -m pytest --benchmark-only` runs them (the smoke preset of every suite unless
PARITY_BENCH_PRESET and friends say otherwise); a plain `python -m pytest` skips them, with the
reason, so the test suite stays fast. tests/test_bench.py runs this file in interpret mode.
"""
from __future__ import annotations

import pytest

from parity.harness.measurement import bench

SETTINGS = bench.Settings.from_env()
SKIP_REASON = "parity's suites as pytest-benchmark benchmarks run with: python -m pytest --benchmark-only"


def pytest_generate_tests(metafunc):
    if "parity_case" in metafunc.fixturenames:
        metafunc.parametrize("parity_case", bench.params(SETTINGS))


def test_parity_case(benchmark, parity_case, request):
    if not request.config.getoption("benchmark_only", default=False):
        pytest.skip(SKIP_REASON)
    bench.run(benchmark, parity_case, SETTINGS)
