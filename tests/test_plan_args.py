"""Every option reaches every process: the command line of each process parity starts (CPU and GPU
workers, the collective suites' launcher, the ranks) rebuilds the run plan field for field."""
from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from parity.harness import cli
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, read_records
from parity.harness.measurement import runner
from parity.harness.measurement.plan import RunPlan
from parity.harness.scaleout import distributed, group, multigpu
from test_cli import parity

# A value other than the default for every field of RunPlan. A new field must be added here AND be
# carried by distributed.plan_args: the first test says so when it is not.
SAMPLES = {
    "suites": ("stream", "gemm", "collectives"),
    "preset": "smoke",
    "impls": ("torch",),
    "dtypes": ("fp32",),
    "sizes_bytes": (4096, 1 << 20),
    "time_cap_s": 0.25,
    "settle_s": 0.125,
    "min_time_s": 0.0625,
    "case_timeout_s": 42.0,
    "ranks": 2,  # within the 2 cores CI has (limits refuse more ranks than cores)
    "cpu_threads": 1,  # within any machine's CPUs
    "shapes": ((24, 40, 56), (7, 9, 11)),
}


class Captured(Exception):
    def __init__(self, plan):
        self.plan = plan


def plan_of(argv: list[str], monkeypatch) -> RunPlan:
    """The plan `parity run ARGV` builds, caught where it would start running."""
    def catch(plan, *a, **k):
        raise Captured(plan)

    monkeypatch.setattr(runner, "execute", catch)
    monkeypatch.setattr(multigpu, "run_all", catch)
    monkeypatch.setattr(group, "dispatch", lambda plan, *a, **k: catch(plan))
    with pytest.raises(Captured) as caught:
        cli.main(["run", *argv])
    return caught.value.plan


@pytest.fixture
def plan():
    fields = {f.name for f in dataclasses.fields(RunPlan)}
    assert fields == set(SAMPLES), (
        f"RunPlan fields {sorted(fields ^ set(SAMPLES))} are new or gone: carry them in distributed.plan_args "
        "and give them a sample value here")
    made = RunPlan(**SAMPLES)
    for name, value in SAMPLES.items():
        assert getattr(made, name) != getattr(RunPlan(suites=("x",)), name) or name == "suites", name
    return made


def test_plan_args_rebuild_every_field(plan, tmp_path, monkeypatch):
    assert plan_of([*distributed.plan_args(plan), "--out", str(tmp_path / "r")], monkeypatch) == plan
    bare = RunPlan(suites=("gemm",))  # nothing given: nothing added, defaults come back
    assert plan_of([*distributed.plan_args(bare), "--out", str(tmp_path / "r")], monkeypatch) == bare


def _argv_after_run(cmd: list[str]) -> list[str]:
    assert cmd[1:4] == ["-m", "parity", "run"], cmd
    return cmd[4:]


def test_cpu_and_gpu_workers_get_the_whole_plan(plan, tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(multigpu.subprocess, "Popen",
                        lambda cmd, **kw: started.append(cmd) or SimpleNamespace(poll=lambda: 0, wait=lambda **k: 0))
    local = dataclasses.replace(plan, suites=("stream", "gemm"))
    parts = [(tmp_path / "gpus" / f"gpu-{i}", i) for i in range(2)]
    (tmp_path / "gpus").mkdir()
    assert multigpu._run_workers(local, parts, resume=False, cpu=True, timeout_s=10.0) is None
    assert len(started) == 2
    for cmd in started:
        assert plan_of(_argv_after_run(cmd), monkeypatch) == local


def test_the_collective_launcher_and_its_ranks_get_the_whole_plan(plan, tmp_path, monkeypatch, cpu_device):
    calls, dispatch = [], group.dispatch
    monkeypatch.setattr(multigpu.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    from parity.harness.measurement import registry

    # The options of the other suites stay with them: collectives take no --shape.
    collective = multigpu.narrowed(plan, [registry.load("collectives")])
    assert collective.suites == ("collectives",) and collective.shapes == () and collective.ranks == plan.ranks
    assert multigpu._run_collectives(collective, tmp_path / "collectives", timeout_s=10.0) is None
    assert plan_of(_argv_after_run(calls[0]), monkeypatch) == collective

    launched = []
    monkeypatch.setattr(group, "launch", lambda n, out, args, timeout_s, *rest: launched.append((n, args)) or 0)
    monkeypatch.delenv("RANK", raising=False)
    assert dispatch(plan, cpu_device, tmp_path / "run", resume=False, timeout_s=10.0) == 0
    n, args = launched[0]
    assert n == 2 and args.count("--ranks") == 1
    assert plan_of(args, monkeypatch) == plan  # every rank runs `parity run ARGS`


def test_a_follower_rank_times_its_cases_with_rank_zeros_plan(plan):
    from parity.harness.core.model import Case

    task = json.loads(distributed._task(Case("collectives", "all_reduce", "torch", {"n": 1}), plan))
    rebuilt = dataclasses.replace(RunPlan.from_dict(task["plan"]), suites=plan.suites)
    assert rebuilt == plan and rebuilt.settle_s == 0.125


def test_a_shape_given_with_cpu_workers_is_the_only_shape_of_every_worker(tmp_path):
    """The run is started by main() in this process (the plan is built here as the entry point
    builds it); its two workers are real processes, started with the command line under test."""
    out = tmp_path / "run"
    proc = parity("run", "gemm", "--shape", "24x40x56", "--cpu-workers", "2", "--impl", "torch", "--time-cap-s", "0.05",
                  "--settle-s", "0", "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = [out / "gpus" / "gpu-0", out / "gpus" / "gpu-1", out]
    for folder in folders:
        records, _ = read_records(folder / MEASUREMENTS_FILE)
        assert records, folder
        assert {(r["params"]["m"], r["params"]["n"], r["params"]["k"]) for r in records} == {(24, 40, 56)}, folder
        plan = json.loads((folder / RUN_FILE).read_text())["plan"]
        assert plan["shapes"] == [[24, 40, 56]] and plan["settle_s"] == 0, folder


def test_a_part_of_a_multi_suite_run_keeps_only_its_own_options(plan):
    from parity.harness.measurement import registry

    gemm, coll = registry.load("gemm"), registry.load("collectives")
    assert multigpu.narrowed(plan, []) is None
    assert multigpu.narrowed(plan, [gemm]) is None  # fp32 is not a GEMM dtype: the gemm part has nothing
    shapes_only = dataclasses.replace(plan, sizes_bytes=(), dtypes=("bf16",))
    assert multigpu.narrowed(shapes_only, [coll]) is None  # the shapes were for gemm: no collective runs
    part = multigpu.narrowed(shapes_only, [gemm])
    assert part.suites == ("gemm",) and part.shapes == plan.shapes and part.dtypes == ("bf16",)
    assert multigpu.narrowed(dataclasses.replace(plan, dtypes=("fp8",)), [coll]) is None  # fp8 is gemm's only
