"""Per-tensor FP8 quantization for the attention kernels' FP8 forward.

x ~ x8 * scale with scale = amax(|x|) / max(dtype), so the largest magnitude lands on the format's
largest finite value: 448 for OCP e4m3fn, 240 for FNUZ e4m3fnuz (gfx942), whose scales therefore
differ for the same data. The caller picks the dtype of its architecture.
"""
from __future__ import annotations

import torch


def quantize(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """(x8, scale): x8 in `dtype`, rounded to nearest and saturated; x8.float() * scale ~ x."""
    largest = torch.finfo(dtype).max
    amax = float(x.detach().abs().max()) if x.numel() else 0.0
    scale = amax / largest if amax > 0 else 1.0
    return (x.float() / scale).clamp(-largest, largest).to(dtype), scale


def dequantize(x8: torch.Tensor, scale: float) -> torch.Tensor:
    """The fp32 values the FP8 tensor stands for."""
    return x8.float() * scale
