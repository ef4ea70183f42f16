"""`parity inspect`: what every Triton kernel of every suite compiles to on each target, offline.

For each target (sm_90a, sm_100a, gfx942, gfx950), each suite and a representative case of each
preset, the implementations whose backend is "triton" are prepared on meta tensors (shapes, dtypes
and strides of the suite's inputs, no memory) and their thunk is run with every launch intercepted
(`launch_capture`). Each launched kernel is
then compiled with the target's own Triton backend (`triton.compile` on a `GPUTarget`: PTX and
ptxas for NVIDIA, AMDGCN for AMD; Triton compiles for any target without its GPU), once per config
of the target's list, and read back (`asm_facts`). One row per kernel x config x case x target.

The compiling runs in a child process with the Triton interpreter off (the interpreter replaces
`triton.jit` at import, so a process that imported kernels in interpreter mode cannot compile).
Results are cached on disk per (kernel source, specialization, config, target, Triton version).

Per-block shared-memory limits (the compiler allocates it; the driver refuses a kernel over it):
sm_90 and sm_100: 227 KiB (232448 bytes: 228 KB per SM less 1 KB the system reserves; CUDA C++
Programming Guide, "Technical Specifications per Compute Capability"; reference/specs.md S22 for
Blackwell's 228 KB per SM); gfx942: 64 KiB of LDS per workgroup (reference/stream-and-attention.md:
"64 KB LDS/CU"; AMD CDNA 3 ISA); gfx950: 160 KiB (reference/specs.md: `lds_kb_per_cu: 160`).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Mapping, Sequence

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
# Formats whose path is decided by the instructions: the MMA's operands must be this narrow.
NATIVE_FORMAT = {"fp8": "fp8", "mxfp4": "fp4"}
REAL_INPUT_BUDGET_BYTES = 1 << 30  # inputs built for real (FakeTensorMode refused) at most this large
CACHE_ENV = "PARITY_INSPECT_CACHE"


@dataclass(frozen=True)
class Row:
    suite: str
    op: str
    impl: str
    kernel: str | None
    config: str | None
    lead: bool  # the first config of its list: the one autotuning is led by and a user sees first
    preset: str
    case: Mapping[str, Any]
    target: str
    status: str  # compiled | error | over-limit | skipped
    error: str | None = None
    registers: int | None = None
    spill_bytes: int | None = None
    shared_bytes: int | None = None
    mma: str | None = None
    mma_format: str | None = None
    tma: bool | None = None
    vector_bytes: int | None = None
    path: str | None = None  # native | emulated from the instructions; None without an MMA
    resolver_path: str | None = None  # what the implementation says (capability.resolve)
    path_agrees: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["case"] = dict(self.case)
        return out


# --- the target as a device, for the suites ------------------------------------------------------


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


# --- cases ------------------------------------------------------------------------------------------


def _group_key(op: str, params: Mapping[str, Any]) -> tuple:
    """Cases that differ only in sizes share a key: the categorical parameters (dtype, layout,
    direction, causal, ...) are what changes the kernel, its constexprs or its operand types."""
    return (op, tuple(sorted((k, v) for k, v in params.items() if isinstance(v, (str, bool)) or v is None)))


def representative_cases(suite, device, presets: Sequence[str] | None):
    """(preset, op, params): per preset, the middle case of each group of cases that differ only in
    sizes, for the ops a Triton implementation serves; a case in several presets once. `presets`
    the suite lacks are passed over (none left: its first preset)."""
    triton_ops = {i.op for i in suite.impls if i.backend == "triton"}
    chosen: dict[str, tuple] = {}
    wanted = [p for p in (presets or ()) if p in suite.presets] or list(suite.presets[:1] if presets else suite.presets)
    for preset in wanted:
        groups: dict[tuple, list] = {}
        for op, params in suite.params_for(preset, device, suite.dtypes, None):
            if op in triton_ops:
                groups.setdefault(_group_key(op, params), []).append(params)
        for (op, _), cases in groups.items():
            params = cases[(len(cases) - 1) // 2]
            key = op + json.dumps(params, sort_keys=True, default=str)
            chosen.setdefault(key, (preset, op, params))
    return list(chosen.values())


# --- capturing the launches of one case --------------------------------------------------------------


def _host_device():
    from parity.harness.core.device import DeviceInfo

    return DeviceInfo(backend="cpu", name="inspect", arch="none", index=0, memory_bytes=0, multiprocessors=1,
                      l2_bytes=None, llc_bytes=None, driver_version=None, runtime_version=None)


def _meta(value: Any, dtypes: Mapping[Any, Any] | None = None) -> Any:
    """A tensor as a meta tensor of the same shape, strides and offset (no memory) and the same
    dtype, or the one `dtypes` maps it to; other values as they are, containers walked."""
    import torch

    if isinstance(value, torch.Tensor):
        extent = value.storage_offset() + 1 + sum((n - 1) * s for n, s in zip(value.shape, value.stride()))
        dtype = (dtypes or {}).get(value.dtype, value.dtype)
        base = torch.empty(max(extent, 1), dtype=dtype, device="meta")
        return base.as_strided(value.shape, value.stride(), value.storage_offset())
    if isinstance(value, dict):
        return {k: _meta(v, dtypes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_meta(v, dtypes) for v in value)
    return value


def _fp8_for(device) -> dict[Any, Any]:
    """Host FP8 dtypes -> the target's: inputs are built on the host, whose FP8 is OCP, while a
    suite that picks the format by device (attention) would give gfx942 FNUZ (DESIGN.md's rule)."""
    from parity.harness.core import capability

    if device is None:
        return {}
    try:
        target = capability.torch_fp8_dtypes(device)
        host = capability.torch_fp8_dtypes(_host_device())
    except ValueError:  # no FP8 on one side: nothing to map
        return {}
    return {h: t for h, t in zip(host, target) if h != t}


@contextlib.contextmanager
def _device_properties(device):
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


def case_launches(suite, impl, params, device=None):
    """The launches of one call of the implementation's thunk (those of `prepare` are not timed and
    are left out; a backward's saved forward, for example).

    The inputs are built by the suite on the CPU under FakeTensorMode (no memory; for real where the
    input code reads values, up to REAL_INPUT_BUDGET_BYTES), then handed to `prepare` as meta
    tensors: a kernel wrapper that tells the interpreter from a GPU by `device.type == "cpu"` or by
    TRITON_INTERPRET (off here) takes its GPU path, and nothing it allocates takes memory. With
    `device` (the target's DeviceInfo), `torch.cuda.get_device_properties` answers for it."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from parity.harness.measurement import launch_capture

    op, host, fp8 = suite.op(impl.op), _host_device(), _fp8_for(device)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            x = _meta(op.inputs(params, host), fp8)
    except Exception:  # noqa: BLE001 - data-dependent input code: build the inputs for real
        work = op.work(params)
        need = work.bytes_read + work.bytes_written
        if need > REAL_INPUT_BUDGET_BYTES:
            raise RuntimeError(f"the inputs need real values and {need} bytes, more than the "
                               f"{REAL_INPUT_BUDGET_BYTES} this inspection builds") from None
        x = _meta(op.inputs(params, host), fp8)
    with _device_properties(device) if device is not None else contextlib.nullcontext():
        with launch_capture.intercepted([]):
            thunk = impl.prepare(x, params)
        return launch_capture.capture(thunk)


# --- compiling ---------------------------------------------------------------------------------------


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

    x = pointer_arg(torch.empty(0))
    launch = Launch(probe, (x,), {"BLOCK": 64}, None, "jit", ("x_ptr", "BLOCK"))
    facts = compile_facts(launch, target, {}, None, None)
    if facts["status"] == ERROR:
        return f"Triton {triton.__version__} cannot compile for {target.name} here: {facts['error']}"
    return None


# --- compiling each launch --------------------------------------------------------------------


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
    shown = {**{k: v for k, v in launch.kwargs.items() if k.isupper() or k.startswith("num_")}, **meta} \
        if launch.configs is None else dict(meta)
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
    kwargs = {**launch.kwargs, **meta, "debug": False,
              "instrumentation_mode": knobs.compilation.instrumentation_mode,
              "fpsan_homomorphic_casts": knobs.compilation.fpsan_homomorphic_casts}
    for name in ("maxnreg", "ir_override"):
        if kwargs.get(name) is None:
            kwargs.pop(name, None)
    if config is not None and config.pre_hook is not None:
        # Hooks that shape the arguments to the config (a TMA descriptor's block shape).
        config.pre_hook({**dict(zip(launch.arg_names, launch.args)), **kwargs})
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
    except Exception as exc:  # noqa: BLE001 - a binding error is the row's error
        return {"status": ERROR, "error": one_line(exc)}
    key = cache_key(launch, target, specialization, kwargs)
    path = cache_dir / f"{key}.json" if cache_dir else None
    if path and path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    facts = _compile(launch, target, bound, specialization, options, kwargs, backend)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(facts))
        tmp.replace(path)
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


# --- rows --------------------------------------------------------------------------------------------


def inspect_rows(targets: Sequence[Target], suite_names: Sequence[str] | None = None,
                 presets: Sequence[str] | None = None, lead_only: bool = False, one_case: bool = False,
                 cache_dir: Path | None = None, progress=None) -> Iterable[Row]:
    """Every row, target by target (in this process: the interpreter must be off). With `one_case`,
    a kernel variant (its constexprs, operand types and config) is compiled for its first case
    only, so each shows once however many cases launch it."""
    from parity.harness.core import registry

    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("parity inspect compiles: run it in a process without TRITON_INTERPRET=1")
    suites = [registry.load(n) for n in suite_names] if suite_names else registry.load_all()
    for target in targets:
        problem = target_problem(target)
        if problem:
            yield Row(suite="*", op="*", impl="*", kernel=None, config=None, lead=True, preset="*", case={},
                      target=target.name, status=SKIPPED, error=problem)
            continue
        device = target_device(target)
        variants: set | None = set() if one_case else None
        for suite in suites:
            impls = [i for i in suite.impls if i.backend == "triton"]
            for preset, op, params in representative_cases(suite, device, presets):
                for impl in (i for i in impls if i.op == op):
                    yield from _impl_rows(suite, impl, preset, params, target, device, lead_only, cache_dir,
                                          progress, variants)


def _kind(arg) -> str:
    if isinstance(arg, bool) or arg is None:
        return repr(arg)
    if isinstance(arg, (int, float)):
        return type(arg).__name__
    return str(getattr(arg, "dtype", type(arg).__name__))


def _variant(launch, label: str) -> tuple:
    """What makes a kernel compile differently, but for sizes and alignment: its name, config,
    keyword constexprs and the types of its arguments."""
    return launch.name, label, repr(sorted(launch.kwargs.items())), tuple(_kind(a) for a in launch.args)


def _impl_rows(suite, impl, preset, params, target, device, lead_only, cache_dir, progress,
               variants: set | None = None) -> Iterable[Row]:
    base = Row(suite=suite.name, op=impl.op, impl=impl.name, kernel=None, config=None, lead=True, preset=preset,
               case=params, target=target.name, status=SKIPPED)
    reason = impl.supports(device, params)
    if reason:
        yield replace(base, error=reason)
        return
    resolver = impl.path(device, params)
    try:
        launches = case_launches(suite, impl, params, device)
    except Exception as exc:  # noqa: BLE001 - the case cannot be prepared: say why, go on
        yield replace(base, status=ERROR, error=one_line(exc))
        return
    if not launches:
        yield replace(base, error="the implementation launched no Triton kernel")
        return
    seen = set()
    for launch in launches:
        configs = configs_for(launch, target)
        if not configs:
            yield replace(base, kernel=launch.name, status=ERROR,
                          error=f"no config list for {target.name} ({', '.join(launch.configs)})")
            continue
        for index, (meta, config) in enumerate(configs[:1] if lead_only else configs):
            label = config_label(launch, meta)
            if (launch.name, label) in seen:
                continue  # the same kernel launched twice in one call (a two-pass reduction)
            seen.add((launch.name, label))
            if variants is not None:
                if _variant(launch, label) in variants:
                    continue
                variants.add(_variant(launch, label))
            started = time.monotonic()
            facts = compile_facts(launch, target, meta, config, cache_dir)
            path = instruction_path(params.get("dtype"), facts.get("mma_format"))
            row = replace(base, kernel=launch.name, config=label, lead=index == 0, status=facts["status"],
                          error=facts.get("error"), registers=facts.get("registers"),
                          spill_bytes=facts.get("spill_bytes"), shared_bytes=facts.get("shared_bytes"),
                          mma=facts.get("mma"), mma_format=facts.get("mma_format"), tma=facts.get("tma"),
                          vector_bytes=facts.get("vector_bytes"), path=path, resolver_path=resolver,
                          path_agrees=None if path is None else path == resolver)
            if progress:
                progress(row, time.monotonic() - started)
            yield row


# --- the human table ------------------------------------------------------------------------------


COLUMNS = ("target", "suite", "op", "impl", "kernel", "config", "case", "status", "regs", "spill", "smem",
           "mma", "tma", "vec", "path")


def _case_text(row: Mapping[str, Any]) -> str:
    return f"{row['preset']}: " + " ".join(f"{k}={v}" for k, v in row["case"].items())


def _cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    def num(v):
        return "-" if v is None else str(v)

    path = row.get("path")
    if path and row.get("path_agrees") is False:
        path = f"{path} (resolver: {row.get('resolver_path')})"
    mma = row.get("mma")
    if mma and row.get("mma_format"):
        mma = f"{mma}/{row['mma_format']}"
    status = row["status"] + ("" if row.get("lead") or not row.get("config") else "")
    return (row["target"], row["suite"], row["op"], row["impl"], row.get("kernel") or "-",
            ("* " if row.get("lead") and row.get("config") else "  ") + (row.get("config") or "-"),
            _case_text(row), status, num(row.get("registers")), num(row.get("spill_bytes")),
            num(row.get("shared_bytes")), mma or "-", {True: "yes", False: "no"}.get(row.get("tma"), "-"),
            num(row.get("vector_bytes")), path or "-")


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per row, aligned; `*` marks a list's lead config; errors and skips follow below,
    numbered, so the table stays one line per row."""
    cells = [_cells(r) for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    notes = [f"  {r['target']} {r['suite']}/{r['op']}/{r['impl']} {r.get('kernel') or ''} "
             f"[{r.get('config') or '-'}]: {r['status']}: {r['error']}" for r in rows if r.get("error")]
    if notes:
        lines += ["", "errors, limits and skips:"] + notes
    counts = summary_counts(rows)
    lines += ["", "; ".join(f"{t}: " + ", ".join(f"{v} {k}" for k, v in c.items() if v) for t, c in counts.items())]
    return "\n".join(lines)


def summary_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per target: rows compiled, in error, over the limit, skipped, and spilling."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        c = out.setdefault(r["target"], {COMPILED: 0, ERROR: 0, OVER_LIMIT: 0, SKIPPED: 0, "spilling": 0})
        c[r["status"]] += 1
        c["spilling"] += bool(r.get("spill_bytes"))
    return out


# --- the child process and the parent's side ---------------------------------------------------------


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "parity" / "inspect"


def run_inspection(targets: Sequence[str], suites: Sequence[str] | None = None, presets: Sequence[str] | None = None,
                   lead_only: bool = False, one_case: bool = False, cache_dir: Path | None = None,
                   progress=None, jobs: int | None = None) -> list[dict[str, Any]]:
    """The rows as dicts, in target order, compiled in child processes without TRITON_INTERPRET, one
    per target, `jobs` at a time (default: one per CPU); `progress(line)` gets a line per kernel."""
    from concurrent.futures import ThreadPoolExecutor

    request = {"suites": list(suites or []), "presets": list(presets or []), "lead_only": lead_only,
               "one_case": one_case, "cache_dir": str(cache_dir or default_cache_dir())}
    jobs = max(1, min(len(targets), jobs or os.cpu_count() or 1))
    with ThreadPoolExecutor(jobs) as pool:
        parts = list(pool.map(lambda t: _run_child({**request, "targets": [t]}, progress), targets))
    return [row for part in parts for row in part]


def _run_child(request: Mapping[str, Any], progress) -> list[dict[str, Any]]:
    import threading

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.Popen([sys.executable, "-m", __name__, json.dumps(request)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rows, noise = [], []
    reader = threading.Thread(target=lambda: noise.extend(proc.stderr), daemon=True)
    reader.start()
    for line in proc.stdout:
        if line.startswith("row "):
            rows.append(json.loads(line[4:]))
        elif line.startswith("progress ") and progress:
            progress(line[9:].rstrip("\n"))
    proc.wait()
    reader.join()
    if proc.returncode != 0:
        tail = "".join(noise[-20:]).strip().splitlines()
        raise RuntimeError(f"the inspection of {', '.join(request['targets'])} failed (exit {proc.returncode}): "
                           f"{tail[-1] if tail else 'no message'}")
    return rows


def _child(request: Mapping[str, Any]) -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # anything the compilers print stays off the row channel

    def progress(row: Row, seconds: float) -> None:
        out.write(f"progress {row.target} {row.suite}/{row.op}/{row.impl} {row.kernel} [{row.config}] "
                  f"{row.status} {seconds:.1f}s\n")
        out.flush()

    targets = [TARGETS[t] for t in request["targets"]]
    for row in inspect_rows(targets, request["suites"] or None, request["presets"] or None, request["lead_only"],
                            request["one_case"], Path(request["cache_dir"]), progress):
        out.write("row " + json.dumps(row.to_dict(), default=str) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child(json.loads(sys.argv[1])))
