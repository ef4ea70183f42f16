"""The schema of a spec file, checked strictly: an unknown key (a typo such as `peak_tflop`), a
value of the wrong type or a figure without a source is refused with one line naming the file and
the key. Spec files come from the package and from the folders in PARITY_SPECS_PATH; both are
checked the same way before a figure of theirs is used.

Every key a spec file may hold is listed here, once: the tables below are the schema.
"""
from __future__ import annotations

from typing import Any

NUMBER = (int, float)
TEXT = (str,)
TEXTS = "list of text"
NUMBERS = "list of numbers"

# Top-level keys: (types, required).
TOP_KEYS: dict[str, tuple[Any, bool]] = {
    "schema": ((int,), False),
    "id": (TEXT, True), "name": (TEXT, True), "vendor": (TEXT, True), "status": (TEXT, True),
    "architecture": (TEXT, True), "arch": (TEXT, True), "memory_type": (TEXT, True),
    "fp8_format": (TEXT, True), "fp4_hardware": ((bool,), True),
    "identity_source": (TEXTS, True), "identity_confidence": (TEXT, True), "identity_note": (TEXT, False),
    "disagreements": (TEXTS, False),
    "match": ((dict,), True), "figures": ((dict,), False), "peak_tflops": ((dict,), False),
    "sources": ((dict,), True),
}
# How a spec recognizes the hardware it describes, with the types the matcher (core/identity.py)
# reads; identity checks the values (positive counts, min below max).
MATCH_KEYS: dict[str, tuple[Any, ...]] = {
    "backend": (TEXT,), "arch": (TEXT,), "name_regex": (TEXT,),  # one each: the matcher reads one
    "market_names": (TEXTS,), "compute_units": ((int,), NUMBERS),
    "memory_gib_min": (NUMBER,), "memory_gib_max": (NUMBER,),
}  # read by core/identity.py, which matches a device by these
# A figure (figures.X, peak_tflops.X): its value, sources and confidence, and what it assumes.
FIGURE_KEYS: dict[str, Any] = {
    "value": NUMBER, "source": TEXTS, "confidence": TEXT, "note": TEXT, "supported": (bool,),
    "range": NUMBERS, "variants": "list of tables",
    "clock_mhz": NUMBER, "flops_per_clock_per_unit": NUMBER, "sparse": NUMBER, "vector": NUMBER, "matrix": NUMBER,
}
VARIANT_KEYS: dict[str, Any] = {"label": TEXT, "value": NUMBER, "range": NUMBERS, "source": TEXTS,
                                "confidence": TEXT, "note": TEXT, "sparse": NUMBER}
SOURCE_KEYS: dict[str, Any] = {"title": TEXT, "ref": TEXT, "how": TEXT}


class SchemaError(Exception):
    """One line: the file, the key, what is wrong."""


def _type_ok(value: Any, kind: Any) -> bool:
    if kind == TEXTS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == NUMBERS:
        return isinstance(value, list) and all(isinstance(v, NUMBER) and not isinstance(v, bool) for v in value)
    if kind == "list of tables":
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    if kind is NUMBER:
        return isinstance(value, NUMBER) and not isinstance(value, bool)
    return isinstance(value, kind)


def _kind_text(kind: Any) -> str:
    if isinstance(kind, str):
        return kind
    if kind is NUMBER:
        return "a number"
    return " or ".join({bool: "true/false", str: "text", int: "an integer", dict: "a table"}.get(k, k.__name__)
                       for k in kind)


def _keys(table: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise SchemaError(f"{where}: unknown key {key!r} (known: {', '.join(allowed)})")


def _typed(table: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    _keys(table, allowed, where)
    for key, value in table.items():
        if not _type_ok(value, allowed[key]):
            raise SchemaError(f"{where}.{key}: must be {_kind_text(allowed[key])}, not {type(value).__name__}")


def _sources(cited: list[str], known: dict[str, Any], where: str) -> None:
    if not cited:
        raise SchemaError(f"{where}.source: missing (every figure names its sources)")
    missing = [s for s in cited if s not in known]
    if missing:
        raise SchemaError(f"{where}.source: {', '.join(missing)} not in [sources]")


def check(data: dict[str, Any], name: str) -> None:
    """Raise SchemaError (one line naming `name` and the key) where `data` breaks the schema."""
    for key, value in data.items():
        if key not in TOP_KEYS:
            raise SchemaError(f"{name}: unknown key {key!r} (known: {', '.join(TOP_KEYS)})")
        kind, _ = TOP_KEYS[key]
        if not _type_ok(value, kind):
            raise SchemaError(f"{name}: {key} must be {_kind_text(kind)}, not {type(value).__name__}")
    for key, (_, required) in TOP_KEYS.items():
        if required and key not in data:
            raise SchemaError(f"{name}: missing key {key!r}")
    sources = data["sources"]
    for sid, entry in sources.items():
        if not isinstance(entry, dict):
            raise SchemaError(f"{name} sources.{sid}: must be a table (title, ref, how)")
        _typed(entry, SOURCE_KEYS, f"{name} sources.{sid}")
    if not data["identity_source"]:
        raise SchemaError(f"{name}: identity_source: missing (where the identity comes from)")
    _sources(data["identity_source"], sources, f"{name} identity")
    match = data["match"]
    _keys(match, MATCH_KEYS, f"{name} match")
    for key, value in match.items():
        if not any(_type_ok(value, kind) for kind in MATCH_KEYS[key]):
            kinds = " or ".join(_kind_text(k) for k in MATCH_KEYS[key])
            raise SchemaError(f"{name} match.{key}: must be {kinds}, not {type(value).__name__}")
    for group in ("figures", "peak_tflops"):
        for fig_name, fig in (data.get(group) or {}).items():
            where = f"{name} {group}.{fig_name}"
            if not isinstance(fig, dict):
                raise SchemaError(f"{where}: must be a table (value, source, confidence)")
            _typed(fig, FIGURE_KEYS, where)
            _sources(fig.get("source") or [], sources, where)
            for i, variant in enumerate(fig.get("variants") or ()):
                _typed(variant, VARIANT_KEYS, f"{where}.variants[{i}]")
                _sources(variant.get("source") or [], sources, f"{where}.variants[{i}]")
