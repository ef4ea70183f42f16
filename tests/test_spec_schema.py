"""Specs from outside the package (PARITY_SPECS_PATH), the strict schema, `parity specs --check`,
and the machine-readable output of list, specs and compare, through the entry point."""
from __future__ import annotations

import json
import os
import subprocess
import re
from pathlib import Path

import pytest

from parity.harness.core import specschema, specs
from synthetic import H200, stream_record, write_run
from test_cli import assert_one_error_line, parity_main

H200_TOML = specs.SPEC_DIR / "h200.toml"


def parity_env(*args, cwd: Path, specs_path: str | None = None) -> subprocess.CompletedProcess:
    """The command in this process, with PARITY_SPECS_PATH as given (or unset)."""
    return parity_main(*args, cwd=cwd, env={specs.SPECS_PATH_ENV: specs_path})


def lab_card(folder: Path, text_edit=lambda t: t, spec_id: str = "labcard") -> Path:
    """A spec for an unlisted card, made from the H200 file with its identity changed."""
    text = H200_TOML.read_text().replace('id = "h200"', f'id = "{spec_id}"').replace(
        'name = "NVIDIA H200 SXM 141GB"', 'name = "Lab Card 9000"').replace(
        "name_regex = '\\bH200\\b(?!.*\\bNVL\\b)'", "name_regex = 'Lab Card 9000'")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec_id}.toml"
    path.write_text(text_edit(text))
    return path


def test_every_built_in_spec_passes_the_strict_schema():
    for path in sorted(specs.SPEC_DIR.glob("*.toml")):
        specs.parse(path)


def test_a_folder_in_the_specs_path_adds_a_spec(tmp_path):
    lab_card(tmp_path / "lab")
    proc = parity_env("specs", cwd=tmp_path, specs_path=str(tmp_path / "lab"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "labcard" in proc.stdout and "Lab Card 9000" in proc.stdout and "h200" in proc.stdout
    one = parity_env("specs", "labcard", cwd=tmp_path, specs_path=f"{tmp_path / 'nothing-here'}{os.pathsep}"[:0]
                     + str(tmp_path / "lab"))
    assert one.returncode == 0 and "Lab Card 9000 (labcard)" in one.stdout


def test_the_specs_path_in_process(tmp_path, monkeypatch):
    lab_card(tmp_path / "a")
    lab_card(tmp_path / "b", spec_id="labcard2")
    monkeypatch.setenv(specs.SPECS_PATH_ENV, os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")]))
    loaded = specs.load_all()
    assert {"labcard", "labcard2", "h200"} <= set(loaded)
    assert loaded["labcard"].matches("cuda", "sm_90", "Lab Card 9000")
    monkeypatch.setenv(specs.SPECS_PATH_ENV, str(tmp_path / "missing"))
    with pytest.raises(specs.SpecError, match="is not a folder"):
        specs.load_all()
    monkeypatch.delenv(specs.SPECS_PATH_ENV)
    assert "labcard" not in specs.load_all()


def test_a_duplicate_spec_id_is_refused(tmp_path):
    lab_card(tmp_path / "lab", spec_id="h200")
    proc = parity_env("specs", cwd=tmp_path, specs_path=str(tmp_path / "lab"))
    assert_one_error_line(proc, "h200.toml", "already defined")


@pytest.mark.parametrize("edit, needles", [
    (lambda t: t.replace("[peak_tflops.fp64]", "[peak_tflop.fp64]", 1), ["unknown key 'peak_tflop'"]),
    (lambda t: t.replace("fp4_hardware = false", 'fp4_hardware = "no"'), ["fp4_hardware must be true/false", "str"]),
    (lambda t: t.replace('[figures.memory_gb]\nvalue = 141\nsource = ["S01", "S30"]',
                         '[figures.memory_gb]\nvalue = 141'), ["figures.memory_gb.source", "missing"]),
    (lambda t: t.replace("[figures.memory_gb]\nvalue = 141", '[figures.memory_gb]\nvalue = "141"'),
     ["figures.memory_gb.value", "a number"]),
    (lambda t: t.replace("[figures.memory_gb]\nvalue = 141", "[figures.memory_gb]\nvalu = 141"),
     ["figures.memory_gb", "unknown key 'valu'"]),
    (lambda t: t.replace('source = ["S01", "S30"]', 'source = ["S01", "S99"]', 1), ["S99 not in [sources]"]),
    (lambda t: t.replace('backend = "cuda"', 'backend = 7'), ["match.backend", "int"]),
    (lambda t: t.replace('backend = "cuda"', 'backend = "cuda"\nmemroy_gb = 141'), ["match", "unknown key 'memroy_gb'"]),
    (lambda t: t.replace('id = "labcard"\n', ""), ["missing key 'id'"]),
    (lambda t: t + "\n[[[broken", ["not valid TOML"]),
    (lambda t: t.replace("name_regex = 'Lab Card 9000'", "name_regex = ['Lab Card 9000']"), ["match.name_regex"]),
    (lambda t: t.replace('backend = "cuda"', 'backend = ["cuda", "rocm"]'), ["match.backend"]),
])
def test_a_bad_spec_is_refused_with_one_line_naming_file_and_key(tmp_path, edit, needles):
    path = lab_card(tmp_path / "lab", edit)
    proc = parity_env("specs", cwd=tmp_path, specs_path=str(tmp_path / "lab"))
    assert_one_error_line(proc, str(path), *needles)
    check = parity_env("specs", "--check", path, cwd=tmp_path)
    assert_one_error_line(check, str(path), *needles)


def test_the_match_table_takes_the_hardware_identity_keys(tmp_path):
    """The keys of the identity match (core/identity.py) are the schema's, with loose types."""
    from parity.harness.core import identity

    def edit(t):
        t = re.sub(r"(?m)^compute_units = .*$", "compute_units = [132, 144]", t)
        t = re.sub(r"(?m)^memory_gib_min = .*$", "memory_gib_min = 130", t)
        return t.replace('backend = "cuda"', 'backend = "cuda"\nmarket_names = ["Lab Card 9000"]')

    path = lab_card(tmp_path / "lab", edit)
    assert "compute_units = [132, 144]" in path.read_text()
    proc = parity_env("specs", "--check", path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "a valid spec (labcard" in proc.stderr
    assert tuple(specschema.MATCH_KEYS) == identity.MATCH_KEYS
    bad = lab_card(tmp_path / "bad", lambda t: re.sub(r"(?m)^compute_units = .*$", 'compute_units = "many"', t))
    assert_one_error_line(parity_env("specs", "--check", bad, cwd=tmp_path), str(bad), "compute_units")


def test_specs_check_of_a_missing_file(tmp_path):
    assert_one_error_line(parity_env("specs", "--check", tmp_path / "nope.toml", cwd=tmp_path), "nope.toml", "cannot read")
    assert_one_error_line(parity_env("specs", "h200", "--check", H200_TOML, cwd=tmp_path), "--check")


def test_a_bad_spec_in_the_path_loses_no_run(tmp_path):
    run = write_run(tmp_path / "run", [stream_record(n=1 << 26)], device=H200)
    before = sorted((p.name, p.read_bytes()) for p in run.iterdir())
    lab_card(tmp_path / "lab", lambda t: t.replace("[peak_tflops.fp64]", "[peak_tflop.fp64]", 1))
    proc = parity_env("report", run, cwd=tmp_path, specs_path=str(tmp_path / "lab"))
    assert_one_error_line(proc, "peak_tflop")
    assert sorted((p.name, p.read_bytes()) for p in run.iterdir()) == before


# --- machine-readable output -------------------------------------------------------------------------


def test_specs_json_has_every_figure_with_range_sources_and_confidence(tmp_path):
    proc = parity_env("specs", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schema"] == "parity.specs/1"
    by_id = {s["id"]: s for s in data["specs"]}
    assert set(by_id) == set(specs.load_all())
    bf16 = by_id["h200"]["peak_tflops"]["bf16"]
    assert bf16["value"] == pytest.approx(989.4) and bf16["sources"] and bf16["confidence"] == "datasheet"
    projected = [f for s in data["specs"] for f in s["peak_tflops"].values() if f["range"]]
    assert projected and all(len(f["range"]) == 2 and f["range"][0] <= f["range"][1] for f in projected)
    for spec in data["specs"]:
        for fig in [*spec["figures"].values(), *spec["peak_tflops"].values()]:
            assert fig["sources"] and set(fig["sources"]) <= set(spec["sources"]) and fig["confidence"]
    one = json.loads(parity_env("specs", "mi300x", "--json", cwd=tmp_path).stdout)
    assert [s["id"] for s in one["specs"]] == ["mi300x"]


def test_list_json_parses(tmp_path):
    proc = parity_env("list", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    names = [s["name"] for s in data["suites"]]
    assert {"stream", "gemm", "attention", "collectives"} <= set(names)
    stream = data["suites"][names.index("stream")]
    assert stream["origin"] == "parity (built in)" and stream["presets"]["smoke"] > 0
    assert {op["name"] for op in stream["ops"]} >= {"copy", "triad", "dot"}


def test_compare_json_parses(tmp_path):
    base = write_run(tmp_path / "a", [stream_record(n=1 << 26, gbps=1000, samples=[1.0, 1.01, 0.99] * 4),
                                      stream_record(op="copy", n=1 << 26)], device=H200)
    new = write_run(tmp_path / "b", [stream_record(n=1 << 26, gbps=1000, samples=[1.2, 1.21, 1.19] * 4),
                                     stream_record(op="add", n=1 << 26)], device=H200, run_id="r2")
    proc = parity_env("compare", base, new, "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schema"] == "parity.compare/1" and data["base"]["run_id"] == "r1"
    (case,) = data["cases"]
    assert case["op"] == "triad" and case["verdict"] == "slower" and case["ratio"] == pytest.approx(1.2, rel=0.01)
    assert [c["op"] for c in data["only_base"]] == ["copy"] and [c["op"] for c in data["only_new"]] == ["add"]
    assert data["geomeans"][0]["geomean"] == pytest.approx(1.2, rel=0.01)
