"""The spec database, for code: `parity.specs.get("h200")`, `parity.specs.all()`.

Specs come from the package and from the folders in PARITY_SPECS_PATH (':'-separated), checked
against the schema (parity/harness/core/specschema.py) before use.
"""
from parity.harness.core.identity import match  # noqa: F401
from parity.harness.core.specs import DeviceSpec, Figure, SpecError, get, parse  # noqa: F401


def all() -> list[DeviceSpec]:  # noqa: A001 - the API's name: parity.specs.all()
    """Every spec, in id order."""
    from parity.harness.core.specs import load_all

    return [spec for _, spec in sorted(load_all().items())]
