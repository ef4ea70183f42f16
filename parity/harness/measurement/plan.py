"""What a run is asked to do: the plan the CLI and the API build, recorded in run.json so a run can resume."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from parity.harness.core import limits
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
