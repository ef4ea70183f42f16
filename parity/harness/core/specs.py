"""The spec database: what each device promises, loaded from `specs/*.toml` (data, no code).

Peaks are dense and per GPU, in TFLOPS (int8 in TOPS). Every figure carries its sources and a
confidence (`datasheet`, `announced`, `projected`); an unreleased part keeps each published variant
and a range. Only this module and the data files know peaks; the report asks for them here.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity.harness.core import safeio
from parity.harness.core import specschema
from parity.harness.core.model import UsageError

SPEC_DIR = Path(__file__).with_name("specs")
SPECS_PATH_ENV = "PARITY_SPECS_PATH"  # more folders of spec files, ':'-separated (os.pathsep)
PEAK_DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp8", "fp6", "fp4", "int8")
CONFIDENCES = ("datasheet", "announced", "projected")
# Math dtypes of work that share a peak: fp16 runs at the bf16 rate on every part in the database.
PEAK_KEY = {"fp16": "bf16", "e4m3": "fp8", "e5m2": "fp8", "mxfp4": "fp4", "nvfp4": "fp4"}


DEVICE_MEMORY_SHARE = 0.996  # the mean of the four device reports in DeviceSpec.memory_bytes


def device_bytes(memory_gb: float) -> float:
    """Bytes a program sees on a part sold with `memory_gb` of HBM (DeviceSpec.memory_bytes)."""
    return memory_gb * 2**30 * DEVICE_MEMORY_SHARE


class SpecError(Exception):
    """A spec file that breaks the schema; names the file."""


@dataclass(frozen=True)
class Figure:
    """One sourced figure; `value` is None where the hardware lacks it or it is unpublished."""

    value: float | None
    source: tuple[str, ...]
    confidence: str
    note: str | None = None
    supported: bool = True
    range: tuple[float, float] | None = None
    variants: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # sparse, vector, matrix, clock_mhz, ...

    @property
    def bounds(self) -> tuple[float, float] | None:
        """Lowest and highest published reading: the range, else the value."""
        if self.range:
            return self.range
        return None if self.value is None else (self.value, self.value)

    @classmethod
    def parse(cls, data: dict[str, Any], where: str) -> "Figure":
        if not isinstance(data, dict):
            raise SpecError(f"{where}: expected a table")
        source = tuple(data.get("source") or ())
        if not source:
            raise SpecError(f"{where}: no source")
        if data.get("confidence") not in CONFIDENCES:
            raise SpecError(f"{where}: confidence must be one of {', '.join(CONFIDENCES)}")
        rng = data.get("range")
        if rng is not None and (len(rng) != 2 or rng[0] > rng[1]):
            raise SpecError(f"{where}: range must be [low, high]")
        known = {"value", "source", "confidence", "note", "supported", "range", "variants"}
        return cls(value=data.get("value"), source=source, confidence=data["confidence"],
                   note=data.get("note"), supported=data.get("supported", True),
                   range=tuple(rng) if rng else None, variants=tuple(data.get("variants") or ()),
                   extra={k: v for k, v in data.items() if k not in known})


@dataclass(frozen=True)
class DeviceSpec:
    id: str
    name: str
    vendor: str
    status: str
    architecture: str
    arch: str
    memory_type: str
    fp8_format: str
    fp4_hardware: bool
    match_backend: str
    match_arch: str
    name_regex: str
    figures: dict[str, Figure]
    peaks: dict[str, Figure]
    sources: dict[str, dict[str, str]]
    identity_source: tuple[str, ...]
    identity_confidence: str
    identity_note: str | None
    disagreements: tuple[str, ...]
    path: Path

    def figure(self, name: str) -> Figure | None:
        return self.figures.get(name)

    def value(self, name: str) -> float | None:
        fig = self.figures.get(name)
        return None if fig is None else fig.value

    def peak(self, math_dtype: str | None) -> Figure | None:
        """The dense peak for a math dtype, or None where the hardware lacks it or it is unknown."""
        fig = self.peaks.get(PEAK_KEY.get(math_dtype or "", math_dtype or ""))
        return fig if fig is not None and fig.supported and fig.value is not None else None

    @property
    def memory_gbps(self) -> float | None:
        tbps = self.value("memory_bandwidth_tbps")
        return None if tbps is None else tbps * 1e3

    @property
    def memory_bytes(self) -> float | None:
        """The memory a program sees: the vendors' HBM "GB" are binary, less what the driver keeps.
        nvidia-smi totals 81559 MiB on H100 80GB, 143771 MiB on H200 141GB, 183359 MiB on B200
        180GB (99.48-99.58 % of those GiB); rocm-smi 205822885888 B on MI300X 192GB (99.84 %)."""
        gb = self.value("memory_gb")
        return None if not gb else device_bytes(gb)

    @property
    def llc_bytes(self) -> int | None:
        mib = self.value("llc_mib")
        return None if mib is None else int(mib * 2**20)

    def matches(self, backend: str, arch: str, name: str) -> bool:
        return (backend == self.match_backend and arch == self.match_arch
                and re.search(self.name_regex, name or "", re.IGNORECASE) is not None)


def parse(path: Path) -> DeviceSpec:
    where = path.name if path.parent == SPEC_DIR else str(path)  # a file from outside: its whole path
    try:
        data = safeio.load_toml(path, "spec", where)  # a regular file of a few MiB, nesting bounded
    except safeio.FileRefused as exc:
        raise SpecError(str(exc)) from None
    try:
        specschema.check(data, where)
    except specschema.SchemaError as exc:
        raise SpecError(str(exc)) from None
    try:
        match = data["match"]
        spec = DeviceSpec(
            id=data["id"], name=data["name"], vendor=data["vendor"], status=data["status"],
            architecture=data["architecture"], arch=data["arch"], memory_type=data["memory_type"],
            fp8_format=data["fp8_format"], fp4_hardware=bool(data["fp4_hardware"]),
            match_backend=match["backend"], match_arch=match["arch"], name_regex=match["name_regex"],
            figures={k: Figure.parse(v, f"{where} figures.{k}") for k, v in data.get("figures", {}).items()},
            peaks={k: Figure.parse(v, f"{where} peak_tflops.{k}") for k, v in data.get("peak_tflops", {}).items()},
            sources=data.get("sources", {}),
            identity_source=tuple(data.get("identity_source") or ()),
            identity_confidence=data.get("identity_confidence", ""),
            identity_note=data.get("identity_note"),
            disagreements=tuple(data.get("disagreements") or ()),
            path=path,
        )
    except KeyError as exc:
        raise SpecError(f"{where}: missing key {exc}") from None
    if spec.id != path.stem:
        raise SpecError(f"{where}: id {spec.id!r} differs from the file name")
    for name, value, allowed in (("identity_confidence", spec.identity_confidence, CONFIDENCES),
                                 ("status", spec.status, ("shipping", "announced")),
                                 ("fp8_format", spec.fp8_format, ("ocp", "fnuz", "none")),
                                 ("match.backend", spec.match_backend, ("cuda", "rocm"))):
        if value not in allowed:
            raise SpecError(f"{where}: {name} must be one of {', '.join(allowed)}")
    unknown = set(spec.peaks) - set(PEAK_DTYPES)
    if unknown:
        raise SpecError(f"{where}: unknown peak dtypes {sorted(unknown)}")
    return spec


def search_path() -> tuple[Path, ...]:
    """The package's spec folder, then the folders in PARITY_SPECS_PATH, in order."""
    extra = [Path(p) for p in os.environ.get(SPECS_PATH_ENV, "").split(os.pathsep) if p.strip()]
    for folder in extra:
        if not folder.is_dir():
            raise SpecError(f"{SPECS_PATH_ENV}: {folder} is not a folder")
    return (SPEC_DIR, *extra)


def load_all(directory: Path | None = None) -> dict[str, DeviceSpec]:
    """Every spec by id: of one folder, or of the package and PARITY_SPECS_PATH."""
    return _load((directory,) if directory is not None else search_path())


@functools.lru_cache(maxsize=None)
def _load(folders: tuple[Path, ...]) -> dict[str, DeviceSpec]:
    out: dict[str, DeviceSpec] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.toml")):
            spec = parse(path)
            if spec.id in out:
                raise SpecError(f"{path}: spec id {spec.id!r} is already defined by {out[spec.id].path}")
            out[spec.id] = spec
    return out


def get(spec_id: str) -> DeviceSpec:
    specs = load_all()
    if spec_id not in specs:
        raise UsageError(f"unknown spec {spec_id!r} (known: {', '.join(sorted(specs))})")
    return specs[spec_id]


def conflicts(extra: DeviceSpec | None = None) -> list[str]:
    """Spec files that claim one device name: the same backend and arch, and one's name_regex
    matching the other's own name (or the very same regex). A device of that name would match both
    and be refused (identity.identify). `extra`: a file being checked, against every loaded one."""
    known = list(load_all().values())
    pairs = [(extra, s) for s in known if Path(s.path).resolve() != Path(extra.path).resolve()] if extra else \
        [(a, b) for i, a in enumerate(known) for b in known[i + 1:]]
    out = []
    for a, b in pairs:
        if (a.match_backend, a.match_arch) != (b.match_backend, b.match_arch):
            continue
        same = a.name_regex.strip().lower() == b.name_regex.strip().lower()
        if same or a.matches(b.match_backend, b.match_arch, b.name) or b.matches(a.match_backend, a.match_arch, a.name):
            out.append(f"{a.path} ({a.id}) and {b.path} ({b.id}) both match "
                       f"{'the name pattern /' + a.name_regex + '/' if same else 'one device name'}")
    return out
