"""The stream suite's light metadata: its ops, dtypes and the --size check (see _meta/__init__.py)."""
from __future__ import annotations

from dataclasses import dataclass

from parity.harness.core.model import SuiteMeta, UsageError

NAME = "stream"
# name -> (torch dtype attribute, bytes an element): the suite maps the first to torch's dtype.
DTYPES = {"fp32": ("float32", 4), "bf16": ("bfloat16", 2)}
MEMORY_FRACTION = 0.8  # leave room for the reference and the runtime


@dataclass(frozen=True)
class StreamOp:
    """One streaming operation: which arrays it reads and writes, its FLOPs per element, and the
    function name shared by `triton_stream` and `torch_stream`, called as fn(*reads, *writes[, scalar])."""

    name: str
    fn: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    flops_per_element: int
    scalar: bool
    description: str

    @property
    def arrays(self) -> int:
        return len(self.reads) + len(self.writes)

    @property
    def reduces(self) -> bool:
        return not self.writes


STREAM_OPS = (
    StreamOp("copy", "copy", ("a",), ("c",), 0, False, "c = a"),
    StreamOp("scale", "scale", ("c",), ("b",), 1, True, "b = s*c"),
    StreamOp("add", "add", ("a", "b"), ("c",), 1, False, "c = a + b"),
    StreamOp("triad", "triad", ("b", "c"), ("a",), 2, True, "a = b + s*c"),
    StreamOp("dot", "dot", ("a", "b"), (), 2, False, "sum(a*b), fp32 accumulation"),
    StreamOp("read", "total", ("a",), (), 1, False, "sum(a): read-only"),
    StreamOp("write", "fill", (), ("a",), 0, True, "a = s: write-only"),
)


def check_sizes(sizes: list[int], device) -> None:
    """A user's working-set sizes must give every op an element and fit the device's memory
    (device None: not detected yet; the sizes up to the first whose fit needs it)."""
    smallest = max(s.arrays for s in STREAM_OPS) * max(size for _, size in DTYPES.values())
    for size in sizes:
        if size < smallest:
            raise UsageError(f"working set {size} B is too small: it must hold at least one element "
                             f"of every array ({smallest} B)")
        if device is None:
            return
        if device.memory_bytes and size > MEMORY_FRACTION * device.memory_bytes:
            raise UsageError(f"working set {size / 2**30:.1f} GiB does not fit: {device.name} has "
                             f"{device.memory_bytes / 2**30:.1f} GiB")


META = SuiteMeta(name=NAME, presets=("smoke", "quick", "full"), dtypes=tuple(DTYPES), impls=("triton", "torch"),
                 check_sizes=check_sizes)
