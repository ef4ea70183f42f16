"""Every file parity reads or writes for a user goes through here: one rule for every command.

Reading: a file is opened only if it is a regular file, told on the open descriptor (`O_NONBLOCK`
then `fstat`, so a FIFO or a device never blocks the open or the read), up to a size per kind of
file, and a JSON or TOML file nested past what the parsers' recursion can take (`[[[[...` 200 000
deep) is refused instead of raising RecursionError. A records file is streamed a line at a time,
each line up to `LINE_LIMIT_BYTES`. Every failure is one `FileRefused` line naming the file.

Writing: `-` is standard output. A target that exists must be a regular file (a device, FIFO,
socket or folder is refused: replacing /dev/null with a regular file breaks a machine), and must
not be a run's records (`run.json`, `measurements.jsonl` of any run folder), told by the file
itself and not by its name: its device and inode against the records in its own folder, and its
first bytes (a hard link elsewhere, a symlink, `..` all lead to the same inode and content). A
symlink to a regular file is written through, never replaced: the new file takes the place of the
file it points at, by a rename from a temporary file in that file's own folder.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from parity.harness.core.model import UsageError

STDOUT = "-"
MiB = 2**20
RUN_FILE = "run.json"  # as results.RUN_FILE and MEASUREMENTS_FILE (results imports this module)
MEASUREMENTS_FILE = "measurements.jsonl"
RECORD_FILES = (RUN_FILE, MEASUREMENTS_FILE)
# The largest file of each kind parity reads whole. A run.json holds the plan, device and versions
# (a few KiB; a merge of 64 GPUs lists each device: tens of KiB); a spec, model or price file is a
# hand-written table of a few KiB. Far above any real one, far below what a read could choke on.
SIZE_LIMITS = {"run": 16 * MiB, "spec": 4 * MiB, "model": 4 * MiB, "price": 4 * MiB, "prior": 4 * MiB,
               "json": 16 * MiB, "text": 16 * MiB, "lock": 64 * 1024, "log": 16 * MiB,
               "records": 4096 * MiB}  # a records file copied whole (publish)
# One record: its samples (a few thousand floats at most, timing.MAX_SAMPLES) are the bulk.
LINE_LIMIT_BYTES = 16 * MiB
# Nesting a reader accepts after parsing: records and run.json are a few levels deep; a value nested
# deeper than this would reach recursive code downstream (json.dumps of a merge, pandas).
MAX_DEPTH = 64


class FileRefused(UsageError):
    """A file parity will not read or write; the message is one line naming the file."""


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def kind(path: Path | str) -> str | None:
    """What `path` is, for a message ("a file", "a folder", "a FIFO", ...), or None where nothing is."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return "a file" if stat.S_ISREG(mode) else _kind_of(mode)


def not_a_folder(path: Path | str, what: str = "a folder") -> str | None:
    """The line refusing `path` where a folder is wanted and something else is there, else None."""
    found = kind(path)
    return None if found in (None, "a folder") else f"{path} is {found}, not {what}"


# --- reading --------------------------------------------------------------------------------------


def open_regular(path: Path | str) -> int:
    """A descriptor of `path` opened for reading, only if it is a regular file (told on the descriptor)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileRefused(f"{path} is {_kind_of(mode)}: parity reads only regular files")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: Path | str, kind: str = "text") -> bytes:
    """The whole of a regular file up to its kind's size limit."""
    limit = SIZE_LIMITS[kind]
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(limit + 1)  # st_size is not trusted (a file growing, /proc's size 0)
        except OSError as exc:
            raise FileRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise FileRefused(f"{path} is larger than {limit // MiB or limit} {'MiB' if limit >= MiB else 'bytes'}: "
                          f"not a parity {kind} file")
    return data


def read_text(path: Path | str, kind: str = "text") -> str:
    try:
        return read_bytes(path, kind).decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused(f"{path} is not UTF-8 text") from None


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a parsed value nests lists and tables deeper than `limit` (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse_json(text: str | bytes, where: str) -> Any:
    """JSON text parsed; ValueError (one line, naming `where`) for what is not JSON or nests too deep."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"{where} nests deeper than parity reads") from None
    except ValueError as exc:  # JSONDecodeError, a number of too many digits, bad UTF-8 in bytes
        raise ValueError(f"{where} is not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    if too_deep(value):
        raise ValueError(f"{where} nests deeper than {MAX_DEPTH} levels")
    return value


def load_json(path: Path | str, kind: str = "json") -> Any:
    try:
        return parse_json(read_bytes(path, kind), str(path))
    except ValueError as exc:
        raise FileRefused(str(exc)) from None


def load_toml(path: Path | str, kind: str, where: str | None = None) -> dict[str, Any]:
    """A TOML file as a table; FileRefused (one line naming the file) for anything else."""
    import tomllib

    where = where or str(path)
    text = read_text(path, kind)
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise FileRefused(f"{where}: not valid TOML (nested deeper than parity reads)") from None
    except tomllib.TOMLDecodeError as exc:
        raise FileRefused(f"{where}: not valid TOML ({str(exc).splitlines()[0]})") from None
    except ValueError as exc:  # a number of too many digits
        raise FileRefused(f"{where}: not valid TOML ({str(exc).splitlines()[0][:120]})") from None
    if too_deep(data):
        raise FileRefused(f"{where}: not valid TOML (nested deeper than {MAX_DEPTH} levels)")
    return data


def iter_lines(path: Path | str, line_limit: int = LINE_LIMIT_BYTES) -> Iterator[tuple[int, bytes, bool]]:
    """(number, line without its newline, whether the newline was there) for each line of a regular
    file, streamed; FileRefused for a line longer than `line_limit`."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        number = 0
        while True:
            try:
                line = f.readline(line_limit + 1)
            except OSError as exc:
                raise FileRefused(f"cannot read {path}: {exc.strerror or exc}") from None
            if not line:
                return
            number += 1
            whole = line.endswith(b"\n")
            if len(line) > line_limit and not (whole and len(line) == line_limit + 1):
                raise FileRefused(f"{path}: line {number} is longer than {line_limit // MiB} MiB: "
                                  "not a parity records file")
            yield number, line[:-1] if whole else line, whole


def count_lines(path: Path | str) -> int:
    """Whole lines of a regular file, read in blocks (a worker's records, as they grow); 0 if absent."""
    try:
        fd = open_regular(path)
    except FileRefused:
        return 0
    n = 0
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


# --- writing --------------------------------------------------------------------------------------


# How every run.json and record parity writes begins: its schema is its first key.
_RECORDS_HEAD = re.compile(rb'\s*\{\s*"schema"\s*:\s*"parity\.(run|measurement)/')


def _looks_like_records(fd: int) -> bool:
    """Whether an open file begins as a parity run.json or measurements.jsonl does."""
    return _RECORDS_HEAD.match(os.pread(fd, 4096, 0)) is not None


def record_identities(folder: Path) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of the records (run.json, measurements.jsonl) in a folder, following links."""
    out = set()
    for name in RECORD_FILES:
        with contextlib.suppress(OSError):
            st = os.stat(folder / name)
            out.add((st.st_dev, st.st_ino))
    return out


def check_target(path: Path | str | None, option: str = "--out", protect: tuple = ()) -> None:
    """Refuse, before any work, a target no writer may write: one that exists and is not a regular
    file, or is a run's records (by the file itself: see the module's doc). `protect`: run folders
    whose records are refused too (the runs a command reads). `-` (stdout) and None pass."""
    if path is None or str(path) == STDOUT:
        return
    path = Path(path)
    where = f"{option} {path}" if option else str(path)
    try:
        st = os.stat(path)  # follows symlinks: what a write would reach
    except FileNotFoundError:
        parent = Path(os.path.realpath(path)).parent
        if not parent.is_dir():
            raise FileRefused(f"{where}: no folder {parent}") from None
        return
    except OSError as exc:
        raise FileRefused(f"{where}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise FileRefused(f"{where} is a folder: give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise FileRefused(f"{where} is {_kind_of(st.st_mode)}: parity writes only regular files (- is stdout)")
    ident = (st.st_dev, st.st_ino)
    real = Path(os.path.realpath(path))
    folders = [real.parent, *(Path(p) for p in protect)]
    if any(ident in record_identities(folder) for folder in folders):
        raise FileRefused(f"{where} is a run's records ({real}): writing it would destroy the run")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return  # unreadable: the write will say why
    try:
        if _looks_like_records(fd):
            raise FileRefused(f"{where} holds a run's records ({real}): writing it would destroy the run")
    finally:
        os.close(fd)


def write_bytes(path: Path | str, data: bytes, option: str = "--out", protect: tuple = ()) -> None:
    """Write a whole file: to stdout for `-`, else (checked as `check_target`) by a rename from a
    temporary file in the real target's folder, so a reader never sees half of it and a symlink
    stays a symlink."""
    if str(path) == STDOUT:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    check_target(path, option, protect)
    real = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(os.stat(real).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # no stray half-written file beside the target
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)
        raise


def write_text(path: Path | str, text: str, option: str = "--out", protect: tuple = ()) -> None:
    write_bytes(path, text.encode("utf-8"), option, protect)


def write_json(path: Path | str, data: Any, option: str = "--out", protect: tuple = ()) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", option, protect)


# --- a run folder's own files ----------------------------------------------------------------------


def _own(path: Path) -> None:
    """A run's own file (its run.json, its records, its lock, its logs) is a regular file of that
    folder with one name: a symlink or a second hard link would carry the writes into another run."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise FileRefused(f"{path} is a symlink: a run folder's own files are never links; remove it")
    if not stat.S_ISREG(st.st_mode):
        raise FileRefused(f"{path} is {_kind_of(st.st_mode)}: a run folder's own files are regular files")
    if st.st_nlink > 1:
        raise FileRefused(f"{path} has {st.st_nlink} hard links: a copy made with links (cp -l) shares its "
                          "records with another folder; copy it without links")


def replace_own(path: Path, data: bytes) -> None:
    """Replace a run folder's own file (run.json) by a rename from a temporary file beside it."""
    path = Path(path)
    _own(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)
        raise


def open_own(path: Path, flags: int, mode: int = 0o644) -> int:
    """A descriptor of a run folder's own file (records to append to, its lock, a log), never
    through a link, and only a regular file of one name."""
    path = Path(path)
    _own(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileRefused(f"{path} is a symlink: a run folder's own files are never links; remove it") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        _own(path)  # says which
        raise FileRefused(f"{path}: not a regular file of this folder alone")
    os.set_blocking(fd, True)
    return fd


def append_own(path: Path):
    """A run folder's own file opened for appending text (its records, a worker's log)."""
    return os.fdopen(open_own(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a", encoding="utf-8")
