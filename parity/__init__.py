"""parity: a cross-vendor GPU microbenchmark harness, as a library.

    import parity
    r = parity.measure(lambda: a @ b, flops=2 * m * n * k, dtype="bf16")   # median_ms, tflops, pct_of_spec
    run = parity.run(["stream"], preset="smoke")                           # a run folder, as `parity run`
    df = parity.load(run)                                                  # the reports' frame
    parity.specs.get("h200"), parity.specs.all()

Importing parity stays light: torch, triton and the harness load on first use. On Linux, a machine
with no GPU device node (/dev/nvidiactl, /dev/kfd) gets TRITON_INTERPRET=1 here, at import, so a
Triton kernel module imported after parity is decorated for the interpreter; the first call then
detects the device properly (device.detect) and switches the interpreter on where torch sees no GPU.
"""
import os as _os
import sys as _sys

__version__ = "0.1.0"
__all__ = ["measure", "run", "load", "specs", "to_torch_benchmark", "table", "Result", "MeasureError",
           "ValidationError", "UsageError"]

_GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")
if (_sys.platform.startswith("linux") and "TRITON_INTERPRET" not in _os.environ
        and not any(_os.path.exists(p) for p in _GPU_NODES)):
    _os.environ["TRITON_INTERPRET"] = "1"

_API = {"measure", "run", "load", "to_torch_benchmark", "table", "Result", "MeasureError", "ValidationError"}


def __getattr__(name):
    if name in _API:
        from parity.harness import api

        return getattr(api, name)
    if name == "specs":
        import importlib

        return importlib.import_module("parity.specs")  # a submodule: `from parity import specs` would recurse
    if name == "UsageError":
        from parity.harness.core.model import UsageError

        return UsageError
    raise AttributeError(f"module 'parity' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
