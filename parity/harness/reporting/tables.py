"""What every report section shares: the spec a run is judged against, byte and parameter text, and
rendering a list of tables as text (rich), markdown or nothing. Below report, spread and the
collectives' tables, so that none of them imports another to format a table.
"""
from __future__ import annotations

import math
from typing import Any

from parity.harness.core import identity, specs
from parity.harness.core.results import Run


def human_bytes(n: float) -> str:
    if not math.isfinite(n):  # a damaged record's size: shown as written
        return str(n)
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{int(n)} B"


def params_text(params: dict[str, Any]) -> str:
    parts = []
    for key, value in params.items():
        if key == "dtype":
            continue
        if key.endswith("_bytes") and isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key[:-6]}={human_bytes(value)}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def spec_for(run: Run, to_spec=None):
    """The spec a run is normalized against: the one asked for, else the one its device matches."""
    if to_spec is not None:
        return to_spec
    specs.load_all()  # a broken spec file (PARITY_SPECS_PATH) is one error line, never a silent loss of normalization
    try:
        return identity.match_device(run.meta.get("device", {}))
    except specs.SpecError:
        return None


def record_spec(run: Run, rec: dict[str, Any], run_spec, to_spec=None, cache: dict | None = None):
    """The spec of the device a record ran on: in a merged run, its own part's device (`device_part`
    names its entry in run.json's `devices`), else the run's; the one asked for overrides both."""
    part, devices = rec.get("device_part"), run.meta.get("devices") or []
    if to_spec is not None or isinstance(part, bool) or not isinstance(part, int) or not 0 <= part < len(devices):
        return run_spec
    cache = {} if cache is None else cache
    if part not in cache:
        try:
            cache[part] = identity.match_device(devices[part])
        except specs.SpecError:
            cache[part] = None
    return cache[part]


def markdown_table(title: str, rows: list[dict[str, str]]) -> str:
    headers = list(rows[0])
    out = [f"### {title}", "", "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(row[h]).replace("|", "\\|") for h in headers) + " |" for row in rows]
    return "\n".join(out) + "\n\n"


def rich_table(title: str, rows: list[dict[str, str]]):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    for header in rows[0]:
        numeric = header in ("n", "rate") or any(w in header for w in ("%", "time", "ms", "measured", "projected", "error", "efficiency", "range"))
        table.add_column(escape(header), overflow="fold", justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(escape(str(v)) for v in row.values()))
    return table


def render(tables: list[tuple[str, list[dict[str, str]]]], fmt: str, console=None) -> str | None:
    """Text tables go to the console; markdown comes back as a string."""
    if fmt == "md":
        return "".join(markdown_table(title, rows) for title, rows in tables if rows)
    for title, rows in tables:
        if rows:
            console.print(rich_table(title, rows))
    return None


def device_label(rec: dict[str, Any], unit: str = "GPU") -> str | None:
    """The device column of the report: the name, and which GPU or worker (and host) in a run over several."""
    if rec.get("gpu_index") is None:
        return rec.get("device")
    return f"{rec.get('device')} [{gpu_label(rec, 2, unit)}]"  # host only where the run names it


def part_label(rec: dict[str, Any], hosts: int = 1, unit: str = "GPU") -> str | None:
    """Which part of a device ran a record of a run over several ("GPU 3", "worker 1"); None otherwise."""
    return None if rec.get("gpu_index") is None else gpu_label(rec, hosts, unit)


def worker_unit(meta: dict[str, Any]) -> str:
    """What one part of a run over several is called: "worker" for CPU workers (`--cpu-workers`,
    or any run on a CPU), whose index names no GPU; "GPU" otherwise."""
    multi = meta.get("multi_gpu") or {}
    cpu = multi.get("cpu_workers") is not None or (meta.get("device") or {}).get("backend") == "cpu"
    return "worker" if cpu else "GPU"


def gpu_label(rec: dict[str, Any], hosts: int = 1, unit: str = "GPU") -> str:
    gpu = f"{unit} {rec.get('gpu_index')}"
    return f"{rec.get('host')} {gpu}" if hosts > 1 and rec.get("host") else gpu
