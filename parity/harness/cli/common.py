"""What every command shares: exit codes, argument types, the console, output files."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from parity.harness.core import safeio
from parity.harness.core.limits import parse_shape, parse_size  # noqa: F401 - the commands' argument types
from parity.harness.core.model import UsageError

EXIT_USAGE = 2


EXIT_CASES_FAILED = 1


EXIT_INTERRUPTED = 130


class StoreOnce(argparse._StoreAction):
    """An option that takes one value refuses a second (`--out a --out b`): argparse would keep
    the last one silently, and the user meant one of them."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = namespace.__dict__.setdefault("_given_once", set())
        if option_string and self.dest in seen:
            raise UsageError(f"{'/'.join(self.option_strings)} is given twice: give it once")
        seen.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", "store", StoreOnce)
        self.register("action", None, StoreOnce)

    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see {self.prog} --help)")


def path_arg(text: str) -> Path:
    """A path argument; an empty one (`--out ""`) would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def paths_arg(text: str) -> tuple[Path, ...]:
    """One path, or several separated by commas (`parity compare A1,A2,A3 B1,B2,B3`)."""
    return tuple(path_arg(part) for part in text.split(","))


def spec_id_arg(text: str) -> str:
    """A spec id argument; an empty one (`--to ""`) would silently mean "the matched spec"."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty spec id")
    return text


def names(values: list[str] | None) -> tuple[str, ...]:
    """Repeated and comma-separated options, in order, without duplicates."""
    out: list[str] = []
    for value in values or []:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return tuple(dict.fromkeys(out))


def make_console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False,
                   width=None if sys.stdout.isatty() else 200)


def detect_device(index: int, select: bool = True):
    from parity.harness.core import device as device_mod

    return device_mod.detect(index, select)


def warn(line: str) -> None:
    print(f"parity: warning: {line}", file=sys.stderr)


def require_triton() -> None:
    from parity.harness.measurement.registry import triton_problem

    problem = triton_problem()
    if problem:
        raise UsageError(problem)


def refuse_overwriting_runs(out: Path | None, run_dirs: list[Path]) -> None:
    """A report written over a run's own files would destroy the run it was made from (or any other:
    safeio.check_target tells a run's records by the file itself, whatever path names it)."""
    safeio.check_target(out, "--out", protect=tuple(run_dirs))


def check_report_needs(args) -> None:
    """Optional dependencies and arguments, checked before anything is read or written."""
    if args.format == "parquet":
        if args.out is None:
            raise UsageError("--format parquet writes a file: give --out FILE")
        try:
            import pyarrow  # noqa: F401
        except Exception:  # noqa: BLE001 - any failure to import is reported the same way
            raise UsageError("--format parquet needs pyarrow: pip install 'parity[report]'") from None
    if args.format == "html" or args.plots:
        from parity.harness.reporting import plots

        problem = plots.problem()
        if problem:
            raise UsageError(problem)


def refuse_run_file(out: Path | None, option: str = "--out") -> None:
    """Before any work: a target no writer may write (a run's records, a device, a FIFO) is refused."""
    safeio.check_target(out, option)


def emit(text: str, out: Path | None) -> None:
    """The one way a command writes its output: stdout, or the file `out` (`-`: stdout) by safeio."""
    if out is None or str(out) == safeio.STDOUT:
        sys.stdout.write(text)
        return
    write_file(out, text.encode("utf-8"))


def write_file(out: Path, data: bytes, option: str = "--out") -> None:
    try:
        safeio.write_bytes(out, data, option)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    if str(out) != safeio.STDOUT:
        print(f"parity: wrote {out}", file=sys.stderr)
