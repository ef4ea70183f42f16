"""The results files: the only link between measuring and reporting.

A run folder holds `run.json` (what was run, where, with which versions) and `measurements.jsonl`
(one record per case, appended and flushed as each finishes, so an interrupted run keeps every
finished record). Records are frozen once written; a corrected spec re-renders tables from them.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from parity.harness.core import safeio

RUN_FILE = "run.json"
MEASUREMENTS_FILE = "measurements.jsonl"
RUN_SCHEMA = "parity.run/1"
RECORD_SCHEMA = "parity.measurement/1"
# Below this share of busy (timed) device time in the telemetry window, power-derived figures are
# withheld: the power reading then averages holds, flushes and host work (measurement/telemetry.py).
DUTY_MIN = 0.8
RECORD_PREFIX = '{"schema": "%s"' % RECORD_SCHEMA  # how every record written by RunWriter begins


class ResultsError(Exception):
    """A run folder or results file that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Measurement:
    """What happened to one case: status and reason, timing, work and validation."""

    suite: str
    op: str
    impl: str
    backend: str
    params: dict[str, Any]
    status: str  # ok | skipped | failed | invalid
    reason: str | None
    timing: str | None  # events | wall | wall-interpret
    key: str
    device: str
    cache: str | None = None  # cold | warm
    metric: str | None = None  # the rate the report leads with: TFLOPS or GB/s
    path: str | None = None  # native | emulated
    time_ms: dict[str, Any] | None = None  # median, p10, p90, min, n, noise_rel, stop, samples
    work: dict[str, Any] | None = None  # flops, bytes_read, bytes_written, math_dtype
    validation: dict[str, Any] | None = None  # passed, error, tolerance, max_abs_error
    telemetry: dict[str, Any] | None = None  # clocks, power, energy, throttling over the timed window (telemetry.py)
    started_at: str | None = None
    duration_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    gpu_index: int | None = None  # which GPU of its node, in a run over several (multigpu.py)
    host: str | None = None  # which node, in a run gathered from several (multigpu.merge)

    def to_dict(self) -> dict[str, Any]:
        out = {"schema": RECORD_SCHEMA}
        out.update({name: getattr(self, name) for name in self.__dataclass_fields__})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Measurement":
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__ if name in data})


@dataclass(frozen=True)
class Run:
    path: Path
    meta: dict[str, Any]
    records: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...] = ()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """A run folder's own JSON file (run.json), replaced whole (safeio.replace_own: never a link)."""
    safeio.replace_own(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


class RunWriter:
    """Appends records to a run folder; each line is flushed to the OS as soon as it is written."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = path
        self.meta = meta
        path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path / RUN_FILE, meta)
        measurements = path / MEASUREMENTS_FILE
        _drop_partial_tail(measurements)
        self._file = safeio.append_own(measurements)  # never through a link into another run

    def append(self, record: Measurement) -> None:
        with _naming(self.path / MEASUREMENTS_FILE):
            self._file.write(json.dumps(record.to_dict(), allow_nan=True) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def update_meta(self, **fields: Any) -> None:
        self.meta.update(fields)
        with _naming(self.path / RUN_FILE):
            write_json_atomic(self.path / RUN_FILE, self.meta)

    def close(self) -> None:
        self._file.close()

    def abandon(self) -> None:
        """After a write failed (a full disk, a read-only folder): close without raising again, and
        mark the run interrupted where run.json can still be written, so --resume finishes it."""
        try:
            self._file.close()
        except OSError:
            pass
        try:
            self.update_meta(status="interrupted")
        except OSError:
            pass


@contextlib.contextmanager
def _naming(path: Path):
    """An OSError of a write (a full disk says ENOSPC without a file name) names the file."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def _drop_partial_tail(path: Path) -> None:
    """Before appending to a file cut off mid-line, move the fragment aside so lines stay whole."""
    if not path.exists() or path.stat().st_size == 0:
        return
    fd = safeio.open_own(path, os.O_RDWR)
    with os.fdopen(fd, "r+b") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        fragment = data[cut:]
        try:
            json.loads(fragment)
            f.seek(0, os.SEEK_END)
            f.write(b"\n")  # a whole record that only lacks its newline
            return
        except (ValueError, RecursionError):
            pass
        partial = path.with_name(path.name + ".partial")
        with os.fdopen(safeio.open_own(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as out:
            out.write(fragment)
        f.truncate(cut)


STATUSES = ("ok", "skipped", "failed", "invalid")  # as core.model.STATUSES (results imports nothing of the harness)
_TEXT_FIELDS = ("backend", "reason", "timing", "device", "cache", "metric", "path", "started_at", "host")
_DICT_FIELDS = ("time_ms", "work", "validation", "telemetry", "extra")
# Fields the readers do arithmetic with: each a number (or null) where present.
_NUMBERS = {"time_ms": ("median", "p10", "p90", "min", "max", "mean", "n", "noise_rel"),
            "work": ("flops", "bytes_read", "bytes_written", "flops_fa"),
            "validation": ("max_abs_error",),
            "telemetry": ("sm_clock_mhz_median", "sm_clock_mhz_min", "mem_clock_mhz_median", "power_w_median",
                          "energy_j_per_call", "temp_c_max", "throttled_fraction")}


# A recorded number the readers compute with: finite and within what float arithmetic holds without
# overflow or a division by a denormal (10**400 is an int Python cannot make a float; NaN passes
# every comparison; an infinite work count or median is refused where checked). A time under a picosecond is below every timer's resolution.
NUMBER_LIMIT = 1e30
MIN_TIME_MS = 1e-9


def _is_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return not math.isfinite(float(value)) or abs(value) <= NUMBER_LIMIT  # noise_rel of one sample: inf
    except OverflowError:
        return False


def record_problem(record: dict[str, Any]) -> str | None:
    """What makes a record unusable by the readers (a missing field, a wrong type), or None.

    Kept apart from reading so that every reader applies the same rule and a record that passes
    cannot end in a traceback deep in a report: the fields checked are the ones readers compute with."""
    for name in ("suite", "op", "impl", "key"):
        if not isinstance(record.get(name), str) or not record[name]:
            return f"no {name}" if name not in record else f"its {name} is not a name"
    if record.get("status") not in STATUSES:
        return f"its status {record.get('status')!r} is not one of {', '.join(STATUSES)}"
    if not isinstance(record.get("params"), dict):
        return "no params" if "params" not in record else "its params are not a table"
    for name in _TEXT_FIELDS:
        if record.get(name) is not None and not isinstance(record[name], str):
            return f"its {name} is not text"
    for name in _DICT_FIELDS:
        if record.get(name) is not None and not isinstance(record[name], dict):
            return f"its {name} is not a table"
    for name, numbers in _NUMBERS.items():
        for key in numbers:
            value = (record.get(name) or {}).get(key)
            if value is not None and not (_is_number(value) and (name != "work" or math.isfinite(value))):
                return f"its {name}.{key} is not a number"
    samples = (record.get("time_ms") or {}).get("samples")
    if samples is not None and not (isinstance(samples, list) and all(map(_is_number, samples))):
        return "its time_ms.samples are not a list of numbers"
    if not isinstance(record["params"].get("dtype", ""), str):
        return "its params.dtype is not a name"
    for key in ("math_dtype", "bytes_over"):  # the kinds the readers group rates by
        value = (record.get("work") or {}).get(key)
        if value is not None and not isinstance(value, str):
            return f"its work.{key} is not a name"
    if record.get("duration_s") is not None and not _is_number(record["duration_s"]):
        return "its duration_s is not a number"
    if record.get("gpu_index") is not None and (not isinstance(record["gpu_index"], int)
                                                or isinstance(record["gpu_index"], bool)):
        return "its gpu_index is not an integer"
    if record["status"] == "ok":
        median = (record.get("time_ms") or {}).get("median")
        if not _is_number(median) or not MIN_TIME_MS <= median <= NUMBER_LIMIT:
            return "it is ok but has no positive time_ms.median"
    return None


_META_TABLES = ("device", "plan", "versions", "host", "timing", "counts", "multi_gpu")


def meta_problem(meta: dict[str, Any]) -> str | None:
    """What makes a run.json unusable by the readers (the tables they read are not tables), or None."""
    for name in _META_TABLES:
        if meta.get(name) is not None and not isinstance(meta[name], dict):
            return f"its {name} is not a table"
    for name in ("status", "run_id", "started_at", "ended_at"):
        if meta.get(name) is not None and not isinstance(meta[name], str):
            return f"its {name} is not text"
    for device in [meta.get("device") or {}, *(d for d in meta.get("devices") or () if isinstance(d, dict))]:
        for name in ("name", "backend", "arch"):  # keys of spec matching and of every table
            if device.get(name) is not None and not isinstance(device[name], str):
                return f"its device {name} is not text"
    if meta.get("devices") is not None and not (isinstance(meta["devices"], list)
                                                and all(isinstance(d, dict) for d in meta["devices"])):
        return "its devices are not a list of tables"
    return None


def valid_records(path: Path, numbered: list[tuple[int, dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The records that pass `record_problem`, and one warning per record skipped (naming its line).
    A file with lines but no valid record is one ResultsError."""
    records, notes = [], []
    for number, record in numbered:
        problem = record_problem(record)
        if problem:
            notes.append(f"{path}: line {number} skipped: {problem}")
        else:
            records.append(record)
    if numbered and not records:
        raise ResultsError(f"{path} holds no valid record ({notes[0].split(': ', 1)[1]}"
                           f"{f', and {len(notes) - 1} more like it' if len(notes) > 1 else ''})")
    return records, notes


def read_records(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Records of a measurements file, streamed a line at a time (safeio: a regular file only, each
    line up to its cap, nesting bounded); a truncated last line is dropped with a warning, and so is
    a record the readers cannot use (`record_problem`), naming its line."""
    records, notes = [], []
    try:
        for number, raw, whole in safeio.iter_lines(path):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ResultsError(f"{path} is not a parity results file (line {number} is not UTF-8 text)") from None
            try:
                record = safeio.parse_json(line, f"{path}: line {number}")
            except ValueError as exc:
                if not whole and (line.startswith(RECORD_PREFIX) or RECORD_PREFIX.startswith(line)):
                    notes.append(f"{path}: the last line ({number}) is truncated and was ignored")
                    continue
                if "nests" in str(exc):
                    raise ResultsError(str(exc)) from None
                if number == 1:
                    raise ResultsError(f"{path} is not a parity results file (line 1 is not JSON)") from None
                raise ResultsError(f"{path} is corrupt: line {number} is not valid JSON") from None
            if not isinstance(record, dict) or record.get("schema") != RECORD_SCHEMA:
                raise ResultsError(f"{path} is not a parity results file (line {number} has no {RECORD_SCHEMA} schema)")
            records.append((number, record))
    except safeio.FileRefused as exc:
        raise ResultsError(str(exc)) from None
    records, skipped = valid_records(path, records)
    return records, notes + skipped


def read_meta(meta_path: Path) -> dict[str, Any]:
    """A run.json, read by safeio's rules and checked: a one-line ResultsError for anything else."""
    try:
        meta = safeio.parse_json(safeio.read_bytes(meta_path, "run"), str(meta_path))
    except safeio.FileRefused as exc:
        raise ResultsError(str(exc)) from None
    except ValueError as exc:
        raise ResultsError(f"{meta_path} is corrupt (not valid JSON)" if "nests" not in str(exc) else str(exc)) from None
    if not isinstance(meta, dict) or meta.get("schema") != RUN_SCHEMA:
        raise ResultsError(f"{meta_path} is not a parity run file (no {RUN_SCHEMA} schema)")
    problem = meta_problem(meta)
    if problem:
        raise ResultsError(f"{meta_path} is damaged: {problem}")
    for name in _META_TABLES:  # a table recorded as null is a table not recorded: every reader's .get(name, {})
        if name in meta and meta[name] is None:
            del meta[name]
    return meta


def run_meta(path: Path | str) -> tuple[Path, dict[str, Any]]:
    """A run's folder and its run.json, without its records: read_run's refusals of a path that is
    no run folder, cheap enough to come before anything heavy is imported."""
    path = Path(path)
    if path.is_file() and path.name in (MEASUREMENTS_FILE, RUN_FILE):
        path = path.parent
    if not path.is_dir():
        raise ResultsError(safeio.not_a_folder(path, "a run folder") or f"{path}: no such run folder")
    meta_path = path / RUN_FILE
    if not os.path.lexists(meta_path):
        raise ResultsError(f"{path} is not a parity run folder (no {RUN_FILE})")
    return path, read_meta(meta_path)


def read_run(path: Path | str) -> Run:
    path, meta = run_meta(path)
    measurements = path / MEASUREMENTS_FILE
    records, notes = read_records(measurements) if measurements.exists() else ([], [])
    records, twice = latest_per_case(records)
    if twice:
        notes = [*notes, f"{path}: {len(twice)} case(s) recorded more than once (two writers?), e.g. {twice[0]}: "
                         "the later record of each is kept"]
    status = meta.get("status")
    if status in ("running", "interrupted"):  # a reader must not take a partial run for a whole one
        notes = [*notes, f"{path}: the run is {status}, not complete ({len(records)} records); "
                         f"parity run --resume {path} finishes it"]
    return Run(path=path, meta=meta, records=tuple(records), warnings=tuple(notes))


def held_run(folder: Path) -> str | None:
    """Why `folder` already holds a run (its run.json, or records), or None. A killed multi-worker
    run has a run.json and no top-level records yet: a new run, merge or submit there would
    overwrite the plan --resume needs, so a run.json alone counts."""
    folder = Path(folder)
    if os.path.lexists(folder / RUN_FILE):
        return f"its {RUN_FILE}"
    measurements = folder / MEASUREMENTS_FILE
    if os.path.islink(measurements) or (measurements.exists() and measurements.stat().st_size):
        return f"its {MEASUREMENTS_FILE}"
    return None


def latest_per_case(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """One record per case (its key, on its GPU and host: a run over several GPUs holds each case
    once per GPU), the later where a case was written twice; and the keys found twice."""
    latest: dict[tuple, dict[str, Any]] = {}
    twice: list[str] = []
    for number, record in enumerate(records):
        ident = (record.get("key"), record.get("gpu_index"), record.get("host"),
                 record.get("device_part")) if "key" in record else (number,)  # device_part: merge's part
        if ident in latest and record.get("key") not in twice:
            twice.append(record.get("key"))
        latest.pop(ident, None)  # the later record also takes the later place
        latest[ident] = record
    return list(latest.values()), twice


def done_keys(records: Iterable[dict[str, Any]]) -> set[str]:
    return {r["key"] for r in records if "key" in r}


def is_collective(rec: dict[str, Any]) -> bool:
    """A record of a collective: its bytes move over the interconnect (collectives suite's Work)."""
    return (rec.get("work") or {}).get("bytes_over") == "interconnect"
