"""Achieved-efficiency priors: what each platform's software stack reaches on its own hardware.

Data in `priors/*.toml` (one file per vendor): published measured figures per device and op class
(dense GEMM BF16/FP8/FP4 best and at 8192^3, HBM copy/triad, attention forward at head_dim 128),
each with its stack, stack version, conditions, sustained clock where published, and sources. The
efficiency of a figure is its value over the matching peak of the spec of the same id (only the
spec files know peaks). This module has its own loader and strict checks; it reads the spec
database through `specs.get` and never changes it.

`prior(device, op_class)` answers "what fraction of its peak does this device's stack reach on
this op class": from the device's own figures (`measured`), else from the vendor's trend over
generations (`trend`: the same generation's measured parts, else the nearest generations), else
None. The range is the spread of the figures used.
"""
from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parity.harness.core import safeio
from parity.harness.core import specs
from parity.harness.core.model import UsageError

PRIOR_DIR = Path(__file__).with_name("priors")
SCHEMA = 1

# op class -> (peak it is a share of, unit of its figures). Attention is held to the BF16 peak
# (FP16 runs at the same rate on every part in the database, specs.PEAK_KEY).
OP_CLASSES = {
    "gemm_bf16_best": ("bf16", "TFLOPS"), "gemm_bf16_8192": ("bf16", "TFLOPS"),
    "gemm_fp8_best": ("fp8", "TFLOPS"), "gemm_fp8_8192": ("fp8", "TFLOPS"),
    "gemm_fp4_best": ("fp4", "TFLOPS"), "gemm_fp4_8192": ("fp4", "TFLOPS"),
    "hbm_copy": ("memory", "TB/s"), "hbm_triad": ("memory", "TB/s"),
    "attention_fwd_d128": ("bf16", "TFLOPS"),
}
# The nearest other class of the same device, tried when a device has no figure of a class.
NEAREST = {"gemm_bf16_best": "gemm_bf16_8192", "gemm_bf16_8192": "gemm_bf16_best",
           "gemm_fp8_best": "gemm_fp8_8192", "gemm_fp8_8192": "gemm_fp8_best",
           "gemm_fp4_best": "gemm_fp4_8192", "gemm_fp4_8192": "gemm_fp4_best",
           "hbm_copy": "hbm_triad", "hbm_triad": "hbm_copy"}
FIGURE_KEYS = {"device", "op_class", "value", "stack", "stack_version", "conditions", "source", "use", "why",
               "clock_mhz"}
BASES = ("measured", "trend")


class PriorError(Exception):
    """A priors file that breaks the schema; names the file."""


@dataclass(frozen=True)
class PublishedFigure:
    device: str
    op_class: str
    value: float  # in the class's unit
    unit: str
    efficiency: float  # value over the spec's peak
    stack: str
    stack_version: str
    conditions: str
    sources: tuple[str, ...]  # "title (ref)"
    use: bool = True
    why: str | None = None
    clock_mhz: float | None = None


@dataclass(frozen=True)
class Prior:
    device: str
    op_class: str  # the class asked for
    efficiency: float  # median of the figures used (or the trend's value)
    low: float
    high: float
    basis: str  # "measured" | "trend"
    label: str  # what it rests on, in words
    stacks: tuple[str, ...]

    @property
    def text(self) -> str:
        spread = "" if self.low == self.high else f" ({self.low:.1%}-{self.high:.1%})"
        return f"{self.efficiency:.1%}{spread} {self.label}"


@dataclass(frozen=True)
class Priors:
    figures: tuple[PublishedFigure, ...]
    generations: dict[str, tuple[tuple[str, ...], ...]]  # vendor -> generations, oldest first

    def used(self, device: str, op_class: str, exclude: frozenset[str] = frozenset()) -> list[PublishedFigure]:
        return [f for f in self.figures if f.use and f.device == device and f.op_class == op_class
                and device not in exclude]

    def measured_devices(self, op_class: str) -> list[str]:
        return sorted({f.device for f in self.figures if f.use and f.op_class == op_class})


def peak_of(spec, op_class: str) -> float | None:
    kind, _ = OP_CLASSES[op_class]
    if kind == "memory":
        return spec.value("memory_bandwidth_tbps")
    fig = spec.peak(kind)
    return None if fig is None else fig.value


def _parse_figure(data: Any, where: str, sources: dict[str, Any]) -> PublishedFigure:
    if not isinstance(data, dict):
        raise PriorError(f"{where}: expected a table")
    unknown = set(data) - FIGURE_KEYS
    if unknown:
        raise PriorError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("device", "op_class", "value", "stack", "stack_version", "conditions", "source"):
        if key not in data:
            raise PriorError(f"{where}: missing key {key!r}")
    if data["op_class"] not in OP_CLASSES:
        raise PriorError(f"{where}: op_class {data['op_class']!r} is not one of {', '.join(OP_CLASSES)}")
    value = data["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise PriorError(f"{where}: value must be a positive number")
    try:
        spec = specs.get(data["device"])
    except UsageError:
        raise PriorError(f"{where}: device {data['device']!r} is not a spec id") from None
    peak = peak_of(spec, data["op_class"])
    if not peak:
        raise PriorError(f"{where}: spec {spec.id} has no peak for {data['op_class']}")
    if value > peak:
        raise PriorError(f"{where}: {value} is above {spec.id}'s peak {peak} for {data['op_class']}: "
                         "a measured figure never exceeds the peak")
    refs = data["source"]
    if not isinstance(refs, list) or not refs or any(r not in sources for r in refs):
        raise PriorError(f"{where}: source must list ids of this file's [sources] table")
    use = data.get("use", True)
    if not isinstance(use, bool):
        raise PriorError(f"{where}: use must be true or false")
    if not use and not data.get("why"):
        raise PriorError(f"{where}: a figure with use = false says why")
    clock = data.get("clock_mhz")
    if clock is not None and (isinstance(clock, bool) or not isinstance(clock, (int, float)) or clock <= 0):
        raise PriorError(f"{where}: clock_mhz must be a positive number")
    return PublishedFigure(
        device=spec.id, op_class=data["op_class"], value=float(value), unit=OP_CLASSES[data["op_class"]][1],
        efficiency=value / peak, stack=str(data["stack"]), stack_version=str(data["stack_version"]),
        conditions=str(data["conditions"]),
        sources=tuple(f"{sources[r]['title']} ({sources[r]['ref']})" for r in refs),
        use=use, why=data.get("why"), clock_mhz=clock)


def parse(path: Path) -> tuple[str, tuple[tuple[str, ...], ...], list[PublishedFigure]]:
    where = path.name
    try:
        data = safeio.load_toml(path, "prior", where)  # a regular file of a few MiB, nesting bounded
    except safeio.FileRefused as exc:
        raise PriorError(str(exc)) from None
    unknown = set(data) - {"schema", "vendor", "generations", "figure", "sources"}
    if unknown:
        raise PriorError(f"{where}: unknown keys {sorted(unknown)}")
    if data.get("schema") != SCHEMA:
        raise PriorError(f"{where}: schema must be {SCHEMA}")
    vendor = data.get("vendor")
    sources = data.get("sources") or {}
    for sid, src in sources.items():
        if not isinstance(src, dict) or not src.get("title") or not src.get("ref"):
            raise PriorError(f"{where}: sources.{sid} needs a title and a ref")
    generations = data.get("generations")
    if not isinstance(generations, list) or not all(isinstance(g, list) and g for g in generations):
        raise PriorError(f"{where}: generations must be a list of lists of spec ids")
    seen = set()
    for gen in generations:
        for sid in gen:
            try:
                spec = specs.get(sid)
            except UsageError:
                raise PriorError(f"{where}: generations name {sid!r}, which is not a spec id") from None
            if spec.vendor != vendor:
                raise PriorError(f"{where}: {sid} is a {spec.vendor} part, not {vendor}")
            if sid in seen:
                raise PriorError(f"{where}: {sid} appears twice in generations")
            seen.add(sid)
    figures = [_parse_figure(f, f"{where} figure {i + 1}", sources) for i, f in enumerate(data.get("figure") or [])]
    for fig in figures:
        if fig.device not in seen:
            raise PriorError(f"{where}: {fig.device} has figures but is in no generation")
    return vendor, tuple(tuple(g) for g in generations), figures


@functools.lru_cache(maxsize=None)
def load_all(directory: Path = PRIOR_DIR) -> Priors:
    figures, generations = [], {}
    for path in sorted(directory.glob("*.toml")):
        vendor, gens, figs = parse(path)
        if vendor in generations:
            raise PriorError(f"{path.name}: a second file for vendor {vendor!r}")
        generations[vendor] = gens
        figures.extend(figs)
    return Priors(figures=tuple(figures), generations=generations)


def _summary(effs: list[float]) -> tuple[float, float, float]:
    return statistics.median(effs), min(effs), max(effs)


def _own(db: Priors, device: str, op_class: str, exclude: frozenset[str]) -> Prior | None:
    for cls in (op_class, NEAREST.get(op_class)):
        figs = db.used(device, cls, exclude) if cls else []
        if figs:
            mid, lo, hi = _summary([f.efficiency for f in figs])
            where = "" if cls == op_class else f" of {cls}"
            label = f"measured{where}: {len(figs)} published figure(s) on {device}"
            return Prior(device, op_class, mid, lo, hi, "measured", label, tuple(sorted({f.stack for f in figs})))
    return None


def _trend(db: Priors, device: str, op_class: str, exclude: frozenset[str]) -> Prior | None:
    """The vendor's trend over generations, for a device without a figure of the class."""
    vendor = specs.get(device).vendor
    gens = db.generations.get(vendor, ())
    index = next((i for i, g in enumerate(gens) if device in g), None)
    if index is None:
        return None

    def figures_of(d: str) -> list[PublishedFigure]:  # a part's own class, else its nearest class
        return db.used(d, op_class, exclude) or (db.used(d, NEAREST[op_class], exclude) if op_class in NEAREST else [])

    per_gen = {}  # generation index -> (median efficiency, parts, stacks, efficiencies)
    for i, gen in enumerate(gens):
        figs = [f for d in gen if d != device for f in figures_of(d)]
        if figs:
            effs = [f.efficiency for f in figs]
            per_gen[i] = (statistics.median(effs), sorted({f.device for f in figs}), {f.stack for f in figs}, effs)
    if not per_gen:
        return None
    stacks = tuple(sorted(set().union(*(g[2] for g in per_gen.values()))))
    steps = ", ".join(f"{'+'.join(g[1])} {g[0]:.1%}" for _, g in sorted(per_gen.items()))
    if index in per_gen:  # a measured part of the same generation
        eff, _, _, effs = per_gen[index]
        return Prior(device, op_class, eff, min(effs), max(effs), "trend", f"trend: same generation ({steps})", stacks)
    lower = [i for i in per_gen if i < index]
    upper = [i for i in per_gen if i > index]
    if lower and upper:  # between two measured generations: linear in the generation index
        a, b = max(lower), min(upper)
        ea, eb = per_gen[a][0], per_gen[b][0]
        eff = ea + (eb - ea) * (index - a) / (b - a)
        return Prior(device, op_class, eff, min(ea, eb), max(ea, eb), "trend",
                     f"trend: between generations ({steps})", stacks)
    if lower:  # newer than every measured part: the newest measured generation, its range widened
        a = max(lower)  # by the step from the generation before it, carried on one step per generation
        eff = per_gen[a][0]
        values = [eff]
        if len(lower) > 1:
            prev = max(i for i in lower if i < a)
            step = (per_gen[a][0] - per_gen[prev][0]) / (a - prev)
            values += [per_gen[prev][0], min(1.0, max(0.0, eff + step * (index - a)))]
            label = f"trend: newest measured generation, range to the extrapolated step ({steps})"
        else:
            label = f"trend: newest measured generation ({steps})"
        return Prior(device, op_class, eff, min(values), max(values), "trend", label, stacks)
    b = min(upper)  # older than every measured part
    values = [per_gen[i][0] for i in upper]
    return Prior(device, op_class, per_gen[b][0], min(values), max(values), "trend",
                 f"trend: nearest newer generation ({steps})", stacks)


def prior(device: str, op_class: str, exclude: frozenset[str] = frozenset(), db: Priors | None = None) -> Prior | None:
    """The achieved efficiency of `device`'s stack on `op_class`; `exclude` hides devices'
    figures (leave-one-out validation). None when neither the device nor its vendor has a figure."""
    if op_class not in OP_CLASSES:
        raise ValueError(f"unknown op class {op_class!r}")
    db = db or load_all()
    return _own(db, device, op_class, exclude) or _trend(db, device, op_class, exclude)
