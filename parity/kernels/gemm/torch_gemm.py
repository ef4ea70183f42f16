"""PyTorch GEMMs, the counterparts of the Triton kernels: `torch.mm` (BF16/FP16), `torch._scaled_mm`
(FP8, tensor-wise or row-wise scales), and `torch.nn.functional.scaled_mm` (MXFP4).

Facts these calls rely on (reference/gemm.md, section 5.1):
- `_scaled_mm(a, b, scale_a, scale_b, out_dtype=...)`: a row-major, b column-major (pass W.t() for
  a row-major W of shape (N, K)), K and N multiples of 16; fp32 scales, 1-element (tensor-wise) or
  (M, 1) and (1, N) (row-wise). Before torch 2.5 the scales were keyword arguments and the call
  returned (out, amax).
- `use_fast_accum=False`: on Hopper the tensor cores' reduced-precision sums are promoted to fp32,
  as the Triton FP8 kernels' accurate mode does; `True` leaves them unpromoted (their fast mode);
  a no-op on AMD, whose MFMA accumulates in fp32.
- MX: `scaled_mm(..., BlockWise1x32 ...)` takes `float4_e2m1fn_x2` operands and `float8_e8m0fnu`
  scales. cuBLAS wants the scales swizzled (SWIZZLE_32_4_4, the layout `to_blocked` makes), hipBLASLt
  forbids a swizzle.
"""
from __future__ import annotations

import torch

from parity.kernels.versions import TORCH_VERSION


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = a @ b (cuBLAS or hipBLASLt on a GPU), written in place so a timed call allocates nothing."""
    return torch.mm(a, b, out=out)


def scaled_mm(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
              out_dtype: torch.dtype = torch.bfloat16, fast_accum: bool = False) -> torch.Tensor:
    """(a @ b) * scale_a * scale_b in `out_dtype`, for FP8 a (row-major) and b (column-major);
    `fast_accum` is `use_fast_accum` (Hopper: the whole K loop in the tensor cores' accumulator)."""
    if TORCH_VERSION >= (2, 5):
        return torch._scaled_mm(a, b, scale_a, scale_b, out_dtype=out_dtype, use_fast_accum=fast_accum)
    out, _ = torch._scaled_mm(a, b, out_dtype=out_dtype, scale_a=scale_a, scale_b=scale_b,  # torch < 2.5
                              use_fast_accum=fast_accum)
    return out


def to_blocked(scales: torch.Tensor) -> torch.Tensor:
    """Scales (rows, cols) in cuBLAS's block-scaling layout (SWIZZLE_32_4_4), flattened.

    The matrix is padded to whole tiles of 128 rows x 4 columns (with zeros), tiles are stored
    row of tiles after row of tiles, and inside a tile the scale at (r, c) sits at
    (r % 32) * 16 + (r // 32) * 4 + c (cuBLAS docs, "1D block scaling factors layout").
    """
    rows, cols = scales.shape
    row_tiles, col_tiles = -(-rows // 128), -(-cols // 4)
    padded = torch.zeros((row_tiles * 128, col_tiles * 4), dtype=scales.dtype, device=scales.device)
    padded[:rows, :cols] = scales
    tiles = padded.view(row_tiles, 128, col_tiles, 4).permute(0, 2, 1, 3)  # (rt, ct, 128, 4)
    inner = tiles.reshape(row_tiles, col_tiles, 4, 32, 4).transpose(2, 3)  # r = 32 * (r // 32) + r % 32
    return inner.reshape(-1)


def mx_operands(packed: torch.Tensor, scales: torch.Tensor, swizzle: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One MXFP4 operand as `quant.quantize_mxfp4` returns it (uint8) in torch's MX dtypes, with
    the scales swizzled for cuBLAS (`swizzle`) or left plain for hipBLASLt. Done once, untimed."""
    data = packed.view(torch.float4_e2m1fn_x2)
    s = to_blocked(scales) if swizzle else scales
    return data, s.view(torch.float8_e8m0fnu)


def mx_scaled_mm(a: torch.Tensor, a_scales: torch.Tensor, w: torch.Tensor, w_scales: torch.Tensor,
                 swizzled: bool, out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """A @ W^T in `out_dtype` for MXFP4 A (M, K) and W (N, K) from `mx_operands`."""
    import torch.nn.functional as F

    recipe = F.ScalingType.BlockWise1x32
    swizzle = F.SwizzleType.SWIZZLE_32_4_4 if swizzled else F.SwizzleType.NO_SWIZZLE
    return F.scaled_mm(a, w.t(), a_scales, recipe, w_scales, recipe, swizzle_a=swizzle, swizzle_b=swizzle,
                       output_dtype=out_dtype)


def mx_available() -> str | None:
    """None if this torch has the MX scaled-GEMM API; otherwise why not."""
    import torch.nn.functional as F

    missing = [name for name, ok in (("torch.float4_e2m1fn_x2", hasattr(torch, "float4_e2m1fn_x2")),
                                     ("torch.float8_e8m0fnu", hasattr(torch, "float8_e8m0fnu")),
                                     ("torch.nn.functional.scaled_mm", hasattr(F, "scaled_mm")))
               if not ok]
    return f"torch {torch.__version__} lacks {', '.join(missing)}" if missing else None

