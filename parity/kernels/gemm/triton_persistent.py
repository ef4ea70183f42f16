"""Persistent Triton GEMMs: BF16/FP16 and FP8 (tensor-wise or row-wise scales), one program per SM
walking the output tiles in grouped order, after Triton tutorial 09 ("persistent matmul").

Two kernels share the tile walk and the epilogue:

- `persistent_tma_kernel` (Hopper, Blackwell): operands and output through TMA tensor descriptors
  made on the host (`triton.tools.tensor_descriptor.TensorDescriptor`; the TMA unit does the
  bounds checks, so no mask is computed), the epilogue split into two half-width stores
  (EPILOGUE_SUBTILE: half the shared memory for C and a store that overlaps the next tile's
  loads) and, on Blackwell, the K loop warp-specialized (`tl.range(warp_specialize=True)`:
  Triton's docs allow it on Blackwell only). TMA needs 16-byte aligned row strides and a unit
  last stride: K and N multiples of 8 (BF16) or 16 (FP8). Where they are not, `uses_tma` says why
  and the pointer kernel runs.
- `persistent_kernel` (AMD CDNA, older NVIDIA, unaligned shapes): the same walk with pointer loads,
  masked along K, with AMD's options (`matrix_instr_nonkdim`, `kpack`,
  `waves_per_eu`) in its config lists.

FP8 accumulation (reference/gemm.md 5.1): `fast` lets Hopper's FP8 tensor cores sum the whole K
loop in their reduced-precision accumulator (about 14 bits; `_scaled_mm(use_fast_accum=True)`
does the same); `accurate` promotes each BLOCK_K-long partial sum to fp32 (`max_num_imprecise_acc
= BLOCK_K`, the counterpart of `use_fast_accum=False`). Accurate mode keeps a second accumulator
live, so its configs are smaller (no 128x256 tile: it needs more than 255 registers a thread).
Other targets accumulate in fp32 either way.

Small M (decode, M <= SPLIT_K_MAX_M) is not this kernel's: `parity.kernels.gemm.triton_splitk`.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from parity.kernels.gemm import triton_fp8
from parity.kernels.gemm.common import check_index_range, config
from parity.kernels.gemm.triton_gemm import NO_SCALES, check_operands
from parity.kernels.launch import INTERPRET, Launcher, target

HALF_DTYPES = (torch.bfloat16, torch.float16)
TMA_ALIGN_BYTES = 16  # cuTensorMapEncodeTiled: global address and every stride but the last


def tma_config(block_m, block_n, block_k, group_m, warps, stages, subtile=True) -> triton.Config:
    """A TMA kernel config; its pre-hook gives the descriptors the config's block shapes."""
    return triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": group_m,
                          "EPILOGUE_SUBTILE": subtile}, num_warps=warps, num_stages=stages,
                         pre_hook=_set_block_shapes)


def _set_block_shapes(nargs):
    """Autotuner pre-hook: the descriptors' block shapes follow the config being tried (tutorial 09)."""
    bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["a_desc"].block_shape = [bk, bm] if nargs["A_KM"] else [bm, bk]
    nargs["b_desc"].block_shape = [bn, bk] if nargs["B_NK"] else [bk, bn]
    nargs["c_desc"].block_shape = [bm, bn // 2 if nargs["EPILOGUE_SUBTILE"] else bn]


# Hopper (228 KiB shared memory a block at most) and Blackwell: 128-row tiles for one or two
# warpgroups of wgmma/tcgen05. Shared bytes = stages * (BM + BN) * BK * itemsize + C's (sub)tile.
TMA_CONFIGS_HALF = {
    "cuda": [
        tma_config(128, 256, 64, 8, 8, 3),   # 144 KiB of stages + 32 KiB for C's half tile
        tma_config(128, 256, 64, 8, 8, 4),   # 192 + 32 KiB
        tma_config(128, 128, 64, 8, 8, 4),
        tma_config(128, 128, 64, 8, 4, 4),
        tma_config(128, 64, 64, 8, 4, 4),
    ],
    "interpret": [tma_config(64, 64, 64, 4, 4, 1)],
}
TMA_CONFIGS_FP8_FAST = {
    "cuda": [
        tma_config(128, 256, 128, 8, 8, 3),  # 144 KiB + 32 KiB (tutorial 09's FP8 tile); 4 stages
        # would need 240 KiB on Blackwell (warp specialization's barriers), over its 227 KiB
        tma_config(128, 128, 128, 8, 8, 4),
        tma_config(128, 128, 128, 8, 4, 4),
    ],
    "interpret": [tma_config(64, 64, 64, 4, 4, 1)],
}
# Promotion holds the fp32 sum and the partial of one K block: 128x256 over 8 warps is 256
# registers of accumulators alone, so accurate mode stops at 128x128.
TMA_CONFIGS_FP8_ACCURATE = {
    "cuda": [
        tma_config(128, 128, 128, 8, 8, 4),
        tma_config(128, 128, 128, 8, 4, 4),
        tma_config(128, 64, 128, 8, 4, 4),
    ],
    "interpret": [tma_config(64, 64, 64, 4, 4, 1)],
}

# Pointer kernel. "hip:gfx942": 64 KiB of LDS a CU; AMD's stream pipeliner (num_stages=2) keeps one
# LDS copy of the A and B tiles, (BM + BN) * BK * itemsize bytes, so every tile stays under 48 KiB
# (the 256x256x64 BF16 tile needs all 64 KiB and spills). AMD's Triton guide (ROCm docs, "Triton
# kernel performance optimization", MI300X): num_stages 2, num_warps 8 for large tiles,
# matrix_instr_nonkdim 16, kpack 2, waves_per_eu 2 (0 for the largest tile). "hip:gfx950": 160 KiB
# of LDS, so 256x256 would fit, but it needs more than 256 VGPRs (spills 40-60 B in an offline
# compile with Triton 3.9): the lead tiles are 256x128 and 128x256; kpack is deprecated there
# (Triton forces it to 1).
def _with_kpack(configs: list[triton.Config], kpack: int) -> list[triton.Config]:
    return [triton.Config({**c.kwargs, "kpack": kpack}, num_warps=c.num_warps, num_stages=c.num_stages)
            for c in configs]


_CDNA_HALF = [
    config(256, 128, 64, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=0),
    config(128, 256, 64, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=0),
    config(128, 128, 64, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
    config(128, 64, 64, 4, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
]
PTR_CONFIGS_HALF = {
    "cuda": [
        config(128, 256, 64, 8, 8, 3),
        config(128, 128, 64, 8, 8, 4),
        config(128, 128, 32, 8, 4, 4),
        config(64, 128, 32, 8, 4, 4),
    ],
    "hip:gfx942": _with_kpack(_CDNA_HALF, 2),  # the guide's kpack for 16-bit operands on MI300
    "hip": _CDNA_HALF,
    "interpret": [config(64, 64, 64, 2, 4, 1)],
}
PTR_CONFIGS_FP8 = {
    "cuda": [
        config(128, 128, 128, 8, 8, 4),
        config(128, 64, 128, 8, 4, 4),
        config(64, 128, 128, 8, 4, 4),
    ],
    # (BM + BN) * BK = 48 KiB at most: fits gfx942's LDS as well as gfx950's
    "hip": [
        config(256, 128, 128, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=0),
        config(128, 256, 128, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=0),
        config(128, 128, 128, 4, 8, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
        config(128, 64, 128, 4, 4, 2, matrix_instr_nonkdim=16, waves_per_eu=2),
    ],
    "interpret": [config(64, 64, 64, 2, 4, 1)],
}


@triton.jit
def tile_of(tile_id, num_pid_m, GROUP_M: tl.constexpr, num_pid_in_group):
    """(pid_m, pid_n) of output tile `tile_id` in grouped order (tutorial 03's L2 reuse)."""
    group_id = tile_id // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (tile_id % group_size_m)
    pid_n = (tile_id % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def mma_step(a, b, acc, UPCAST: tl.constexpr, PROMOTE: tl.constexpr, BLOCK_K: tl.constexpr):
    if UPCAST:  # the interpreter computes bf16 and fp8 dots wrongly; fp32 is exact for them
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    if PROMOTE:
        acc = tl.dot(a, b, acc, max_num_imprecise_acc=BLOCK_K)
    else:
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def scale_tile(acc, sa_ptr, sb_ptr, offs_m, offs_n, M, N, SCALES: tl.constexpr):
    if SCALES == 2:
        sa = tl.load(sa_ptr + offs_m, mask=offs_m < M, other=0.0)
        sb = tl.load(sb_ptr + offs_n, mask=offs_n < N, other=0.0)
        acc = acc * sa[:, None] * sb[None, :]
    elif SCALES == 1:
        acc = acc * (tl.load(sa_ptr) * tl.load(sb_ptr))
    return acc


@triton.jit
def persistent_tma_kernel(a_desc, b_desc, c_desc, sa_ptr, sb_ptr, M, N, K,
                          A_KM: tl.constexpr, B_NK: tl.constexpr, SCALES: tl.constexpr, UPCAST: tl.constexpr,
                          PROMOTE: tl.constexpr, NUM_SMS: tl.constexpr, WARP_SPECIALIZE: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                          GROUP_M: tl.constexpr, EPILOGUE_SUBTILE: tl.constexpr):
    """C = (A @ B) [* scales] through TMA descriptors. A is described as (M, K), or as (K, M) when
    A_KM (A stored transposed); B as (N, K) when B_NK (nn.Linear's weight, K-major, what FP8 MMAs
    want), else as (K, N). Tiles are read out of bounds as zeros and stored clipped by the TMA unit."""
    start_pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    num_tiles = num_pid_m * num_pid_n
    num_pid_in_group = GROUP_M * num_pid_n
    # The epilogue's tile is tracked apart from the loop's (tutorial 09): with warp specialization
    # the loads of the next tile run ahead of this tile's store.
    tile_id_c = start_pid - NUM_SMS
    for tile_id in tl.range(start_pid, num_tiles, NUM_SMS, flatten=True, warp_specialize=WARP_SPECIALIZE):
        pid_m, pid_n = tile_of(tile_id, num_pid_m, GROUP_M, num_pid_in_group)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for ki in range(k_tiles):
            off_k = ki * BLOCK_K
            if A_KM:
                a = a_desc.load([off_k, off_m]).T
            else:
                a = a_desc.load([off_m, off_k])
            if B_NK:
                b = b_desc.load([off_n, off_k]).T
            else:
                b = b_desc.load([off_k, off_n])
            acc = mma_step(a, b, acc, UPCAST, PROMOTE, BLOCK_K)
        tile_id_c += NUM_SMS
        pid_m, pid_n = tile_of(tile_id_c, num_pid_m, GROUP_M, num_pid_in_group)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        offs_m = off_m + tl.arange(0, BLOCK_M)
        offs_n = off_n + tl.arange(0, BLOCK_N)
        acc = scale_tile(acc, sa_ptr, sb_ptr, offs_m, offs_n, M, N, SCALES)
        if EPILOGUE_SUBTILE:
            halves = tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N // 2)), (0, 2, 1))
            acc0, acc1 = tl.split(halves)
            c_desc.store([off_m, off_n], acc0.to(c_desc.dtype))
            c_desc.store([off_m, off_n + BLOCK_N // 2], acc1.to(c_desc.dtype))
        else:
            c_desc.store([off_m, off_n], acc.to(c_desc.dtype))


@triton.jit
def persistent_kernel(a_ptr, b_ptr, c_ptr, sa_ptr, sb_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn,
                      stride_cm, stride_cn, SCALES: tl.constexpr, UPCAST: tl.constexpr, PROMOTE: tl.constexpr,
                      NUM_SMS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                      GROUP_M: tl.constexpr):
    """C = (A @ B) [* scales] with pointer loads, any strides. Rows of A and columns of B past M and
    N are wrapped (never stored); K is masked (a branch for the last K block alone would stop the
    software pipeliner: the loop must be one straight body)."""
    start_pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    num_tiles = num_pid_m * num_pid_n
    num_pid_in_group = GROUP_M * num_pid_n
    offs_k = tl.arange(0, BLOCK_K)
    for tile_id in tl.range(start_pid, num_tiles, NUM_SMS):
        pid_m, pid_n = tile_of(tile_id, num_pid_m, GROUP_M, num_pid_in_group)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        # The wraps carry no max_contiguous/multiple_of hint (see splitk_kernel): with one, a column
        # slice whose M or N is not a multiple of the vector width is loaded off alignment.
        offs_am = offs_m % M
        offs_bn = offs_n % N
        a_ptrs = a_ptr + offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak
        b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for ki in range(k_tiles):
            k_left = K - ki * BLOCK_K
            a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
            acc = mma_step(a, b, acc, UPCAST, PROMOTE, BLOCK_K)
            a_ptrs += BLOCK_K * stride_ak
            b_ptrs += BLOCK_K * stride_bk
        acc = scale_tile(acc, sa_ptr, sb_ptr, offs_m, offs_n, M, N, SCALES)
        c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
        tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


TUNING_KEY = ["M", "N", "K", "SCALES", "PROMOTE"]
_tma_half = Launcher(persistent_tma_kernel, TMA_CONFIGS_HALF, key=TUNING_KEY + ["A_KM", "B_NK"])
_tma_fp8_fast = Launcher(persistent_tma_kernel, TMA_CONFIGS_FP8_FAST, key=TUNING_KEY + ["A_KM", "B_NK"])
_tma_fp8_accurate = Launcher(persistent_tma_kernel, TMA_CONFIGS_FP8_ACCURATE, key=TUNING_KEY + ["A_KM", "B_NK"])
_ptr_half = Launcher(persistent_kernel, PTR_CONFIGS_HALF,
                     key=TUNING_KEY + ["stride_am", "stride_ak", "stride_bk", "stride_bn"])
_ptr_fp8 = Launcher(persistent_kernel, PTR_CONFIGS_FP8,
                    key=TUNING_KEY + ["stride_am", "stride_ak", "stride_bk", "stride_bn"])

INTERPRET_SMS = 4  # the interpreter: a few programs, so each walks several tiles


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def num_sms(t: torch.Tensor) -> int:
    """Programs of a persistent launch: one per SM (CU on AMD)."""
    if INTERPRET or not t.is_cuda:
        return INTERPRET_SMS
    return _sm_count(t.device.index if t.device.index is not None else torch.cuda.current_device())


def _aligned(t: torch.Tensor) -> bool:
    """One dimension contiguous, the other's stride and the base 16-byte aligned (TMA's rule)."""
    item = t.element_size()
    if t.stride(1) == 1:
        outer = t.stride(0)
    elif t.stride(0) == 1:
        outer = t.stride(1)
    else:
        return False
    return (outer * item) % TMA_ALIGN_BYTES == 0 and t.data_ptr() % TMA_ALIGN_BYTES == 0


def tma_problem(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, where: str,
                cc_major: int | None = None) -> str | None:
    """None when the TMA kernel can run these operands on `where` ("cuda" with compute capability
    major `cc_major`, "hip" or "interpret"); otherwise why the pointer kernel runs. Tensors on the
    "meta" device (address 0) stand for freshly allocated ones."""
    if where == "hip":
        return "AMD CDNA has no TMA unit: pointer loads"
    if where == "cuda" and (cc_major or 0) < 9:
        return f"compute capability {cc_major}.x has no TMA unit (Hopper and later): pointer loads"
    for name, t in (("A", a), ("B", b), ("C", out)):
        if not _aligned(t):
            return (f"{name} {tuple(t.shape)} with strides {tuple(t.stride())} is not 16-byte aligned "
                    "for TMA: pointer loads")
    if out.stride(1) != 1:
        return "C is not row-major: pointer stores"
    return None


def uses_tma(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> str | None:
    """`tma_problem` on the device these tensors live on."""
    where = target(a)
    major = torch.cuda.get_device_capability(a.device)[0] if where == "cuda" else None
    return tma_problem(a, b, out, where, major)


def warp_specialize(t: torch.Tensor) -> bool:
    """Triton warp-specializes this loop on Blackwell only (tl.range docs, Triton 3.9)."""
    if INTERPRET or not t.is_cuda or torch.version.hip:
        return False
    return torch.cuda.get_device_capability(t.device)[0] >= 10


def _descriptor(t: torch.Tensor):
    """A (rows, cols) descriptor over `t`'s storage: `t` itself if row-major, else its transpose.
    The block shape is a placeholder the pre-hook (or `_launch_tma`) replaces."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    stored = t if t.stride(1) == 1 else t.t()
    return TensorDescriptor(stored, list(stored.shape), list(stored.stride()), [16, 16]), stored is not t


def _launch_tma(launcher, a, b, out, sa, sb, scales, promote, cfg):
    m, k = a.shape
    n = b.shape[1]
    a_desc, a_km = _descriptor(a)
    b_desc, b_nk = _descriptor(b)
    c_desc, _ = _descriptor(out)
    sms = num_sms(a)
    args = dict(A_KM=a_km, B_NK=b_nk, SCALES=scales, UPCAST=INTERPRET, PROMOTE=promote, NUM_SMS=sms,
                WARP_SPECIALIZE=warp_specialize(a))
    configs = launcher.configs[launcher.list_for(a)]
    if cfg is None and len(configs) == 1:
        cfg = {**configs[0].kwargs, "num_warps": configs[0].num_warps, "num_stages": configs[0].num_stages}
    if cfg is not None:  # no autotuner, so no pre-hook: the block shapes are set here
        cfg = {"EPILOGUE_SUBTILE": False, **cfg}
        _set_block_shapes({"a_desc": a_desc, "b_desc": b_desc, "c_desc": c_desc, **args, **cfg})
    grid = lambda meta: (min(sms, triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"])),)
    launcher(grid, a_desc, b_desc, c_desc, sa, sb, m, n, k, **args, like=a, cfg=cfg)


def _launch_ptr(launcher, a, b, out, sa, sb, scales, promote, cfg):
    if cfg is not None:  # a TMA config given for operands that fell back: its tile, without TMA's keys
        cfg = {key: v for key, v in cfg.items() if key != "EPILOGUE_SUBTILE"}
    m, k = a.shape
    n = b.shape[1]
    sms = num_sms(a)
    grid = lambda meta: (min(sms, triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"])),)
    launcher(grid, a, b, out, sa, sb, m, n, k, a.stride(0), a.stride(1), b.stride(0), b.stride(1),
             out.stride(0), out.stride(1), SCALES=scales, UPCAST=INTERPRET, PROMOTE=promote, NUM_SMS=sms,
             like=a, cfg=cfg)


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None, cfg=None,
           tma: bool | None = None) -> torch.Tensor:
    """out = a @ b for bf16 or fp16 a (M, K), b (K, N) of one dtype, any strides.

    `tma`: None picks the TMA kernel where `uses_tma` allows it; False forces the pointer kernel."""
    check_operands(a, b, HALF_DTYPES, "matmul takes bf16 or fp16 operands")
    if a.dtype != b.dtype:
        raise ValueError(f"matmul takes operands of one dtype, got {a.dtype} and {b.dtype}")
    if out is None:
        out = torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device=a.device)
    check_index_range(a=a, b=b, out=out)
    if tma is not False and uses_tma(a, b, out) is None:
        _launch_tma(_tma_half, a, b, out, None, None, NO_SCALES, False, cfg)
    else:
        _launch_ptr(_ptr_half, a, b, out, None, None, NO_SCALES, False, cfg)
    return out


def scaled_matmul(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
                  out: torch.Tensor | None = None, accum: str = "fast", out_dtype: torch.dtype = torch.bfloat16,
                  cfg=None, tma: bool | None = None) -> torch.Tensor:
    """out = (a @ b) * scale_a * scale_b for FP8 a (M, K), b (K, N); fp32 scales, tensor-wise (one
    element each) or row-wise (M and N elements). `accum`: "fast" or "accurate" (module docstring)."""
    scales = triton_fp8.check_scaled(a, b, scale_a, scale_b, accum)
    if out is None:
        out = torch.empty((a.shape[0], b.shape[1]), dtype=out_dtype, device=a.device)
    check_index_range(a=a, b=b, out=out)
    promote = accum == "accurate"
    sa, sb = scale_a.contiguous(), scale_b.contiguous()
    if tma is not False and uses_tma(a, b, out) is None:
        _launch_tma(_tma_fp8_accurate if promote else _tma_fp8_fast, a, b, out, sa, sb, scales, promote, cfg)
    else:
        _launch_ptr(_ptr_fp8, a, b, out, sa, sb, scales, promote, cfg)
    return out


def launcher_for(fp8: bool, accum: str = "fast", tma: bool = True) -> Launcher:
    """The launcher (kernel and config list) a call with these settings uses."""
    if tma:
        return (_tma_fp8_accurate if accum == "accurate" else _tma_fp8_fast) if fp8 else _tma_half
    return _ptr_fp8 if fp8 else _ptr_half


def best_config(like: torch.Tensor, fp8: bool = False, accum: str = "fast", tma: bool = True) -> str | None:
    return launcher_for(fp8, accum, tma).best_config(like)
