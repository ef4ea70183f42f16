"""parity's cases as one parametrized pytest-benchmark test (bench.py does the work).

Collected from parity's own tests (tests/test_benchmarks.py imports it) and, through the installed
pytest plugin (parity_pytest.py), from any repository: `pytest --benchmark-only --parity`. Without
--benchmark-only every case is skipped with its reason, so a plain test run stays fast.
"""
from __future__ import annotations

import pytest

from parity.harness import bench

SETTINGS = bench.Settings.from_env()
SKIP_REASON = "parity's suites as pytest-benchmark benchmarks run with: python -m pytest --benchmark-only"


def pytest_generate_tests(metafunc):
    if "parity_case" in metafunc.fixturenames:
        metafunc.parametrize("parity_case", bench.params(SETTINGS))


def test_parity_case(benchmark, parity_case, request):
    if not request.config.getoption("benchmark_only", default=False):
        pytest.skip(SKIP_REASON)
    bench.run(benchmark, parity_case, SETTINGS)
