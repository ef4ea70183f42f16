"""Bad input across every subcommand, black-box: each command line ends with exit status 2, one
line on stderr (`parity: error: ...`), no traceback, and no file created, changed or removed.

Run in this process through the entry point (`parity.harness.cli.main`), with stderr captured, so
the ~90 command lines take seconds; a handful run again in a real subprocess (the console entry,
the interpreter set up by the CLI itself) to check the same holds there.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parity.harness import cli
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, RUN_SCHEMA
from synthetic import H200, record, write_run
from test_cli import clean_env

SNOW = "rün-☃"  # a unicode path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A folder of things to point commands at: a good run, damaged runs, a file, an empty folder."""
    d = tmp_path_factory.mktemp("bad")
    write_run(d / "run", [record(op=op, bytes_read=4 << 20, bytes_written=4 << 20, time_ms=0.01)
                          for op in ("copy", "scale")])
    write_run(d / "other-device", [record(op="copy", bytes_read=4 << 20, time_ms=0.02)], device=H200, run_id="r2")
    # a record with the schema tag but no fields (the first example), and nothing else
    write_run(d / "novalid", [{"schema": "parity.measurement/1", "suite": "stream"}])
    bad = write_run(d / "badtypes", [dict(record(), time_ms={"median": "fast"})])
    (bad / "extra.txt").write_text("x")
    (d / "other-schema").mkdir()
    (d / "other-schema" / RUN_FILE).write_text(json.dumps({"schema": "someone.else/3", "status": "complete"}))
    (d / "other-schema" / MEASUREMENTS_FILE).write_text('{"schema": "someone.else/3"}\n')
    (d / "corrupt").mkdir()
    (d / "corrupt" / RUN_FILE).write_text('{"schema": "parity.run/1", "device": ')
    (d / "damaged-meta").mkdir()
    (d / "damaged-meta" / RUN_FILE).write_text(json.dumps({"schema": RUN_SCHEMA, "device": "a GPU"}))
    (d / "binary").mkdir()
    (d / "binary" / RUN_FILE).write_text(json.dumps({"schema": RUN_SCHEMA, "status": "complete"}))
    (d / "binary" / MEASUREMENTS_FILE).write_bytes(b"\xff\xfe\x00garbage")
    (d / "no-plan").mkdir()
    (d / "no-plan" / RUN_FILE).write_text(json.dumps({"schema": RUN_SCHEMA, "status": "running",
                                                      "device": {"name": "x", "backend": "cpu"}}))
    for name, rec in (("bigint", dict(record(), time_ms={"median": 10**400})),
                      ("tiny", dict(record(), time_ms={"median": 5e-324})),
                      ("infwork", dict(record(), work={"flops": float("inf")})),
                      ("badsamples", dict(record(), time_ms={"median": 1.0, "samples": [None, "a"]}))):
        write_run(d / name, [rec])
    write_run(d / "badarch", [record()], device=dict(H200, arch=7))
    (d / "link.json").symlink_to(d / "run" / RUN_FILE)  # names of another run's records
    os.link(d / "other-device" / MEASUREMENTS_FILE, d / "hard.txt")
    os.mkfifo(d / "fifo")
    (d / "fiforun").mkdir()
    (d / "fiforun" / RUN_FILE).write_text((d / "run" / RUN_FILE).read_text())
    os.mkfifo(d / "fiforun" / MEASUREMENTS_FILE)
    (d / "empty").mkdir()
    (d / "file.txt").write_text("not a run\n")
    (d / SNOW).mkdir()
    return d


def snapshot(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            out[str(path)] = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


# (subcommand, arguments with {w} for the world folder, what the error line must say)
CASES = [
    # no command, unknown command, unknown options
    ("", [], "required"),
    ("", ["frobnicate"], "invalid choice"),
    ("", ["--bogus"], "required"),
    ("devices", ["--device", "abc"], "invalid int value"),
    ("devices", ["--device", ""], "invalid int value"),
    ("devices", ["extra"], "unrecognized arguments"),
    ("devices", ["--device", "0", "--device", "1"], "given twice"),
    ("list", ["--preset", "smoke"], "unrecognized arguments"),
    ("list", ["stream"], "unrecognized arguments"),
    # run: names
    ("run", ["nosuch"], "unknown suite 'nosuch'"),
    ("run", [""], "an empty name"),
    ("run", ["stream", "--impl", ""], "an empty name"),
    ("run", ["stream", "--dtype", "fp32,"], "an empty name"),
    ("run", ["gemm", "--shape", ""], "an empty name"),
    ("run", ["stream", "--preset", "nosuch"], "no preset 'nosuch'"),
    ("run", ["stream", "--preset", ""], "an empty name"),
    ("run", ["stream", "--impl", "nosuch"], "unknown implementation 'nosuch'"),
    ("run", ["stream", "--dtype", "fp7"], "no dtype 'fp7'"),
    ("run", ["stream", "--preset", "smoke", "--preset", "quick"], "--preset is given twice"),
    ("run", ["stream", "--out", "{w}/a", "--out", "{w}/b"], "--out is given twice"),
    # run: numbers
    ("run", ["stream", "--size", "12XB"], "cannot read size '12XB'"),
    ("run", ["stream", "--size", "-5"], "cannot read size '-5'"),
    ("run", ["stream", "--size", "0"], "must be positive"),
    ("run", ["stream", "--size", "nan"], "cannot read size 'nan'"),
    ("run", ["stream", "--size", "inf"], "cannot read size 'inf'"),
    ("run", ["stream", "--size", "1e9"], "cannot read size '1e9'"),
    ("run", ["stream", "--size", "100TiB"], "does not fit"),
    ("run", ["gemm", "--shape", "1x2"], "shape"),
    ("run", ["gemm", "--shape", "0x1x1"], "zero dimension"),
    ("run", ["gemm", "--shape", "axbxc"], "cannot read shape"),
    ("run", ["gemm", "--shape", "1.5x2x3"], "cannot read shape"),
    ("run", ["gemm", "--shape", "99999x99999x99999"], "needs about 260.8 GiB"),
    ("run", ["stream", "--shape", "64x64x64"], "does not take --shape"),
    ("run", ["gemm", "--size", "64KiB"], "does not take --size"),
    ("run", ["stream", "--time-cap-s", "nan"], "--time-cap-s "),
    ("run", ["stream", "--time-cap-s", "inf"], "--time-cap-s "),
    ("run", ["stream", "--time-cap-s", "-1"], "--time-cap-s "),
    ("run", ["stream", "--time-cap-s", "soon"], "invalid float value"),
    ("run", ["stream", "--settle-s", "nan"], "--settle-s"),
    ("run", ["stream", "--settle-s", "-0.5"], "--settle-s"),
    ("run", ["stream", "--case-timeout-s", "nan"], "--case-timeout-s "),
    ("run", ["stream", "--case-timeout-s", "0"], "--case-timeout-s "),
    ("run", ["stream", "--case-timeout-s=-inf"], "--case-timeout-s "),
    ("run", ["stream", "--rank-timeout-s", "nan"], "--rank-timeout-s "),
    ("run", ["stream", "--rank-timeout-s", "-1"], "--rank-timeout-s "),
    ("run", ["collectives", "--ranks", "100000"], "--ranks 100000: only"),
    ("run", ["collectives", "--ranks", "1"], "two or more ranks"),
    ("run", ["collectives", "--ranks", "0"], "two or more ranks"),
    ("run", ["collectives", "--ranks", "two"], "invalid int value"),
    ("run", ["stream", "--cpu-workers", "0"], "--cpu-workers must be 1 or more"),
    ("run", ["stream", "--cpu-workers", "100000"], "--cpu-workers 100000: only"),
    ("run", ["stream", "--device", "-1"], "--device -1"),
    # run: paths and folders
    ("run", ["stream", "--out", ""], "an empty path"),
    ("run", ["stream", "--out", "{w}/file.txt"], "is a file"),
    ("run", ["stream", "--out", "{w}/run"], "already holds a run"),
    ("run", ["stream", "--out", "{w}/file.txt/sub"], "file.txt"),
    ("run", ["stream", "--out", "{w}/fifo"], "fifo is a FIFO, not a folder"),
    ("run", ["stream", "--out", "{w}/fifo/sub"], "fifo is a FIFO, not a folder"),
    ("run", ["--resume", "{w}/missing"], "no such run folder"),
    ("run", ["--resume", "{w}/run/" + MEASUREMENTS_FILE], "is a file: give the run folder"),
    ("run", ["--resume", "{w}/file.txt"], "is a file"),
    ("run", ["--resume", "{w}/empty"], "not a parity run folder"),
    ("run", ["--resume", "{w}/other-schema"], "not a parity run file"),
    ("run", ["--resume", "{w}/corrupt"], "corrupt"),
    ("run", ["--resume", "{w}/no-plan"], "damaged"),
    ("run", ["--resume", "{w}/" + SNOW], "not a parity run folder"),
    ("run", ["--resume", "{w}/run", "stream"], "--resume takes its plan"),
    ("run", ["--resume", "{w}/run", "--preset", "smoke"], "--resume takes its plan"),
    ("run", ["--resume", "{w}/run", "--case-timeout-s", "5"], "--resume takes its plan"),
    ("run", ["--resume", ""], "an empty path"),
    # report
    ("report", [], "give one or more run folders"),
    ("report", ["{w}/missing"], "no such run folder"),
    ("report", ["{w}/file.txt"], "file.txt is a file, not a run folder"),
    ("report", ["{w}/fifo"], "fifo is a FIFO, not a run folder"),
    ("report", ["{w}/empty"], "not a parity run folder"),
    ("report", ["{w}/other-schema"], "not a parity run file"),
    ("report", ["{w}/corrupt"], "corrupt"),
    ("report", ["{w}/damaged-meta"], "its device is not a table"),
    ("report", ["{w}/binary"], "not UTF-8"),
    ("report", ["{w}/novalid"], "holds no valid record"),
    ("report", ["{w}/" + SNOW], "not a parity run folder"),
    ("report", ["{w}/run", "--format", "pdf"], "invalid choice"),
    ("report", ["{w}/run", "--format", "md", "--format", "csv"], "--format is given twice"),
    ("report", ["{w}/run", "--to", "nosuch"], "nosuch"),
    ("report", ["{w}/run", "--to", ""], "an empty spec id"),
    ("report", ["{w}/run", "--out", "{w}/run/" + MEASUREMENTS_FILE], "would destroy the run"),
    ("report", ["{w}/run", "--out", "{w}/empty"], "is a folder"),
    ("report", ["{w}/run", "--format", "parquet"], "give --out FILE"),
    ("report", ["{w}/run", "--publish", "--format", "md"], "--publish"),
    ("report", ["--publish", "--results", "{w}/file.txt"], "file.txt"),
    ("report", ["{w}/bigint"], "not a number"),
    ("project", ["{w}/tiny", "--to", "mi300x"], "no positive time_ms.median"),
    ("compare", ["{w}/run", "{w}/badsamples"], "samples are not a list of numbers"),
    ("report", ["{w}/infwork"], "work.flops is not a number"),
    ("report", ["{w}/badarch"], "its device arch is not text"),
    # writes that reach a run's records by another name, and special files (issue 21)
    ("report", ["{w}/run", "--out", "{w}/link.json"], "would destroy the run"),
    ("estimate", ["--model", "llama3-8b", "--to", "h200", "--out", "{w}/hard.txt"], "would destroy the run"),
    ("history", ["{w}", "--out", "{w}/run/../other-device/" + MEASUREMENTS_FILE], "would destroy the run"),
    ("selfcheck", ["--json", "{w}/fifo"], "is a FIFO"),
    ("report", ["{w}/fiforun"], "is a FIFO"),
    ("specs", ["--check", "{w}/fifo"], "is a FIFO"),
    # compare
    ("compare", ["{w}/run"], "required"),
    ("compare", ["{w}/run", "{w}/missing"], "no such run folder"),
    ("compare", ["{w}/run", "{w}/novalid"], "holds no valid record"),
    ("compare", ["{w}/run", "{w}/other-schema"], "not a parity run file"),
    ("compare", ["{w}/run", "{w}/other-device", "--alpha", "nan"], "alpha must be between 0 and 1"),
    ("compare", ["{w}/run", "{w}/other-device", "--alpha", "2"], "alpha must be between 0 and 1"),
    ("compare", ["{w}/run", "{w}/other-device", "--same-within", "inf"], "'same' band"),
    ("compare", ["{w}/run", "{w}/other-device", "--same-within", "-1"], "'same' band"),
    ("compare", ["{w}/run", "{w}/other-device", "--fail-on-regression", "-1"], "--fail-on-regression"),
    ("compare", ["{w}/run", "{w}/other-device", "--fail-on-regression", "nan"], "--fail-on-regression"),
    ("compare", ["{w}/run", "{w}/other-device", "--format", "html"], "invalid choice"),
    # specs and project
    ("specs", ["nosuch"], "nosuch"),
    ("specs", [""], "spec"),
    ("specs", ["h200", "mi300x"], "unrecognized arguments"),
    ("project", ["{w}/run"], "--to SPEC"),
    ("project", ["{w}/run", "--to", "nosuch"], "nosuch"),
    ("estimate", [], "needs --model"),
    ("estimate", ["--model", "nosuch"], "unknown model"),
    ("estimate", ["--model", "llama3-8b", "--to", "nosuch"], "unknown spec"),
    ("estimate", ["--model", "llama3-8b", "--batch", "0"], "at least 1"),
    ("estimate", ["--model", "llama3-8b", "--batch", "nan"], "invalid int"),
    ("estimate", ["{w}/missing", "--model", "llama3-8b"], "no such run folder"),
    ("estimate", ["--model", "llama3-8b", "--reserve", "1.5"], "--reserve"),
    ("estimate", ["--model", "llama3-8b", "--tp", "0"], "--tp"),
    ("estimate", ["--model", "llama3-8b", "--format", "html"], "--out"),
    ("estimate", ["--model", "llama3-8b", "--model", "llama3-70b"], "given twice"),
    ("history", ["{w}/missing"], "no such results folder"),
    ("history", ["{w}/fifo"], "fifo is a FIFO, not a results folder"),
    ("history", ["{w}", "--out", "{w}/run/run.json"], "would destroy the run"),
    ("estimate", ["--model", "llama3-8b", "--to", "h200", "--format", "json", "--out", "{w}/run/run.json"],
     "would destroy the run"),
    ("estimate", ["--model", "llama3-8b", "--to", "h200", "--out", "{w}/run/measurements.jsonl"], "would destroy"),
    ("selfcheck", ["--json", "{w}/run/run.json"], "would destroy the run"),
    ("compare", ["{w}/run,{w}/run", "{w}/run"], "given twice on one side"),
    ("run", ["stream", "--cpu-workers", "2", "--all-gpus"], "not both"),
    ("inspect", ["--target", "sm_42"], "unknown target sm_42"),
    ("inspect", ["--target", ""], "unknown target"),
    ("inspect", ["--suite", "nosuch"], "unknown suite"),
    ("inspect", ["--preset", "nosuch"], "unknown preset"),
    ("inspect", ["--target", "sm_90a", "--target", "gfx942"], "given twice"),
    ("history", ["{w}", "--format", "bogus"], "invalid choice"),
    ("project", ["{w}/missing", "--to", "h200"], "no such run folder"),
    ("project", ["{w}/novalid", "--to", "h200"], "holds no valid record"),
    ("project", ["{w}/run", "--to", "h200", "--against", "{w}/missing"], "no such run folder"),
    ("project", ["{w}/run", "--to", "h200", "--to", "mi300x"], "--to is given twice"),
    # selfcheck
    ("selfcheck", ["--repeats", "1"], "--repeats must be at least 2"),
    ("selfcheck", ["--repeats", "many"], "invalid int value"),
    ("selfcheck", ["--settle-s", "nan"], "--settle-s"),
    ("selfcheck", ["--json", "{w}/missing/x.json"], "no folder"),
    ("selfcheck", ["--json", "{w}/empty"], "is a folder"),
    # merge
    ("merge", [], "required"),
    ("merge", ["{w}/run"], "required"),
    ("merge", ["{w}/run", "{w}/run", "--out", "{w}/merged"], "given twice"),
    ("merge", ["{w}/run", "--out", "{w}/file.txt"], "is a file"),
    ("merge", ["{w}/missing", "--out", "{w}/merged"], "no such run folder"),
    ("merge", ["{w}/other-schema", "--out", "{w}/merged"], "not a parity run file"),
    ("merge", ["{w}/novalid", "--out", "{w}/merged"], "holds no valid record"),
    ("merge", ["{w}/run", "--out", "{w}/run"], "already holds a run"),
    # a folder holding a run (a run.json alone: a killed multi-worker run) is no new run's folder
    ("merge", ["{w}/run", "--out", "{w}/no-plan"], "already holds a run"),
    ("run", ["stream", "--out", "{w}/no-plan"], "already holds a run"),
    ("submit", ["--out", "{w}/run", "--local", "--", "stream"], "already holds a run"),
    # submit
    ("submit", [], "required"),
    ("submit", ["--out", "{w}/sub", "--nodes", "0", "--local", "--", "stream"], "--nodes"),
    ("submit", ["--out", "{w}/sub", "--nodes", "abc"], "invalid int value"),
    ("submit", ["--out", "{w}/sub", "--time-min", "-5", "--local", "--", "stream"], "--time-min"),
]


@pytest.fixture
def no_run_starts(monkeypatch):
    """Bad input must be refused before anything starts: a run that starts fails the test at once."""
    from parity.harness.measurement import supervisor
    from parity.harness.scaleout import group, multigpu

    def started(*args, **kwargs):
        raise AssertionError("bad input started a run")

    from parity.harness.core import results

    for module, name in ((results.RunWriter, "__init__"), (group, "launch"), (multigpu, "_run_workers"),
                         (supervisor.Supervisor, "start")):
        monkeypatch.setattr(module, name, started)


def _argv(command: str, args: list[str], world: Path) -> list[str]:
    return ([command] if command else []) + [a.replace("{w}", str(world)) for a in args]


def test_there_are_enough_and_every_subcommand_is_tried():
    assert len(CASES) >= 60
    tried = {command for command, _, _ in CASES}
    assert set(cli.COMMANDS) <= tried


@pytest.mark.parametrize("command, args, needle", CASES,
                         ids=[f"{c or 'parity'}-{'_'.join(a)[:40]}" for c, a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2_and_nothing_changes(world, tmp_path, monkeypatch, capsys, no_run_starts,
                                                              command, args, needle):
    monkeypatch.chdir(tmp_path)  # a default output folder (runs/) would appear here
    before = snapshot(world, tmp_path)
    try:
        code = cli.main(_argv(command, args, world))
    except SystemExit as exc:  # argparse's own exits (--help) would end here: not expected
        code = exc.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, (code, captured.err[-2000:])
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("parity: error: ") and needle in lines[0], lines[0]
    assert snapshot(world, tmp_path) == before


SUBPROCESS = [("run", ["stream", "--size", "nan"]), ("run", ["--resume", "{w}/run/" + MEASUREMENTS_FILE]),
              ("report", ["{w}/novalid"]), ("run", ["collectives", "--ranks", "100000"]),
              ("compare", ["{w}/run", "{w}/" + SNOW])]


@pytest.mark.parametrize("command, args", SUBPROCESS)
def test_bad_input_through_a_real_process(world, tmp_path, command, args):
    before = snapshot(world, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "parity", *_argv(command, args, world)], cwd=tmp_path,
                          env=clean_env(), capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("parity: error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert snapshot(world, tmp_path) == before


def test_a_record_with_bad_fields_is_skipped_with_a_warning_naming_its_line(world, capsys):
    """Not an error: the file has a valid record; the bad one is one warning and the report runs."""
    folder = world.parent / "mixed"
    write_run(folder, [record(op="copy", bytes_read=1 << 20, time_ms=0.01),
                       {"schema": "parity.measurement/1", "suite": "stream"},
                       dict(record(op="scale"), status="ok", time_ms={"median": "fast"})])
    assert cli.main(["report", str(folder), "--format", "csv"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("parity: warning:")]
    assert len(warnings) == 2 and "line 2 skipped: no op" in warnings[0]
    assert "line 3 skipped: its time_ms.median is not a number" in warnings[1]
    assert "Traceback" not in err


def test_unicode_run_folder_works(world, tmp_path, capsys):
    folder = write_run(tmp_path / SNOW, [record(op="copy", bytes_read=1 << 20, time_ms=0.01)])
    assert cli.main(["report", str(folder), "--format", "md"]) == 0
    assert os.path.isdir(folder)
