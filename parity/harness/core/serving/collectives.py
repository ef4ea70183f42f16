"""Collectives inside a node as latency plus bytes over bandwidth, per algorithm (collectives.toml).

`allreduce_s(spec, n, nbytes)` is the time of the fastest all-reduce algorithm the fabric offers for
that message (what NCCL's tuner and the engines' custom all-reduce pick by size); `alltoall_s` the
time of one all-to-all in which every GPU sends `nbytes_out` to the others (MoE dispatch or combine
under expert parallelism). Bytes on the link follow nccl-tests' bus-bandwidth factors
(doc/PERFORMANCE.md); the link bandwidth is the spec's interconnect_gbps_per_direction.
"""
from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

from parity.harness.core.model import UsageError

DATA = Path(__file__).with_name("collectives.toml")
TOPOLOGIES = ("switch", "mesh")


@dataclass(frozen=True)
class Algorithm:
    name: str
    latency_us: float
    efficiency: float
    max_bytes: float = float("inf")
    min_gpus: int = 2


@dataclass(frozen=True)
class Fabric:
    id: str
    topology: str
    peers: int
    allreduce: tuple[Algorithm, ...]
    alltoall: Algorithm


def _algorithm(name: str, data: dict, where: str) -> Algorithm:
    try:
        algo = Algorithm(name, float(data["latency_us"]), float(data["efficiency"]),
                         float(data.get("max_bytes", float("inf"))), int(data.get("min_gpus", 2)))
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"collectives.toml {where}: needs latency_us and efficiency") from None
    if not (0 < algo.latency_us < 1e4 and 0 < algo.efficiency <= 1.2):
        raise UsageError(f"collectives.toml {where}: latency or efficiency out of range")
    return algo


@functools.lru_cache(maxsize=None)
def fabrics() -> dict[str, Fabric]:
    data = tomllib.loads(DATA.read_text(encoding="utf-8"))
    out: dict[str, Fabric] = {}
    for fid, f in data["fabric"].items():
        if f.get("topology") not in TOPOLOGIES:
            raise UsageError(f"collectives.toml {fid}: topology must be one of {TOPOLOGIES}")
        fabric = Fabric(fid, f["topology"], int(f["peers"]),
                        tuple(_algorithm(a, v, f"{fid}.{a}") for a, v in f["allreduce"].items()),
                        _algorithm("alltoall", f["alltoall"], f"{fid}.alltoall"))
        for device in f["devices"]:
            out[device] = fabric
    return out


def fabric_of(spec) -> Fabric:
    found = fabrics().get(spec.id)
    if found is None:
        raise UsageError(f"no fabric for {spec.id} in core/serving/collectives.toml")
    return found


def _link_gbps(spec, fabric: Fabric, n: int) -> float:
    link = spec.value("interconnect_gbps_per_direction")
    if not link:
        raise UsageError(f"{spec.id} has no interconnect bandwidth in its spec")
    if fabric.topology == "mesh":  # a group of n uses only its n - 1 direct links
        return link * min(n - 1, fabric.peers) / fabric.peers
    return link


def allreduce_s(spec, n: int, nbytes: float) -> tuple[float, str]:
    """(seconds, algorithm) of the fastest all-reduce of `nbytes` over `n` GPUs; (0, "") for n == 1."""
    if n <= 1 or nbytes <= 0:
        return 0.0, ""
    fabric = fabric_of(spec)
    bw = _link_gbps(spec, fabric, n) * 1e9
    best = None
    for algo in fabric.allreduce:
        if nbytes > algo.max_bytes or n < algo.min_gpus:
            continue
        on_link = (n - 1) * nbytes if algo.name == "oneshot" else 2 * (n - 1) / n * nbytes
        seconds = algo.latency_us * 1e-6 + on_link / (bw * algo.efficiency)
        if best is None or seconds < best[0]:
            best = (seconds, algo.name)
    return best


def alltoall_s(spec, n: int, nbytes_out: float) -> float:
    """Seconds of an all-to-all in which each of `n` GPUs sends `nbytes_out` to the others."""
    if n <= 1 or nbytes_out <= 0:
        return 0.0
    fabric = fabric_of(spec)
    algo = fabric.alltoall
    return algo.latency_us * 1e-6 + nbytes_out / (_link_gbps(spec, fabric, n) * 1e9 * algo.efficiency)
