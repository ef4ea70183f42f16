"""GPU prices as data (`prices/*.toml`), each with its source: never a constant in code.

A figure is `usd_per_gpu_hour = [low, high]`, or `usd_per_hour = [low, high]` for an instance (a
slice, a superchip, a server) of `gpus` GPUs, as GB200 is listed, divided by `gpus`, or
`usd_per_month = [low, high]` for a server of `gpus` GPUs, converted at 730 hours a month
(8760 / 12). Each is kept as published and converted here, never by hand in the file. A device's
price is the median of its entries' midpoints, with the lowest and highest reading as the range and
every source kept.
"""
from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass
from pathlib import Path

from parity.harness.core import safeio
from parity.harness.core import specs
from parity.harness.core.model import UsageError

PRICE_DIR = Path(__file__).with_name("prices")
SCHEMA = 1
HOURS_PER_MONTH = 8760 / 12
FIGURES = ("usd_per_gpu_hour", "usd_per_hour", "usd_per_month")  # exactly one per entry
KEYS = {*FIGURES, "device", "gpus", "basis", "date", "source", "projected"}


class PriceError(Exception):
    """A price file that breaks the schema; names the file."""


@dataclass(frozen=True)
class Price:
    device: str
    usd_per_gpu_hour: float
    low: float
    high: float
    projected: bool
    sources: tuple[str, ...]  # "basis, date: source"


def _pair(value, where: str, key: str) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2 or
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)
            or value[0] > value[1]):
        raise PriceError(f"{where}: {key} must be [low, high], positive")
    return float(value[0]), float(value[1])


def parse(path: Path) -> list[tuple[str, float, float, bool, str]]:
    where = path.name
    try:
        data = safeio.load_toml(path, "price", where)  # a regular file of a few MiB, nesting bounded
    except safeio.FileRefused as exc:
        raise PriceError(str(exc)) from None
    if set(data) - {"schema", "price"} or data.get("schema") != SCHEMA:
        raise PriceError(f"{where}: expected schema = {SCHEMA} and [[price]] tables only")
    out = []
    for i, entry in enumerate(data.get("price") or []):
        at = f"{where} price {i + 1}"
        if not isinstance(entry, dict) or set(entry) - KEYS:
            raise PriceError(f"{at}: unknown keys {sorted(set(entry) - KEYS) if isinstance(entry, dict) else ''}")
        for key in ("device", "basis", "date", "source"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise PriceError(f"{at}: {key} is required")
        try:
            specs.get(entry["device"])
        except UsageError:
            raise PriceError(f"{at}: device {entry['device']!r} is not a spec id") from None
        given = [key for key in FIGURES if key in entry]
        if len(given) != 1:
            raise PriceError(f"{at}: give one of usd_per_gpu_hour, usd_per_hour or usd_per_month "
                             "(the last two with gpus)")
        key = given[0]
        gpus = entry.get("gpus")
        if key == "usd_per_gpu_hour":
            if gpus is not None:
                raise PriceError(f"{at}: gpus goes with usd_per_hour or usd_per_month, not a per-GPU price")
            lo, hi = _pair(entry[key], at, key)
        else:
            if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus <= 0:
                raise PriceError(f"{at}: {key} is for several GPUs and needs gpus, a positive integer")
            hours = HOURS_PER_MONTH if key == "usd_per_month" else 1.0
            lo, hi = (v / gpus / hours for v in _pair(entry[key], at, key))
        out.append((entry["device"], lo, hi, bool(entry.get("projected", False)),
                    f"{entry['basis']}, {entry['date']}: {entry['source']}"))
    return out


@functools.lru_cache(maxsize=None)
def load_all(directory: Path = PRICE_DIR) -> dict[str, Price]:
    entries: dict[str, list] = {}
    for path in sorted(directory.glob("*.toml")):
        for device, lo, hi, projected, source in parse(path):
            entries.setdefault(device, []).append((lo, hi, projected, source))
    return {d: Price(device=d, usd_per_gpu_hour=statistics.median((lo + hi) / 2 for lo, hi, _, _ in e),
                     low=min(lo for lo, _, _, _ in e), high=max(hi for _, hi, _, _ in e),
                     projected=any(p for _, _, p, _ in e), sources=tuple(s for _, _, _, s in e))
            for d, e in entries.items()}


def get(device: str) -> Price | None:
    return load_all().get(device)
