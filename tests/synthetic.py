"""Synthetic runs for report, projection and compare tests: real record shapes, made-up times."""
from __future__ import annotations

import json
from pathlib import Path

from parity.harness.results import MEASUREMENTS_FILE, RECORD_SCHEMA, RUN_FILE, RUN_SCHEMA, Run

H200 = {"backend": "cuda", "name": "NVIDIA H200", "arch": "sm_90", "index": 0}
H100 = {"backend": "cuda", "name": "NVIDIA H100 80GB HBM3", "arch": "sm_90", "index": 0}
CPU = {"backend": "cpu", "name": "Some CPU", "arch": "x86_64", "index": 0}


def record(op="copy", impl="torch", time_ms=1.0, bytes_read=0, bytes_written=0, flops=0, dtype="fp32",
           metric="GB/s", status="ok", timing="events", device="NVIDIA H200", path="native",
           math_dtype=None, suite="stream", telemetry=None, params=None, samples=None):
    params = params or {"dtype": dtype, "n": bytes_read // 4 or 1}
    key = f"{suite}/{op}/{impl}/" + json.dumps(params, sort_keys=True)
    rec = {"schema": RECORD_SCHEMA, "suite": suite, "op": op, "impl": impl,
           "backend": "torch" if impl == "torch" else "triton", "params": params, "status": status,
           "reason": None if status == "ok" else "because", "timing": timing, "key": key, "device": device,
           "cache": "warm", "metric": metric, "path": path,
           "work": {"flops": flops, "bytes_read": bytes_read, "bytes_written": bytes_written,
                    "math_dtype": math_dtype or dtype},
           "validation": {"passed": status != "invalid", "error": None, "tolerance": {"rtol": 1e-6},
                          "max_abs_error": 0.0}}
    if status == "ok":
        s = samples or [time_ms * 0.98, time_ms, time_ms * 1.02]
        rec["time_ms"] = {"median": time_ms, "p10": min(s), "p90": max(s), "min": min(s), "n": len(s),
                          "noise_rel": 0.01, "stop": "noise", "samples": list(s)}
    if telemetry:
        rec["telemetry"] = telemetry
    return rec


def run(records, device=H200, run_id="r1", path="/nonexistent") -> Run:
    meta = {"schema": RUN_SCHEMA, "run_id": run_id, "device": dict(device)}
    return Run(path=Path(path), meta=meta, records=tuple(records))


def write_run(folder: Path, records, device=H200, run_id="r1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_FILE).write_text(json.dumps({"schema": RUN_SCHEMA, "run_id": run_id, "device": dict(device),
                                               "status": "complete"}))
    (folder / MEASUREMENTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder
