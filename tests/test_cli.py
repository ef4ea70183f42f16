"""The command line as a user runs it: through its entry point in a subprocess where the process
matters (the smoke run, the console script, the interpreter switch), and through `main()` in this
process where the test is about what a command says and does (bad input: one line, exit 2)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, read_records
from background import clean_env  # noqa: F401  (re-exported: tests import it from here)

TIMEOUT_S = 300
SMOKE = ["--preset", "smoke", "--time-cap-s", "0.2"]


def parity_process(*args, cwd: Path, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
    """`parity ARGS` through the entry point, in a fresh interpreter (python -m parity)."""
    full = clean_env()
    for k, v in (env or {}).items():
        full.pop(k, None) if v is None else full.__setitem__(k, v)
    return subprocess.run([sys.executable, "-m", "parity", *map(str, args)], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def _forget_loaded_specs() -> None:
    """The spec tables are read once per process; a call with other PARITY_SPECS_PATH reads again."""
    from parity.harness.core import identity, specs

    specs._load.cache_clear()
    identity.rules.cache_clear()


def parity_main(*args, cwd: Path, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
    """`parity ARGS` run by cli.main() in this process, from `cwd`, with its stdout, stderr and exit
    status as a subprocess would give them (argparse's SystemExit becomes the status); `env` sets
    (or, with None, removes) variables for the call. A traceback is not caught: it fails the test,
    as the one line it should have been."""
    import threading

    from parity.harness import cli

    if threading.current_thread() is not threading.main_thread():
        return parity_process(*args, cwd=cwd, env=env)  # stdout, stderr and the folder are the process's own
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    saved = {k: os.environ.get(k) for k in env or {}}

    def put(values):
        for k, v in values.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)

    put(env or {})
    if env:
        _forget_loaded_specs()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        os.chdir(here)
        put(saved)
        if env:
            _forget_loaded_specs()
    return subprocess.CompletedProcess(["parity", *map(str, args)], code, out.getvalue(), err.getvalue())


parity = parity_main  # what most tests want; parity_process where the process itself is the subject


def console_script() -> str | None:
    here = os.path.dirname(sys.executable)  # the virtual environment's bin, even if not activated
    return shutil.which("parity") or shutil.which("parity", path=here)


def assert_one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    assert lines[0].startswith("parity: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def no_gpu() -> bool:
    import torch

    return not torch.cuda.is_available()


# --- a real smoke run, shared by the report tests ------------------------------------------------------


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cli")
    out = cwd / "smoke-run"
    proc = parity_process("run", "stream", *SMOKE, "--out", out, cwd=cwd)
    return cwd, out, proc


def test_run_stream_smoke(smoke):
    cwd, out, proc = smoke
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert (out / RUN_FILE).is_file() and (out / MEASUREMENTS_FILE).is_file()
    records, notes = read_records(out / MEASUREMENTS_FILE)
    assert notes == []
    assert len(records) == 7 * 2 * 2 * 2  # ops x dtypes x smoke sizes x impls
    assert {r["status"] for r in records} == {"ok"}
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["status"] == "complete"
    assert meta["command"][:2] == ["parity", "run"]
    if no_gpu():
        assert "interpreter" in proc.stderr
        assert {r["timing"] for r in records} == {"wall", "wall-interpret"}
    assert "stream" in proc.stdout  # the run ends with its table
    assert not (cwd / "runs").exists()  # --out was given: nothing else is written


def test_report_text(smoke):
    cwd, out, _ = smoke
    proc = parity("report", out, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "pass" in proc.stdout and "FAIL" not in proc.stdout
    for op in ("copy", "scale", "add", "triad", "dot", "read", "write"):
        assert op in proc.stdout
    assert "p10" in proc.stdout and "p90" in proc.stdout  # the spread, not a lone mean
    if no_gpu():
        assert "interpreter" in proc.stdout  # the interpreter's timings are labelled as such
    assert proc.stderr.strip() == ""


def test_report_markdown(smoke):
    cwd, out, _ = smoke
    proc = parity("report", out, "--format", "md", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    table_lines = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert table_lines and "|---" in proc.stdout
    assert sum(" pass " in line for line in table_lines) == 56
    header = table_lines[0]
    assert "op" in header and "impl" in header


def test_report_csv_parses(smoke):
    cwd, out, _ = smoke
    proc = parity("report", out, "--format", "csv", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(io.StringIO(proc.stdout))
    assert len(df) == 56
    for column in ("suite", "op", "impl", "status", "timing", "time_ms_median", "bytes_read", "bytes_written"):
        assert column in df.columns, column
    assert set(df["status"]) == {"ok"}
    assert set(df["op"]) == {"copy", "scale", "add", "triad", "dot", "read", "write"}
    if no_gpu():
        interp = df[df["timing"] == "wall-interpret"]
        assert len(interp) == 28
        assert interp["gbps"].isna().all()  # interpreter times are never turned into rates
        wall = df[df["timing"] == "wall"]
        assert (wall["gbps"] > 0).all()


def test_devices(tmp_path):
    proc = parity("devices", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    if no_gpu():
        assert "cpu" in proc.stdout and "interpreter" in proc.stdout


def test_devices_json(tmp_path):
    proc = parity("devices", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    for key in ("backend", "name", "arch", "memory_bytes", "multiprocessors", "l2_bytes", "llc_bytes",
                "driver_version", "runtime_version", "visible"):
        assert key in info, key
    if no_gpu():
        assert info["backend"] == "cpu"
        assert "interpreter" in (info["runtime_version"] or "")


def test_list(tmp_path):
    proc = parity("list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for word in ("stream", "triton", "torch", "smoke", "quick", "full", "fp32", "bf16"):
        assert word in proc.stdout, word
    for op in ("copy", "scale", "add", "triad", "dot", "read", "write"):
        assert op in proc.stdout, op


def test_console_script(tmp_path):
    script = console_script()
    if script is None:
        pytest.skip("the `parity` console script is not on PATH (package not installed here)")
    env = clean_env()
    proc = subprocess.run([script, "devices"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert "backend" in proc.stdout
    bad = subprocess.run([script, "frobnicate"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=TIMEOUT_S)
    assert_one_error_line(bad, "frobnicate")


def test_run_without_out_writes_under_runs(tmp_path):
    proc = parity("run", "stream", *SMOKE, "--dtype", "fp32", "--impl", "torch", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    records, _ = read_records(runs[0] / MEASUREMENTS_FILE)
    assert len(records) == 14 and {r["impl"] for r in records} == {"torch"}
    assert {r["params"]["dtype"] for r in records} == {"fp32"}


def test_interrupted_run_is_completed_by_resume(smoke, tmp_path):
    _, original, _ = smoke
    run = tmp_path / "run"
    shutil.copytree(original, run)
    path = run / MEASUREMENTS_FILE
    lines = path.read_text().splitlines(keepends=True)
    # Killed while writing: two records lost and the third cut mid-line.
    path.write_text("".join(lines[:-3]) + lines[-3][: len(lines[-3]) // 2])
    warned = parity("report", run, cwd=tmp_path)
    assert warned.returncode == 0 and "truncated" in warned.stderr
    proc = parity("run", "--resume", run, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records, notes = read_records(path)
    assert notes == []
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == len(lines)
    assert sorted(keys) == sorted(json.loads(line)["key"] for line in lines)
    assert path.read_text().startswith("".join(lines[:-3]))  # earlier records untouched
    assert "3 ok" in proc.stderr and "already done" in proc.stderr


def test_out_on_a_folder_that_holds_a_run_is_refused_and_nothing_is_lost(smoke, tmp_path):
    _, original, _ = smoke
    run = tmp_path / "run"
    shutil.copytree(original, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    proc = parity("run", "stream", *SMOKE, "--out", run, cwd=tmp_path)
    assert_one_error_line(proc, "--resume")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


# --- bad input: one line, exit 2, no traceback --------------------------------------------------------

# Each: the arguments (with {x} for a fresh --out folder and {d} for the prepared folders) and a word
# the one line must contain.
BAD = {
    "unknown-suite": (["run", "nosuchsuite", *SMOKE, "--out", "{x}"], "nosuchsuite"),
    "unknown-preset": (["run", "stream", "--preset", "gigantic", "--out", "{x}"], "gigantic"),
    "unknown-impl": (["run", "stream", *SMOKE, "--impl", "cuda-magic", "--out", "{x}"], "cuda-magic"),
    "unknown-dtype": (["run", "stream", *SMOKE, "--dtype", "fp64", "--out", "{x}"], "fp64"),
    "malformed-size": (["run", "stream", "--size", "12XB", "--out", "{x}"], "12XB"),
    "impossible-size": (["run", "stream", "--size", "100TiB", "--out", "{x}"], "GiB"),
    "zero-size": (["run", "stream", "--size", "0", "--out", "{x}"], "0"),
    "tiny-size": (["run", "stream", "--size", "3", "--out", "{x}"], "small"),
    "zero-time-cap": (["run", "stream", *SMOKE[:2], "--time-cap-s", "0", "--out", "{x}"], "time-cap"),
    "resume-missing": (["run", "--resume", "{d}/missing"], "missing"),
    "resume-foreign": (["run", "--resume", "{d}/foreign"], "foreign"),
    "resume-with-out": (["run", "--resume", "{d}/missing", "--out", "{x}"], "--resume"),
    "report-missing": (["report", "{d}/missing"], "missing"),
    "report-corrupt": (["report", "{d}/corrupt"], "corrupt"),
    "report-corrupt-run-json": (["report", "{d}/corrupt-meta"], "run.json"),
    "report-foreign": (["report", "{d}/foreign"], "foreign"),
    "report-bad-format": (["report", "{d}/corrupt", "--format", "pdf"], "pdf"),
    "unknown-subcommand": (["frobnicate"], "frobnicate"),
    "missing-subcommand": ([], "command"),
    "unknown-option": (["run", "stream", "--turbo"], "--turbo"),
    "out-is-a-file": (["run", "stream", *SMOKE, "--out", "{d}/a-file"], "a-file"),
    "out-is-empty": (["run", "stream", *SMOKE, "--out", ""], "empty path"),
    "nan-time-cap": (["run", "stream", *SMOKE[:2], "--time-cap-s", "nan", "--out", "{x}"], "time-cap"),
    "resume-with-preset": (["run", "--resume", "{d}/good", "--preset", "quick"], "--preset"),
    "resume-damaged-plan": (["run", "--resume", "{d}/damaged-plan"], "damaged"),
    "report-over-its-run": (["report", "{d}/good", "--format", "csv", "--out", "{d}/good/" + MEASUREMENTS_FILE],
                            "would destroy the run"),
    "plots-into-a-file": (["report", "{d}/good", "--plots", "{d}/a-file"], "a-file"),
    "merge-twice": (["merge", "{d}/good", "{d}/good", "--out", "{x}"], "twice"),
    "merge-into-a-file": (["merge", "{d}/good", "--out", "{d}/a-file"], "a-file"),
    "compare-nan-gate": (["compare", "{d}/good", "{d}/good", "--fail-on-regression", "nan"], "fail-on-regression"),
    "selfcheck-json-folder": (["selfcheck", "--json", "{d}/foreign"], "folder"),
}


@pytest.fixture(scope="module")
def bad_results(smoke, tmp_path_factory):
    """Every bad command, through main() in this process (test_badinput runs a few through the
    entry point)."""
    _, original, _ = smoke
    d = tmp_path_factory.mktemp("bad")
    (d / "foreign").mkdir()
    (d / "foreign" / "holiday.csv").write_text("day,place\nmonday,beach\n")
    (d / "foreign" / "measurements.txt").write_text("not ours\n")
    (d / "corrupt").mkdir()
    shutil.copy(original / RUN_FILE, d / "corrupt" / RUN_FILE)
    (d / "corrupt" / MEASUREMENTS_FILE).write_text("garbage garbage\n{{{ more garbage\n}\n")
    (d / "corrupt-meta").mkdir()
    (d / "corrupt-meta" / RUN_FILE).write_text("{ this is not json")
    (d / "corrupt-meta" / MEASUREMENTS_FILE).write_bytes((original / MEASUREMENTS_FILE).read_bytes())
    (d / "a-file").write_text("I am a file\n")
    shutil.copytree(original, d / "good")
    shutil.copytree(original, d / "damaged-plan")
    meta = json.loads((d / "damaged-plan" / RUN_FILE).read_text())
    meta["plan"]["sizes_bytes"] = "abc"
    (d / "damaged-plan" / RUN_FILE).write_text(json.dumps(meta))

    def one(name):
        args, _ = BAD[name]
        x = d / f"out-{name}"
        argv = [a.format(x=x, d=d) for a in args]
        return name, parity_main(*argv, cwd=d), x

    return d, {name: (proc, x) for name, proc, x in map(one, BAD)}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_and_exit_2(name, bad_results):
    d, results = bad_results
    proc, out = results[name]
    assert_one_error_line(proc, BAD[name][1])
    assert not out.exists(), "a refused run must not create its --out folder"


def test_bad_input_leaves_prepared_folders_unchanged(bad_results, smoke):
    d, _ = bad_results
    assert (d / "a-file").read_text() == "I am a file\n"
    assert sorted(p.name for p in (d / "foreign").iterdir()) == ["holiday.csv", "measurements.txt"]
    assert (d / "corrupt" / MEASUREMENTS_FILE).read_text() == "garbage garbage\n{{{ more garbage\n}\n"
    _, original, _ = smoke
    for name in (RUN_FILE, MEASUREMENTS_FILE):  # no report, merge or resume touched the good run
        assert (d / "good" / name).read_bytes() == (original / name).read_bytes()
    assert sorted(p.name for p in (d / "good").iterdir()) == sorted(p.name for p in original.iterdir())
    assert not (d / "missing").exists()


def test_resuming_a_complete_run_changes_nothing(smoke, tmp_path):
    _, original, _ = smoke
    run = tmp_path / "done"
    shutil.copytree(original, run)
    before = {name: (run / name).read_bytes() for name in (RUN_FILE, MEASUREMENTS_FILE)}
    proc = parity("run", "--resume", run, cwd=tmp_path)
    assert proc.returncode == 0 and "nothing new" in proc.stderr, proc.stderr[-2000:]
    assert {name: (run / name).read_bytes() for name in before} == before  # not even its end time


def test_a_regression_gate_over_runs_with_nothing_in_common_fails(smoke, tmp_path):
    _, original, _ = smoke
    other = tmp_path / "other"
    shutil.copytree(original, other)
    records = [json.loads(line) for line in (other / MEASUREMENTS_FILE).read_text().splitlines()]
    (other / MEASUREMENTS_FILE).write_text("".join(json.dumps(dict(r, key=r["key"] + "-elsewhere")) + "\n"
                                                   for r in records))
    proc = parity("compare", original, other, "--fail-on-regression", "5", cwd=tmp_path)
    assert proc.returncode == 1 and "nothing was compared" in proc.stderr, proc.stderr[-2000:]
