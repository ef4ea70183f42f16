"""A full disk or a read-only folder while a run appends: one line naming the file and the errno,
exit 2, every record written before intact, and `--resume` finishes the run once it can write."""
from __future__ import annotations

import errno
import json
import os

import pytest

from parity.harness import cli
from parity.harness.core import results
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, read_records

RUN = ["run", "stream", "--preset", "smoke", "--impl", "torch", "--dtype", "fp32", "--time-cap-s", "0.02"]


def failing_after(monkeypatch, method: str, calls_ok: int, code: int):
    """The system call under RunWriter.<method> works `calls_ok` times, then fails as a full disk or
    a read-only mount does: an append's fsync after half a record reached the file, or the write of
    run.json's replacement."""
    count = {"n": 0}

    def failing(real):
        def call(*args, **kwargs):
            count["n"] += 1
            if count["n"] > calls_ok:
                raise OSError(code, os.strerror(code))  # as the kernel says it: no file name
            return real(*args, **kwargs)
        return call

    if method == "append":
        real_append = results.RunWriter.append

        def append(self, record):
            if count["n"] >= calls_ok and not isinstance(self._file, _Full):
                self._file = _Full(self._file, code)
            count["n"] += 1
            real_append(self, record)

        monkeypatch.setattr(results.RunWriter, "append", append)
    else:
        monkeypatch.setattr(results, "write_json_atomic", failing(results.write_json_atomic))


class _Full:
    """The run's open file on a disk that just filled: half of the next record gets out, then ENOSPC."""

    def __init__(self, file, code: int):
        self.file, self.code = file, code

    def write(self, text: str) -> int:
        self.file.write(text[: len(text) // 2])
        self.file.flush()
        raise OSError(self.code, os.strerror(self.code))  # as the kernel says it: no file name

    def __getattr__(self, name):
        return getattr(self.file, name)


@pytest.mark.parametrize("method, code, calls_ok", [("append", errno.ENOSPC, 5), ("append", errno.EROFS, 0),
                                                    ("update_meta", errno.ENOSPC, 1)])
def test_a_write_failure_is_one_line_and_resume_finishes(tmp_path, monkeypatch, capsys, method, code, calls_ok):
    out = tmp_path / "run"
    failing_after(monkeypatch, method, calls_ok, code)
    assert cli.main([*RUN, "--out", str(out)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("parity: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    name = MEASUREMENTS_FILE if method == "append" else RUN_FILE
    assert f"cannot write {out / name}: {os.strerror(code)} (errno {code}, {errno.errorcode[code]})" in errors[0]
    assert f"parity run --resume {out}" in errors[0]
    kept, notes = read_records(out / MEASUREMENTS_FILE)
    if method == "append":
        assert len(kept) == calls_ok and notes == [f"{out / MEASUREMENTS_FILE}: the last line "
                                                   f"({calls_ok + 1}) is truncated and was ignored"]
    assert all(r["status"] == "ok" for r in kept)

    monkeypatch.undo()  # there is room again
    assert cli.main(["run", "--resume", str(out)]) == 0, capsys.readouterr().err
    records, notes = read_records(out / MEASUREMENTS_FILE)
    keys = [r["key"] for r in records]
    assert notes == [] and len(keys) == 14 and len(set(keys)) == 14
    assert keys[:len(kept)] == [r["key"] for r in kept]
    assert json.loads((out / RUN_FILE).read_text())["status"] == "complete"
