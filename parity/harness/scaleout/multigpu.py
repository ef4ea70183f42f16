"""Every GPU of a node at once: one `parity run` process per GPU, merged into one run, and the
spread between GPUs, with the GPUs that fall behind their peers called out.

`parity run --all-gpus` starts one worker per visible GPU (`--cpu-workers N`: N CPU workers, for
tests and CI), all at once, so they share the node's power and cooling as in training; each
writes an ordinary, resumable run under OUT/gpus/gpu-N/ (its output in OUT/gpus/gpu-N.log). A
collective suite in the plan runs once across all GPUs instead (distributed.py, group.py), under
OUT/collectives/. When the workers are done their records are merged into OUT, each tagged with
its GPU (`gpu_index`) and host, so `parity report OUT` reads one run. A worker that dies, or writes
no record for the rank timeout, ends the run with one line naming its GPU; what the others wrote is
merged all the same. `merge` also gathers the runs of several nodes (submit.py, `parity merge`).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from parity.harness.core import lifeline, safeio
from parity.harness.core import runlock
from parity.harness.core.model import UsageError
from parity.harness.core.ranks import DEFAULT_TIMEOUT_S, EXIT_RANK, WORKER_ENV, child_env, place_from_env
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, RUN_SCHEMA, ResultsError, RunWriter, is_collective, read_run
from parity.harness.measurement import registry, threads
from parity.harness.scaleout import distributed, group

GPUS_DIR = "gpus"
COLLECTIVES_DIR = "collectives"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def is_multi_gpu(folder: Path) -> bool:
    """Whether a run folder holds an --all-gpus run (whose --resume resumes every worker's part)."""
    return "multi_gpu" in read_run(folder).meta


def worker_count(device, cpu_workers: int | None) -> int:
    if cpu_workers is not None:
        if cpu_workers < 1:
            raise UsageError("--cpu-workers must be 1 or more")
        return cpu_workers
    if not device.is_gpu:
        raise UsageError("--all-gpus needs GPUs and none is visible here: run without --all-gpus on the CPU "
                         "(--cpu-workers N exercises the multi-GPU runner with CPU workers)")
    import torch

    return torch.cuda.device_count()


def run_all(plan, device, out: Path, resume: bool, cpu_workers: int | None, timeout_s: float | None,
            show, progress=None) -> int:
    """`parity run --all-gpus`: the workers, then the collective suites, then the merge (its tables
    `show(run)` prints), holding OUT's lock throughout (each worker holds its own part's). `progress(done, total)` (if
    given) hears each worker's record count as it grows: done maps the GPU index to its records so
    far, total is the cases each worker has to run."""
    with runlock.hold(out, "resume" if resume else "run", fresh=not resume):
        return _run_all(plan, device, out, resume, cpu_workers, timeout_s, show, progress)


def _run_all(plan, device, out: Path, resume: bool, cpu_workers: int | None, timeout_s: float | None,
             show, progress=None) -> int:
    from parity.harness.measurement.runner import plan_cases

    timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    if timeout_s <= 0:
        raise UsageError("--rank-timeout-s must be positive")
    if place_from_env() is not None:
        raise UsageError("--all-gpus starts a process per GPU itself: run it outside torchrun")
    if resume:
        meta = read_run(out).meta
        if "multi_gpu" not in meta:
            raise UsageError(f"{out} is not an --all-gpus run: resume it without --all-gpus")
        plan = type(plan).recorded(meta, out)  # a damaged recorded plan is one line
        cpu_workers = meta["multi_gpu"].get("cpu_workers")
    n = worker_count(device, cpu_workers)
    plan_cases(plan, device)  # bad input fails here, before anything starts
    suites = [registry.load(name) for name in plan.suites]
    local = narrowed(plan, [s for s in suites if not s.collective])
    if local is not None and cpu_workers and local.cpu_threads is None:
        # CPU workers time at once: each gets its share of the physical cores (threads.py), stated
        # in its plan and records, not one thread per core each, which would oversubscribe them.
        local = replace(local, cpu_threads=threads.default_threads(n))
    collective = narrowed(plan, [s for s in suites if s.collective])
    started = _now()
    (out / GPUS_DIR).mkdir(parents=True, exist_ok=True)
    parts: list[tuple[Path, int | None]] = []
    error = None
    names = ([f"{GPUS_DIR}/gpu-{i}" for i in range(n)] if local is not None else []) + \
        ([COLLECTIVES_DIR] if collective is not None else [])
    multi = {"workers": n, "cpu_workers": cpu_workers, "concurrent": True, "parts": names}
    if resume:
        started = meta.get("started_at") or started
    else:
        # The run is a run before any worker starts: a kill -9 of this process leaves a folder
        # that `--resume` knows (plan, workers), not a folder of parts nobody can finish.
        _write_top(out, {"schema": RUN_SCHEMA, "run_id": dt.datetime.now().strftime("%Y%m%d-%H%M%S-") +
                         uuid.uuid4().hex[:6], "started_at": started, "status": "running",
                         "command": ["parity", "run", "--all-gpus", *distributed.plan_args(plan)],
                         "plan": plan.to_dict(), "device": device.to_dict(), "multi_gpu": multi})
    if local is not None:
        parts = [(out / GPUS_DIR / f"gpu-{i}", i) for i in range(n)]
        print(f"parity: {len(local.suites)} suite(s) on {n} {'CPU worker' if cpu_workers else 'GPU'}(s) at once; "
              f"logs in {out / GPUS_DIR}", file=sys.stderr, flush=True)
        total = len(plan_cases(local, device))
        watch = (lambda done: progress(done, total)) if progress is not None else None
        try:
            error = _run_workers(local, parts, resume, cpu_workers is not None, timeout_s, watch, device)
        except KeyboardInterrupt:
            _mark_interrupted(out)
            raise
    if collective is not None and error is None:
        part = out / COLLECTIVES_DIR
        ranks = collective.ranks or (max(n, 2) if cpu_workers else None)
        parts.append((part, None))
        if not (resume and _part_finished(part, device)):  # a complete part starts no ranks again
            error = _run_collectives(replace(collective, ranks=ranks), part, timeout_s)
    present = [(p, i) for p, i in parts if (p / MEASUREMENTS_FILE).exists()]
    meta = {"plan": plan.to_dict(), "started_at": started, "multi_gpu": multi}
    run = merge(present, out, ["parity", "run", "--all-gpus", *distributed.plan_args(plan)], meta,
                status="failed" if error else "complete")
    show(run)  # the command prints the merged run's tables
    if error:
        print(f"parity: error: {error}; finished records are merged in {out}", file=sys.stderr)
        return EXIT_RANK
    counts = run.meta.get("counts", {})
    print(f"parity: {', '.join(f'{v} {k}' for k, v in sorted(counts.items())) or 'nothing'} over {n} "
          f"{'workers' if cpu_workers else 'GPUs'}; results in {out}", file=sys.stderr)
    return 1 if counts.get("failed") or counts.get("invalid") else 0


def _run_workers(plan, parts, resume: bool, cpu: bool, timeout_s: float, watch=None, device=None) -> str | None:
    """Start one worker per part, all at once; None when all ended, else what went wrong. On
    --resume a part already complete starts no worker: one would import torch and take the device
    (seconds, on a GPU a context) to find nothing to do."""
    if resume:
        parts = [(folder, i) for folder, i in parts if not _part_finished(folder, device)]
        if not parts:
            return None
    procs, logs = [], []
    for folder, i in parts:
        again = resume and (folder / RUN_FILE).exists()  # a part its worker began: finish it
        args = ["--resume", str(folder)] if again else [*distributed.plan_args(plan), "--out", str(folder)]
        if not cpu:
            args += ["--device", str(i)]  # a resumed part too: it belongs to GPU i, not to the default 0
        log = safeio.append_own(folder.with_suffix(".log"))
        logs.append(log)
        env, fds = lifeline.child(child_env(**{WORKER_ENV: str(i)}))  # it ends when this process does
        procs.append(subprocess.Popen([sys.executable, "-m", "parity", "run", *args], env=env, stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, pass_fds=fds))
    try:
        return _watch_workers(procs, parts, timeout_s, watch)
    except KeyboardInterrupt:
        _interrupt(procs)
        raise
    finally:
        group.stop_processes(procs)
        for log in logs:
            log.close()


def _part_finished(part: Path, device) -> bool:
    from parity.harness.measurement.runner import finished

    return (part / RUN_FILE).exists() and finished(part, device)


def _write_top(out: Path, meta: dict[str, Any]) -> None:
    safeio.replace_own(out / RUN_FILE, (json.dumps(meta, indent=2) + "\n").encode())


def _mark_interrupted(out: Path) -> None:
    try:
        meta = json.loads(safeio.read_bytes(out / RUN_FILE, "run"))
        meta["status"] = "interrupted"
        _write_top(out, meta)
    except (OSError, ValueError):  # unreadable now: --resume still reads the plan it holds
        pass


def _interrupt(procs, grace_s: float = 1.0) -> None:
    """Ctrl-C (the terminal's, reaching every worker too, or a SIGINT to this process alone): each
    worker is told (SIGINT: it marks its part interrupted) and given `grace_s`, then killed, so none
    outlives this process by more than that; a killed part resumes as a kill -9's does."""
    for p in procs:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            p.kill()


def _watch_workers(procs, parts, timeout_s: float, watch=None) -> str | None:
    sizes = [-1] * len(procs)
    done = {i: 0 for _, i in parts}  # records each worker has written, for the progress display
    changed = [time.monotonic()] * len(procs)
    while True:
        codes = [p.poll() for p in procs]
        for (folder, i), code in zip(parts, codes):
            if code not in (None, 0, 1):
                how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
                return f"the worker of GPU {i} {how} (see {folder.with_suffix('.log')})"
        if all(code is not None for code in codes):
            if watch is not None:  # the last records, written since the previous poll
                watch({i: _count(folder / MEASUREMENTS_FILE) for folder, i in parts})
            return None
        now = time.monotonic()
        for k, ((folder, i), code) in enumerate(zip(parts, codes)):
            path = folder / MEASUREMENTS_FILE
            size = path.stat().st_size if path.exists() else 0
            if size != sizes[k]:
                sizes[k], changed[k] = size, now
                if watch is not None:
                    done[i] = _count(path)
                    watch(dict(done))
            elif code is None and now - changed[k] > timeout_s:
                return (f"the worker of GPU {i} wrote no record for {timeout_s:g} s (hung?; --rank-timeout-s "
                        f"sets the limit; see {folder.with_suffix('.log')})")
        time.sleep(0.05)


def _count(path: Path) -> int:
    """Records in a worker's file so far (whole lines)."""
    return safeio.count_lines(path)


def narrowed(plan, suites: list) -> Any:
    """The part of a multi-suite plan that `suites` run, read as `runner.plan_cases` reads it: a
    dtype, size or shape given for the other suites stays with them (a child `parity run` of these
    suites alone would refuse it); None where these suites have nothing to run."""
    if not suites:
        return None
    names = tuple(s.name for s in suites)
    if len(names) == len(plan.suites):
        return replace(plan, suites=names)
    dtypes = tuple(d for d in plan.dtypes if any(d in s.dtypes for s in suites))
    sizes = plan.sizes_bytes if any(s.check_sizes for s in suites) else ()
    shapes = plan.shapes if any(s.check_shapes for s in suites) else ()
    if (plan.dtypes and not dtypes) or ((plan.sizes_bytes or plan.shapes) and not (sizes or shapes)):
        return None
    return replace(plan, suites=names, dtypes=dtypes, sizes_bytes=sizes, shapes=shapes)


def _run_collectives(plan, part: Path, timeout_s: float) -> str | None:
    """The collective suites once across all GPUs: `parity run` starts and watches the ranks."""
    args = ["--resume", str(part)] if (part / RUN_FILE).exists() else \
        [*distributed.plan_args(plan), "--out", str(part)]
    log_path = part.with_suffix(".log")
    env, fds = lifeline.child(child_env())
    with safeio.append_own(log_path) as log:
        code = subprocess.call([sys.executable, "-m", "parity", "run", *args, "--rank-timeout-s", repr(timeout_s)],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env=env, pass_fds=fds)
    if code in (0, 1):
        return None
    said = [line for line in safeio.read_bytes(log_path, "log").decode(errors="replace").splitlines() if line.startswith("parity: error: ")]
    return (said[-1][len("parity: error: "):] if said else f"the collective suites exited with status {code}") + \
        f" (see {log_path})"


def merge(parts: list[tuple[Path, int | None]], out: Path, command: list[str], meta_extra: dict[str, Any],
          status: str = "complete", hosts: list[str] | None = None):
    """One run in OUT from several: every record of every part, tagged with its GPU and host.

    A part's GPU is the one given, else its records' own (a part merged before), else its device's
    index. Records name their host where the parts come from several (or `hosts` names each
    part's). OUT's measurements are rewritten whole, under OUT's lock; the parts stay as they are."""
    with runlock.hold(out, "merge"):
        return _merge(parts, out, command, meta_extra, status, hosts)


def _merge(parts, out: Path, command: list[str], meta_extra: dict[str, Any], status: str, hosts):
    runs = [(read_run(path), gpu) for path, gpu in parts]
    if not runs:
        raise ResultsError(f"nothing to merge into {out}: no part holds records")
    first = runs[0][0].meta
    devices = []
    meta = {"schema": RUN_SCHEMA,
            "run_id": dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
            "started_at": first.get("started_at"), "ended_at": _now(), "status": status, "command": command,
            "plan": first.get("plan"), "device": first.get("device"), "versions": first.get("versions"),
            "git": first.get("git"), "host": first.get("host"), "timing": first.get("timing"),
            "flush_bytes": first.get("flush_bytes"),
            **{key: first[key] for key in ("spec_note", "flush_method", "settle_s", "settle_s_memory",
                                           "case_timeout_s", "case_timeout_defaults_s", "telemetry")
               if key in first}}
    meta.update(meta_extra)
    records = []
    names = hosts or [(run.meta.get("host") or {}).get("hostname") for run, _ in runs]
    for (run, gpu), host in zip(runs, names):
        device = run.meta.get("device", {})
        tag = host if hosts or len(set(names)) > 1 else None  # a run gathered from several hosts names them
        own = len(devices)
        devices.append({"part": str(run.path), "gpu_index": gpu, "host": host, **device})
        inner = run.meta.get("devices") or []  # a part merged before: its records name their own device
        moved: dict[int, int] = {}
        for rec in run.records:
            index = gpu if gpu is not None else rec.get("gpu_index")
            if index is None and not is_collective(rec):
                index = device.get("index")  # a plain single-GPU run: the GPU it ran on
            # Each record keeps the device it ran on (`device_part`: its entry in `devices`), so a
            # merge of an H100 run and an MI300X run normalizes each against its own spec.
            part = rec.get("device_part")
            if isinstance(part, int) and not isinstance(part, bool) and 0 <= part < len(inner):
                if part not in moved:
                    moved[part] = len(devices)
                    devices.append(dict(inner[part], host=inner[part].get("host") or host))
                part = moved[part]
            else:
                part = own
            records.append(dict(rec, gpu_index=index, host=rec.get("host") or tag, device_part=part))
    meta["devices"] = devices
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
    meta["counts"] = counts
    (out / MEASUREMENTS_FILE).unlink(missing_ok=True)
    writer = RunWriter(out, meta)
    for rec in records:
        writer.append(_Record(rec))
    writer.close()
    return read_run(out)


class _Record:
    """A record read back, written again as it is: fields this module does not know are kept."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return self.data
