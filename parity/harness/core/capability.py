"""What a device can run natively: the FP8 format of its architecture and where FP4 is hardware.

The answer follows the architecture, never the vendor (reference/gemm.md, "FP8 formats"):

- FP8 is FNUZ (`float8_e4m3fnuz` / `float8_e5m2fnuz`) on gfx942 (MI300X, MI325X) only; OCP
  (`float8_e4m3fn` / `float8_e5m2`) on NVIDIA sm_89 and later, gfx950 (MI350X, MI355X) and later
  AMD parts. `if torch.version.hip: fnuz` is the known wrong shortcut (FBGEMM #4280, aiter #3807).
  The same bits are worth half as much in FNUZ (exponent bias 8, not 7), so scales differ.
- FP4 (MXFP4 through `tl.dot_scaled`, `torch.float4_e2m1fn_x2`) is hardware on sm_100 and later
  datacenter Blackwell (compute capability 10.x and 11.x; Triton's own gate) and on gfx950 and
  later. Elsewhere Triton upcasts to BF16 without saying so: such a result is `emulated` and is
  normalized against the BF16 peak, never the FP4 one.

A device is anything with `backend` ("cuda" | "rocm" | "cpu") and `arch` ("sm_90", "gfx942", ...),
so tests can describe an MI300X without having one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NATIVE, EMULATED, UNSUPPORTED = "native", "emulated", "unsupported"

# Format names as a suite uses them -> torch dtype names, per FP8 flavour.
FP8_TORCH_NAMES = {
    "ocp": {"e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2"},
    "fnuz": {"e4m3": "float8_e4m3fnuz", "e5m2": "float8_e5m2fnuz"},
}


@dataclass(frozen=True)
class Capability:
    """How `fmt` runs on a device through one backend, and the dtype family it must use."""

    path: str  # native | emulated | unsupported
    reason: str | None = None  # why emulated or unsupported
    fp8_format: str | None = None  # "ocp" | "fnuz" for FP8 formats, else None

    @property
    def runnable(self) -> bool:
        return self.path != UNSUPPORTED


def parse_arch(arch: str) -> tuple[str, int, int]:
    """("sm", major, minor) from "sm_90"/"sm_100a"; ("gfx", major, minor) from "gfx942"/"gfx1250".

    AMD's gfx names end in two hexadecimal digits (minor, stepping) after a decimal major:
    gfx942 -> (9, 4), gfx90a -> (9, 0), gfx1250 -> (12, 5). NVIDIA's "sm_XY" is major X, minor Y,
    with X two digits from Blackwell on (sm_100 -> (10, 0), sm_120 -> (12, 0)).
    """
    m = re.fullmatch(r"sm_(\d+)(\d)[a-z]?", arch or "")
    if m:
        return "sm", int(m.group(1)), int(m.group(2))
    m = re.fullmatch(r"gfx(\d+)([0-9a-f])([0-9a-f])", arch or "")
    if m:
        return "gfx", int(m.group(1)), int(m.group(2), 16)
    return "other", 0, 0


def fp8_format(backend: str, arch: str) -> str | None:
    """"ocp", "fnuz", or None where the architecture has no FP8 hardware."""
    family, major, minor = parse_arch(arch)
    if backend == "cuda" and family == "sm":
        return "ocp" if (major, minor) >= (8, 9) else None
    if backend == "rocm" and family == "gfx":
        if major == 9:
            if minor == 4:
                return "fnuz"  # gfx940/941/942: CDNA 3 (hipBLASLt: "f8_fnuz only on gfx942")
            return "ocp" if minor >= 5 else None  # gfx950+ (CDNA 4); gfx90a/gfx908 have no FP8
        if major >= 12:
            return "ocp"  # gfx12 (RDNA 4) and gfx1250 (MI455X): OCP (ROCm docs; spec note S08)
        return None
    return None


def fp4_hardware(backend: str, arch: str) -> bool:
    family, major, minor = parse_arch(arch)
    if backend == "cuda" and family == "sm":
        # Triton's `supports_block_scaling`: capability major 10 or 11. sm_120 (consumer
        # Blackwell) compiles dot_scaled to a BF16 mma (triton#7550), so it counts as emulated.
        return major in (10, 11)
    if backend == "rocm" and family == "gfx":
        # gfx950 (CDNA 4) and gfx1250 (MI455X); gfx10-gfx12.0 (RDNA) have none.
        return (major == 9 and minor >= 5) or (major, minor) >= (12, 5)
    return False


def resolve(device, fmt: str, backend: str) -> Capability:
    """The capability of `device` for operand format `fmt` ("bf16", "fp16", "fp32", "fp8", "mxfp4")
    through `backend` ("triton" or "torch")."""
    if fmt in ("fp32", "bf16", "fp16"):
        return Capability(NATIVE)
    cpu = device.backend == "cpu"
    if fmt == "fp8":
        if cpu:
            # The interpreter and PyTorch's CPU kernels compute FP8 in software: the numbers are
            # right, the speed is not an FP8 unit's. OCP is the default format there.
            return Capability(EMULATED, "no FP8 hardware on the CPU; computed in software", "ocp")
        fmt8 = fp8_format(device.backend, device.arch)
        if fmt8 is None:
            return Capability(UNSUPPORTED, f"{device.arch} has no FP8 hardware")
        return Capability(NATIVE, None, fmt8)
    if fmt == "mxfp4":
        if fp4_hardware(device.backend, device.arch):
            return Capability(NATIVE)
        if backend == "triton":
            return Capability(EMULATED, f"no FP4 hardware on {device.arch}: tl.dot_scaled upcasts to BF16")
        return Capability(UNSUPPORTED, f"torch has no MXFP4 GEMM for {device.arch} "
                                       "(needs sm_100+ or gfx950+ hardware)")
    raise ValueError(f"unknown format {fmt!r}")


def torch_fp8_dtypes(device):
    """The torch FP8 dtypes of this device's architecture: (e4m3, e5m2)."""
    import torch

    cap = resolve(device, "fp8", "torch")
    if not cap.runnable:
        raise ValueError(cap.reason)
    names = FP8_TORCH_NAMES[cap.fp8_format]
    return getattr(torch, names["e4m3"]), getattr(torch, names["e5m2"])


def torch_scaled_mm_problem(device, fmt: str, scaling: str, torch_version: tuple[int, int],
                            hip_version: str | None = None) -> str | None:
    """Why PyTorch's scaled GEMM cannot run `fmt` ("fp8" | "mxfp4") with `scaling` on `device`, or
    None. Beyond the hardware (`resolve`), the software rules of reference/gemm.md 5.1 and 5.2:

    - row-wise `torch._scaled_mm` on ROCm needs torch 2.7 or later (vLLM/SGLang
      `use_rowwise_torch_scaled_mm`);
    - MX scaled GEMM on ROCm needs ROCm 7.0 or later on gfx950 (PyTorch's PLATFORM_SUPPORTS_MX_GEMM);
      on CUDA it needs SM100 or later, which `resolve` already says.
    """
    cap = resolve(device, fmt, "torch")
    if not cap.runnable:
        return cap.reason
    if fmt == "fp8" and scaling == "row" and device.backend == "rocm" and tuple(torch_version) < (2, 7):
        return "row-wise torch._scaled_mm on ROCm needs torch 2.7 or later (this is %d.%d)" % tuple(torch_version)
    if fmt == "mxfp4" and device.backend == "rocm":
        major = int(re.match(r"\d+", hip_version or "0").group(0))
        if major < 7:
            return f"MX scaled GEMM on ROCm needs ROCm 7.0 or later (this is {hip_version or 'unknown'})"
    return None
