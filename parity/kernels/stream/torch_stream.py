"""PyTorch streaming operations, the counterparts of `triton_stream` (same names and arguments).

Each writes into preallocated outputs (`out=`), so that a timed call allocates nothing.
"""
from __future__ import annotations

import torch


def copy(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """c = a"""
    return c.copy_(a)


def scale(c: torch.Tensor, b: torch.Tensor, scalar: float) -> torch.Tensor:
    """b = scalar * c"""
    return torch.mul(c, scalar, out=b)


def add(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """c = a + b"""
    return torch.add(a, b, out=c)


def triad(b: torch.Tensor, c: torch.Tensor, a: torch.Tensor, scalar: float) -> torch.Tensor:
    """a = b + scalar * c"""
    return torch.add(b, c, alpha=scalar, out=a)


def fill(a: torch.Tensor, value: float) -> torch.Tensor:
    """a[:] = value (write-only)"""
    return a.fill_(value)


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum(a * b); for bf16 the result is bf16, accumulated in fp32 by the backend"""
    return torch.dot(a, b)


def total(a: torch.Tensor) -> torch.Tensor:
    """sum(a), accumulated and returned in fp32 (read-only)"""
    return torch.sum(a, dtype=torch.float32)
