"""The targets of `parity inspect` and compiling one captured kernel for one of them, offline: the
target's stand-in device (so a suite's predicates and config lists answer as there), its
config list, the binding of Triton's compiler, the compile and what its assembly says.

Per-block shared-memory limits (the compiler allocates it; the driver refuses a kernel over it):
sm_90 and sm_100: 227 KiB (232448 bytes: 228 KB per SM less 1 KB the system reserves; CUDA C++
Programming Guide, "Technical Specifications per Compute Capability"; reference/specs.md S22 for
Blackwell's 228 KB per SM); gfx942: 64 KiB of LDS per workgroup (reference/stream-and-attention.md:
"64 KB LDS/CU"; AMD CDNA 3 ISA); gfx950: 160 KiB (reference/specs.md: `lds_kb_per_cu: 160`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

from parity.harness.core import safeio
from parity.harness.core.model import UsageError, one_line


@dataclass(frozen=True)
class Target:
    name: str  # "sm_90a"
    backend: str  # Triton's: "cuda" | "hip"
    arch: int | str  # GPUTarget's: 90 | "gfx942"
    warp_size: int
    device_backend: str  # parity's DeviceInfo.backend: "cuda" | "rocm"
    device_arch: str  # what torch reports there: "sm_90", "gfx942"
    spec_id: str  # the spec whose figures stand for the target's device
    shared_limit_bytes: int
    tensor_core: str  # the matrix instruction family its GEMMs must reach (issue 14, point 6)
    fp4_tensor_core: str  # ... and its MXFP4 GEMM (where MXFP4 is emulated: the BF16 one)


TARGETS = {t.name: t for t in (
    Target("sm_90a", "cuda", 90, 32, "cuda", "sm_90", "h200", 232448, "wgmma", "wgmma"),
    Target("sm_100a", "cuda", 100, 32, "cuda", "sm_100", "b200", 232448, "tcgen05", "tcgen05"),
    Target("gfx942", "hip", "gfx942", 64, "rocm", "gfx942", "mi300x", 64 * 1024, "mfma", "mfma"),
    Target("gfx950", "hip", "gfx950", 64, "rocm", "gfx950", "mi355x", 160 * 1024, "mfma", "mfma_scale"),
)}


COMPILED, ERROR, OVER_LIMIT, SKIPPED = "compiled", "error", "over-limit", "skipped"


class BindingError(RuntimeError):
    """parity's own binding to Triton's compiler failed on a kernel any backend compiles: a fault
    of parity against this Triton (a knob or an API it lacks), not of the target's backend, so
    `parity inspect` ends with an error and a nonzero exit instead of "cannot compile here"."""


# Formats whose path is decided by the instructions: the MMA's operands must be this narrow.
NATIVE_FORMAT = {"fp8": "fp8", "mxfp4": "fp4"}


def target_device(target: Target):
    """A DeviceInfo for the target, with its spec's figures: what the suites' presets, `supports`
    and `path` are asked with (the FP8 dtype and the sweep follow the device)."""
    from parity.harness.core import specs
    from parity.harness.core.device import DeviceInfo

    spec = specs.get(target.spec_id)
    l2 = spec.value("l2_cache_mib")
    return DeviceInfo(backend=target.device_backend, name=spec.name, arch=target.device_arch, index=0,
                      memory_bytes=int((spec.value("memory_gb") or 0) * 1e9),
                      multiprocessors=int(spec.value("compute_units") or 0),
                      l2_bytes=int(l2 * 2**20) if l2 else None, llc_bytes=spec.llc_bytes,
                      driver_version=None, runtime_version=None, spec_id=spec.id)


def parse_targets(text: str | None) -> list[Target]:
    names = [t.strip() for t in (",".join(TARGETS) if text is None else text).split(",") if t.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        raise UsageError(f"unknown target {', '.join(unknown) or repr(text)} (targets: {', '.join(TARGETS)})")
    return [TARGETS[n] for n in dict.fromkeys(names)]


def host_device():
    from parity.harness.core.device import DeviceInfo

    return DeviceInfo(backend="cpu", name="inspect", arch="none", index=0, memory_bytes=0, multiprocessors=1,
                      l2_bytes=None, llc_bytes=None, driver_version=None, runtime_version=None)


def as_meta(value: Any, dtypes: Mapping[Any, Any] | None = None) -> Any:
    """A tensor as a meta tensor of the same shape, strides and offset (no memory) and the same
    dtype, or the one `dtypes` maps it to; other values as they are, containers walked."""
    import torch

    if isinstance(value, torch.Tensor):
        extent = value.storage_offset() + 1 + sum((n - 1) * s for n, s in zip(value.shape, value.stride()))
        dtype = (dtypes or {}).get(value.dtype, value.dtype)
        base = torch.empty(max(extent, 1), dtype=dtype, device="meta")
        return base.as_strided(value.shape, value.stride(), value.storage_offset())
    if isinstance(value, dict):
        return {k: as_meta(v, dtypes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(as_meta(v, dtypes) for v in value)
    return value


def fp8_for(device) -> dict[Any, Any]:
    """Host FP8 dtypes -> the target's: inputs are built on the host, whose FP8 is OCP, while a
    suite that picks the format by device (attention) would give gfx942 FNUZ (DESIGN.md's rule)."""
    from parity.harness.core import capability

    if device is None:
        return {}
    try:
        target = capability.torch_fp8_dtypes(device)
        host = capability.torch_fp8_dtypes(host_device())
    except ValueError:  # no FP8 on one side: nothing to map
        return {}
    return {h: t for h, t in zip(host, target) if h != t}


@contextlib.contextmanager
def device_properties(device):
    """`torch.cuda.get_device_properties` (and so `get_device_capability`) answers with the target's
    figures (SM/CU count, memory, L2, capability or gfx name) and `torch.version.hip` is set on AMD
    targets, so a wrapper that sizes its grid or picks a path in Python does it for the target."""
    import torch

    major, minor = (int(device.arch[3:-1]), int(device.arch[-1])) if device.arch.startswith("sm_") else (9, 4)
    props = SimpleNamespace(name=device.name, multi_processor_count=device.multiprocessors,
                            total_memory=device.memory_bytes, L2_cache_size=device.l2_bytes or 0, major=major,
                            minor=minor, gcnArchName=device.arch, warp_size=64 if device.backend == "rocm" else 32)
    saved = torch.cuda.get_device_properties, torch.version.hip
    torch.cuda.get_device_properties = lambda *args, **kwargs: props
    torch.version.hip = "inspect" if device.backend == "rocm" else None  # a ROCm build's marker
    try:
        yield
    finally:
        torch.cuda.get_device_properties, torch.version.hip = saved


def target_problem(target: Target) -> str | None:
    """None where Triton compiles for `target` here (its backend, ptxas or the AMD linker present);
    otherwise why not, from compiling a two-line kernel."""
    import torch
    import triton
    import triton.language as tl

    from parity.harness.measurement.launch_capture import Launch, pointer_arg

    @triton.jit
    def probe(x_ptr, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        tl.store(x_ptr + offs, tl.load(x_ptr + offs) + 1)

    try:  # a Triton built without the target's backend: the one reason a target may be skipped
        from triton.compiler import make_backend

        make_backend(_gpu_target(target))
    except Exception as exc:  # noqa: BLE001 - whatever the missing backend raises is the reason
        return f"Triton {triton.__version__} has no {target.backend} backend for {target.name}: {one_line(exc)}"
    x = pointer_arg(torch.empty(0))
    launch = Launch(probe, (x,), {"BLOCK": 64}, None, "jit", ("x_ptr", "BLOCK"))
    facts = compile_facts(launch, target, {}, None, None)
    if facts.get("stage") == "bind":
        raise BindingError(f"parity's binding to Triton {triton.__version__}'s compiler failed for {target.name} "
                           f"(a parity fault, not the backend): {facts['error']}")
    if facts["status"] == ERROR:
        return f"Triton {triton.__version__} cannot compile for {target.name} here: {facts['error']}"
    return None


def configs_for(launch, target: Target) -> list[tuple[dict[str, Any], Any]]:
    """(meta-parameters and options, the triton.Config or None) of each config of the launch on
    `target`: the Launcher's list for its backend ("cuda", "hip"), as the Launcher picks it at run
    time, or an autotuner's one list; a plain launch has one, its own keywords."""
    if launch.configs is None:
        return [({}, None)]
    for key in (f"{target.backend}:{target.device_arch}", target.backend, "*"):  # as Launcher.list_for
        if key in launch.configs:
            return [(c.all_kwargs(), c) for c in launch.configs[key]]
    return []


def config_label(launch, meta: Mapping[str, Any]) -> str:
    # A launch's own upper-case keywords are meta-parameters too (a @triton.heuristics above the
    # autotuner passes its values so): shown with each config, which may override them.
    own = {k: v for k, v in launch.kwargs.items() if k.isupper() or (launch.configs is None and k.startswith("num_"))}
    shown = {**own, **meta}
    return ", ".join(f"{k}={v}" for k, v in shown.items() if k not in ("num_ctas",) and v is not None)


def _gpu_target(target: Target):
    from triton.backends.compiler import GPUTarget

    return GPUTarget(target.backend, target.arch, target.warp_size)


def _bind(launch, target: Target, meta: Mapping[str, Any], config):
    """Triton's own binding of the arguments for `target`: (specialization, kwargs, backend)."""
    from triton import knobs
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    kernel = launch.kernel
    backend = make_backend(_gpu_target(target))
    # The compilation knobs that are also this backend's options are the ones JITFunction.run
    # passes (3.6: instrumentation_mode; 3.9 adds fpsan_homomorphic_casts): probed, not versioned.
    fields = {f.name for f in dataclasses.fields(backend.parse_options({}))}
    kwargs = {**launch.kwargs, **meta, "debug": False,
              **{n: getattr(knobs.compilation, n) for n in sorted(fields) if hasattr(knobs.compilation, n)}}
    for name in ("maxnreg", "ir_override"):
        if kwargs.get(name) is None:
            kwargs.pop(name, None)
    if config is not None and config.pre_hook is not None:
        # Hooks that shape the arguments to the config (a TMA descriptor's block shape). A hook that
        # works on memory (zeroing an output) cannot run on the stand-ins, which have none, and needs
        # not: the compile does not see it. Should it have shaped an argument, the compile says so.
        try:
            config.pre_hook({**dict(zip(launch.arg_names, launch.args)), **kwargs})
        except Exception:  # noqa: BLE001 - the user's run-time hook, not a compile input
            pass
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*launch.args, **kwargs)
    return bound, specialization, options, kwargs, backend


def cache_key(launch, target: Target, specialization, kwargs) -> str:
    import triton

    text = json.dumps([launch.kernel.cache_key, repr(specialization), sorted((k, repr(v)) for k, v in kwargs.items()),
                       target.name, triton.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def compile_facts(launch, target: Target, meta, config, cache_dir: Path | None) -> dict[str, Any]:
    """Compile one launch with one config for `target`: status, error and the facts of its code."""
    try:
        bound, specialization, options, kwargs, backend = _bind(launch, target, meta, config)
    except Exception as exc:  # noqa: BLE001 - a binding error is the row's error (stage: whose fault)
        return {"status": ERROR, "error": f"binding: {one_line(exc)}", "stage": "bind"}
    key = cache_key(launch, target, specialization, kwargs)
    path = cache_dir / f"{key}.json" if cache_dir else None
    if path and path.exists():
        try:  # safeio's rules: a FIFO or a huge or deep file in the cache is a miss, not a hang
            facts = safeio.load_json(path)
            if isinstance(facts, dict):
                return facts
        except safeio.FileRefused:
            pass
    facts = _compile(launch, target, bound, specialization, options, kwargs, backend)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # never onto a run's records or a special file, whatever the cache folder links to
            safeio.write_text(path, json.dumps(facts), option="the inspect cache")
        except (OSError, safeio.FileRefused):  # an unwritable cache costs a compile next time, nothing more
            pass
    return facts


def _compile(launch, target, bound, specialization, options, kwargs, backend) -> dict[str, Any]:
    import triton
    from triton import knobs
    from triton.compiler import ASTSource

    from parity.harness.measurement import asm_facts

    try:
        options, signature, constexprs, attrs = launch.kernel._pack_args(backend, kwargs, bound, specialization,
                                                                           options)
        log = io.StringIO()
        # Triton's cache would skip ptxas, and with it the register report: compile every time
        # (this module keeps its own cache of the facts).
        with knobs.compilation.scope(), knobs.nvidia.scope(), contextlib.redirect_stdout(log):
            knobs.compilation.always_compile = True
            knobs.nvidia.dump_ptxas_log = True
            compiled = triton.compile(ASTSource(launch.kernel, signature, constexprs, attrs),
                                      target=_gpu_target(target), options=options.__dict__)
    except Exception as exc:  # noqa: BLE001 - a compile error is the row's finding
        return {"status": ERROR, "error": one_line(exc)}
    if target.backend == "cuda":
        facts = asm_facts.ptx_facts(compiled.asm["ptx"], log.getvalue())
    else:
        facts = asm_facts.amdgcn_facts(compiled.asm["amdgcn"])
    shared = int(compiled.metadata.shared)
    status = OVER_LIMIT if shared > target.shared_limit_bytes else COMPILED
    error = (f"needs {shared} bytes of shared memory; {target.name} allows {target.shared_limit_bytes} per block"
             if status == OVER_LIMIT else None)
    return {"status": status, "error": error, "shared_bytes": shared, **asdict(facts)}


def instruction_path(case_format: str | None, mma_format: str | None) -> str | None:
    """native or emulated from the instructions: an FP8 or MXFP4 case is native where its matrix
    instructions take operands that narrow; None where the kernel has no matrix instruction."""
    from parity.harness.measurement.asm_facts import FORMATS

    if mma_format is None:
        return None
    wanted = NATIVE_FORMAT.get(case_format or "")
    if wanted is None:
        return "native"
    return "native" if FORMATS.index(mma_format) <= FORMATS.index(wanted) else "emulated"
