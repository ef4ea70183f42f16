"""A run in the formats other tools read: torch.utils.benchmark Measurements (so its Compare
prints a run as it prints Timer results). Reads records only, like every report.
"""
from __future__ import annotations

from parity.harness.core.model import TIMING_INTERPRET
from parity.harness.core.results import Run


def torch_measurements(run: Run) -> list:
    """One Measurement per timed record: label = suite/op, sub_label = the params (dtype first),
    description = the implementation, env = the device (and how it was timed), raw times in seconds,
    one call per run. Interpreter times are kept but marked: they time the Triton interpreter, not
    the kernel, so their description ends in " [interpreter]", their env says so, and their
    metadata has `interpreter: True` (Compare then never puts them in a column beside a device's
    times). Skipped, failed and invalid records have no times and are left out."""
    from torch.utils.benchmark.utils.common import Measurement, TaskSpec

    from parity.harness.reporting.tables import device_label, params_text, worker_unit

    out, unit = [], worker_unit(run.meta)
    for rec in run.records:
        samples = (rec.get("time_ms") or {}).get("samples") or []
        if rec.get("status") != "ok" or not samples:
            continue
        interp = rec.get("timing") == TIMING_INTERPRET
        params = rec.get("params") or {}
        sub_label = " ".join(p for p in (str(params.get("dtype") or ""), params_text(params)) if p)
        spec = TaskSpec(stmt=rec.get("key", ""), setup="", label=f"{rec.get('suite')}/{rec.get('op')}",
                        sub_label=sub_label or "-", description=f"{rec.get('impl')}" + (" [interpreter]" if interp else ""),
                        env=f"{device_label(rec, unit)} ({rec.get('timing')}" + (": interpreter, not performance)" if interp else ")"), num_threads=1)
        out.append(Measurement(number_per_run=1, raw_times=[s / 1e3 for s in samples], task_spec=spec,
                               metadata={"key": rec.get("key"), "run_id": run.meta.get("run_id"),
                                         "work": rec.get("work"), "cache": rec.get("cache"),
                                         "timing": rec.get("timing"), "interpreter": interp}))
    return out
