"""parity's pytest plugin (entry point `pytest11`): `pytest --benchmark-only --parity` in any
repository runs parity's cases as pytest-benchmark benchmarks, with no clone of parity.

It does nothing unless asked: without --parity it adds one option and imports nothing of parity
(this module lives outside the `parity` package so that importing it cannot switch anything on).
PARITY_BENCH_PRESET, PARITY_BENCH_SUITES, PARITY_BENCH_IMPLS, PARITY_BENCH_DTYPES and
PARITY_BENCH_TIME_CAP_S pick the cases (parity/harness/bench.py).
"""
from __future__ import annotations

import importlib.util

import pytest


def pytest_addoption(parser):
    parser.getgroup("parity").addoption(
        "--parity", action="store_true", default=False,
        help="also collect parity's cases as pytest-benchmark benchmarks (run them with --benchmark-only; "
             "PARITY_BENCH_PRESET and friends pick them)")


def pytest_configure(config):
    if not config.getoption("parity", default=False):
        return
    if importlib.util.find_spec("pytest_benchmark") is None:
        raise pytest.UsageError("--parity needs pytest-benchmark: pip install pytest-benchmark")
    spec = importlib.util.find_spec("parity.harness.bench_cases")
    config.args.append(spec.origin)  # collected beside the repository's own tests
