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

import functools
import re
from dataclasses import dataclass

from parity.harness.core import dot_scaled_probe

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
        problem = None
        if backend == "triton":
            problem = interpreter_problem("dot_scaled") if cpu else dot_scaled_problem(device.backend, device.arch)
        if problem:
            return Capability(UNSUPPORTED, problem)
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


# --- what the installed Triton can do (probed where it can be, else its version; not the hardware) ----

# The oldest Triton whose CPU interpreter parity has seen run every kernel (FNUZ FP8 and
# `tl.dot_scaled` with a string format included, with numpy 2.4): the `cpu` extra's lower bound.
# Triton 3.6, the vendor images' version, lacks both and fails outright with numpy >= 2.4; 3.7 and
# 3.8 were not checked, so they are held to the same bound.
INTERPRETER_TRITON = (3, 9)


def _version(text: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def triton_version() -> tuple[int, int]:
    """(major, minor) of the installed triton; (0, 0) where it does not import."""
    try:
        import triton
    except Exception:  # noqa: BLE001 - registry.triton_problem says why, once
        return (0, 0)
    return _version(triton.__version__)


def _numpy_version() -> tuple[int, int]:
    try:
        import numpy
    except Exception:  # noqa: BLE001
        return (0, 0)
    return _version(numpy.__version__)


@functools.lru_cache(maxsize=None)
def interpreter_has_fnuz() -> bool:
    """Whether the installed Triton's interpreter runs a kernel on FNUZ FP8 operands: probed by
    running a one-element kernel (triton 3.6's interpreter stops with "fail to convert fp8e4b8 to
    ir type"), so a patch release that adds or drops it is seen as it is, whatever its number."""
    try:
        import torch
        import triton.language as tl
        from triton.runtime.interpreter import InterpretedFunction

        def narrow(x_ptr, y_ptr):  # a quantizing kernel's step: FP32 to FNUZ FP8
            tl.store(y_ptr, tl.load(x_ptr).to(tl.float8e4b8))

        x = torch.full((1,), 2.0)
        y = torch.zeros(1, dtype=torch.float8_e4m3fnuz)
        InterpretedFunction(narrow)[(1,)](x, y)
        return float(y.float()[0]) == 2.0
    except Exception:  # noqa: BLE001 - whatever the interpreter raises means it cannot
        return False


@functools.lru_cache(maxsize=None)
def interpreter_runs_kernels() -> bool:
    """Whether the installed Triton's interpreter runs a loop bounded by `tl.cdiv` of a scalar
    argument, the pattern of every GEMM and attention kernel here: triton 3.6's interpreter with
    numpy >= 2.4 stops there ("only 0-dimensional arrays can be converted to Python scalars"), so
    the answer is probed once per process, not read from the two version numbers."""
    try:
        import torch
        import triton.language as tl
        from triton.runtime.interpreter import InterpretedFunction

        def total(x_ptr, n, BLOCK: tl.constexpr):
            offs = tl.arange(0, BLOCK)
            acc = 0.0
            for i in range(0, tl.cdiv(n, BLOCK)):
                acc += tl.sum(tl.load(x_ptr + i * BLOCK + offs, mask=i * BLOCK + offs < n, other=0.0))
            tl.store(x_ptr, acc)

        x = torch.ones(20)
        InterpretedFunction(total)[(1,)](x, 20, BLOCK=16)
        return float(x[0]) == 20.0
    except Exception:  # noqa: BLE001 - whatever the interpreter raises means it cannot
        return False


def interpreter_problem(feature: str, triton: tuple[int, int] | None = None,
                        numpy: tuple[int, int] | None = None) -> str | None:
    """Why this Triton's CPU interpreter cannot run `feature`, or None. Features: "kernels" (any
    kernel at all), "fnuz" (FNUZ FP8 operands), "dot_scaled" (`tl.dot_scaled` with a string format:
    the MXFP4 GEMM)."""
    probed = triton is None
    triton = triton_version() if triton is None else tuple(triton)
    if feature == "fnuz" and probed:  # a feature that can be probed is probed (issue 24)
        if interpreter_has_fnuz():
            return None
    elif feature == "kernels" and probed and numpy is None:
        if interpreter_runs_kernels():
            return None
    elif triton >= INTERPRETER_TRITON:
        return None
    numpy = _numpy_version() if numpy is None else tuple(numpy)
    this = f"the interpreter of triton {triton[0]}.{triton[1]}"
    need = f"(parity[cpu] needs triton >= {INTERPRETER_TRITON[0]}.{INTERPRETER_TRITON[1]})"
    if feature == "kernels":
        if probed:  # the probe failed: numpy >= 2.4 is the known cause on triton 3.6
            return (f"{this} cannot run a kernel's tl.cdiv-bounded loop with numpy {numpy[0]}.{numpy[1]} "
                    f"(triton 3.6 fails with numpy >= 2.4; pip install 'numpy<2.4') {need}")
        if numpy >= (2, 4):
            return f"{this} fails with numpy >= 2.4 (this is numpy {numpy[0]}.{numpy[1]}) {need}"
        return None
    if feature == "fnuz":
        return f"{this} has no FNUZ FP8 (float8_e4m3fnuz / e5m2fnuz) {need}"
    if feature == "dot_scaled":
        return f"{this} has no tl.dot_scaled with a string format (the MXFP4 GEMM) {need}"
    raise ValueError(f"unknown interpreter feature {feature!r}")


def interpreter_warning(triton: tuple[int, int] | None = None, numpy: tuple[int, int] | None = None) -> str | None:
    """One line on what this Triton's interpreter cannot run, for the start of a run on the CPU;
    None on a recent enough Triton."""
    installed = triton is None and numpy is None  # then the probes answer, not the version rules
    triton = triton_version() if triton is None else tuple(triton)
    numpy = _numpy_version() if numpy is None else tuple(numpy)
    gaps = [("cannot run a tl.cdiv-bounded kernel loop with numpy %d.%d (triton 3.6 fails with numpy >= 2.4)"
             % numpy) if (interpreter_problem("kernels") if installed else interpreter_problem("kernels", triton, numpy))
            else None,
            "has no FNUZ FP8" if (interpreter_problem("fnuz") if installed else
                                  interpreter_problem("fnuz", triton, numpy)) else None,
            "has no tl.dot_scaled with a string format (MXFP4 GEMMs are skipped)"
            if interpreter_problem("dot_scaled", triton, numpy) else None]
    gaps = [g for g in gaps if g]
    if not gaps:
        return None
    return (f"the interpreter of triton {triton[0]}.{triton[1]} {'; '.join(gaps)}: install triton >= "
            f"{INTERPRETER_TRITON[0]}.{INTERPRETER_TRITON[1]} (pip install 'parity[cpu]')")


@functools.lru_cache(maxsize=None)
def _probed(version: str, backend: str, arch: str) -> dot_scaled_probe.ProbeResult:
    # Per (Triton version, backend, arch) and process: a compile takes about a second.
    return dot_scaled_probe.probe(backend, arch)


def probe_dot_scaled(backend: str, arch: str) -> dot_scaled_probe.ProbeResult:
    """Whether the installed Triton compiles `tl.dot_scaled` for (backend, arch), by compiling it
    (core/dot_scaled_probe.py); tests replace this function to describe another Triton."""
    try:
        import triton
        version = str(triton.__version__)
    except Exception:  # noqa: BLE001 - the probe says why, uncached
        return dot_scaled_probe.probe(backend, arch)
    return _probed(version, backend, arch)


def dot_scaled_probed(backend: str, arch: str) -> bool:
    """Whether `dot_scaled_problem` compiles a probe for this target. Only AMD parts without FP4
    hardware are: triton 3.6 fails there ("Unsupported DotScaleOp": gfx942, gfx90a), 3.9 emulates.
    On NVIDIA, sm_80, sm_90a, sm_100a and sm_120 all compile it with triton 3.6.0 and 3.9.0 alike
    (issue 24's check), and gfx950 compiles it with both, so those are not probed on every run."""
    return backend == "rocm" and not fp4_hardware(backend, arch)


def dot_scaled_problem(backend: str, arch: str, probe=None) -> str | None:
    """Why this Triton cannot compile `tl.dot_scaled` (the MXFP4 GEMM) for a GPU, or None: from
    compiling a minimal scaled dot for the target (`probe_dot_scaled`, or `probe(backend, arch)`
    returning a `dot_scaled_probe.ProbeResult`), never from the version number. None only where
    the compile was shown to work, or where the target is not probed (`dot_scaled_probed`)."""
    if not dot_scaled_probed(backend, arch):
        return None
    found = (probe or probe_dot_scaled)(backend, arch)
    if found.status == dot_scaled_probe.COMPILES:
        return None
    if found.status == dot_scaled_probe.UNSUPPORTED:
        return f"triton {found.triton} cannot compile tl.dot_scaled for {arch} (a compile probe: \"{found.detail}\")"
    return (f"could not tell whether triton {found.triton} compiles tl.dot_scaled for {arch}, so it is not "
            f"used there: {found.detail}")


# The oldest Triton parity supports on a GPU: the NVIDIA PyTorch image for H200 carries 3.6.0, and
# scripts/compat-check 3.6.0 (results/compat/triton-3.6.0) compiles every lead config for the four
# targets with it, the gfx942 MXFP4 GEMM excepted (dot_scaled_problem says so per case).
GPU_TRITON = (3, 6)


def gpu_warning(backend: str, arch: str, triton: tuple[int, int] | None = None, probe=None) -> str | None:
    """One line for the start of a run on a GPU with an older or degraded Triton, or None: what is
    degraded and why (never a silent wrong answer). `triton` describes another version for the
    support floor, `probe` another Triton's dot_scaled probe (see dot_scaled_problem)."""
    triton = triton_version() if triton is None else tuple(triton)
    if triton < GPU_TRITON:
        return (f"triton {triton[0]}.{triton[1]} is older than {GPU_TRITON[0]}.{GPU_TRITON[1]}, the oldest parity "
                f"supports on a GPU: its kernels were not checked with it (scripts/compat-check checks a version)")
    mx = dot_scaled_problem(backend, arch, probe)
    return f"{mx}: the MXFP4 GEMM's Triton cases are unsupported here" if mx else None
