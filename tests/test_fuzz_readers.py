"""Property-based fuzzing of the readers (issue 21): any run.json, record line or spec file is either
read or refused in one line (exit 2), never a traceback, and reading it changes no file.

Inputs start from real shapes (a synthetic run's run.json and records, a real spec file) and are
damaged by hypothesis: a field replaced by any JSON value (null, huge ints, NaN/Infinity, nested
lists, text), a field dropped, the text truncated, bytes spliced in. The default profile runs 60
examples a test with a fixed seed; `.ci/run` runs the `fuzz` profile (1500 a test, its two tests on
two workers: about a minute on 2 cores, sized to keep `.ci/run` under its 8 minutes) after the
README's test command: `PARITY_FUZZ=1 python -m pytest -n 2 tests/test_fuzz_readers.py`.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a test dependency (pip install -e '.[test]')")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import H200, attention_record, gemm_record, record, stream_record  # noqa: E402

from parity.harness.cli import main  # noqa: E402
from parity.harness.core import specs  # noqa: E402
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, RUN_SCHEMA  # noqa: E402

settings.register_profile("default", max_examples=60, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("fuzz", max_examples=1500, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PROFILE = "fuzz" if os.environ.get("PARITY_FUZZ") else "default"

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                         st.sampled_from(["NaN", "Infinity", "-Infinity", "", "ok", "fp8", "cuda", "🙂"]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                                st.dictionaries(st.text(max_size=6), kids, max_size=4)),
                           max_leaves=12)

META = {"schema": RUN_SCHEMA, "run_id": "r1", "device": dict(H200), "status": "complete",
        "plan": {"suites": ["stream"], "preset": "quick"}}
RECORDS = [stream_record(op="triad", device=H200["name"]), gemm_record(m=1024, dtype="fp8", device=H200["name"]),
           attention_record(op="decode", seq=2048, rate=3000.0, device=H200["name"]),
           record(op="all_reduce", suite="collectives", bytes_read=2 << 20, time_ms=0.05, device=H200["name"],
                  params={"dtype": "fp32", "size_bytes": 1 << 20, "ranks": 2})]
RECORDS[-1]["work"]["bytes_over"] = "interconnect"  # what makes it a collective's record


def _paths(value, prefix=()):
    """Every (path) of a JSON tree, a path a tuple of keys and indexes."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _damage(value, draw):
    value = copy.deepcopy(value)
    paths = [p for p in _paths(value) if p]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths))
        parent = value
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier damage changed the tree under this path
    return value


def _text_damage(text: str, draw) -> bytes:
    data = text.encode()
    how = draw(st.sampled_from(["keep", "truncate", "splice", "bom", "crlf"]))
    if how == "truncate":
        data = data[:draw(st.integers(min_value=0, max_value=len(data)))]
    elif how == "splice":
        at = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif how == "bom":
        data = b"\xef\xbb\xbf" + data
    elif how == "crlf":
        data = data.replace(b"\n", b"\r\n")
    return data


def _dumps(value) -> str:
    return json.dumps(value, allow_nan=True)


@st.composite
def damaged_runs(draw):
    meta = _damage(META, draw) if draw(st.booleans()) else META
    lines = []
    for rec in RECORDS:
        lines.append(_dumps(_damage(rec, draw) if draw(st.booleans()) else rec))
    return _text_damage(_dumps(meta), draw), _text_damage("\n".join(lines) + "\n", draw)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def _one_line_or_read(capsys, argv) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), (argv, code, err[-2000:])
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("parity: error:")]
        assert len(errors) == 1, err[-2000:]


@settings(settings.get_profile(PROFILE))
@given(damaged_runs())
def test_a_damaged_run_is_read_or_refused_in_one_line(capsys, run):
    meta, records = run
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        folder.mkdir()
        (folder / RUN_FILE).write_bytes(meta)
        (folder / MEASUREMENTS_FILE).write_bytes(records)
        before = _hashes(folder)
        for argv in (["report", str(folder)], ["report", str(folder), "--format", "csv", "--out", f"{tmp}/out.csv"],
                     ["project", str(folder), "--to", "mi300x"], ["compare", str(folder), str(folder)]):
            _one_line_or_read(capsys, argv)
        assert _hashes(folder) == before


# a real spec under its own id and name (a copy of h200 would clash with the package's own file)
SPEC_TEXT = (specs.SPEC_DIR.joinpath("h200.toml").read_text(encoding="utf-8")
             .replace('id = "h200"', 'id = "fuzzdev"').replace("H200", "FUZZ9000"))
SPEC_TOKENS = st.sampled_from(["nan", "inf", "-1", "0", "1e400", '"x"', "[]", "{}", "[[[[1]]]]", "true", "",
                               "99999999999999999999999", "'''", "= =", "[table]"])


@st.composite
def damaged_specs(draw):
    lines = SPEC_TEXT.splitlines()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        key, sep, _ = lines[i].partition("=")
        lines[i] = f"{key}= {draw(SPEC_TOKENS)}" if sep and draw(st.booleans()) else draw(SPEC_TOKENS)
    return _text_damage("\n".join(lines) + "\n", draw)


@settings(settings.get_profile(PROFILE))
@given(damaged_specs())
def test_a_damaged_spec_file_is_read_or_refused_in_one_line(capsys, monkeypatch, data):
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "fuzzdev.toml"
        spec.write_bytes(data)
        monkeypatch.setenv("PARITY_SPECS_PATH", tmp)
        try:
            _one_line_or_read(capsys, ["specs", "--check", str(spec)])
            _one_line_or_read(capsys, ["specs"])
        finally:
            monkeypatch.delenv("PARITY_SPECS_PATH")
