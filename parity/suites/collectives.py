"""Collectives across the ranks of a process group: all-reduce, all-gather, reduce-scatter,
all-to-all and broadcast over torch.distributed, with a message-size sweep from bytes to gigabytes.

Sizes and bandwidths follow nccl-tests (`doc/PERFORMANCE.md`, `src/*.cu` `*GetBw`; see
../shared/reference/harness-method.md, section 6.1). The size S of a case is nccl-tests' `size`
column: the larger of one rank's send and receive buffers (all-gather: the gathered output;
reduce-scatter and all-to-all: the whole input). Algorithm bandwidth is S / t; bus bandwidth is
algbw times a factor that makes it comparable with a link's speed whatever the rank count n:
all-reduce 2(n-1)/n; all-gather, reduce-scatter and all-to-all (n-1)/n; broadcast 1.

The suite declares the bus bytes, S times the factor, as the work of a call, crossing the
interconnect (`Work.bytes_over`), so the report's rate is the bus bandwidth and a GPU run is
normalized against its spec's interconnect bandwidth per direction. Algorithm bandwidth is derived
from `size_bytes` (collective_report.py). Every rank runs every case at once; the harness starts
the ranks (scaleout/group.py) or torchrun does. Each case is timed on every rank and each sample is
the slowest rank's time (measurement/instep.py, asked for with MEASURE_IN_STEP); as in nccl-tests, a small message is timed
several calls per event pair (its record's `time_ms.launches_per_sample`), and the ranks meet at a
barrier before each batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist

from parity.harness.core.model import MEASURE_IN_STEP, Check, Impl, Op, Work
from parity.harness.core.ranks import default_ranks
from parity.kernels.collectives import torch_collectives
# The dtype names, memory bound and --size check are light metadata, read before torch is imported.
from parity.suites._meta.collectives import DTYPES as DTYPE_NAMES
from parity.suites._meta.collectives import MEMORY_FRACTION, META, check_sizes  # noqa: F401

DTYPES = {name: getattr(torch, attr) for name, (attr, _) in DTYPE_NAMES.items()}
SEED = 20261121
ROOT = 0  # broadcast's source rank
MIN_BYTES = 8  # nccl-tests' usual -b 8
SMOKE_ELEMENTS = (3, 1001)  # odd counts, rounded down to a multiple of the rank count where chunked
CPU_QUICK_BYTES = (64, 16 << 10, 1 << 20)  # gloo on a CPU: seconds for the whole preset


@dataclass(frozen=True)
class Collective:
    """One collective: its kernel, whether its buffers split into one chunk per rank, whether it
    reduces (sums) and its nccl-tests bus factor as a function of the rank count."""

    name: str
    chunked: bool
    reduces: bool
    bus_factor: Callable[[int], float]
    description: str


COLLECTIVES = (
    Collective("all_reduce", False, True, lambda n: 2 * (n - 1) / n, "sum over ranks, in place"),
    Collective("all_gather", True, False, lambda n: (n - 1) / n, "every rank's chunk to every rank"),
    Collective("reduce_scatter", True, True, lambda n: (n - 1) / n, "sum, each rank keeps its chunk"),
    Collective("all_to_all", True, False, lambda n: (n - 1) / n, "chunk j of rank i to rank j"),
    Collective("broadcast", False, False, lambda n: 1.0, f"rank {ROOT}'s buffer to every rank"),
)


def bus_bytes(op: str, size_bytes: int, ranks: int) -> float:
    """Bytes one rank moves per direction over its busiest link in one call (nccl-tests' model)."""
    return size_bytes * _spec(op).bus_factor(ranks)


def elements(op: str, size_bytes: int, itemsize: int, ranks: int) -> int:
    """Elements of the S-sized buffer: at least one per rank, and a multiple of the rank count
    where the buffer splits into chunks (nccl-tests rounds the count down the same way)."""
    count = max(size_bytes // itemsize, 1)
    if _spec(op).chunked:
        count = max(count // ranks, 1) * ranks
    return count


def sweep_bytes(preset: str, device) -> list[int]:
    """S from 8 B: steps of 8 to 1 GiB (quick) or of 2 to 8 GiB (full) on a GPU; a few sizes to
    1 MiB (quick) or steps of 4 to 256 MiB (full) with gloo on a CPU."""
    if not device.is_gpu and preset == "quick":
        return list(CPU_QUICK_BYTES)
    step, top = {"quick": (8, 1 << 30), "full": (2, 8 << 30)}[preset]
    if not device.is_gpu:
        step, top = 4, 256 << 20
    sizes = [MIN_BYTES]
    while sizes[-1] * step <= top:
        sizes.append(sizes[-1] * step)
    return sizes


def _ranks() -> int:
    return dist.get_world_size() if dist.is_initialized() else 0


def params_for(preset: str, device, dtypes, sizes) -> list[tuple[str, dict[str, Any]]]:
    # The rank count is part of a case: a 4-rank all-reduce is not an 8-rank one.
    n = _ranks() or default_ranks(device)
    out = []
    for spec in COLLECTIVES:
        for dtype in dtypes:
            itemsize = DTYPES[dtype].itemsize
            if sizes:
                wanted = list(sizes)
            elif preset == "smoke":
                wanted = [count * itemsize for count in SMOKE_ELEMENTS]
            else:
                wanted = sweep_bytes(preset, device)
            actual = dict.fromkeys(elements(spec.name, s, itemsize, max(n, 1)) * itemsize for s in wanted)
            out.extend((spec.name, {"dtype": dtype, "size_bytes": s, "ranks": n}) for s in actual)
    return out


def _need_bytes(spec: Collective, params: Mapping[str, Any]) -> int:
    """Input, output and reference (3 S), plus the fp32 sums and check temporaries of a reduction."""
    size = params["size_bytes"]
    count = size // DTYPES[params["dtype"]].itemsize
    return 3 * size + (16 * count if spec.reduces else count)


def _spec(name: str) -> Collective:
    return next(c for c in COLLECTIVES if c.name == name)


def _torch_device(device) -> str:
    return "cpu" if device.backend == "cpu" else f"cuda:{device.index}"


def _supports_for(spec: Collective):
    def supports(device, params: Mapping[str, Any]) -> str | None:
        n = _ranks()
        if n == 0:
            return ("needs a process group: parity starts one rank per GPU when two or more are visible "
                    "(--ranks N on the CPU), or run it under torchrun")
        if n < 2:
            return "needs two or more ranks"
        if n != params["ranks"]:
            return f"planned for {params['ranks']} ranks; this process group has {n}"
        need = _need_bytes(spec, params)
        if device.memory_bytes and need > MEMORY_FRACTION * device.memory_bytes:
            return (f"buffers, reference and check ({need / 2**30:.1f} GiB) exceed {MEMORY_FRACTION:.0%} "
                    f"of the {device.memory_bytes / 2**30:.1f} GiB on {device.name}")
        return None

    return supports


def _rank_input(rank: int, count: int, dtype: str, where: str) -> torch.Tensor:
    """Rank `rank`'s input: random normal, seeded by rank, so that any rank can rebuild any other's."""
    gen = torch.Generator(device=where).manual_seed(SEED + rank)
    return torch.randn(count, generator=gen, dtype=DTYPES[dtype], device=where)


def _make_op(spec: Collective) -> Op:
    def buffers(params) -> tuple[int, int]:
        """Elements of this rank's input and output buffers."""
        n, count = params["ranks"], params["size_bytes"] // DTYPES[params["dtype"]].itemsize
        return {"all_reduce": (count, 0), "broadcast": (count, 0), "all_gather": (count // n, count),
                "reduce_scatter": (count, count // n), "all_to_all": (count, count)}[spec.name]

    def inputs(params, device):
        where, rank = _torch_device(device), dist.get_rank()
        n_in, n_out = buffers(params)
        x = _rank_input(rank, n_in, params["dtype"], where)
        # The output starts random too: a collective that writes nothing cannot pass.
        out = torch.randn(n_out, dtype=DTYPES[params["dtype"]], device=where) if n_out else None
        return {"x": x, "out": out, "rank": rank, "where": where}

    def work(params) -> Work:
        return Work(flops=0, bytes_read=bus_bytes(spec.name, params["size_bytes"], params["ranks"]),
                    bytes_written=0, math_dtype=params["dtype"], bytes_over="interconnect")

    def reference(arrays, params):
        """This rank's expected output, rebuilt from every rank's seeded input."""
        n, rank, where, dtype = params["ranks"], arrays["rank"], arrays["where"], params["dtype"]
        n_in, _ = buffers(params)
        inputs_of = lambda r: _rank_input(r, n_in, dtype, where)  # noqa: E731 - one rank at a time
        if spec.name == "broadcast":
            return inputs_of(ROOT)
        if spec.name == "all_gather":
            return torch.cat([inputs_of(r) for r in range(n)])
        if spec.name == "all_to_all":
            return torch.cat([inputs_of(r).chunk(n)[rank] for r in range(n)])
        # fp32 sums of the exactly upcast inputs: accurate enough (see check) at half fp64's memory.
        total = torch.zeros(n_in, dtype=torch.float32, device=where)
        magnitude = torch.zeros(n_in, dtype=torch.float32, device=where)
        for r in range(n):
            x = inputs_of(r).float()
            total += x
            magnitude += x.abs()
            del x
        if spec.name == "reduce_scatter":
            total, magnitude = total.chunk(n)[rank], magnitude.chunk(n)[rank]
        return {"sum": total, "abs_sum": magnitude}

    def check(output, expected, arrays, params) -> Check:
        if not spec.reduces:  # data moved, not computed: every element exactly equal
            bad = int((output != expected).sum())
            worst = float((output.float() - expected.float()).abs().max()) if bad else 0.0
            return Check(passed=bad == 0, max_abs_error=worst, tolerance={"exact": 0.0},
                         error=None if bad == 0 else f"rank {arrays['rank']}: {bad} of {output.numel()} elements differ")
        # n values summed in some order, each addition rounded in the data type: |error| <=
        # (n-1) eps sum|x_r| per element (Higham, Accuracy and Stability of Numerical Algorithms,
        # ch. 4, the recursive-summation bound to first order). The fp32 reference and its fp32
        # sum|x_r| err by up to (n-1) eps32 each, relative to sum|x_r|.
        eps, eps32 = torch.finfo(output.dtype).eps, torch.finfo(torch.float32).eps
        rtol = (params["ranks"] - 1) * (eps + 2 * eps32)
        err = (output.float() - expected["sum"]).abs()
        worst = float(err.max()) if err.numel() else 0.0
        bad = int((~(err <= rtol * expected["abs_sum"])).sum())  # a NaN is never within tolerance
        return Check(passed=bad == 0, max_abs_error=worst, tolerance={"rtol_of_abs_sum": rtol},
                     error=None if bad == 0 else f"rank {arrays['rank']}: {bad} of {err.numel()} elements outside "
                                                 f"tolerance (max abs error {worst:.3g})")

    return Op(name=spec.name, inputs=inputs, work=work, reference=reference, check=check,
              description=spec.description, cache="warm", metric="GB/s")


def _prepare(spec: Collective):
    fn = getattr(torch_collectives, spec.name)

    def prepare(arrays, params):
        x, out = arrays["x"], arrays["out"]
        if spec.name == "all_reduce":
            # In place, as NCCL users call it. After the first call every rank holds the same x, so
            # each later call multiplies it by n: values grow towards inf (never NaN, never
            # subnormal), which changes no collective's speed; validation uses the first call.
            return lambda: fn(x)
        if spec.name == "broadcast":
            return lambda: fn(x, ROOT)
        return lambda: fn(out, x)

    return prepare


SUITE = META.suite(
    description="all-reduce, all-gather, reduce-scatter, all-to-all, broadcast over torch.distributed "
                "(nccl-tests sizes and bus bandwidth), across the ranks of a node or a cluster",
    ops=tuple(_make_op(spec) for spec in COLLECTIVES),
    impls=tuple(Impl("torch", spec.name, "torch", _prepare(spec), _supports_for(spec), measure=MEASURE_IN_STEP)
                for spec in COLLECTIVES),
    params_for=params_for,
    size_help="--size sets message sizes S (nccl-tests' size: the larger of a rank's send and receive buffers)",
    collective=True,
)
