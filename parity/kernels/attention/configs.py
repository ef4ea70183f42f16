"""Autotuning lists of the attention kernels, per target and head_dim, and the limits they respect.

Every list holds only configurations that load on every architecture of their target at the
head_dims they serve: shared memory (LDS on AMD) within the per-block limit, and no register
spills. Every list was compiled offline for sm_90a, sm_100a, gfx942 and gfx950 with triton 3.9
and 3.6 (the H200 images' version; each spilled a few configs the other did not), with
triton.compile and a `GPUTarget` (no GPU needed; BF16, and FP8 for the pointer forward), the
compile cases being `inspection.py`'s; tests/test_attention_configs.py recompiles the sm_90a lead
configs. The first entry of a list is its lead configuration, the one `parity inspect` holds to
"no spill".

head_dim is served in buckets of BLOCK_D (the next power of two, at least 16): a config's shared
memory grows with BLOCK_D (Q, K and V tiles are BLOCK x BLOCK_D), so what fits at 64 can be over
the limit at 256 (five of the seven former forward configs were, on sm_90a with triton 3.6).

Why these tiles:
- CUDA forward at head_dim 128: 8 warps over a 128-row tile (two warpgroups, 64 rows each for
  wgmma) keep the fp32 accumulator at 64 registers a thread; 4 warps over 128 rows need 128 for it
  and spilled (332 B with triton 3.9 on sm_90a, 816 B on sm_100a). head_dim 256 halves BLOCK_N and
  the stages so that K and V tiles fit 227 KiB.
- CUDA forward at head_dim 64: the same two warpgroups over 128 rows (32 accumulator registers a
  thread, 113-168 in all); 4 warps (64) reached 255 and spilled 92-116 B for FP8 on sm_100a with
  triton 3.9 (issue 24), and are left out.
- dK/dV holds K, V, dK and dV (4 x BLOCK_N x BLOCK_D) across its loop: the former BLOCK_N 128
  configs spilled at head_dim 128; BLOCK_N 64 and below do not. At head_dim 64, 4 warps over
  64x64 (dK + dV: 2 x 64 x 64 / 128 = 64 registers a thread, K and V 32 more) spilled 32-1028 B
  on sm_90a/sm_100a with 3.6 and 3.9 (the causal variant compiles the block loop twice); 8 warps
  over 32x64 halve that: 143-252 registers, no spill (issue 24, both versions).
- AMD (one stage, as AMD's Triton guide advises for CDNA): waves_per_eu caps registers per wave;
  a cap below what the tile needs spills, so the caps here are the ones that compiled clean.
- Decode: its tile is up to 128 query rows (GQA group x tokens) by BLOCK_N keys. BLOCK_N 256
  with 3 stages needed 268 KiB at head_dim 128 and could never load; 128-row tiles on 4 warps
  spilled (28-2188 B on sm_90a at head_dim 128-256), hence 8 warps there.
"""
from __future__ import annotations

import triton

# Per-block shared memory (bytes) a kernel may use: NVIDIA's opt-in maximum on sm_90/sm_100
# (227 KiB, CUDA programming guide, compute capabilities table); LDS per workgroup on CDNA3 (64 KiB)
# and CDNA4 (160 KiB) (AMD CDNA3/CDNA4 ISA guides).
SHARED_LIMIT_BYTES = {"sm_90a": 227 * 1024, "sm_100a": 227 * 1024, "gfx942": 64 * 1024, "gfx950": 160 * 1024}
# The archs each runtime target's lists must fit (a "hip" list loads on gfx942 and gfx950 alike).
ARCHS = {"cuda": ("sm_90a", "sm_100a"), "hip": ("gfx942", "gfx950")}
BLOCK_DS = (16, 32, 64, 128, 256)
KERNELS = ("fwd", "fwd_tma", "dkdv", "dq", "decode")


def _cfg(block_m, block_n, warps, stages, **extra):
    meta = {"BLOCK_N": block_n, **extra} if block_m is None else {"BLOCK_M": block_m, "BLOCK_N": block_n, **extra}
    return triton.Config(meta, num_warps=warps, num_stages=stages)


def _bucket(block_d: int) -> int:
    """The table row serving BLOCK_D: 64 serves 16-64, then 128 and 256."""
    if block_d not in BLOCK_DS:
        raise ValueError(f"BLOCK_D {block_d} is not one of {BLOCK_DS}")
    return max(64, block_d)


# (kernel, target, bucket) -> [(BLOCK_M, BLOCK_N, warps, stages, extra options)], lead first.
_TABLE: dict[tuple[str, str, int], list[tuple]] = {
    # --- forward (pointer loads, the tutorial's structure) ---
    ("fwd", "cuda", 64): [(128, 64, 8, 3, {}), (128, 128, 8, 3, {}), (64, 64, 4, 4, {})],
    ("fwd", "cuda", 128): [(128, 64, 8, 3, {}), (128, 128, 8, 2, {}), (64, 64, 4, 4, {}), (64, 32, 4, 3, {})],
    ("fwd", "cuda", 256): [(64, 32, 4, 3, {}), (64, 64, 8, 2, {}), (128, 32, 8, 2, {})],
    ("fwd", "hip", 64): [(128, 64, 4, 1, {"waves_per_eu": 2}), (128, 64, 8, 1, {"waves_per_eu": 2}),
                         (64, 64, 4, 1, {"waves_per_eu": 2})],
    ("fwd", "hip", 128): [(128, 64, 8, 1, {"waves_per_eu": 2}), (128, 64, 8, 1, {"waves_per_eu": 1}),
                          (64, 64, 4, 1, {"waves_per_eu": 1})],
    ("fwd", "hip", 256): [(64, 32, 4, 1, {"waves_per_eu": 1}), (64, 32, 8, 1, {"waves_per_eu": 1})],
    # --- forward with tensor descriptors (TMA on sm_90+) ---
    ("fwd_tma", "cuda", 64): [(128, 64, 4, 3, {}), (128, 128, 8, 3, {}), (64, 64, 4, 4, {})],
    ("fwd_tma", "cuda", 128): [(128, 64, 8, 3, {}), (128, 128, 8, 2, {}), (64, 64, 4, 4, {})],
    ("fwd_tma", "cuda", 256): [(64, 32, 8, 3, {}), (128, 32, 8, 2, {}), (64, 64, 8, 2, {})],
    ("fwd_tma", "hip", 64): [(128, 64, 4, 1, {"waves_per_eu": 2})],
    ("fwd_tma", "hip", 128): [(128, 64, 8, 1, {"waves_per_eu": 2})],
    ("fwd_tma", "hip", 256): [(64, 32, 4, 1, {"waves_per_eu": 1})],
    # --- backward ---
    ("dkdv", "cuda", 64): [(32, 64, 8, 3, {}), (32, 32, 4, 3, {})],
    ("dkdv", "cuda", 128): [(32, 64, 4, 3, {}), (64, 64, 8, 3, {}), (32, 32, 4, 4, {})],
    ("dkdv", "cuda", 256): [(16, 32, 4, 2, {}), (32, 32, 8, 2, {})],
    ("dkdv", "hip", 64): [(32, 64, 4, 1, {}), (64, 64, 4, 1, {})],
    ("dkdv", "hip", 128): [(32, 64, 4, 1, {}), (32, 32, 4, 1, {})],
    ("dkdv", "hip", 256): [(32, 32, 4, 1, {}), (16, 32, 4, 1, {})],
    ("dq", "cuda", 64): [(128, 32, 4, 3, {}), (64, 64, 4, 3, {}), (64, 32, 4, 4, {})],
    ("dq", "cuda", 128): [(64, 64, 4, 3, {}), (128, 32, 8, 3, {}), (64, 32, 4, 4, {})],
    ("dq", "cuda", 256): [(32, 32, 4, 2, {}), (64, 32, 8, 2, {})],
    ("dq", "hip", 64): [(128, 32, 4, 1, {}), (64, 64, 4, 1, {})],
    ("dq", "hip", 128): [(64, 64, 4, 1, {}), (64, 32, 4, 1, {})],
    ("dq", "hip", 256): [(32, 32, 4, 1, {}), (16, 32, 4, 1, {})],
    # --- decode (split-KV): BLOCK_N only; up to 128 query rows a tile ---
    ("decode", "cuda", 64): [(None, 64, 4, 3, {}), (None, 128, 8, 3, {})],
    ("decode", "cuda", 128): [(None, 64, 8, 3, {}), (None, 128, 8, 3, {}), (None, 64, 8, 4, {})],
    ("decode", "cuda", 256): [(None, 32, 8, 3, {}), (None, 64, 8, 2, {})],
    ("decode", "hip", 64): [(None, 64, 4, 1, {}), (None, 128, 8, 1, {})],
    ("decode", "hip", 128): [(None, 64, 4, 1, {}), (None, 64, 8, 1, {})],
    ("decode", "hip", 256): [(None, 32, 4, 1, {}), (None, 32, 8, 1, {})],
}


def lists(kernel: str, target: str, block_d: int) -> list:
    """The autotuning list (`triton.Config`s, lead first) of `kernel` on "cuda" or "hip" at BLOCK_D."""
    if kernel not in KERNELS or target not in ARCHS:
        raise ValueError(f"no configs for kernel {kernel!r} on target {target!r}")
    return [_cfg(m, n, w, s, **extra) for m, n, w, s, extra in _TABLE[(kernel, target, _bucket(block_d))]]


def target_of(arch: str) -> str:
    """"cuda" or "hip": the runtime target whose lists an architecture runs."""
    for target, archs in ARCHS.items():
        if arch in archs:
            return target
    raise ValueError(f"unknown architecture {arch!r}; known: {sorted(SHARED_LIMIT_BYTES)}")
