"""The GEMM suite's light metadata: its presets, dtypes, implementations and the --shape check
(see _meta/__init__.py)."""
from __future__ import annotations

from parity.harness.core.model import SuiteMeta, UsageError

NAME = "gemm"
DTYPES = ("bf16", "fp16", "fp8", "mxfp4")
MEMORY_FRACTION = 0.8  # of device memory, for the operands, the output and the fp32 reference


def peak_bytes(m: int, n: int, k: int) -> int:
    """Device memory one case needs at most: fp32 operands while quantizing (4 B an element) and
    dequantized for the reference (4), the stored operands (up to 2); the output (2), the fp32
    reference (4) and the check's working rows."""
    return 10 * (m * k + n * k) + 8 * m * n


def memory_problem(m: int, n: int, k: int, device) -> str | None:
    need = peak_bytes(m, n, k)
    if device.memory_bytes and need > MEMORY_FRACTION * device.memory_bytes:
        return (f"needs about {need / 2**30:.1f} GiB with its fp32 reference; {device.name} has "
                f"{device.memory_bytes / 2**30:.1f} GiB")
    return None


def check_shapes(shapes: list[tuple[int, ...]], device) -> None:
    """MxNxK shapes that fit the device (device None: not detected yet; the shapes up to the first
    whose fit needs it)."""
    for shape in shapes:
        text = "x".join(map(str, shape))
        if len(shape) != 3:
            raise UsageError(f"gemm shape {text} needs three dimensions: MxNxK, e.g. 4096x4096x4096")
        if device is None:
            return
        reason = memory_problem(*shape, device)
        if reason:
            raise UsageError(f"gemm shape {text} {reason}")


META = SuiteMeta(name=NAME, presets=("smoke", "quick", "full", "llama", "mamf"), dtypes=DTYPES,
                 impls=("triton", "torch", "triton-persistent"), check_shapes=check_shapes)
