"""parity's cases as pytest-benchmark benchmarks (parity/harness/bench_cases.py, which
the installed pytest plugin also collects in other repositories: pytest --benchmark-only --parity).

`python -m pytest --benchmark-only` runs them (the smoke preset of every suite unless
PARITY_BENCH_PRESET and friends say otherwise); a plain `python -m pytest` skips them, with the
reason, so the test suite stays fast. tests/test_bench.py runs this file in interpret mode.
"""
from parity.harness.bench_cases import SETTINGS, pytest_generate_tests, test_parity_case  # noqa: F401
