"""The five collectives the `collectives` suite times, as torch.distributed calls on the default
process group (NCCL on CUDA, RCCL behind the same "nccl" backend on ROCm, gloo on the CPU).

Each writes into a preallocated output, so a timed call allocates nothing, and returns it. The
caller has initialized the process group (`torch.distributed.init_process_group`); every rank must
make the same calls in the same order. Buffers follow nccl-tests (`src/*.cu`, out of place):

- all_reduce(x): x becomes the elementwise sum over ranks (in place, as NCCL users call it);
- all_gather(out, x): out (n * len(x)) holds every rank's x, rank order;
- reduce_scatter(out, x): out (len(x) / n) is this rank's chunk of the sum of every rank's x;
- all_to_all(out, x): chunk j of x goes to rank j; chunk i of out comes from rank i;
- broadcast(x, root): x becomes root's x on every rank (in place).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

# torch 2.13 renamed the *_tensor calls *_single and deprecates the old names; vendor images carry
# older torch releases, which have only the old ones.
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_gather(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    _all_gather(out, x)
    return out


def reduce_scatter(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    _reduce_scatter(out, x, op=dist.ReduceOp.SUM)
    return out


def all_to_all(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    dist.all_to_all_single(out, x)
    return out


def broadcast(x: torch.Tensor, root: int = 0) -> torch.Tensor:
    dist.broadcast(x, src=root)
    return x
