"""parity: a cross-vendor GPU microbenchmark harness, as a library.

    import parity
    r = parity.measure(lambda: a @ b, flops=2 * m * n * k, dtype="bf16")   # median_ms, tflops, pct_of_spec
    run = parity.run(["stream"], preset="smoke")                           # a run folder, as `parity run`
    df = parity.load(run)                                                  # the reports' frame
    parity.specs.get("h200"), parity.specs.all()

Importing parity stays light (torch, triton and the harness load on first use) and changes
nothing: every call detects the device before it imports a kernel (on a machine without a GPU that
switches the Triton interpreter on, TRITON_INTERPRET=1). A Triton kernel of your own must be
decorated after that: on a machine without a GPU, call `parity.detect()` before importing it.
"""
from parity.harness.core.version import __version__  # noqa: F401

__all__ = ["measure", "run", "load", "specs", "to_torch_benchmark", "table", "detect", "Result", "MeasureError",
           "ValidationError", "UsageError"]

_API = {"measure", "run", "load", "to_torch_benchmark", "table", "Result", "MeasureError", "ValidationError"}


def __getattr__(name):
    if name in _API:
        from parity.harness import api

        return getattr(api, name)
    if name == "specs":
        import importlib

        return importlib.import_module("parity.specs")  # a submodule: `from parity import specs` would recurse
    if name == "detect":
        from parity.harness.core.device import detect

        return detect
    if name == "UsageError":
        from parity.harness.core.model import UsageError

        return UsageError
    raise AttributeError(f"module 'parity' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
