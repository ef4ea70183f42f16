"""A cold cache before every sample, and a device held busy between samples.

The flush writes a buffer of at least twice the last-level cache (the larger of torch's L2 and the
spec's LLC: MI300X/MI355X have a 256 MiB Infinity Cache, so Triton's fixed 256 MiB is not enough
there; reference/harness-method.md), so no input of the timed call is still cached.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

FLUSH_UNKNOWN_LLC_BYTES = 512 << 20  # AMD's Infinity Cache is 256 MiB: twice it where size is unknown


HOLD_CAP_MS = 50.0  # the longest the stream is held while the host queues a batch


def flush_bytes(llc_bytes: int | None, spec_known: bool = True) -> int:
    """Size of the buffer written before each cold sample: twice the last-level cache. Without a
    spec the cache torch reports may be the L2 alone (an MI300X read as "AMD Radeon Graphics" hides
    a 256 MiB Infinity Cache behind 4 MiB of L2), so then at least FLUSH_UNKNOWN_LLC_BYTES."""
    if not llc_bytes:
        return FLUSH_UNKNOWN_LLC_BYTES
    return 2 * llc_bytes if spec_known else max(2 * llc_bytes, FLUSH_UNKNOWN_LLC_BYTES)


class Flush:
    """The cache-flush buffer, allocated on first use (only cold ops on a GPU need it), and the
    flush itself: a write and a read-only pass, which leave the cache holding clean lines
    (clean_flush; a memset alone leaves it full of dirty ones). A GPU that matches no spec gets
    at least FLUSH_UNKNOWN_LLC_BYTES (flush_bytes)."""

    method = "write+read"  # recorded in run.json as flush_method

    def __init__(self, device):
        self.device = device
        self.bytes = flush_bytes(device.llc_bytes, spec_known=getattr(device, "spec_id", None) is not None)
        self._buffer = None
        self._evict = None

    def evict(self) -> None:
        if self._evict is None:
            self._evict = clean_flush(self.buffer())
        self._evict()

    def buffer(self):
        if self._buffer is None:
            import torch

            self._buffer = torch.empty(self.bytes, dtype=torch.uint8, device=f"cuda:{self.device.index}")
        return self._buffer


def hold_ms(k: int, host_ms_per_sample: float, cap_ms: float = HOLD_CAP_MS) -> float:
    """How long to keep the device busy while the host queues k samples: 1.5x the host's own
    queueing time for a whole sample (flush, events and launches), capped. Without it a kernel
    shorter than its launch finds the stream idle, and the host's launch time falls between its
    start event and the kernel (nvbench holds the stream with a blocking kernel for the same reason)."""
    return min(1.5 * k * max(host_ms_per_sample, 0.0), cap_ms)


@functools.lru_cache(maxsize=None)
def _sleep_cycles_per_ms(cuda, device_index: int) -> float | None:
    """Clock cycles of `cuda._sleep` per ms on this device, timed once with events; None where
    this torch has no `_sleep` (then nothing holds the stream)."""
    sleep = getattr(cuda, "_sleep", None)
    if sleep is None:
        return None
    cycles = 1_000_000
    sleep(cycles)  # the first launch loads the kernel
    start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
    start.record()
    sleep(cycles)
    end.record()
    end.synchronize()
    return cycles / max(start.elapsed_time(end), 1e-3)


def as_flush(flush) -> Callable[[], Any] | None:
    """The flush as a call: a callable as it is; a bare buffer (the old interface) is memset."""
    if flush is None or callable(flush):
        return flush
    return flush.zero_


def clean_flush(buffer) -> Callable[[], Any]:
    """Evict the last-level cache and leave it holding clean lines: a write pass over the buffer
    (twice the LLC) evicts whatever the last sample left, then a read-only pass replaces the
    buffer's own dirty lines with clean ones. After a memset alone the cache is full of dirty
    lines, and the timed kernel pays for their write-back (up to the LLC's size)."""
    words = buffer.view(-1)

    def flush() -> None:
        buffer.zero_()
        words.amax()  # a reduction reads every line and writes one element

    return flush
