"""The capability resolver: FP8 format and FP4 hardware by architecture, on described devices."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from parity.harness.core import capability, dot_scaled_probe, specs
from parity.harness.core.capability import EMULATED, NATIVE, UNSUPPORTED, resolve

MI300X = SimpleNamespace(backend="rocm", arch="gfx942")
MI355X = SimpleNamespace(backend="rocm", arch="gfx950")
H100 = SimpleNamespace(backend="cuda", arch="sm_90")
B200 = SimpleNamespace(backend="cuda", arch="sm_100")
CPU = SimpleNamespace(backend="cpu", arch="x86_64")


@pytest.mark.parametrize("arch, expected", [
    ("sm_90", ("sm", 9, 0)), ("sm_89", ("sm", 8, 9)), ("sm_100", ("sm", 10, 0)), ("sm_100a", ("sm", 10, 0)),
    ("sm_103", ("sm", 10, 3)), ("sm_120", ("sm", 12, 0)), ("gfx942", ("gfx", 9, 4)),
    ("gfx90a", ("gfx", 9, 0)), ("gfx950", ("gfx", 9, 5)), ("gfx1250", ("gfx", 12, 5)),
    ("gfx1201", ("gfx", 12, 0)), ("x86_64", ("other", 0, 0)), ("", ("other", 0, 0)),
])
def test_parse_arch(arch, expected):
    assert capability.parse_arch(arch) == expected


@pytest.mark.parametrize("device, fp8, fp4_triton, fp4_torch", [
    (MI300X, ("fnuz", NATIVE), EMULATED, UNSUPPORTED),
    (MI355X, ("ocp", NATIVE), NATIVE, NATIVE),
    (H100, ("ocp", NATIVE), EMULATED, UNSUPPORTED),
    (B200, ("ocp", NATIVE), NATIVE, NATIVE),
    (CPU, ("ocp", EMULATED), EMULATED, UNSUPPORTED),
])
def test_resolver_on_described_devices(device, fp8, fp4_triton, fp4_torch):
    for backend in ("triton", "torch"):
        cap = resolve(device, "fp8", backend)
        assert (cap.fp8_format, cap.path) == fp8
        assert resolve(device, "bf16", backend).path == NATIVE
    triton4, torch4 = resolve(device, "mxfp4", "triton"), resolve(device, "mxfp4", "torch")
    older = capability.interpreter_problem("dot_scaled") if device is CPU else \
        capability.dot_scaled_problem(device.backend, device.arch)
    if older:  # this Triton cannot compile or interpret tl.dot_scaled there (triton 3.6): said so
        fp4_triton = UNSUPPORTED
        assert triton4.reason and "dot_scaled" in triton4.reason
    assert (triton4.path, torch4.path) == (fp4_triton, fp4_torch)
    for cap in (triton4, torch4):
        assert (cap.reason is None) == (cap.path == NATIVE)  # every non-native answer says why


def test_no_fp8_hardware_is_unsupported_with_its_reason():
    for device in (SimpleNamespace(backend="cuda", arch="sm_80"), SimpleNamespace(backend="rocm", arch="gfx90a")):
        cap = resolve(device, "fp8", "torch")
        assert cap.path == UNSUPPORTED and device.arch in cap.reason
        with pytest.raises(ValueError, match=device.arch):
            capability.torch_fp8_dtypes(device)


def test_consumer_blackwell_fp4_is_emulated_in_triton():
    # sm_120 compiles tl.dot_scaled to a BF16 mma (triton#7550): not FP4 hardware for our purposes.
    assert resolve(SimpleNamespace(backend="cuda", arch="sm_120"), "mxfp4", "triton").path == EMULATED


def test_torch_fp8_dtypes_follow_the_architecture():
    assert capability.torch_fp8_dtypes(MI300X) == (torch.float8_e4m3fnuz, torch.float8_e5m2fnuz)
    assert capability.torch_fp8_dtypes(MI355X) == (torch.float8_e4m3fn, torch.float8_e5m2)
    assert capability.torch_fp8_dtypes(H100) == (torch.float8_e4m3fn, torch.float8_e5m2)
    # FNUZ's largest e4m3 value is 240, OCP's 448: a scale computed for one is wrong for the other.
    assert torch.finfo(torch.float8_e4m3fnuz).max == 240 and torch.finfo(torch.float8_e4m3fn).max == 448


@pytest.mark.parametrize("spec", specs.load_all().values(), ids=lambda s: s.id)
def test_resolver_agrees_with_every_spec_file(spec):
    """The spec database's fp8_format and fp4_hardware, written from datasheets, match the rule."""
    device = SimpleNamespace(backend=spec.match_backend, arch=spec.match_arch)
    fmt = capability.fp8_format(device.backend, device.arch)
    assert (fmt or "none") == spec.fp8_format
    assert capability.fp4_hardware(device.backend, device.arch) == spec.fp4_hardware


def test_unknown_format_is_an_error():
    with pytest.raises(ValueError, match="unknown format"):
        resolve(H100, "fp6", "torch")


def test_fnuz_in_the_interpreter_is_probed_and_the_skip_reason_follows_it(monkeypatch):
    """The FNUZ gap comes from running a probe kernel, so a Triton whose number says nothing (a
    patch release, a vendor build) is judged by what its interpreter does."""
    probed = capability.interpreter_has_fnuz()
    assert (capability.interpreter_problem("fnuz") is None) == probed
    monkeypatch.setattr(capability, "interpreter_has_fnuz", lambda: False)
    assert "no FNUZ FP8" in capability.interpreter_problem("fnuz")
    monkeypatch.setattr(capability, "interpreter_has_fnuz", lambda: True)
    assert capability.interpreter_problem("fnuz") is None
    assert capability.interpreter_problem("fnuz", (3, 6), (2, 3))  # a described Triton: its stated rule


def test_the_numpy_gap_in_the_interpreter_is_probed(monkeypatch):
    """Whether any kernel runs comes from a probe kernel with a tl.cdiv-bounded loop (triton 3.6
    with numpy >= 2.4 fails there), not from the two version numbers."""
    probed = capability.interpreter_runs_kernels()
    assert (capability.interpreter_problem("kernels") is None) == probed
    monkeypatch.setattr(capability, "interpreter_runs_kernels", lambda: False)
    assert "numpy" in capability.interpreter_problem("kernels")
    assert "tl.cdiv-bounded" in capability.interpreter_warning()
    monkeypatch.setattr(capability, "interpreter_runs_kernels", lambda: True)
    assert capability.interpreter_problem("kernels") is None
    assert capability.interpreter_problem("kernels", (3, 6), (2, 4))  # a described Triton: its stated rule
    assert capability.interpreter_problem("kernels", (3, 6), (2, 3)) is None


UNSUPPORTED_36 = dot_scaled_probe.ProbeResult(
    dot_scaled_probe.UNSUPPORTED, "3.6.0", "Unsupported DotScaleOp found when converting TritonGPU to LLVM.")
COMPILES_39 = dot_scaled_probe.ProbeResult(dot_scaled_probe.COMPILES, "3.9.0")


def test_the_gpu_start_up_line_names_what_an_older_triton_degrades(monkeypatch):
    assert "older than 3.6" in capability.gpu_warning("cuda", "sm_90", (3, 5))
    line = capability.gpu_warning("rocm", "gfx942", (3, 6), probe=lambda b, a: UNSUPPORTED_36)
    assert "\n" not in line and "Unsupported DotScaleOp" in line and "triton 3.6.0" in line and "MXFP4" in line
    assert capability.gpu_warning("rocm", "gfx942", (3, 9), probe=lambda b, a: COMPILES_39) is None
    unknown = dot_scaled_probe.ProbeResult(dot_scaled_probe.UNKNOWN, "3.9.0", "the compile probe did not finish in 120 s")
    line = capability.gpu_warning("rocm", "gfx942", probe=lambda b, a: unknown)
    assert line.startswith("could not tell whether triton 3.9.0") and "120 s" in line and "MXFP4" in line
    # where nothing is probed (FP4 hardware, NVIDIA), a Triton at the floor has nothing to say
    monkeypatch.setattr(capability, "probe_dot_scaled", lambda b, a: UNSUPPORTED_36)
    for backend, arch in (("cuda", "sm_90"), ("rocm", "gfx950"), ("cuda", "sm_100")):
        assert capability.gpu_warning(backend, arch, (3, 6)) is None
    assert "Unsupported DotScaleOp" in capability.gpu_warning("rocm", "gfx942")  # the patched probe answers


# The child's report and stderr as triton 3.6.0 writes them compiling the probe for gfx942 (shortened):
# the exception says only that a pass failed; the reason is MLIR's, on stderr, above a dump of the IR
# that names tt.dot_scaled on every try.
STDERR_36 = """LLVM ERROR: Unsupported DotScaleOp found when converting TritonGPU to LLVM.
module attributes {"ttg.num-ctas" = 1 : i32, ttg.target = "hip:gfx942", "ttg.threads-per-warp" = 64 : i32} {
    %36 = tt.dot_scaled %12 scale %26, %17 scale %31, %cst lhs = e2m1 rhs = e2m1 {fastMath = false}
}
probe.py:122:0: error: Failures have been detected while processing an MLIR pass pipeline
probe.py:122:0: note: Pipeline failed while executing [`ConvertTritonAMDGPUToLLVM` on 'builtin.module' operation]
"""


def test_the_probe_reads_the_compilers_reason_and_tells_a_broken_probe_apart():
    read = dot_scaled_probe.interpret
    found = read("3.6.0", "ok backend\nok control\nfail dot_scaled RuntimeError: PassManager::run failed\n",
                 STDERR_36, 0)
    assert found == UNSUPPORTED_36
    # no compiler message: the exception's line; an abort inside the scaled compile: unsupported too
    assert read("3.6.0", "ok backend\nok control\nfail dot_scaled CompilationError: at 9:4: no dot_scaled\n", "",
                0).detail == "CompilationError: at 9:4: no dot_scaled"
    assert read("3.6.0", "ok backend\nok control\n", "LLVM ERROR: out of range\n", -6).status == "unsupported"
    # the control (a plain tl.dot) failing, a missing backend, a dead child: "unknown", never "compiles"
    control = read("3.9.0", "ok backend\nfail control RuntimeError: PassManager::run failed\n",
                   "LLVM ERROR: Cannot select: intrinsic %llvm.amdgcn\n", 0)
    assert control.status == "unknown" and "control kernel" in control.detail and "Cannot select" in control.detail
    assert read("3.9.0", "fail backend KeyError: 'hip'\n", "", 0).status == "unknown"
    for out, code in (("", -9), ("ok backend\n", 1), ("ok backend\nok control\nok dot_scaled_x\n", 0)):
        assert read("3.9.0", out, "", code).status != "compiles"
    assert read("3.9.0", "ok backend\nok control\nok dot_scaled\n", "", 0) == COMPILES_39
    assert dot_scaled_probe.gpu_target("rocm", "gfx942") == ("hip", "gfx942", 64)
    assert dot_scaled_probe.gpu_target("rocm", "gfx1100") == ("hip", "gfx1100", 32)
    assert dot_scaled_probe.gpu_target("cuda", "sm_90a") == ("cuda", 90, 32)
