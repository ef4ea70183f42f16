"""`parity submit`: a run on several nodes of a Slurm cluster through submitit, gathered into one.

One job per node, as a job array (`executor.map_array`, harness-method.md section 6.4): each task
runs `parity run` with the arguments given after `--` (typically `--all-gpus`) into
OUT/nodes/node-N/, on its node. This process waits for the jobs, then merges the node runs into
OUT (multigpu.merge: every record tagged with its node and GPU) and prints the report. submitit
keeps its scripts and logs in OUT/slurm/. `--local` runs the same jobs on this machine with
submitit's local executor (tests, and a dry run before a cluster). Under an existing sbatch script,
run `parity run` once per node with srun and `parity merge` afterwards (README).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from parity.harness.core.model import UsageError
from parity.harness.core.ranks import EXIT_RANK

NODES_DIR = "nodes"
SLURM_DIR = "slurm"
SUBMITTED_FILE = "submitted.json"  # --no-wait: the jobs and the command that gathers them


def node_job(run_args: list[str], part: str) -> dict[str, Any]:
    """What each job runs on its node: `parity run ARGS --out PART`, as a child process, as the
    multi-GPU runner starts its workers (process machinery never calls back into the CLI)."""
    code = subprocess.call([sys.executable, "-m", "parity", "run", *run_args, "--out", part])
    return {"part": part, "code": code, "host": socket.gethostname()}


def check_suites(names: tuple[str, ...]) -> None:
    """Suite names are checked here, before a job waits in the queue; presets, dtypes and sizes are
    checked on the node (they live in the suite modules, which import the kernels: not on a login
    node). The CLI has checked the rest of the run's arguments."""
    from parity.harness.measurement import registry

    known = registry.suite_names()
    for name in names:
        if name not in known:
            raise UsageError(f"unknown suite {name!r} (suites: {', '.join(known)})")


def submit(run_args: list[str], out: Path, nodes: int, local: bool, parameters: dict[str, Any], show,
           suites: tuple[str, ...] = (), wait: bool = True) -> int:
    try:
        import submitit
    except ImportError:
        raise UsageError("parity submit needs submitit: pip install 'parity[slurm]'") from None
    from parity.harness.scaleout import multigpu

    if nodes < 1:
        raise UsageError("--nodes must be 1 or more")
    if not run_args:
        raise UsageError("give the run's arguments after --, e.g. parity submit --nodes 2 -- --all-gpus")
    check_suites(suites)
    if not local and shutil.which("sbatch") is None:
        raise UsageError("no Slurm here (sbatch is not on PATH): submit from a login node, or --local to run "
                         "the jobs on this machine")
    from parity.harness.core.results import held_run

    if held_run(out):  # the gathered run would replace it: `--out A` (or a link to A) destroyed run A
        raise UsageError(f"{out} already holds a run ({held_run(out)}): choose another --out")
    if (out / NODES_DIR).exists() and any((out / NODES_DIR).iterdir()):
        raise UsageError(f"{out} already holds a submitted run: choose another --out")
    executor = submitit.AutoExecutor(folder=out / SLURM_DIR / "%j", cluster="local" if local else "slurm")
    executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
    parts = [out / NODES_DIR / f"node-{i}" for i in range(nodes)]
    jobs = executor.map_array(node_job, [run_args] * nodes, [str(p) for p in parts])
    print(f"parity: submitted {nodes} job(s): {', '.join(job.job_id for job in jobs)}; logs in {out / SLURM_DIR}",
          file=sys.stderr, flush=True)
    if not wait:
        return _leave(out, parts, jobs, run_args)
    failures, done = [], []
    for i, job in enumerate(jobs):
        try:
            result = job.result()
        except Exception as exc:  # noqa: BLE001 - submitit's errors carry the job's traceback: keep one line
            failures.append(f"node {i} (job {job.job_id}) failed: {str(exc).strip().splitlines()[-1][:300]}")
            continue
        if result["code"] not in (0, 1):
            failures.append(f"node {i} ({result['host']}, job {job.job_id}) ended with status {result['code']} "
                            f"(see {out / SLURM_DIR})")
        done.append((Path(result["part"]), result["host"]))
    present = [(p, h) for p, h in done if (p / "run.json").exists()]
    if present:
        run = multigpu.merge([(p, None) for p, _ in present], out, ["parity", "submit", *run_args],
                             {"nodes": [{"part": str(p.relative_to(out)), "host": h} for p, h in present]},
                             status="failed" if failures else "complete",
                             hosts=node_labels([h for _, h in present]))
        show(run)  # the command prints the gathered run's tables
    for line in failures:
        print(f"parity: error: {line}", file=sys.stderr)
    if failures:
        return EXIT_RANK
    print(f"parity: {nodes} node(s) gathered in {out}", file=sys.stderr)
    return 0


def _leave(out: Path, parts: list[Path], jobs, run_args: list[str]) -> int:
    """--no-wait: note what was submitted in OUT/submitted.json and say how to gather it later."""
    from parity.harness.core.results import write_json_atomic

    gather = ["parity", "merge", *map(str, parts), "--out", str(out)]
    write_json_atomic(out / SUBMITTED_FILE, {"jobs": [job.job_id for job in jobs], "parts": [str(p) for p in parts],
                                             "run_args": list(run_args), "gather": gather})
    print(f"parity: not waiting; when the jobs are done ({out / SUBMITTED_FILE}), gather them with: "
          f"{' '.join(gather)}", file=sys.stderr)
    return 0


def node_labels(hosts: list[str]) -> list[str]:
    """Each node's name in the merged records: its host name, numbered where two share one
    (jobs of the local executor, or two array tasks on one node)."""
    return [h if hosts.count(h) == 1 else f"{h}#{i}" for i, h in enumerate(hosts)]
