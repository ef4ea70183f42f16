"""A run's measured kernels in the serving step model (`parity estimate --model ... RUN`).

The step model prices each kernel as its roofline time over an efficiency (core/serving/kernels).
Where a run was measured on the device being estimated, its kernels replace the model's
efficiencies, as the single-step estimate takes them (reporting/estimate.source_of: timed GPU
records, below their roof):
- a GEMM of the math dtype at a near shape (each of m, n, k within 2x; the nearest by the sum of
  relative distances) gives its share of the roofline;
- paged decode and prefill attention take the median roofline share of the run's records of that
  phase (the step model asks by phase, not by context).
Other devices keep the model: a run says how its own device runs these kernels; `parity project`
is the tool that carries that across devices.
"""
from __future__ import annotations

import statistics
from collections import Counter

from parity.harness.reporting import estimate as single
from parity.harness.reporting import project


class RunKernels:
    """The `measured(kind, shape, device_id)` callable of core/serving/kernels, with a count of what
    it answered (per kind) so that each row can say how much of its step came from the run."""

    def __init__(self, run):
        self.source = single.source_of(run)
        self.device = self.source.spec.id
        self.hits: Counter = Counter()

    def __call__(self, kind: str, shape: tuple, device_id: str) -> float | None:
        if device_id != self.device:
            return None
        found = None
        if kind.startswith("gemm_"):
            best = single.nearest_gemm(self.source, project.GEMM_CLASS.get(kind[5:]), shape)
            found = None if best is None else best[0]
        elif kind.startswith("attention_"):
            effs = [eff for op, _, _, eff, _ in self.source.attention if op == kind[len("attention_"):]]
            found = statistics.median(effs) if effs else None
        if found:
            self.hits[kind] += 1
        return found

    def note(self) -> str | None:
        if not self.hits:
            return None
        kinds = ", ".join(sorted(self.hits))
        return f"kernels measured on this device by the run ({kinds}); the rest from the model"
