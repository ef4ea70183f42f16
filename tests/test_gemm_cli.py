"""The GEMM suite through the command line: the smoke preset and an impossible shape through the
entry point in a subprocess, as CI and users run them; --shape and the other bad shapes (one line,
exit 2, nothing written) through the same `main` in this process."""
from __future__ import annotations


import pytest

from parity.harness import cli
from parity.harness.core import capability
from parity.harness.core.results import MEASUREMENTS_FILE, read_records
from test_cli import assert_one_error_line, no_gpu, parity

GEMM_CASES = 52  # smoke, 2 shapes x: (bf16 3 layouts + fp16) x 3 impls + fp8 (tensor/row x fast/accurate) x 3 impls
# + mxfp4 x 2 impls (triton, triton-persistent and torch for BF16/FP16 and FP8)

RUNS = {
    "smoke": ["run", "gemm", "--preset", "smoke", "--time-cap-s", "0.05", "--out", "{x}"],
    "too-large": ["run", "gemm", "--shape", "400000x400000x400000", "--out", "{x}"],
}
# Further bad input, checked in this process through the same `main` (a fresh interpreter per
# command costs seconds of torch start-up each on a 2-core machine).
IN_PROCESS = {
    "letters": (["run", "gemm", "--shape", "axbxc"], "axbxc"),
    "two-dims": (["run", "gemm", "--shape", "8x8"], "three dimensions"),
    "zero-dim": (["run", "gemm", "--shape", "0x8x8"], "0x8x8"),
    "stream-shape": (["run", "stream", "--shape", "8x8x8"], "does not take --shape"),
    "gemm-size": (["run", "gemm", "--size", "1MiB"], "does not take --size"),
    "resume-shape": (["run", "--resume", "somewhere", "--shape", "8x8x8"], "--shape"),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("gemm-cli")

    def one(name):
        out = d / f"out-{name}"
        return name, (parity(*[a.format(x=out) for a in RUNS[name]], cwd=d), out)

    return dict(map(one, RUNS))


def test_gemm_smoke_through_the_cli(results):
    proc, out = results["smoke"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    records, notes = read_records(out / MEASUREMENTS_FILE)
    assert notes == [] and len(records) == GEMM_CASES
    statuses = {r["status"] for r in records}
    assert statuses <= {"ok", "skipped"}
    for r in records:
        assert r["path"] in ("native", "emulated", "unsupported")
        assert r["status"] == "ok" or r["reason"]  # every skip says why
        assert {"m", "n", "k", "dtype", "layout"} <= set(r["params"])
        assert r["cache"] == "cold"
    if no_gpu():
        triton = [r for r in records if r["impl"] == "triton"]
        # Every Triton GEMM checked in the interpreter, but for what this Triton's interpreter lacks
        # (probed or stated by capability.interpreter_problem: triton 3.6 has no tl.dot_scaled there).
        gaps = [g for g in map(capability.interpreter_problem, ("fnuz", "dot_scaled")) if g]
        assert all(r["status"] == "ok" or any(g in r["reason"] for g in gaps) for r in triton), \
            [r["reason"] for r in triton if r["status"] != "ok"]
        assert any(r["status"] == "ok" for r in triton)
        assert "gemm" in proc.stdout and "emulated" in proc.stdout


def test_a_user_shape_replaces_the_preset(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["run", "gemm", "--shape", "17x33x65", "--dtype", "bf16,fp8", "--impl", "triton",
                     "--time-cap-s", "0.05", "--out", str(out)])
    assert code == 0, capsys.readouterr().err[-3000:]
    records, _ = read_records(out / MEASUREMENTS_FILE)
    assert {(r["params"]["m"], r["params"]["n"], r["params"]["k"]) for r in records} == {(17, 33, 65)}
    assert {r["params"]["dtype"] for r in records} == {"bf16", "fp8"}
    assert {r["status"] for r in records} == {"ok"}


def test_an_impossible_shape_is_one_line_and_exit_2(results):
    proc, out = results["too-large"]
    assert_one_error_line(proc, "GiB")
    assert not out.exists()


@pytest.mark.parametrize("name", list(IN_PROCESS))
def test_more_bad_shapes_are_one_line_and_exit_2(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, needle = IN_PROCESS[name]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("parity: error:") and needle in err[0], err
    assert list(tmp_path.iterdir()) == []  # nothing written
