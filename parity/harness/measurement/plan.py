"""What a run is asked to do: the plan the CLI and the API build, recorded in run.json so a run can
resume; and which suites take which of its names, sizes and shapes (`choose`), refused early from
the suites' light metadata (`check_early`) and again from the suites themselves (runner.plan_cases)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from parity.harness.core import limits
from parity.harness.core.model import UsageError, check_request
from parity.harness.core.results import RUN_FILE, ResultsError


@dataclass(frozen=True)
class RunPlan:
    """What to run; built by the CLI (or a test) and recorded in run.json so a run can resume."""

    suites: tuple[str, ...]
    preset: str = "quick"
    impls: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    sizes_bytes: tuple[int, ...] = ()
    time_cap_s: float | None = None
    settle_s: float | None = None  # idle before each timed case; None: telemetry.settle_seconds decides
    ranks: int | None = None  # processes of a collective suite (None: one per GPU, 2 on the CPU)
    shapes: tuple[tuple[int, ...], ...] = ()  # e.g. GEMM (M, N, K), replacing a preset's shapes
    min_time_s: float | None = None  # least sampling time per case; None: the timing policy's (0.5 s on a GPU)
    case_timeout_s: float | None = None  # wall-clock limit of one case (None: supervisor's default here)
    cpu_threads: int | None = None  # PyTorch's CPU threads while a CPU case runs (None: threads.default_threads)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunPlan":
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["shapes"] = tuple(tuple(shape) for shape in fields.get("shapes", ()))
        return cls(**fields)

    @classmethod
    def recorded(cls, meta: dict[str, Any], path: Path) -> "RunPlan":
        """The plan a run folder's run.json recorded, checked field by field: a damaged one is a
        one-line ResultsError, not a traceback deep in the runner."""
        data = meta.get("plan")
        problem = None
        if not isinstance(data, dict) or not isinstance(data.get("suites"), list) or not data["suites"]:
            problem = "it names no suites"
        else:
            for name in ("suites", "impls", "dtypes"):
                if not all(isinstance(v, str) for v in data.get(name) or ()):
                    problem = f"its {name} are not names"
            if not all(isinstance(v, int) and v > 0 for v in data.get("sizes_bytes") or ()):
                problem = "its sizes are not byte counts"
            if not all(isinstance(v, list) and all(isinstance(d, int) and d > 0 for d in v)
                       for v in data.get("shapes") or ()):
                problem = "its shapes are not lists of dimensions"
            for name in ("time_cap_s", "settle_s", "min_time_s", "case_timeout_s"):
                why = limits.seconds_problem(name, data.get(name))
                if why:
                    problem = f"its {name} {why}"
            ranks = data.get("ranks")
            if ranks is not None and (isinstance(ranks, bool) or not isinstance(ranks, int)
                                      or not 1 <= ranks <= limits.MAX_RANKS):
                problem = f"its ranks {ranks!r} is not a count from 1 to {limits.MAX_RANKS}"
            threads = data.get("cpu_threads")
            if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                        or not 1 <= threads <= limits.MAX_CPU_THREADS):
                problem = f"its cpu_threads {threads!r} is not a count from 1 to {limits.MAX_CPU_THREADS}"
            if not isinstance(data.get("preset", "quick"), str):
                problem = "its preset is not a name"
        if problem:
            raise ResultsError(f"{path / RUN_FILE}: the recorded plan is damaged ({problem}): start a new run instead")
        return cls.from_dict(data)


def choose(suites, plan: RunPlan, device, more_impls: bool = False):
    """Per suite of the plan, the dtypes, sizes and shapes its cases get, as (suite, dtypes, sizes,
    shapes); an unknown name or an impossible size is a UsageError. `suites` are Suites (after the
    device is detected) or their SuiteMetas (before: `device` None where a GPU may be here); one
    code for both, so the early refusals are the late ones, line for line. None where it cannot
    decide: `more_impls` (plugins may add an implementation it does not know), or device None
    before a size or shape."""
    known_impls = {name for suite in suites for name in suite.impl_names()}
    for impl in plan.impls:
        if impl not in known_impls:
            if more_impls:
                return None
            raise UsageError(f"unknown implementation {impl!r} (implementations: {', '.join(sorted(known_impls))})")
    several = len(suites) > 1
    for flag, given, takes in (("--size", plan.sizes_bytes, "check_sizes"), ("--shape", plan.shapes, "check_shapes")):
        if given and several and not any(getattr(suite, takes) for suite in suites):
            raise UsageError(f"no suite of this run takes {flag}")
    picks = []
    for suite in suites:
        dtypes = [d for d in plan.dtypes if d in suite.dtypes] if several else list(plan.dtypes)
        if plan.dtypes and not dtypes:
            continue  # a dtype given for another suite of a multi-suite run
        sizes, shapes = list(plan.sizes_bytes), list(plan.shapes)
        if several and (sizes or shapes):
            # In a run of several suites, --size and --shape pick the suites they are about; each
            # of those gets the option it takes (stream sizes, GEMM shapes), the others are left out.
            sizes, shapes = (sizes if suite.check_sizes else []), (shapes if suite.check_shapes else [])
            if not (sizes or shapes):
                continue
        if not check_request(suite, plan.preset, device, dtypes, sizes, shapes):
            return None
        picks.append((suite, dtypes, sizes, shapes))
    if plan.dtypes:
        all_dtypes = {d for suite in suites for d in suite.dtypes}
        for dtype in plan.dtypes:
            if dtype not in all_dtypes:
                raise UsageError(f"unknown dtype {dtype!r} (dtypes: {', '.join(sorted(all_dtypes))})")
    return picks


def check_early(suites=(), preset=None, impls=(), dtypes=(), sizes=(), shapes=()) -> None:
    """What runner.plan_cases refuses that the suites' light metadata decides, before the device is
    detected (torch's import alone takes 1.5 s or more). A plugin suite has none: with one in the
    run, plan_cases decides it all. Sizes and shapes that must fit the device are checked here only
    where no GPU can be here (the CPU is the device then, described without torch)."""
    from parity.harness.core import device as device_mod
    from parity.harness.measurement import registry

    chosen = tuple(suites) or tuple(registry.suite_names())
    metas = [registry.light(name) for name in chosen]
    if not metas or None in metas:
        return
    request = RunPlan(suites=chosen, preset=preset or "quick", impls=tuple(impls), dtypes=tuple(dtypes),
                      sizes_bytes=tuple(sizes), shapes=tuple(shapes))
    device = None if device_mod.gpu_may_be_here() else device_mod.cpu_info()
    choose(metas, request, device, more_impls=bool(registry.plugins(registry.IMPLS_GROUP)))
