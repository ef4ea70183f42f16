"""What the Triton GEMMs share: the tile config, the grouped tile order, the masked store.

Targets differ (Triton tutorials 03 and 10): CUDA configs use 3-5 software-pipeline stages and
4-8 warps; HIP configs use 2 stages, 8 warps, `matrix_instr_nonkdim=16` (the 16x16 MFMA) and
`waves_per_eu`, options the CUDA backend does not know. So each kernel declares one list per target
and launches through `parity.kernels.launch.Launcher`.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import triton
import triton.language as tl

MAX_INDEX = 2**31 - 1  # offsets are 32-bit inside the kernels; every operand must stay below


def config(block_m: int, block_n: int, block_k: int, group_m: int, warps: int, stages: int,
           **options: Any) -> triton.Config:
    """A tile config; `options` are backend compile options (HIP: matrix_instr_nonkdim, waves_per_eu)."""
    return triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": group_m,
                          **options}, num_warps=warps, num_stages=stages)


def tile_grid(m: int, n: int) -> Callable[[Mapping[str, Any]], tuple[int]]:
    return lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)


def check_index_range(**operands: torch.Tensor) -> None:
    """32-bit offsets: refuse an operand whose largest element offset does not fit."""
    for name, t in operands.items():
        last = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
        if last > MAX_INDEX:
            raise ValueError(f"{name} spans {last + 1} elements; the kernel's 32-bit offsets reach {MAX_INDEX}")


@triton.jit
def grouped_tile(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) of this program, in groups of GROUP_M rows of tiles so that programs running
    together share rows of A and columns of B in L2 (Triton tutorial 03, "L2 cache optimizations")."""
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def store_tile(c_ptr, acc, pid_m, pid_n, M, N, stride_cm, stride_cn, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Round the fp32 tile to C's dtype and store the part of it inside M x N."""
    offs_cm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_cn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + offs_cm[:, None] * stride_cm + offs_cn[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(offs_cm[:, None] < M) & (offs_cn[None, :] < N))
