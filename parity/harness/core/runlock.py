"""One writer per run folder: an exclusive `flock` on `FOLDER/.parity.lock` for the life of a run,
resume, merge or publish.

Two `parity run --out SAME` started together would otherwise both append to one measurements file
and leave every case twice. The second writer gets one line (`RunLocked`, a UsageError: exit 2)
and touches nothing. The kernel drops the lock when its holder dies, even by kill -9, so a crashed
run never leaves a stale lock behind.

Processes parity starts for the same folder (rank 0 of a collective run, written by the launcher
that holds the lock) inherit the holder's claim through `LOCK_ENV`; a nested hold in the holding
process is a no-op for the same reason.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from pathlib import Path
from typing import Iterator

from parity.harness.core import safeio
from parity.harness.core.model import UsageError
from parity.harness.core.results import MEASUREMENTS_FILE

LOCK_FILE = ".parity.lock"
LOCK_ENV = "PARITY_HELD_LOCKS"  # folders whose lock a parent parity process holds, os.pathsep-separated


class RunLocked(UsageError):
    """Another process is writing this folder."""


def _held() -> list[str]:
    return [p for p in os.environ.get(LOCK_ENV, "").split(os.pathsep) if p]


def _holder(path: Path) -> str:
    try:
        text = safeio.read_text(path, "lock").strip()
    except (OSError, safeio.FileRefused):
        return "another parity process"
    return text or "another parity process"


@contextlib.contextmanager
def hold(folder: Path | str, what: str = "run", fresh: bool = False) -> Iterator[None]:
    """Hold `folder`'s lock (creating the folder) until the block ends; RunLocked if another holds it.
    `fresh`: a new run, refused (checked under the lock) where the folder already holds one.

    The lock file is removed on release, and a folder this call created is removed again if nothing
    else was written in it (bad input leaves nothing behind)."""
    folder = Path(folder)
    if fresh:
        with hold(folder, what):
            measurements = folder / MEASUREMENTS_FILE
            if measurements.exists() and measurements.stat().st_size:  # a writer that finished just before us
                raise UsageError(f"{folder} already holds a run: use --resume {folder}, or another --out")
            yield
        return
    key = str(folder.resolve())
    if key in _held():
        yield
        return
    created = [d for d in (folder, *folder.parents) if not d.exists()]  # the leaf first
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = _acquire(path, folder, what)
    previous = os.environ.get(LOCK_ENV)
    os.environ[LOCK_ENV] = os.pathsep.join([*_held(), key])
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(LOCK_ENV, None)
        else:
            os.environ[LOCK_ENV] = previous
        with contextlib.suppress(OSError):
            path.unlink()  # while still holding it: a waiter then finds a fresh file (see _acquire)
        os.close(fd)
        for made in created:
            try:
                made.rmdir()  # only if empty: a run's records stay, a folder made for nothing goes
            except OSError:
                break


def _acquire(path: Path, folder: Path, what: str) -> int:
    while True:
        fd = safeio.open_own(path, os.O_RDWR | os.O_CREAT)  # never through a link onto another run's file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunLocked(f"{folder} is being written by {_holder(path)}: one writer per run folder; wait for "
                            f"it to finish, or give another folder") from None
        # The holder before us may have removed the file between our open and our lock: then we
        # hold a lock on a file nobody else will open. Try again on the file that is there now.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"parity {what} (pid {os.getpid()}: {' '.join(sys.argv[:6])[:200]})\n".encode())
    return fd
