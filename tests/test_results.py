"""The results store: append, read while writing, truncated tails, foreign files, run folders."""
from __future__ import annotations

import json
import math

import pytest

from parity.harness.core.results import (
    MEASUREMENTS_FILE,
    RECORD_SCHEMA,
    RUN_FILE,
    RUN_SCHEMA,
    Measurement,
    ResultsError,
    RunWriter,
    done_keys,
    read_records,
    read_run,
)


def meas(i: int = 0, **kw) -> Measurement:
    base = dict(
        suite="stream", op="copy", impl="triton", backend="triton",
        params={"dtype": "fp32", "n": 1000 + i, "working_set_bytes": 8 * (1000 + i)},
        status="ok", reason=None, timing="wall-interpret", key=f"stream/copy/triton/{i}",
        device="Test CPU", cache="warm", metric="GB/s",
        time_ms={"median": 1.5, "p10": 1.0, "p90": 2.0, "min": 0.9, "n": 3, "noise_rel": 0.1,
                 "stop": "noise", "samples": [1.0, 1.5, 2.0]},
        work={"flops": 0, "bytes_read": 4000, "bytes_written": 4000, "math_dtype": "fp32"},
        validation={"passed": True, "error": None, "tolerance": {"rtol": 1e-6}, "max_abs_error": 0.0},
        started_at="2026-01-01T00:00:00+00:00", duration_s=0.25,
    )
    base.update(kw)
    return Measurement(**base)


META = {"schema": RUN_SCHEMA, "run_id": "test-run", "status": "complete"}


def line(i: int) -> str:
    return json.dumps(meas(i).to_dict()) + "\n"


def write_lines(path, text: str | bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def check_one_line(exc: ResultsError, *needles: str) -> None:
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    for needle in needles:
        assert needle in message, message


# --- Measurement ----------------------------------------------------------------------------------


def test_measurement_round_trip():
    m = meas(3, extra={"native": True})
    d = m.to_dict()
    assert d["schema"] == RECORD_SCHEMA
    assert Measurement.from_dict(d) == m
    assert Measurement.from_dict(json.loads(json.dumps(d))) == m


def test_measurement_round_trip_of_a_skip_keeps_the_nones():
    m = meas(1, status="skipped", reason="too big", time_ms=None, validation=None)
    back = Measurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == m
    assert back.time_ms is None and back.validation is None and back.reason == "too big"


def test_measurement_from_dict_ignores_unknown_fields():
    d = meas(2).to_dict()
    d["added_by_a_later_version"] = 1
    assert Measurement.from_dict(d) == meas(2)


def test_measurement_record_has_the_documented_fields():
    d = meas().to_dict()
    for name in ("suite", "impl", "params", "status", "reason", "timing", "time_ms", "work", "validation"):
        assert name in d


# --- RunWriter --------------------------------------------------------------------------------------


def test_run_writer_writes_run_json(tmp_path):
    writer = RunWriter(tmp_path / "run", dict(META))
    try:
        assert json.loads((tmp_path / "run" / RUN_FILE).read_text()) == META
        writer.update_meta(status="complete")
        assert json.loads((tmp_path / "run" / RUN_FILE).read_text())["status"] == "complete"
        assert not list((tmp_path / "run").glob("*.tmp"))  # the atomic write leaves no temp file
    finally:
        writer.close()


def test_each_record_is_readable_immediately_after_append(tmp_path):
    folder = tmp_path / "run"
    writer = RunWriter(folder, dict(META, status="running"))
    try:
        for i in range(3):
            writer.append(meas(i))
            # Read through a separate handle while the writer is still open.
            records, notes = read_records(folder / MEASUREMENTS_FILE)
            assert notes == []
            assert [r["key"] for r in records] == [meas(j).key for j in range(i + 1)]
            assert Measurement.from_dict(records[-1]) == meas(i)
        run = read_run(folder)
        assert len(run.records) == 3
        # a reader of a run still being written is told so: it is not a whole run
        assert len(run.warnings) == 1 and "not complete (3 records)" in run.warnings[0]
        writer.update_meta(status="complete")
        assert read_run(folder).warnings == ()
    finally:
        writer.close()


def test_run_writer_appends_to_an_existing_file(tmp_path):
    folder = tmp_path / "run"
    w = RunWriter(folder, dict(META))
    w.append(meas(0))
    w.close()
    w = RunWriter(folder, dict(META))
    w.append(meas(1))
    w.close()
    records, notes = read_records(folder / MEASUREMENTS_FILE)
    assert [r["key"] for r in records] == [meas(0).key, meas(1).key]
    assert notes == []


def test_reopening_moves_a_truncated_fragment_aside_and_keeps_whole_lines(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    whole = line(0) + line(1)
    fragment = line(2)[:57]
    path = write_lines(folder / MEASUREMENTS_FILE, whole + fragment)
    writer = RunWriter(folder, dict(META))
    try:
        assert path.read_text() == whole  # the whole lines are untouched
        assert (folder / (MEASUREMENTS_FILE + ".partial")).read_text() == fragment
        writer.append(meas(3))
    finally:
        writer.close()
    records, notes = read_records(path)
    assert notes == []
    assert [r["key"] for r in records] == [meas(i).key for i in (0, 1, 3)]


def test_reopening_keeps_a_whole_last_record_that_only_lacks_its_newline(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    path = write_lines(folder / MEASUREMENTS_FILE, line(0) + line(1).rstrip("\n"))
    writer = RunWriter(folder, dict(META))
    writer.append(meas(2))
    writer.close()
    records, notes = read_records(path)
    assert notes == []
    assert [r["key"] for r in records] == [meas(i).key for i in range(3)]
    assert not (folder / (MEASUREMENTS_FILE + ".partial")).exists()


# --- read_records -------------------------------------------------------------------------------------


def test_truncated_last_line_gives_the_complete_records_and_one_warning(tmp_path):
    path = write_lines(tmp_path / MEASUREMENTS_FILE, line(0) + line(1) + line(2)[:40])
    records, notes = read_records(path)
    assert [r["key"] for r in records] == [meas(0).key, meas(1).key]
    assert len(notes) == 1
    assert "truncated" in notes[0] and "\n" not in notes[0]


def test_read_run_reports_the_truncation_as_a_warning(tmp_path):
    folder = tmp_path / "run"
    write_lines(folder / RUN_FILE, json.dumps(META))
    write_lines(folder / MEASUREMENTS_FILE, line(0) + line(1)[:-10])
    run = read_run(folder)
    assert len(run.records) == 1 and len(run.warnings) == 1


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = write_lines(tmp_path / MEASUREMENTS_FILE, line(0) + line(1)[:30] + "\n" + line(2))
    with pytest.raises(ResultsError) as exc:
        read_records(path)
    check_one_line(exc.value, "line 2")


def test_empty_file_has_no_records(tmp_path):
    path = write_lines(tmp_path / MEASUREMENTS_FILE, "")
    assert read_records(path) == ([], [])


def test_nan_in_a_record_survives(tmp_path):
    folder = tmp_path / "run"
    w = RunWriter(folder, dict(META))
    w.append(meas(0, time_ms={"median": 1.0, "noise_rel": math.inf, "n": 1}))
    w.close()
    records, _ = read_records(folder / MEASUREMENTS_FILE)
    assert records[0]["time_ms"]["noise_rel"] == math.inf


@pytest.mark.parametrize("content", [
    pytest.param('{"a": 1, "b": 2}\n{"a": 3, "b": 4}\n', id="json-lines-without-schema"),
    pytest.param('{"schema": "other.tool/1", "x": 1}\n', id="json-lines-of-another-schema"),
    pytest.param("suite,impl,time_ms\nstream,triton,1.0\n", id="csv"),
    pytest.param("[1, 2, 3]\n[4, 5, 6]\n", id="json-lines-of-lists"),
    pytest.param("1\n2\n", id="numbers"),
    pytest.param(bytes(range(256)) * 4, id="binary"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", id="png"),
    pytest.param(line(0) + '{"not": "parity"}\n', id="foreign-second-line"),
])
def test_foreign_file_is_refused_with_one_line(tmp_path, content):
    path = write_lines(tmp_path / MEASUREMENTS_FILE, content)
    with pytest.raises(ResultsError) as exc:
        read_records(path)
    check_one_line(exc.value, str(path))


def test_foreign_single_line_file_without_newline_is_refused(tmp_path):
    # A one-line file without a final newline that is not JSON at all is not a parity file whose
    # only record was cut off (such a fragment starts like a record: '{"schema": ...'); it was
    # once taken for one and read as an empty run with a warning.
    path = write_lines(tmp_path / MEASUREMENTS_FILE, "this is not a parity results file")
    with pytest.raises(ResultsError):
        read_records(path)


def test_missing_measurements_file_is_an_error(tmp_path):
    with pytest.raises(ResultsError) as exc:
        read_records(tmp_path / "nothing.jsonl")
    check_one_line(exc.value)


# --- read_run -------------------------------------------------------------------------------------------


def test_read_run_missing_folder(tmp_path):
    with pytest.raises(ResultsError) as exc:
        read_run(tmp_path / "missing")
    check_one_line(exc.value, "missing")


def test_read_run_folder_without_run_json(tmp_path):
    (tmp_path / "folder").mkdir()
    write_lines(tmp_path / "folder" / MEASUREMENTS_FILE, line(0))
    with pytest.raises(ResultsError) as exc:
        read_run(tmp_path / "folder")
    check_one_line(exc.value, RUN_FILE)


@pytest.mark.parametrize("content", [
    pytest.param("{not json", id="garbage"),
    pytest.param(b"\xff\xfe\x00binary", id="binary"),
    pytest.param('{"run_id": "x"}', id="no-schema"),
    pytest.param('["a", "list"]', id="a-list"),
    pytest.param("", id="empty"),
])
def test_read_run_corrupt_run_json(tmp_path, content):
    write_lines(tmp_path / "run" / RUN_FILE, content)
    with pytest.raises(ResultsError) as exc:
        read_run(tmp_path / "run")
    check_one_line(exc.value, RUN_FILE)


def test_read_run_on_a_file_path_is_an_error(tmp_path):
    f = write_lines(tmp_path / "file.txt", "hello\n")
    with pytest.raises(ResultsError):
        read_run(f)


def test_read_run_accepts_the_measurements_file_itself(tmp_path):
    folder = tmp_path / "run"
    w = RunWriter(folder, dict(META))
    w.append(meas(0))
    w.close()
    run = read_run(folder / MEASUREMENTS_FILE)
    assert run.path == folder and len(run.records) == 1


def test_read_run_of_a_run_with_no_measurements_yet(tmp_path):
    write_lines(tmp_path / "run" / RUN_FILE, json.dumps(META))
    run = read_run(tmp_path / "run")
    assert run.records == () and run.meta["run_id"] == "test-run"


def test_done_keys():
    assert done_keys([meas(0).to_dict(), meas(1).to_dict(), {"no": "key"}]) == {meas(0).key, meas(1).key}


def test_a_run_cut_off_inside_its_first_record_reads_as_empty_with_a_warning(tmp_path):
    path = write_lines(tmp_path / MEASUREMENTS_FILE, line(0)[:40])
    records, notes = read_records(path)
    assert records == [] and len(notes) == 1


@pytest.mark.parametrize("cut", [1, 2, 10, 20, 33, 34, 35, 60, -1])
def test_a_last_line_cut_anywhere_is_a_truncation_not_corruption(tmp_path, cut):
    # A run killed mid-write can leave any prefix of a record, however short.
    fragment = line(2).rstrip("\n")[:cut]
    path = write_lines(tmp_path / MEASUREMENTS_FILE, line(0) + line(1) + fragment)
    records, notes = read_records(path)
    assert [r["key"] for r in records] == [meas(0).key, meas(1).key]
    assert len(notes) == 1


@pytest.mark.parametrize("cut", [1, 10, 34, 60])
def test_a_run_cut_anywhere_can_be_reopened_and_read(tmp_path, cut):
    folder = tmp_path / "run"
    write_lines(folder / RUN_FILE, json.dumps(META))
    fragment = line(1)[:cut]
    write_lines(folder / MEASUREMENTS_FILE, line(0) + fragment)
    assert len(read_run(folder).records) == 1  # what --resume reads first
    writer = RunWriter(folder, dict(META))
    writer.append(meas(2))
    writer.close()
    run = read_run(folder)
    assert [r["key"] for r in run.records] == [meas(0).key, meas(2).key] and run.warnings == ()
    assert (folder / (MEASUREMENTS_FILE + ".partial")).read_text() == fragment
