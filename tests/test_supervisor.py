"""The supervised worker: a case that hangs or kills its process ends alone, recorded failed with
why, and the run goes on from the next case. Faults are real: PARITY_FAULT makes the worker hang,
exit or segfault under the case it names."""
from __future__ import annotations

import json
import signal

import pytest

from parity.harness import cli
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, read_records
from parity.harness.measurement import supervisor
from parity.harness.cli.common import EXIT_CASES_FAILED
from parity.harness.core import ranks

# 4 cases: torch copy and triad... whatever stream's smoke preset gives for one op, one dtype.
SMALL = ["run", "stream", "--preset", "smoke", "--impl", "torch", "--dtype", "fp32", "--time-cap-s", "0.05"]


def run_with_fault(tmp_path, monkeypatch, capsys, fault: str | None, *extra: str):
    monkeypatch.setenv(ranks.WORKER_ENV, "0")
    if fault:
        monkeypatch.setenv(ranks.FAULT_ENV, fault)
    out = tmp_path / "run"
    code = cli.main([*SMALL, "--out", str(out), *extra])
    err = capsys.readouterr().err
    records, notes = read_records(out / MEASUREMENTS_FILE)
    return code, err, records, json.loads((out / RUN_FILE).read_text())


def test_how_a_worker_died_in_words():
    assert supervisor.how_it_died(-signal.SIGSEGV) == "was killed by SIGSEGV"
    assert supervisor.how_it_died(-signal.SIGKILL) == "was killed by SIGKILL"
    assert supervisor.how_it_died(17) == "exited with status 17"
    assert supervisor.how_it_died(None) == "stopped answering"


def test_a_hung_case_is_failed_timed_out_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    code, err, records, meta = run_with_fault(tmp_path, monkeypatch, capsys, "0:hang:1", "--case-timeout-s", "3")
    assert code == EXIT_CASES_FAILED and "Traceback" not in err
    assert len(records) == 14 and len({r["key"] for r in records}) == 14  # every op at both smoke sizes
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0] is records[1]
    assert failed[0]["reason"] == "timed out after 3 s"
    assert 3 <= failed[0]["duration_s"] < 20
    assert {r["status"] for r in records[2:]} == {"ok"}  # the next case ran in a fresh worker
    assert meta["status"] == "complete" and meta["case_timeout_s"] == 3
    assert meta["plan"]["case_timeout_s"] == 3
    assert meta["case_timeout_defaults_s"] == {"gpu": supervisor.DEFAULT_CASE_TIMEOUT_GPU_S,
                                               "cpu": supervisor.DEFAULT_CASE_TIMEOUT_CPU_S}


@pytest.mark.parametrize("kind, how", [("exit", "exited with status 17"), ("segv", "was killed by SIGSEGV")])
def test_a_worker_that_dies_fails_its_case_alone(tmp_path, monkeypatch, capsys, kind, how):
    code, err, records, meta = run_with_fault(tmp_path, monkeypatch, capsys, f"0:{kind}:0")
    assert code == EXIT_CASES_FAILED and "Traceback" not in err
    assert records[0]["status"] == "failed" and records[0]["reason"] == f"the worker running it {how}"
    assert {r["status"] for r in records[1:]} == {"ok"} and len(records) == 14
    assert meta["status"] == "complete" and meta["case_timeout_s"] == supervisor.DEFAULT_CASE_TIMEOUT_CPU_S


def test_a_case_raising_outside_run_case_is_its_failure(tmp_path, monkeypatch, capsys):
    code, _, records, _ = run_with_fault(tmp_path, monkeypatch, capsys, "0:raise:2")
    assert code == EXIT_CASES_FAILED
    assert records[2]["status"] == "failed" and "injected fault" in records[2]["reason"]
    assert sum(r["status"] == "ok" for r in records) == 13


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "1e-320", "0.05"])
def test_case_timeout_must_be_a_positive_finite_number(tmp_path, capsys, value):
    assert cli.main([*SMALL, "--out", str(tmp_path / "x"), f"--case-timeout-s={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--case-timeout-s {float(value)} is not at least 0.1 and at most 86400 s" in err
    assert not (tmp_path / "x").exists()
