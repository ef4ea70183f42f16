"""Synthetic runs for report, projection and compare tests: real record shapes, made-up times."""
from __future__ import annotations

import json
from pathlib import Path

from parity.harness.core.results import MEASUREMENTS_FILE, RECORD_SCHEMA, RUN_FILE, RUN_SCHEMA, Run

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


# --- sweeps of the stream, GEMM and attention suites, for plots, side-by-side tables and compare -----

MI300X = {"backend": "rocm", "name": "AMD Instinct MI300X", "arch": "gfx942", "index": 0,
          "l2_bytes": 4 << 20, "llc_bytes": 256 << 20}
STREAM_ARRAYS = {"copy": (1, 1), "scale": (1, 1), "add": (2, 1), "triad": (2, 1), "dot": (2, 0), "read": (1, 0),
                 "write": (0, 1)}  # arrays read, written (parity.suites.stream)
STREAM_FLOPS = {"copy": 0, "scale": 1, "add": 1, "triad": 2, "dot": 2, "read": 1, "write": 0}


def stream_record(op="triad", n=1 << 20, dtype="fp32", gbps=1000.0, **kw):
    """A stream record of `n` elements whose median time gives `gbps` (decimal GB/s)."""
    size = {"fp32": 4, "bf16": 2}[dtype]
    reads, writes = STREAM_ARRAYS[op]
    nbytes = (reads + writes) * n * size
    return record(op=op, dtype=dtype, metric="GB/s", time_ms=nbytes / gbps / 1e6, bytes_read=reads * n * size,
                  bytes_written=writes * n * size, flops=STREAM_FLOPS[op] * n,
                  params={"dtype": dtype, "n": n, "working_set_bytes": nbytes}, **kw)


def gemm_record(m=4096, n=None, k=None, dtype="bf16", impl="torch", tflops=500.0, layout="tn", **kw):
    """A GEMM record (the gemm suite's params: m, n, k, dtype, layout) that runs at `tflops`."""
    n, k = n or m, k or m
    size = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "fp4": 0.5}[dtype]
    flops = 2 * m * n * k
    return record(op="gemm", suite="gemm", impl=impl, dtype=dtype, metric="TFLOPS", flops=flops,
                  time_ms=flops / tflops / 1e9, bytes_read=int((m * k + k * n) * size), bytes_written=2 * m * n,
                  params={"dtype": dtype, "m": m, "n": n, "k": k, "layout": layout}, **kw)


def attention_record(seq=4096, dtype="bf16", impl="triton", rate=300.0, direction="fwd", causal=False,
                     op="prefill", batch=4, heads=32, kv_heads=8, head_dim=128, **kw):
    """An attention record (the attention suite's params) running at `rate`: TFLOPS, or GB/s for the
    memory-bound `decode` op (one query against `seq` keys)."""
    seq_q = 1 if op == "decode" else seq
    flops = 4 * batch * heads * seq_q * seq * head_dim // (2 if causal else 1) * (1 if direction == "fwd" else 5) // (
        1 if direction == "fwd" else 2)  # backward: 2.5x the forward's FLOPs
    kv_bytes = 2 * batch * kv_heads * seq * head_dim * 2
    metric = "GB/s" if op == "decode" else "TFLOPS"
    seconds = kv_bytes / (rate * 1e9) if metric == "GB/s" else flops / (rate * 1e12)
    return record(op=op, suite="attention", impl=impl, dtype=dtype, metric=metric, flops=flops,
                  time_ms=seconds * 1e3, bytes_read=kv_bytes, bytes_written=2 * batch * heads * seq_q * head_dim,
                  params={"dtype": dtype, "batch": batch, "heads": heads, "kv_heads": kv_heads, "seq_q": seq_q,
                          "seq_k": seq, "head_dim": head_dim, "causal": causal, "direction": direction}, **kw)
