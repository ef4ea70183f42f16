"""Quantization for the scaled GEMMs: FP8 with tensor-wise or row-wise scales, MXFP4 with e8m0
scales per block of 32, and the OCP -> FNUZ FP8 conversion. Done once, before any timing.

Conventions: a quantized tensor `q` and its fp32 scale `s` stand for `q.float() * s` (the scale
is the decoding factor, as `torch._scaled_mm` takes it). Scales come from the real amax of the
data (reference/gemm.md, section 8.6), never a constant.

- FP8 (`quantize_fp8`): s = amax / max(format), per tensor or per row, so the largest value lands
  on the format's largest finite value. Each format's own maximum is used: 448 for OCP e4m3fn, 240
  for FNUZ e4m3fnuz. That is how FNUZ's halved value enters the scales when quantizing directly.
- OCP -> FNUZ (`ocp_to_fnuz`): the same bits are worth half as much in FNUZ (exponent bias 8, not
  7; 16, not 15, for e5m2), so the bits are kept, the scale is doubled, and 0x80 (-0 in OCP, NaN in
  FNUZ) becomes 0x00. This is vLLM's `normalize_e4m3fn_to_e4m3fnuz` rule (reference/gemm.md 5.2).
- MXFP4 (`quantize_mxfp4`): the OCP Microscaling Formats spec v1.0, section 6.3: per block of 32
  values along K, the shared scale is 2**(floor(log2(amax)) - emax(e2m1)), emax = 2 (6 = 1.5 * 2**2),
  stored as an e8m0 byte (exponent + 127); each value is rounded to nearest-even onto e2m1
  {0, 0.5, 1, 1.5, 2, 3, 4, 6} and saturates at 6. K is padded with zeros to a multiple of 32.
  Two e2m1 codes share a byte, the first (even K index) in the low nibble, as `tl.dot_scaled` and
  `torch.float4_e2m1fn_x2` expect.
"""
from __future__ import annotations

import torch

MX_BLOCK = 32  # values per e8m0 scale (OCP MX spec: block size 32 for every MX format)
E2M1_EMAX = 2  # exponent of e2m1's largest normal value, 6 = 1.5 * 2**2
E8M0_BIAS = 127
E2M1_MAX = 6.0
# The 8 non-negative e2m1 values by code (sign is bit 3).
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
# Midpoints between neighbouring e2m1 values; a value exactly on one rounds to the even code.
_E2M1_MIDPOINTS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)
_TIES_UP = (0.75, 1.75, 3.5)  # midpoints whose upper neighbour has the even code

OCP_TO_FNUZ = {torch.float8_e4m3fn: torch.float8_e4m3fnuz, torch.float8_e5m2: torch.float8_e5m2fnuz}
FNUZ_NEGATIVE_ZERO_BITS = 0x80  # -0 in OCP; the only NaN in FNUZ


def fp8_max(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).max)


def _safe_amax(amax: torch.Tensor) -> torch.Tensor:
    # An all-zero tensor or row needs no scale; 1.0 keeps q = 0 and avoids 0/0.
    return torch.where(amax > 0, amax, torch.ones_like(amax))


def quantize_fp8(x: torch.Tensor, dtype: torch.dtype, scaling: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, scale) with x ~ q.float() * scale: scale is a 0-d fp32 tensor ("tensor") or one fp32
    per row of x, shaped (rows, 1) ("row")."""
    xf = x.float()
    if scaling == "tensor":
        amax = xf.abs().amax()
    elif scaling == "row":
        amax = xf.abs().amax(dim=1, keepdim=True)
    else:
        raise ValueError(f"unknown FP8 scaling {scaling!r} (tensor or row)")
    scale = (_safe_amax(amax) / fp8_max(dtype)).float()
    q = (xf / scale).clamp(-fp8_max(dtype), fp8_max(dtype)).to(dtype)
    return q, scale


def dequantize_fp8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale


def ocp_to_fnuz(q: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same numbers in the FNUZ format of `q`'s OCP format: bits kept, 0x80 -> 0, scale x 2."""
    if q.dtype not in OCP_TO_FNUZ:
        raise ValueError(f"{q.dtype} is not an OCP FP8 dtype")
    bits = q.view(torch.uint8)
    bits = torch.where(bits == FNUZ_NEGATIVE_ZERO_BITS, torch.zeros_like(bits), bits)
    return bits.view(OCP_TO_FNUZ[q.dtype]), scale * 2.0


def _round_to_e2m1_codes(magnitude: torch.Tensor) -> torch.Tensor:
    """Codes 0..7 of |x| (already divided by its block scale), round-to-nearest-even, saturating."""
    v = magnitude.clamp(max=E2M1_MAX)
    mids = torch.tensor(_E2M1_MIDPOINTS, dtype=v.dtype, device=v.device)
    codes = torch.bucketize(v, mids)  # a value equal to a midpoint gets the lower code
    ties_up = torch.zeros_like(v, dtype=torch.bool)
    for mid in _TIES_UP:
        ties_up |= v == mid
    return (codes + ties_up.to(codes.dtype)).to(torch.uint8)


def quantize_mxfp4(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed, scales) for a (rows, K) tensor, blocks of 32 along K.

    packed: uint8 (rows, Kp // 2), two e2m1 codes a byte, even K index in the low nibble;
    scales: uint8 (rows, Kp // 32), e8m0 (2**(byte - 127)); Kp is K rounded up to 32.
    """
    rows, k = x.shape
    kp = -(-k // MX_BLOCK) * MX_BLOCK
    xf = torch.zeros((rows, kp), dtype=torch.float32, device=x.device)
    xf[:, :k] = x.float()
    blocks = xf.view(rows, kp // MX_BLOCK, MX_BLOCK)
    amax = blocks.abs().amax(dim=2)
    # floor(log2(amax)) exactly, from the float's exponent (frexp: amax = m * 2**e, 0.5 <= m < 1).
    _, exp = torch.frexp(_safe_amax(amax))
    shared = (exp - 1 - E2M1_EMAX).clamp(-E8M0_BIAS, E8M0_BIAS)
    scale = torch.pow(2.0, shared.float())
    scaled = blocks / scale.unsqueeze(2)
    codes = _round_to_e2m1_codes(scaled.abs()) | ((scaled < 0).to(torch.uint8) << 3)
    codes = codes.view(rows, kp)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    return packed.contiguous(), (shared + E8M0_BIAS).to(torch.uint8)


def e2m1_codes_to_float(codes: torch.Tensor) -> torch.Tensor:
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=codes.device)
    values = table[(codes & 7).long()]
    return torch.where((codes & 8) != 0, -values, values)


def unpack_e2m1(packed: torch.Tensor) -> torch.Tensor:
    """uint8 (rows, Kp // 2) -> codes uint8 (rows, Kp), low nibble first."""
    rows, half = packed.shape
    codes = torch.empty((rows, 2 * half), dtype=torch.uint8, device=packed.device)
    codes[:, 0::2] = packed & 0xF
    codes[:, 1::2] = packed >> 4
    return codes


def e8m0_to_float(scales: torch.Tensor) -> torch.Tensor:
    """2**(byte - 127) in fp32; byte 0 is 2**-127 (a subnormal fp32), 255 would be NaN (never made)."""
    return torch.pow(2.0, scales.float() - E8M0_BIAS)


def dequantize_mxfp4(packed: torch.Tensor, scales: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """fp32 (rows, K) from `quantize_mxfp4`'s output; `k` trims the padding."""
    values = e2m1_codes_to_float(unpack_e2m1(packed))
    out = values * e8m0_to_float(scales).repeat_interleave(MX_BLOCK, dim=1)
    return out if k is None else out[:, :k]
