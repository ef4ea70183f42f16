"""Serving engines as data (engines.toml): scheduler limits, graph capture, fixed step costs.

`host_base_ms` and `host_per_seq_us` (the host's share of a step: scheduling, input preparation,
sampling bookkeeping, detokenization), the graph's `kernel_gap_us` and the host's cost per kernel
without a graph (`eager_launch_us`) are priors here; the values fitted on the calibration subset
live in calibration.toml and replace them (`fitted()`).
"""
from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from parity.harness.core.model import UsageError

DATA = Path(__file__).with_name("engines.toml")
CALIBRATION = Path(__file__).with_name("calibration.toml")
KV_POLICIES = ("on-demand", "reserve")
RUNTIMES = ("python", "cpp")  # what runs the step's bookkeeping and issues its kernels
FRACTION_OF = ("total", "free")
WINDOW_KV = ("window", "full")  # sliding-window layers hold their window's KV only, or the full length
OVERRIDABLE = ("max_num_seqs", "max_num_batched_tokens", "graph_max_batch", "gpu_memory_utilization")


@dataclass(frozen=True)
class Engine:
    id: str
    name: str
    max_num_seqs: int
    max_num_batched_tokens: int
    graph_max_batch: int
    async_scheduling: bool
    mixed_prefill: bool  # prompt chunks share a step with the decodes (and the token budget)
    kv_allocation: str
    window_kv: str
    gpu_memory_utilization: float
    host_base_ms: float
    host_per_seq_us: float
    front_end_ms: float  # a request's time in the HTTP server before and after the engine (client-side TTFT)
    source: tuple[str, ...]
    runtime: str = "python"
    memory_fraction_of: str = "total"  # gpu_memory_utilization is a share of "total" memory or of the "free" rest

    def host_s(self, seqs: float) -> float:
        return (self.host_base_ms + self.host_per_seq_us * seqs * 1e-3) * 1e-3

    def with_overrides(self, overrides: dict) -> "Engine":
        bad = set(overrides) - set(OVERRIDABLE)
        if bad:
            raise UsageError(f"engine settings {sorted(bad)} cannot be overridden")
        out = {k: (float(v) if k == "gpu_memory_utilization" else int(v)) for k, v in overrides.items()}
        if not 0 < out.get("gpu_memory_utilization", 0.5) <= 1:
            raise UsageError("gpu_memory_utilization must be above 0 and at most 1")
        if any(v < (0 if k == "graph_max_batch" else 1) for k, v in out.items() if k != "gpu_memory_utilization"):
            raise UsageError(f"engine limits must be 1 or more (graph_max_batch 0 or more): {overrides}")
        return replace(self, **out)


def _load(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def calibration() -> dict:
    """The fitted constants (calibration.toml), {} before a fit."""
    return _load(CALIBRATION) if CALIBRATION.is_file() else {}


@functools.lru_cache(maxsize=None)
def priors() -> tuple[dict[str, Engine], dict]:
    data = _load(DATA)
    out = {}
    for eid, e in data["engine"].items():
        if e.get("kv_allocation") not in KV_POLICIES:
            raise UsageError(f"engines.toml {eid}: kv_allocation must be one of {KV_POLICIES}")
        if e.get("runtime") not in RUNTIMES:
            raise UsageError(f"engines.toml {eid}: runtime must be one of {RUNTIMES}")
        if e.get("memory_fraction_of") not in FRACTION_OF:
            raise UsageError(f"engines.toml {eid}: memory_fraction_of must be one of {FRACTION_OF}")
        if e.get("window_kv") not in WINDOW_KV:
            raise UsageError(f"engines.toml {eid}: window_kv must be one of {WINDOW_KV}")
        out[eid] = Engine(eid, e["name"], int(e["max_num_seqs"]), int(e["max_num_batched_tokens"]),
                          int(e["graph_max_batch"]), bool(e["async_scheduling"]), bool(e["mixed_prefill"]),
                          e["kv_allocation"], e["window_kv"],
                          float(e["gpu_memory_utilization"]), float(e["host_base_ms"]),
                          float(e["host_per_seq_us"]), float(e["front_end_ms"]), tuple(e["source"]), e["runtime"],
                          e["memory_fraction_of"])
    return out, dict(data["gpu"])


def fitted(values: dict | None = None) -> tuple[dict[str, Engine], dict]:
    """Engines and GPU constants with the calibration's values (or `values`, during a fit)."""
    engines, gpu = priors()
    values = calibration().get("fitted", {}) if values is None else values
    gpu = dict(gpu, **{k: v for k, v in values.items() if k in gpu})
    out = {}
    for eid, e in engines.items():
        out[eid] = replace(e, host_base_ms=values.get(f"{eid}.host_base_ms", e.host_base_ms),
                           host_per_seq_us=values.get(per_seq_key(e), e.host_per_seq_us))
    return out, gpu


def per_seq_key(engine: Engine) -> str:
    """The fitted constant of the host's cost per sequence: one for the engines whose step is Python
    (vLLM, SGLang, TensorRT-LLM's PyTorch backend do the same work there), one per compiled runtime."""
    return "host_per_seq_us" if engine.runtime == "python" else f"{engine.id}.host_per_seq_us"


def get(engine_id: str) -> Engine:
    engines, _ = fitted()
    if engine_id not in engines:
        raise UsageError(f"unknown engine {engine_id!r} (known: {', '.join(sorted(engines))})")
    return engines[engine_id]
