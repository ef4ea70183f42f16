"""The vendor images' versions: what an older Triton cannot do is a skip (or one line) with its reason,
probed where it can be (a compile, an interpreter run) and by version elsewhere, and the `cpu` extra
asks for a Triton whose interpreter runs every kernel."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from parity.harness.core import capability, dot_scaled_probe
from parity.harness.core.capability import EMULATED, NATIVE, UNSUPPORTED
from parity.suites import gemm

ROOT = Path(__file__).resolve().parents[1]
MI300X = SimpleNamespace(backend="rocm", arch="gfx942", name="AMD Instinct MI300X", is_gpu=True, interpreter=False,
                         memory_bytes=192 << 30, index=0)
MI355X = SimpleNamespace(**{**MI300X.__dict__, "arch": "gfx950", "name": "AMD Instinct MI355X"})
H200 = SimpleNamespace(**{**MI300X.__dict__, "backend": "cuda", "arch": "sm_90", "name": "NVIDIA H200"})
CPU = SimpleNamespace(backend="cpu", arch="x86_64", name="CPU", is_gpu=False, interpreter=True,
                      memory_bytes=8 << 30, index=0)


UNSUPPORTED_36 = dot_scaled_probe.ProbeResult(
    dot_scaled_probe.UNSUPPORTED, "3.6.0", "Unsupported DotScaleOp found when converting TritonGPU to LLVM.")
COMPILES_39 = dot_scaled_probe.ProbeResult(dot_scaled_probe.COMPILES, "3.9.0")
UNKNOWN = dot_scaled_probe.ProbeResult(dot_scaled_probe.UNKNOWN, "3.9.0", "no usable backend: ImportError: hip")


def not_probed(backend, arch):
    raise AssertionError(f"{backend} {arch} is not probed")


def test_dot_scaled_on_gfx942_follows_the_compile_probe_not_the_version():
    reason = capability.dot_scaled_problem("rocm", "gfx942", lambda b, a: UNSUPPORTED_36)
    assert "Unsupported DotScaleOp" in reason and "triton 3.6.0" in reason and "gfx942" in reason
    assert capability.dot_scaled_problem("rocm", "gfx942", lambda b, a: COMPILES_39) is None
    # a probe that could not tell is never "supported", and says it could not tell
    unknown = capability.dot_scaled_problem("rocm", "gfx90a", lambda b, a: UNKNOWN)
    assert unknown.startswith("could not tell whether triton 3.9.0") and "gfx90a" in unknown and "hip" in unknown
    # FP4 hardware (gfx950) and NVIDIA: compiled by 3.6 and 3.9 alike (issue 24's check), not probed
    for backend, arch in (("rocm", "gfx950"), ("cuda", "sm_90"), ("cuda", "sm_100"), ("cuda", "sm_120")):
        assert capability.dot_scaled_problem(backend, arch, not_probed) is None


def test_the_gemm_suite_skips_mxfp4_on_gfx942_where_the_probe_fails(monkeypatch):
    p = {"m": 256, "n": 256, "k": 256, "dtype": "mxfp4", "layout": "NT", "scaling": "block32"}
    triton_mx = next(i for i in gemm.SUITE.impls if i.op == "gemm_mxfp4" and i.name == "triton")
    monkeypatch.setattr(capability, "probe_dot_scaled", lambda b, a: UNSUPPORTED_36)
    assert capability.resolve(MI300X, "mxfp4", "triton").path == UNSUPPORTED
    assert "Unsupported DotScaleOp" in triton_mx.supports(MI300X, p)
    assert triton_mx.supports(MI355X, p) is None and triton_mx.supports(H200, p) is None
    monkeypatch.setattr(capability, "probe_dot_scaled", lambda b, a: COMPILES_39)
    assert capability.resolve(MI300X, "mxfp4", "triton").path == EMULATED
    assert triton_mx.supports(MI300X, p) is None
    assert capability.resolve(MI355X, "mxfp4", "triton").path == NATIVE
    monkeypatch.setattr(capability, "probe_dot_scaled", lambda b, a: UNKNOWN)
    assert "could not tell" in triton_mx.supports(MI300X, p)


def test_an_old_interpreter_says_what_it_cannot_run(monkeypatch):
    assert capability.interpreter_problem("kernels", (3, 6), (2, 4)).startswith("the interpreter of triton 3.6 fails")
    assert capability.interpreter_problem("kernels", (3, 6), (2, 3)) is None
    assert "FNUZ" in capability.interpreter_problem("fnuz", (3, 6), (2, 3))
    assert "dot_scaled" in capability.interpreter_problem("dot_scaled", (3, 6), (2, 3))
    for feature in ("kernels", "fnuz", "dot_scaled"):
        assert capability.interpreter_problem(feature, (3, 9), (2, 4)) is None
    with pytest.raises(ValueError):
        capability.interpreter_problem("everything", (3, 6), (2, 4))
    line = capability.interpreter_warning((3, 6), (2, 4))
    assert "\n" not in line and "numpy >= 2.4" in line and "FNUZ" in line and "parity[cpu]" in line
    assert capability.interpreter_warning((3, 9), (2, 4)) is None
    # in the interpreter, an old Triton's missing dot_scaled is the MXFP4 case's skip reason
    monkeypatch.setattr(capability, "triton_version", lambda: (3, 6))
    cap = capability.resolve(CPU, "mxfp4", "triton")
    assert cap.path == UNSUPPORTED and "dot_scaled" in cap.reason


def test_the_cpu_extra_asks_for_the_triton_whose_interpreter_runs_every_kernel():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (req,) = [r for r in extras["cpu"] if r.startswith("triton")]
    low = tuple(int(x) for x in re.fullmatch(r"triton>=(\d+)\.(\d+)(?:\.\d+)?", req).groups())
    assert low == capability.INTERPRETER_TRITON
    # and the Triton installed here is at least that (the tests run every kernel in its interpreter)
    assert capability.triton_version() >= low or capability.interpreter_warning() is not None


def test_a_run_on_the_cpu_says_in_one_line_what_an_old_triton_cannot_do(monkeypatch, tmp_path, capsys):
    from parity.harness import cli

    monkeypatch.setattr(capability, "triton_version", lambda: (3, 6))
    monkeypatch.setattr(capability, "_numpy_version", lambda: (2, 4))
    out = tmp_path / "run"
    code = cli.main(["run", "stream", "--preset", "smoke", "--impl", "torch", "--dtype", "fp32",
                     "--time-cap-s", "0.02", "--out", str(out)])
    assert code == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "interpreter of triton" in ln]
    assert len(lines) == 1 and lines[0].startswith("parity: warning: the interpreter of triton 3.6 ")
