"""A process parity starts ends with the process that started it, however that one died.

A worker of `parity run --all-gpus` (or a rank, or a case's supervised worker) left running after
its parent was killed (kill -9, the OOM killer, a closed terminal) goes on holding a GPU and writing
a run nobody watches. Two guards, each enough alone:

- Linux's `PR_SET_PDEATHSIG` (prctl(2)): the kernel sends the child SIGKILL the moment the thread
  that started it dies. Set by the child itself at start-up (a `preexec_fn` is unsafe with threads),
  then the parent's pid is checked again, for a parent that died before the call.
- A lifeline pipe: the parent keeps the write end (never inherited by anyone else) and the child a
  thread blocked reading the other end; the kernel closes the write end when the parent dies, the
  read returns, and the child ends itself. This one also works off Linux.

The parent passes the read end's number and its own pid in `LIFELINE_ENV`; the child removes the
variable from its environment so its own children get their own lifeline, not a stale number.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

LIFELINE_ENV = "PARITY_LIFELINE"  # "FD:PID": the read end of the pipe, and the parent's pid
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_write_end: int | None = None
_read_end: int | None = None
_lock = threading.Lock()


def _pipe() -> int:
    """This process's lifeline (one for all its children); the read end's number."""
    global _write_end, _read_end
    with _lock:
        if _read_end is None:
            _read_end, _write_end = os.pipe()  # both not inheritable: only pass_fds hands the read end on
        return _read_end


def child(env: dict[str, str] | None = None) -> tuple[dict[str, str], tuple[int, ...]]:
    """The environment and `pass_fds` for a child that must end with this process:
    `subprocess.Popen(cmd, env=env, pass_fds=fds)` with `env, fds = lifeline.child(env)`."""
    fd = _pipe()
    env = dict(os.environ if env is None else env)
    env[LIFELINE_ENV] = f"{fd}:{os.getpid()}"
    return env, (fd,)


def _pdeathsig() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl (musl without it, a sandbox): the pipe still holds
        pass


def hold(on_death=None) -> bool:
    """In a child started with `child()`: end this process when its parent ends. Returns whether a
    lifeline was found. `on_death` (default: exit at once, status 1) runs in the watching thread."""
    value = os.environ.pop(LIFELINE_ENV, None)
    if not value:
        return False
    try:
        fd_text, pid_text = value.split(":")
        fd, parent = int(fd_text), int(pid_text)
    except ValueError:
        return False
    _pdeathsig()
    if os.getppid() != parent:  # the parent died before the prctl above could take effect
        os._exit(1)
    try:
        os.set_inheritable(fd, False)
    except OSError:
        return True  # the number names nothing (a parent that passed no fd): pdeathsig alone

    def watch():
        try:
            while os.read(fd, 1):
                pass  # the parent never writes; data would only be noise
        except OSError:
            pass
        (on_death or _die)()

    threading.Thread(target=watch, daemon=True, name="parity-lifeline").start()
    return True


def _die() -> None:
    os._exit(1)
