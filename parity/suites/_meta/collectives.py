"""The collectives suite's light metadata: its dtypes and the --size check (see _meta/__init__.py)."""
from __future__ import annotations

from parity.harness.core.model import SuiteMeta, UsageError

NAME = "collectives"
# name -> (torch dtype attribute, bytes an element): the suite maps the first to torch's dtype.
DTYPES = {"fp32": ("float32", 4), "bf16": ("bfloat16", 2)}
MEMORY_FRACTION = 0.8


def check_sizes(sizes: list[int], device) -> None:
    """Each message size within a rank's memory (device None: not detected yet; every size needs it)."""
    if device is None:
        return
    for size in sizes:
        if device.memory_bytes and 3 * size > MEMORY_FRACTION * device.memory_bytes:
            raise UsageError(f"message size {size / 2**30:.1f} GiB does not fit: a rank holds its buffers "
                             f"and a reference, three times the size, and {device.name} has "
                             f"{device.memory_bytes / 2**30:.1f} GiB")


META = SuiteMeta(name=NAME, presets=("smoke", "quick", "full"), dtypes=tuple(DTYPES), impls=("torch",),
                 check_sizes=check_sizes)
