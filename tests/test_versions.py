"""The vendor images' versions: what an older Triton cannot do is a skip (or one line) with its reason,
by version, and the `cpu` extra asks for a Triton whose interpreter runs every kernel."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from parity.harness.core import capability
from parity.harness.core.capability import EMULATED, NATIVE, UNSUPPORTED
from parity.suites import gemm

ROOT = Path(__file__).resolve().parents[1]
MI300X = SimpleNamespace(backend="rocm", arch="gfx942", name="AMD Instinct MI300X", is_gpu=True, interpreter=False,
                         memory_bytes=192 << 30, index=0)
MI355X = SimpleNamespace(**{**MI300X.__dict__, "arch": "gfx950", "name": "AMD Instinct MI355X"})
H200 = SimpleNamespace(**{**MI300X.__dict__, "backend": "cuda", "arch": "sm_90", "name": "NVIDIA H200"})
CPU = SimpleNamespace(backend="cpu", arch="x86_64", name="CPU", is_gpu=False, interpreter=True,
                      memory_bytes=8 << 30, index=0)


def test_dot_scaled_on_gfx942_is_refused_by_triton_3_6_and_not_by_3_9():
    reason = capability.dot_scaled_problem("rocm", "gfx942", (3, 6))
    assert reason and "Unsupported DotScaleOp" in reason and "3.6" in reason and "gfx942" in reason
    assert capability.dot_scaled_problem("rocm", "gfx942", (3, 9)) is None
    assert capability.dot_scaled_problem("rocm", "gfx950", (3, 6)) is None  # FP4 hardware: native
    assert capability.dot_scaled_problem("cuda", "sm_90", (3, 6)) is None


def test_the_gemm_suite_skips_mxfp4_on_gfx942_with_an_old_triton(monkeypatch):
    p = {"m": 256, "n": 256, "k": 256, "dtype": "mxfp4", "layout": "NT", "scaling": "block32"}
    triton_mx = next(i for i in gemm.SUITE.impls if i.op == "gemm_mxfp4" and i.name == "triton")
    monkeypatch.setattr(capability, "triton_version", lambda: (3, 6))
    assert capability.resolve(MI300X, "mxfp4", "triton").path == UNSUPPORTED
    assert "Unsupported DotScaleOp" in triton_mx.supports(MI300X, p)
    assert triton_mx.supports(MI355X, p) is None and triton_mx.supports(H200, p) is None
    monkeypatch.setattr(capability, "triton_version", lambda: (3, 9))
    assert capability.resolve(MI300X, "mxfp4", "triton").path == EMULATED
    assert triton_mx.supports(MI300X, p) is None
    assert capability.resolve(MI355X, "mxfp4", "triton").path == NATIVE


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
