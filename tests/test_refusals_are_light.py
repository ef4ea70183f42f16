"""Bad input is refused before torch is imported: torch's import alone takes 1.5 s or more, and the
rule is one line, exit 2, in well under a second. A behaviour check, not a timing one: each command
line runs in one fresh interpreter (torch could only be there because parity imported it), and the
child says, after each, whether torch is in sys.modules.

The cases run in order in one child (about 0.2 s in all, not 0.1 s each); once torch is imported it
stays, so the first case said to import it is the one that did. A suite's presets, dtypes,
implementations and size checks are its light metadata (parity/suites/_meta), read without torch;
only a plugin suite's wait for its Suite (tests/test_suite_meta.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from background import clean_env
from synthetic import stream_record, write_run

# Each with {w}: a folder holding a run, a file, a FIFO, an empty folder and a corrupt run.
CASES = [
    ["run", "--resume", "{w}/file.txt"],
    ["run", "--resume", "{w}/missing"],
    ["run", "--resume", "{w}/empty"],
    ["run", "--resume", "{w}/fifo"],
    ["run", "--resume", "{w}/corrupt"],
    ["run", "stream", "--out", "{w}/file.txt"],
    ["run", "stream", "--out", "{w}/file.txt/sub"],
    ["run", "stream", "--out", "{w}/run"],
    ["run", "nosuch"],
    ["run", "stream", "--time-cap-s", "nan"],
    ["run", "stream", "--cpu-workers", "0"],
    ["run", "stream", "--cpu-workers", "100000"],
    ["run", "stream", "--cpu-threads", "100000"],
    ["run", "collectives", "--ranks", "0"],
    ["run", "--device", "-1"],
    ["run", "--preset", "nope"],
    ["run", "--impl", "nope"],
    ["run", "--dtype", "nope"],
    ["run", "gemm", "--dtype", "fp32"],
    ["run", "stream", "--size", "1"],
    ["run", "attention", "--size", "1KiB"],
    ["run", "gemm", "--shape", "1x2"],
    ["submit", "--out", "{w}/sub", "--nodes", "0", "--local", "--", "stream"],
    ["submit", "--out", "{w}/sub", "--local", "--", "nosuch"],
    ["merge", "{w}/file.txt", "--out", "{w}/merged"],
    ["report", "{w}/fifo"],
    ["report", "{w}/run", "--to", "nosuch"],
    ["report", "{w}/run", "--plots", "{w}/file.txt"],
    ["compare", "{w}/missing", "{w}/run"],
    ["compare", "{w}/run", "{w}/run", "--alpha", "2"],
    ["specs", "nosuch"],
    ["specs", "--check", "{w}/fifo"],
    ["project", "{w}/empty", "--to", "h200"],
    ["project", "{w}/run", "--to", "h200", "--against", "{w}/missing"],
    ["estimate", "--model", "nosuch"],
    ["estimate", "--model", "llama3-8b", "--batch", "0"],
    ["estimate", "{w}/missing", "--model", "llama3-8b"],
    ["history", "{w}/file.txt"],
    ["selfcheck", "--repeats", "1"],
    ["selfcheck", "--device", "-1"],
    ["selfcheck", "--json", "{w}/empty"],
    ["inspect", "--target", "sm_42"],
    ["inspect", "--suite", "nosuch"],
    ["inspect", "--preset", "nope"],
    ["devices", "--device", "-1"],
    ["list", "--bogus"],
]
# Where no GPU can be here, the counts, indices and sizes a GPU would bound are refused early too.
CPU_ONLY = [
    ["run", "--size", "100TiB"],
    ["run", "gemm", "--shape", "100000x100000x100000"],
    ["run", "collectives", "--ranks", "100000"],
    ["run", "--device", "3"],
    ["selfcheck", "--device", "3"],
]

CHILD = """
import contextlib, io, json, sys
from parity.harness.cli import main
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    print(json.dumps({"code": code, "stderr": err.getvalue(), "torch": "torch" in sys.modules}), flush=True)
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("light")
    write_run(d / "run", [stream_record()])
    (d / "file.txt").write_text("not a run\n")
    os.mkfifo(d / "fifo")
    (d / "empty").mkdir()
    (d / "corrupt").mkdir()
    (d / "corrupt" / "measurements.jsonl").write_text("garbage\n")
    return d


def test_every_subcommand_has_a_case():
    from parity.harness import cli

    assert {argv[0] for argv in CASES} == set(cli.COMMANDS)


def test_refusals_come_before_torch_is_imported(world):
    from parity.harness.core.device import gpu_may_be_here

    cases = CASES + ([] if gpu_may_be_here() else CPU_ONLY)
    argvs = [[a.replace("{w}", str(world)) for a in argv] for argv in cases]
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(argvs)], cwd=world, env=clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(cases), proc.stdout[-2000:]
    for argv, r in zip(cases, results):
        lines = [line for line in r["stderr"].splitlines() if line.strip()]
        assert r["code"] == 2 and len(lines) == 1 and lines[0].startswith("parity: error: "), (argv, r)
        assert not r["torch"], f"parity {' '.join(argv)} imported torch before refusing: {lines}"
