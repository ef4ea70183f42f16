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

The targets, and compiling one kernel for one of them, are inspect_targets.py.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from parity.harness.core.model import one_line
from parity.harness.measurement.inspect_targets import (
    COMPILED,
    ERROR,
    OVER_LIMIT,
    SKIPPED,
    BindingError,
    TARGETS,
    Target,
    as_meta,
    compile_facts,
    config_label,
    configs_for,
    device_properties,
    fp8_for,
    host_device,
    instruction_path,
    target_device,
    target_problem,
)

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

    op, host, fp8 = suite.op(impl.op), host_device(), fp8_for(device)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            x = as_meta(op.inputs(params, host), fp8)
    except Exception:  # noqa: BLE001 - data-dependent input code: build the inputs for real
        work = op.work(params)
        need = work.bytes_read + work.bytes_written
        if need > REAL_INPUT_BUDGET_BYTES:
            raise RuntimeError(f"the inputs need real values and {need} bytes, more than the "
                               f"{REAL_INPUT_BUDGET_BYTES} this inspection builds") from None
        x = as_meta(op.inputs(params, host), fp8)
    with device_properties(device) if device is not None else contextlib.nullcontext():
        with launch_capture.intercepted([]):
            thunk = impl.prepare(x, params)
        return launch_capture.capture(thunk)


def inspect_rows(targets: Sequence[Target], suite_names: Sequence[str] | None = None,
                 presets: Sequence[str] | None = None, lead_only: bool = False, one_case: bool = False,
                 cache_dir: Path | None = None, progress=None) -> Iterable[Row]:
    """Every row, target by target (in this process: the interpreter must be off). With `one_case`,
    a kernel variant (its constexprs, operand types and config) is compiled for its first case
    only, so each shows once however many cases launch it."""
    from parity.harness.measurement import registry

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


def _error_key(row: Row, kernel: str | None, config: str | None, error: str | None) -> tuple:
    return "error", row.suite, row.impl, kernel, config, error


def _once(row: Row, variants: set | None) -> Iterable[Row]:
    """An error row; with `one_case` (variants kept), only the first of an implementation's identical
    errors: the same error of every case is one row, not one per case."""
    if variants is not None:
        if _error_key(row, row.kernel, row.config, row.error) in variants:
            return
        variants.add(_error_key(row, row.kernel, row.config, row.error))
    yield row


def _impl_rows(suite, impl, preset, params, target, device, lead_only, cache_dir, progress,
               variants: set | None = None) -> Iterable[Row]:
    base = Row(suite=suite.name, op=impl.op, impl=impl.name, kernel=None, config=None, lead=True, preset=preset,
               case=params, target=target.name, status=SKIPPED)
    reason = impl.skip_reason(device, params)
    if reason:
        yield replace(base, error=reason)
        return
    resolver = impl.path(device, params)
    try:
        launches = case_launches(suite, impl, params, device)
    except Exception as exc:  # noqa: BLE001 - the case cannot be prepared: say why, go on
        yield from _once(replace(base, status=ERROR, error=one_line(exc)), variants)
        return
    if not launches:
        yield replace(base, error="the implementation launched no Triton kernel")
        return
    seen = set()
    for launch in launches:
        configs = configs_for(launch, target)
        if not configs:
            yield from _once(replace(base, kernel=launch.name, status=ERROR,
                                     error=f"no config list for {target.name} ({', '.join(launch.configs)})"), variants)
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
            if variants is not None and facts["status"] == ERROR:  # one error once, whatever the variant
                if _error_key(base, launch.name, label, facts.get("error")) in variants:
                    continue
                variants.add(_error_key(base, launch.name, label, facts.get("error")))
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

    from parity.harness.core import lifeline

    # The compiling child ends with this process (a killed `parity inspect` leaves no compiler running).
    env, fds = lifeline.child({k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"})
    proc = subprocess.Popen([sys.executable, "-m", __name__, json.dumps(request)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=fds)
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
    try:
        for row in inspect_rows(targets, request["suites"] or None, request["presets"] or None,
                                request["lead_only"], request["one_case"], Path(request["cache_dir"]), progress):
            out.write("row " + json.dumps(row.to_dict(), default=str) + "\n")
            out.flush()
    except BindingError as exc:  # parity's fault: the parent's error line and nonzero exit carry it
        print(exc, file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    from parity.harness.core import lifeline

    lifeline.hold()
    sys.exit(_child(json.loads(sys.argv[1])))
