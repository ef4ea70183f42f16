"""Whether a callable launched Triton kernels in the CPU interpreter: its time is then Python's.

parity.measure times any callable; one that launches Triton kernels under TRITON_INTERPRET=1 runs
them in Triton's interpreter (numpy, one program at a time), so its wall-clock time says nothing
about hardware and is labelled TIMING_INTERPRET, as `parity run` labels its Triton cases on the CPU.
The launches are counted on the interpreter's kernel object (InterpretedFunction.run, the one
entry every `kernel[grid](...)` goes through, autotuned or not), during one checked call.
"""
from __future__ import annotations

import contextlib
from typing import Iterator


class Launches:
    """How many interpreted kernel launches ran inside `counting()`."""

    def __init__(self) -> None:
        self.count = 0


@contextlib.contextmanager
def counting() -> Iterator[Launches]:
    """Count interpreted Triton launches within (none where Triton or its interpreter is absent)."""
    seen = Launches()
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except Exception:  # noqa: BLE001 - no triton, or one without the interpreter: nothing to count
        yield seen
        return
    original = InterpretedFunction.run

    def run(self, *args, **kwargs):
        if not kwargs.get("warmup"):
            seen.count += 1
        return original(self, *args, **kwargs)

    InterpretedFunction.run = run
    try:
        yield seen
    finally:
        InterpretedFunction.run = original
