"""Finds suites: every module in `parity.suites` that defines `SUITE` is one.

The harness never imports a kernel directly; it imports suites, and only after `device.detect()`
has chosen the backend (the Triton interpreter must be on before a kernel module is imported).
"""
from __future__ import annotations

import importlib
import pkgutil

from parity.harness.core.model import Suite, UsageError


def triton_problem() -> str | None:
    """None if the `triton` module imports; otherwise one line saying why and what to do."""
    try:
        import triton  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure to import is reported the same way
        return (f"the triton module does not import ({type(exc).__name__}: {exc}); on a CPU-only "
                "machine install parity[cpu]; on a GPU the vendor's torch image provides it "
                "(triton on CUDA, pytorch-triton-rocm on ROCm)")
    return None


def suite_names() -> list[str]:
    import parity.suites

    return sorted(m.name for m in pkgutil.iter_modules(parity.suites.__path__) if not m.name.startswith("_"))


def load(name: str) -> Suite:
    names = suite_names()
    if name not in names:
        raise UsageError(f"unknown suite {name!r} (suites: {', '.join(names)})")
    return importlib.import_module(f"parity.suites.{name}").SUITE


def load_all() -> list[Suite]:
    return [load(name) for name in suite_names()]
