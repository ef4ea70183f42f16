"""Which spec a detected GPU is, from what its hardware reports, not only from its marketing name.

In a ROCm container without libdrm's `amdgpu.ids` an MI300X or MI355X calls itself "AMD Radeon
Graphics" (pytorch#144203), and a partitioned GPU keeps its name while losing most of its CUs. So a
spec's `[match]` table describes the hardware too, and a device is matched in this order:

1. backend and arch must agree (`backend`, `arch`);
2. the readings must fit: `compute_units` (SMs or CUs as torch reports them, an int or a list) and
   `memory_gib_min` / `memory_gib_max` (torch's total memory, GiB). A reading the device lacks (an
   old run.json) fits anything;
3. among the specs that fit, the one whose `name_regex` matches the name, or whose `market_names`
   holds amdsmi's market name;
4. failing a name, the one spec that fits by hardware alone, if the spec states both its compute
   units and its memory and the device reported both.

A name that matches a spec whose hardware the device contradicts (an MI300X partition with 38 CUs
and 24 GiB) matches nothing: its per-GPU peaks would be wrong. Everything unmatched says why.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from parity.harness.core import safeio
from parity.harness.core import specs
from parity.harness.core.specs import DeviceSpec
from parity.harness.core.specschema import MATCH_KEYS as _SCHEMA_MATCH_KEYS

GIB = 2**30
HARDWARE_KEYS = ("compute_units", "memory_gib_min", "memory_gib_max")
MATCH_KEYS = tuple(_SCHEMA_MATCH_KEYS)  # one list: the schema's


@dataclass(frozen=True)
class Reading:
    """What a device reports about itself; None where it was not read."""

    backend: str
    arch: str
    name: str
    compute_units: int | None = None
    memory_bytes: int | None = None
    market_name: str | None = None

    @classmethod
    def of(cls, device: dict[str, Any] | Any) -> "Reading":
        """From a DeviceInfo or the `device` dict of a run.json."""
        get = device.get if isinstance(device, dict) else lambda k: getattr(device, k, None)
        units, memory = get("multiprocessors"), get("memory_bytes")
        return cls(backend=get("backend") or "", arch=get("arch") or "", name=get("name") or "",
                   compute_units=units if isinstance(units, int) and units > 0 else None,
                   memory_bytes=memory if isinstance(memory, int) and memory > 0 else None,
                   market_name=get("market_name") or None)

    def describe(self) -> str:
        parts = [self.arch]
        if self.compute_units:
            parts.append(f"{self.compute_units} {'CUs' if self.backend == 'rocm' else 'SMs'}")
        if self.memory_bytes:
            parts.append(f"{self.memory_bytes / GIB:.1f} GiB")
        if self.market_name and self.market_name != self.name:
            parts.append(f"market name {self.market_name!r}")
        return f"{self.name or 'unnamed'} ({', '.join(parts)})"


@dataclass(frozen=True)
class Identity:
    """The spec a device matched (None: none), how ("name", "market name", "hardware"), and why
    not where nothing matched."""

    spec: Any  # specs.DeviceSpec | None
    how: str | None
    note: str

    @property
    def spec_id(self) -> str | None:
        return self.spec.id if self.spec is not None else None


class MatchTableError(specs.SpecError):
    pass


@functools.lru_cache(maxsize=None)
def rules(spec_id: str) -> dict[str, Any]:
    """The `[match]` table of a spec file, checked: only known keys, of the right types."""
    spec = specs.get(spec_id)
    table = safeio.load_toml(spec.path, "spec").get("match") or {}
    where = f"{spec.path.name} [match]"
    unknown = set(table) - set(MATCH_KEYS)
    if unknown:
        raise MatchTableError(f"{where}: unknown keys {sorted(unknown)} (known: {', '.join(MATCH_KEYS)})")
    units = table.get("compute_units")
    if units is not None:
        units = [units] if isinstance(units, int) else units
        if not (isinstance(units, list) and units and all(isinstance(u, int) and u > 0 for u in units)):
            raise MatchTableError(f"{where}: compute_units must be a positive integer or a list of them")
        table["compute_units"] = tuple(units)
    for key in ("memory_gib_min", "memory_gib_max"):
        if key in table and not (isinstance(table[key], (int, float)) and table[key] > 0):
            raise MatchTableError(f"{where}: {key} must be a positive number of GiB")
    if table.get("memory_gib_min", 0) > table.get("memory_gib_max", float("inf")):
        raise MatchTableError(f"{where}: memory_gib_min is above memory_gib_max")
    names = table.get("market_names", [])
    if not (isinstance(names, list) and all(isinstance(n, str) and n for n in names)):
        raise MatchTableError(f"{where}: market_names must be a list of names")
    return table


def _fits(rule: dict[str, Any], reading: Reading) -> bool:
    """The readings the device has are within the spec's bounds (a missing reading fits)."""
    units = rule.get("compute_units")
    if units and reading.compute_units is not None and reading.compute_units not in units:
        return False
    if reading.memory_bytes is not None:
        gib = reading.memory_bytes / GIB
        if not rule.get("memory_gib_min", 0) <= gib <= rule.get("memory_gib_max", float("inf")):
            return False
    return True


def _by_hardware(rule: dict[str, Any], reading: Reading) -> bool:
    """Identified by its readings alone: the spec bounds both, and the device reported both."""
    bounded = rule.get("compute_units") and ("memory_gib_min" in rule or "memory_gib_max" in rule)
    return bool(bounded and reading.compute_units and reading.memory_bytes and _fits(rule, reading))


def _named(spec, rule: dict[str, Any], reading: Reading) -> str | None:
    """How the device names this spec: "market name" (amdsmi), "name" (torch), or None."""
    if reading.market_name and (reading.market_name in rule.get("market_names", ())
                                or re.search(spec.name_regex, reading.market_name, re.IGNORECASE)):
        return "market name"
    if re.search(spec.name_regex, reading.name or "", re.IGNORECASE):
        return "name"
    return None


def _hardware_text(rule: dict[str, Any]) -> str:
    parts = []
    if rule.get("compute_units"):
        parts.append("/".join(map(str, rule["compute_units"])) + " compute units")
    low, high = rule.get("memory_gib_min"), rule.get("memory_gib_max")
    if low or high:
        parts.append(f"{low or 0:g}-{high or 'any':} GiB")
    return ", ".join(parts) or "no hardware bounds"


def identify(device: dict[str, Any] | Any) -> Identity:
    """The spec of a DeviceInfo or of a run.json's `device` dict, with how it was told."""
    reading = Reading.of(device)
    if reading.backend not in ("cuda", "rocm"):
        return Identity(None, None, f"{reading.backend or 'unknown'} device: no spec")
    candidates = [s for s in specs.load_all().values()
                  if s.match_backend == reading.backend and s.match_arch == reading.arch]
    fitting = [(s, rules(s.id)) for s in candidates if _fits(rules(s.id), reading)]
    named = [(s, how) for s, rule in fitting if (how := _named(s, rule, reading))]
    if len(named) == 1:
        spec, how = named[0]
        return Identity(spec, how, f"{reading.describe()} is {spec.id} by its {how}")
    if len(named) > 1:  # two spec files claim one name: the database is wrong, not the device
        raise specs.SpecError(f"{reading.describe()} matches several specs: "
                              f"{', '.join(f'{s.id} ({s.path})' for s, _ in named)}; remove or narrow one")
    contradicted = [s for s in candidates if _named(s, rules(s.id), reading)]
    if contradicted:
        s = contradicted[0]
        return Identity(None, None, f"{reading.describe()} is named like {s.id}, but {s.id} has "
                                    f"{_hardware_text(rules(s.id))} (a partition, or another part?): no spec")
    by_hardware = [s for s, rule in fitting if _by_hardware(rule, reading)]
    if len(by_hardware) == 1:
        spec = by_hardware[0]
        return Identity(spec, "hardware", f"{reading.describe()} is {spec.id} by its arch, compute units and memory")
    if len(by_hardware) > 1:
        ids = ", ".join(s.id for s in by_hardware)
        return Identity(None, None, f"{reading.describe()} fits {ids} alike by its hardware, and neither its name nor "
                                    "a market name (amdsmi: pip install 'parity[amd]') tells them apart: no spec")
    return Identity(None, None, f"no spec matches {reading.describe()}")


def match(backend: str, arch: str, name: str) -> DeviceSpec | None:
    """The one spec a device of this backend, arch and name matches, or None (a CPU, an unknown card)."""
    return match_device({"backend": backend, "arch": arch, "name": name})


def match_device(device: dict[str, Any] | Any) -> DeviceSpec | None:
    """The spec of a DeviceInfo or the `device` dict of a run.json, told by its name and its hardware
    (arch, compute units, memory, amdsmi's market name)."""
    return identify(device).spec
