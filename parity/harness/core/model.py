"""The value types every suite and the harness share.

An `Op` says what is computed (inputs, work, reference, sweeps); an `Impl` says how one backend
computes it; a `Case` is one frozen point of a sweep; `Work` is what one call does. Kernels declare
work, only the report turns work and time into rates, only the spec files know peaks.
"""
from __future__ import annotations

import json
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Callable, Mapping

# Labels of how a time was taken; the report never puts two of them in one table.
TIMING_EVENTS = "events"  # device events on a GPU
TIMING_WALL = "wall"  # host wall clock, PyTorch on the CPU
TIMING_INTERPRET = "wall-interpret"  # host wall clock of the Triton CPU interpreter

STATUSES = ("ok", "skipped", "failed", "invalid")

# Impl.measure's name for the sampler of work every rank of a group runs at once (measurement/instep.py).
MEASURE_IN_STEP = "in-step"


@dataclass(frozen=True)
class Work:
    """What one call does. Bytes follow each suite's declared convention (stream: BabelStream's)."""

    flops: int
    bytes_read: int
    bytes_written: int
    math_dtype: str  # the dtype whose peak applies ("fp32", "bf16", "fp8", ...)
    # What the bytes cross, so which figure bounds them: "memory" (the spec's memory bandwidth) or
    # "interconnect" (bytes per direction over a GPU's links: a collective's bus bytes).
    bytes_over: str = "memory"
    # The same work counted by another published convention where the suite's tables are compared
    # with one (attention: FlashAttention's 4*B*H*Sq*Sk*D, halved if causal); None elsewhere.
    flops_fa: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"flops": self.flops, "bytes_read": self.bytes_read,
               "bytes_written": self.bytes_written, "math_dtype": self.math_dtype}
        if self.bytes_over != "memory":  # records of memory-bound work stay as they were
            out["bytes_over"] = self.bytes_over
        if self.flops_fa is not None:
            out["flops_fa"] = self.flops_fa
        return out


@dataclass(frozen=True)
class Check:
    """The outcome of comparing an output with its reference."""

    passed: bool
    max_abs_error: float
    tolerance: Mapping[str, float]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "error": self.error, "tolerance": dict(self.tolerance),
                "max_abs_error": self.max_abs_error}


@dataclass(frozen=True)
class Case:
    """One point of a sweep: which op, which implementation, which parameters."""

    suite: str
    op: str
    impl: str
    params: Mapping[str, Any]
    # Overrides of the timing policy's fields for this case (e.g. a longer re-time of the best
    # shape); not part of the key: a case is identified by its parameters.
    policy: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """Stable identity of the case, used to resume a run and to compare runs."""
        return f"{self.suite}/{self.op}/{self.impl}/" + json.dumps(dict(self.params), sort_keys=True)

    def label(self) -> str:
        shown = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.suite} {self.op} {self.impl} {shown}"


@dataclass(frozen=True)
class Op:
    """What is computed, independent of the backend.

    `inputs(params, device)` builds random inputs (never zeros) on the device; `work(params)`
    declares the work of one call; `reference(inputs, params)` gives the expected output and
    `check(output, expected, inputs, params)` compares them. `cache` is "cold" when every sample
    must start from a flushed last-level cache, "warm" when the sweep itself is about caches.
    """

    name: str
    inputs: Callable[[Mapping[str, Any], Any], Any]
    work: Callable[[Mapping[str, Any]], Work]
    reference: Callable[[Any, Mapping[str, Any]], Any]
    check: Callable[[Any, Any, Any, Mapping[str, Any]], Check]
    description: str = ""
    cache: str = "cold"
    metric: str = "TFLOPS"  # the rate the report leads with: "TFLOPS" (compute) or "GB/s" (memory)
    # The math dtype an emulated path really runs (FP4 upcast to "bf16"): the runner declares it in
    # the work of an emulated record, so it is normalized against that peak, never the format's.
    emulated_math_dtype: str | None = None


@dataclass(frozen=True)
class Impl:
    """How one backend computes an op.

    `prepare(inputs, params)` does all setup and returns a thunk that runs the computation once and
    returns its output; only the thunk is timed. `dtypes` and `layouts` declare what it takes
    (others are skipped, naming them); `supports(device, params)` returns None or the reason to skip. `timing(device)` is decided by the backend: Triton on the CPU runs in the
    interpreter.
    """

    name: str
    op: str
    backend: str  # "triton" | "torch"
    prepare: Callable[[Any, Mapping[str, Any]], Callable[[], Any]]
    supports: Callable[[Any, Mapping[str, Any]], str | None] = field(default=lambda device, params: None)
    # "native" where the hardware runs the format, "emulated" where it is upcast (FP4 before
    # sm_100/gfx950); an emulated result is never normalized against the emulated format's peak.
    path: Callable[[Any, Mapping[str, Any]], str] = field(default=lambda device, params: "native")
    _: KW_ONLY  # the optional hooks below are named at every use, so a new one cannot shift another
    # None: the runner times the thunk with timing.measure. Work whose calls must stay in step
    # across processes (collectives: every rank takes the same samples) names MEASURE_IN_STEP (the
    # runner's measurement/instep.py), or brings its own sampler with timing.measure's signature.
    measure: Callable[..., Any] | str | None = None
    # What really runs (a forced SDPA backend and its aten op, an autotuned config), asked after the
    # case has run and recorded in the measurement's `extra`; None records nothing.
    details: Callable[[Any, Mapping[str, Any]], Mapping[str, Any]] | None = None
    # What the implementation takes, declared: the case parameters "dtype" and "layout" (GEMM's
    # NN/NT/TN) it handles; None: every one the suite has. A case outside them is skipped with
    # the reason, before `supports` is asked.
    dtypes: tuple[str, ...] | None = None
    layouts: tuple[str, ...] | None = None

    def skip_reason(self, device, params: Mapping[str, Any]) -> str | None:
        """Why this implementation skips the case: outside its declared dtypes or layouts, else
        its `supports` predicate's answer (None: it runs)."""
        for key, declared in (("dtype", self.dtypes), ("layout", self.layouts)):
            value = params.get(key)
            if declared is not None and value is not None and value not in declared:
                return f"{self.name} declares {key}s {', '.join(declared)}; not {value}"
        return self.supports(device, params)

    def timing(self, device) -> str:
        if device.backend != "cpu":
            return TIMING_EVENTS
        return TIMING_INTERPRET if self.backend == "triton" else TIMING_WALL


class UsageError(ValueError):
    """Bad input from the user: reported as one line and a nonzero exit, never a traceback."""


REASON_CHARS = 500  # a reason is one line in a table, not a stack trace


def one_line(exc: BaseException) -> str:
    """An exception as one line of a record's reason or a message: its type and its text."""
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")[:REASON_CHARS]


@dataclass(frozen=True)
class Suite:
    """A family of ops and the implementations bound to them, with its presets.

    `cases(preset, device, dtypes, sizes)` returns the parameter sets of every op for a preset
    (a sweep may depend on the device, e.g. on its cache size); `dtypes` and `sizes` narrow or
    replace the sweep and are validated by the suite.
    """

    name: str
    description: str
    ops: tuple[Op, ...]
    impls: tuple[Impl, ...]
    presets: tuple[str, ...]
    dtypes: tuple[str, ...]
    params_for: Callable[..., list[tuple[str, dict[str, Any]]]]
    check_sizes: Callable[[list[int], Any], None] | None = None  # None: the suite takes no --size
    size_help: str = ""
    collective: bool = False  # its cases run on every rank of a process group at once (distributed.py)
    # --shape (e.g. GEMM MxNxK): validated by check_shapes, passed to params_for as `shapes=`.
    check_shapes: Callable[[list[tuple[int, ...]], Any], None] | None = None  # None: no --shape
    shape_help: str = ""
    # Cases to run after the preset's, from this suite's records of the run (e.g. re-timing the
    # best shape of a search); None: nothing follows.
    followup: Callable[[list[dict[str, Any]], Any], list[Case]] | None = None

    def op(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def impl_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(impl.name for impl in self.impls))

    def cases(self, preset: str, device, dtypes=None, sizes=None, impls=None, shapes=None) -> list[Case]:
        check_request(self, preset, device, dtypes, sizes, shapes)
        extra = {"shapes": list(shapes)} if shapes else {}
        cases = []
        for op_name, params in self.params_for(preset, device, dtypes or self.dtypes, sizes, **extra):
            for impl in self.impls:
                if impl.op == op_name and (not impls or impl.name in impls):
                    cases.append(Case(self.name, op_name, impl.name, params))
        return cases

    def impl_for(self, case: Case) -> Impl:
        for impl in self.impls:
            if impl.op == case.op and impl.name == case.impl:
                return impl
        raise KeyError(case.key)


@dataclass(frozen=True)
class SuiteMeta:
    """What a suite accepts, declared where it can be read without importing torch or a kernel (a
    suite module imports both, and only after device.detect()): its presets, dtypes and
    implementation names, and its checks of --size and --shape. Bad input is refused from these
    before the device is detected (measurement/plan.py); the Suite itself is built from them by
    `suite()`, so the two cannot disagree.

    `check_sizes(sizes, device)` and `check_shapes(shapes, device)` are the Suite's; they are also
    called with device None (a GPU may be here and is not detected yet): they check what needs no
    device, in their order, and return at the first value that needs one.
    """

    name: str
    presets: tuple[str, ...]
    dtypes: tuple[str, ...]
    impls: tuple[str, ...]  # the implementation names of its ops
    check_sizes: Callable[[list[int], Any], None] | None = None
    check_shapes: Callable[[list[tuple[int, ...]], Any], None] | None = None

    def impl_names(self) -> tuple[str, ...]:
        return self.impls

    def suite(self, *, impls: tuple[Impl, ...], **rest) -> Suite:
        """The Suite with these presets, dtypes and checks; its implementations must carry exactly
        the declared names (a kernel author who adds one declares it here too)."""
        named = {impl.name for impl in impls}
        if named != set(self.impls):
            raise ValueError(f"suite {self.name}: implementations {sorted(named)} are not the declared "
                             f"{sorted(self.impls)} (its SuiteMeta)")
        return Suite(name=self.name, impls=impls, presets=self.presets, dtypes=self.dtypes,
                     check_sizes=self.check_sizes, check_shapes=self.check_shapes, **rest)


def check_request(suite: Suite | SuiteMeta, preset: str, device, dtypes=None, sizes=None, shapes=None) -> bool:
    """A suite's refusals of a preset, dtypes, sizes and shapes: one line each, from the Suite or,
    before the device is detected, from its SuiteMeta (the same fields). True once all is checked;
    False where device None (a GPU may be here) left a size or shape undecided."""
    if preset not in suite.presets:
        raise UsageError(f"suite {suite.name} has no preset {preset!r} (presets: {', '.join(suite.presets)})")
    for dtype in dtypes or ():
        if dtype not in suite.dtypes:
            raise UsageError(f"suite {suite.name} has no dtype {dtype!r} (dtypes: {', '.join(suite.dtypes)})")
    for flag, given, check in (("--size", sizes, suite.check_sizes), ("--shape", shapes, suite.check_shapes)):
        if given:
            if check is None:
                raise UsageError(f"suite {suite.name} does not take {flag}")
            check(list(given), device)
            if device is None:
                return False
    return True
