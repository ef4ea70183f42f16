"""A fake `torch.cuda` on a simulated timeline: one host thread queueing work on one device stream.

The host pays for every call it makes (a kernel launch, an event record) on its own clock; the
device runs queued work in order, each item starting when both the device is free and the host has
queued it. An event is "reached" when the device gets to it, and `elapsed_time` reports the device
time between two events in ms, quantized to the event resolution (CUDA documents ~0.5 us), as the
real one is. `_sleep(cycles)` is the spin kernel that holds the stream. A host stall (another
process taking the core) is injected by launch count. `clock()` is the host clock in seconds, for
`EventSampler(clock=...)` and `warm_up(clock=...)`.
"""
from __future__ import annotations


class Event:
    def __init__(self, timeline: "Timeline", enable_timing: bool = True):
        self.timeline = timeline
        self.t_ms: float | None = None

    def record(self) -> None:
        self.t_ms = self.timeline.enqueue(0.0, self.timeline.record_ms)

    def synchronize(self) -> None:
        self.timeline.host_ms = max(self.timeline.host_ms, self.t_ms)

    def elapsed_time(self, end: "Event") -> float:
        step = self.timeline.resolution_ms
        span = end.t_ms - self.t_ms
        return round(span / step) * step if step else span


class Timeline:
    def __init__(self, launch_ms: float = 0.005, record_ms: float = 0.002, resolution_ms: float = 0.0,
                 cycles_per_ms: float = 1.0e6):
        self.host_ms = 0.0  # the host's clock
        self.device_free_ms = 0.0  # when the device finishes what is queued
        self.launch_ms, self.record_ms = launch_ms, record_ms
        self.resolution_ms = resolution_ms
        self.cycles_per_ms = cycles_per_ms
        self.launches = 0
        self.stalls: dict[int, float] = {}  # launch number -> host ms lost just before it
        self.idle_ms = 0.0  # device time spent waiting for the host

    # --- the simulation -----------------------------------------------------------------------
    def enqueue(self, device_ms: float, host_cost_ms: float) -> float:
        """Queue an item: the host pays its cost; returns when the device starts it."""
        self.host_ms += host_cost_ms
        begin = max(self.device_free_ms, self.host_ms)
        self.idle_ms += begin - self.device_free_ms
        self.device_free_ms = begin + device_ms
        return begin

    def kernel(self, device_ms: float) -> float:
        self.launches += 1
        self.host_ms += self.stalls.get(self.launches, 0.0)
        return self.enqueue(device_ms, self.launch_ms)

    def clock(self) -> float:
        return self.host_ms / 1e3

    # --- the torch.cuda surface EventSampler uses ---------------------------------------------
    def Event(self, enable_timing: bool = True) -> Event:  # noqa: N802 - torch's name
        return Event(self, enable_timing)

    def current_device(self) -> int:
        return 0

    def synchronize(self) -> None:
        self.host_ms = max(self.host_ms, self.device_free_ms)

    def _sleep(self, cycles: int) -> None:
        self.kernel(cycles / self.cycles_per_ms)
