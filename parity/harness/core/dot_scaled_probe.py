"""Whether the installed Triton compiles `tl.dot_scaled` (the MXFP4 GEMM) for a GPU target: found by
compiling a minimal kernel for it, offline (no GPU is needed: Triton compiles for any target it has
a backend for), never by reading the version number (issue 24).

Why a child process, not a try/except here:
- the reason is not in the exception. Triton 3.6 on gfx942 raises "RuntimeError: PassManager::run
  failed"; the cause ("LLVM ERROR: Unsupported DotScaleOp found when converting TritonGPU to LLVM.")
  is written by MLIR straight to file descriptor 2, which only a child's captured stderr holds;
- an LLVM fatal error may abort the whole process, and a compiler that hangs must not hold a run:
  the child has a timeout and dies with its parent (core/lifeline);
- a process running the Triton interpreter (TRITON_INTERPRET=1, the tests) cannot compile: the child
  runs without it.

What a failure means is told apart by a control kernel, the same loads and stores around a plain
`tl.dot`, compiled first for the same target: if that fails too, the probe could not tell (a missing
backend or linker, a fault of the probe), which is reported as such; only a failure of the kernel that
differs by `tl.dot_scaled` alone says the op is unsupported.

Run as `python -m parity.harness.core.dot_scaled_probe BACKEND ARCH WARP_SIZE` (Triton's names:
"hip" "gfx942" 64): one line per stage on stdout, "ok STAGE" or "fail STAGE TEXT".
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

COMPILES, UNSUPPORTED, UNKNOWN = "compiles", "unsupported", "unknown"
TIMEOUT_S = 120.0  # a compile of these kernels takes 0.1-1 s; the child imports only Triton
STAGES = ("backend", "control", "dot_scaled")


@dataclass(frozen=True)
class ProbeResult:
    status: str  # compiles | unsupported (the op, shown by the control) | unknown (the probe could not tell)
    triton: str  # the version string of the Triton that was asked ("3.6.0"), or "?" where none imports
    detail: str | None = None  # the failure's first line


def gpu_target(backend: str, arch: str) -> tuple[str, str | int, int]:
    """Triton's GPUTarget fields for parity's (backend, arch): ("hip", "gfx942", 64), ("cuda", 90, 32).
    CDNA (gfx9) runs 64-wide wavefronts, RDNA (gfx10 and later) 32-wide, NVIDIA 32-wide warps."""
    if backend == "rocm":
        return "hip", arch, 64 if arch.startswith("gfx9") else 32
    digits = "".join(ch for ch in arch.removeprefix("sm_") if ch.isdigit())
    return "cuda", int(digits or 0), 32


def probe(backend: str, arch: str, timeout_s: float = TIMEOUT_S) -> ProbeResult:
    """Compile the two kernels for (backend, arch) in a child process; never raises."""
    try:
        import triton
        version = str(triton.__version__)
    except Exception as exc:  # noqa: BLE001 - whatever stops the import is the reason
        return ProbeResult(UNKNOWN, "?", f"triton does not import: {_first_line(f'{type(exc).__name__}: {exc}')}")
    from parity.harness.core import lifeline

    name, target_arch, warp = gpu_target(backend, arch)
    root = str(Path(__file__).resolve().parents[3])  # the parity that asks is the parity that answers
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    env, fds = lifeline.child(env)
    try:
        done = subprocess.run([sys.executable, "-m", __name__, name, str(target_arch), str(warp)], env=env,
                              pass_fds=fds, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return ProbeResult(UNKNOWN, version, f"the compile probe did not finish in {timeout_s:g} s")
    except OSError as exc:
        return ProbeResult(UNKNOWN, version, f"the compile probe did not start: {_first_line(str(exc))}")
    return interpret(version, done.stdout, done.stderr, done.returncode)


def interpret(version: str, stdout: str, stderr: str, returncode: int) -> ProbeResult:
    """The child's report as a result: each stage must say "ok" for the next to count."""
    passed = set()
    for line in stdout.splitlines():
        word, _, rest = line.partition(" ")
        stage, _, text = rest.partition(" ")
        if word == "ok" and stage in STAGES:
            passed.add(stage)
        elif word == "fail" and stage in STAGES:
            if stage != "dot_scaled":
                what = "no usable backend" if stage == "backend" else "the control kernel (a plain tl.dot) fails too"
                return ProbeResult(UNKNOWN, version, f"{what}: {_reason(stderr) or _first_line(text)}")
            return ProbeResult(UNSUPPORTED, version, _reason(stderr) or _first_line(text))
    if {"backend", "control", "dot_scaled"} <= passed:
        return ProbeResult(COMPILES, version)
    if {"backend", "control"} <= passed:  # died inside the dot_scaled compile: an LLVM abort, a signal
        return ProbeResult(UNSUPPORTED, version, _reason(stderr) or f"the compile ended with exit status {returncode}")
    return ProbeResult(UNKNOWN, version, f"the compile probe ended with exit status {returncode} before its "
                                         f"control kernel compiled: {_reason(stderr) or 'no message'}")


def _reason(stderr: str) -> str | None:
    """The compiler's own words: the first error line that names the op, else the first error line
    (MLIR's dump of the failing IR, which names tt.dot_scaled on every try, is not an error line)."""
    errors = [ln.strip() for ln in stderr.splitlines()
              if ln.strip().startswith("LLVM ERROR:") or ("error:" in ln and "Failures have been detected" not in ln)]
    named = [ln for ln in errors if "dotscale" in ln.lower().replace("_", "")]
    for line in named or errors:
        return _first_line(line.removeprefix("LLVM ERROR:").strip())
    return None


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


# --- the child ------------------------------------------------------------------------------------------


def _kernels():
    import triton
    import triton.language as tl

    # The smallest tiles every backend takes: 32x32 outputs, K = 64 e2m1 values (32 packed bytes,
    # two e8m0 scales per row: one per 32 values, the MX block).
    @triton.jit
    def scaled(a_ptr, as_ptr, b_ptr, bs_ptr, c_ptr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
        om, on = tl.arange(0, BM), tl.arange(0, BN)
        kb, ks = tl.arange(0, BK // 2), tl.arange(0, BK // 32)
        a = tl.load(a_ptr + om[:, None] * (BK // 2) + kb[None, :])
        b = tl.load(b_ptr + kb[:, None] * BN + on[None, :])
        sa = tl.load(as_ptr + om[:, None] * (BK // 32) + ks[None, :])
        sb = tl.load(bs_ptr + on[:, None] * (BK // 32) + ks[None, :])
        tl.store(c_ptr + om[:, None] * BN + on[None, :], tl.dot_scaled(a, sa, "e2m1", b, sb, "e2m1"))

    @triton.jit
    def control(a_ptr, as_ptr, b_ptr, bs_ptr, c_ptr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
        om, on, k = tl.arange(0, BM), tl.arange(0, BN), tl.arange(0, BK)
        a = tl.load(a_ptr + om[:, None] * BK + k[None, :]).to(tl.float16)
        b = tl.load(b_ptr + k[:, None] * BN + on[None, :]).to(tl.float16)
        tl.store(c_ptr + om[:, None] * BN + on[None, :], tl.dot(a, b))

    return control, scaled


def _child(backend: str, arch: str, warp: int) -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever the compilers print stays off the report channel

    def report(word: str, stage: str, text: str = "") -> None:
        out.write(f"{word} {stage} {text.replace(chr(10), ' ')}".rstrip() + "\n")
        out.flush()

    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource, make_backend

        target = GPUTarget(backend, int(arch) if backend == "cuda" else arch, warp)
        make_backend(target)
        control, scaled = _kernels()
    except Exception as exc:  # noqa: BLE001 - any failure here means the probe cannot tell
        report("fail", "backend", f"{type(exc).__name__}: {exc}")
        return 0
    report("ok", "backend")
    signature = {"a_ptr": "*u8", "as_ptr": "*u8", "b_ptr": "*u8", "bs_ptr": "*u8", "c_ptr": "*fp32",
                 "BM": "constexpr", "BN": "constexpr", "BK": "constexpr"}
    for stage, kernel in (("control", control), ("dot_scaled", scaled)):
        try:
            triton.compile(ASTSource(kernel, signature, {"BM": 32, "BN": 32, "BK": 64}), target=target)
        except Exception as exc:  # noqa: BLE001 - the stage's failure is the finding
            report("fail", stage, f"{type(exc).__name__}: {exc}")
            return 0
        report("ok", stage)
    return 0


if __name__ == "__main__":
    from parity.harness.core import lifeline

    lifeline.hold()
    sys.exit(_child(sys.argv[1], sys.argv[2], int(sys.argv[3])))
