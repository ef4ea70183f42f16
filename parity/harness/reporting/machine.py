"""Machine-readable renderings: `parity list --json`, `parity specs --json`, `parity compare
--format json`. Plain JSON types only (NaN becomes null), so any JSON parser reads them.
"""
from __future__ import annotations

import json
import math
from typing import Any

JSON_SCHEMA_PREFIX = "parity."


def plain(value: Any) -> Any:
    """JSON-safe: NaN and inf become None, numpy scalars plain numbers, tuples lists, paths text."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def dumps(data: Any) -> str:
    return json.dumps(plain(data), indent=2, allow_nan=False) + "\n"


def suites_json(suites, device, origin, problems: list[str]) -> dict[str, Any]:
    """Every suite: where it came from, its ops with their implementations, presets with their case
    counts on this device, dtypes, and what --size and --shape take. `origin(suite, impl=None)` names the
    package each came from and `problems` are the plugins' (both the registry's, which the command asks)."""
    out = []
    for suite in suites:
        ops = []
        for op in suite.ops:
            impls = [{"name": i.name, "backend": i.backend, "origin": origin(suite.name, i.name)}
                     for i in suite.impls if i.op == op.name]
            ops.append({"name": op.name, "description": op.description, "cache": op.cache, "metric": op.metric,
                        "impls": impls})
        out.append({"name": suite.name, "description": suite.description, "origin": origin(suite.name),
                    "collective": suite.collective, "ops": ops,
                    "presets": {p: len(suite.cases(p, device)) for p in suite.presets},
                    "dtypes": list(suite.dtypes), "sizes": suite.size_help or None, "shapes": suite.shape_help or None})
    return plain({"schema": "parity.list/1", "device": {"name": device.name, "backend": device.backend},
                  "suites": out, "problems": problems})


def figure_json(fig) -> dict[str, Any]:
    return {"value": fig.value, "range": list(fig.range) if fig.range else None, "bounds": fig.bounds,
            "supported": fig.supported, "confidence": fig.confidence, "sources": list(fig.source),
            "note": fig.note, "variants": [dict(v) for v in fig.variants], **fig.extra}


def spec_json(spec) -> dict[str, Any]:
    """One spec: identity, matching rule, every figure and dense peak with range, sources and
    confidence, and the sources' titles and references."""
    return plain({
        "id": spec.id, "name": spec.name, "vendor": spec.vendor, "status": spec.status,
        "architecture": spec.architecture, "arch": spec.arch, "memory_type": spec.memory_type,
        "fp8_format": spec.fp8_format, "fp4_hardware": spec.fp4_hardware,
        "identity": {"sources": list(spec.identity_source), "confidence": spec.identity_confidence,
                     "note": spec.identity_note},
        "file": str(spec.path),
        "figures": {name: figure_json(fig) for name, fig in spec.figures.items()},
        "peak_tflops": {name: figure_json(fig) for name, fig in spec.peaks.items()},
        "sources": spec.sources, "disagreements": list(spec.disagreements)})


def specs_json(specs) -> dict[str, Any]:
    return {"schema": "parity.specs/1", "specs": [spec_json(s) for s in specs]}


def compare_json(c) -> dict[str, Any]:
    """A comparison as data: the settings, one entry per case in both runs (the rows the tables
    and the CSV show), the geometric means, the cases on one side only and the notes."""
    def records(frame):
        return [] if frame is None or frame.empty else frame.to_dict(orient="records")

    def side(run):
        device = run.meta.get("device") or {}
        return {"path": str(run.path), "run_id": run.meta.get("run_id"), "device": device.get("name"),
                "backend": device.get("backend")}

    base_runs, new_runs = tuple(c.base_runs) or (c.base,), tuple(c.new_runs) or (c.new,)
    return plain({"schema": "parity.compare/1", "base": side(c.base), "new": side(c.new),
                  "base_runs": [side(r) for r in base_runs], "new_runs": [side(r) for r in new_runs],
                  "settings": dict(vars(c.settings)), "cases": records(c.rows), "geomeans": records(c.geomeans()),
                  "only_base": records(c.only_base), "only_new": records(c.only_new), "notes": list(c.notes)})
