"""parity run, submit and merge: running cases here, on every GPU, on Slurm nodes, and gathering them."""
from __future__ import annotations

import os
import sys
import time

from parity.harness.cli.common import EXIT_INTERRUPTED, make_console, names, parse_shape, parse_size, warn
from parity.harness.cli.parser import build_parser
from parity.harness.core.model import UsageError
from parity.harness.core import safeio


def cmd_run(args, argv) -> int:
    from parity.harness import api
    from parity.harness.core import limits
    from parity.harness.core.results import read_run

    if args.resume and (args.out or args.suites or args.impl or args.dtype or args.size or args.shape
                        or args.preset or args.time_cap_s is not None or args.settle_s is not None
                        or args.min_time_s is not None or args.case_timeout_s is not None
                        or args.cpu_threads is not None):
        raise UsageError("--resume takes its plan from the run folder: give no suites, --out, --preset, --impl, "
                         "--dtype, --size, --shape, --time-cap-s, --settle-s, --min-time-s, --case-timeout-s or --cpu-threads")
    limits.check_run_numbers(args)
    if args.cpu_workers is not None and args.all_gpus:
        raise UsageError("--cpu-workers runs CPU workers in place of the GPUs: give it or --all-gpus, not both")
    sizes = tuple(parse_size(s) for s in names(args.size))
    shapes = tuple(dict.fromkeys(parse_shape(s) for s in names(args.shape)))
    # Everything that needs no device first: detecting it imports torch (1.5 s or more).
    api.check_run_request(suites=names(args.suites), out=args.out, resume=args.resume, time_cap_s=args.time_cap_s,
                          settle_s=args.settle_s, min_time_s=args.min_time_s, case_timeout_s=args.case_timeout_s,
                          ranks=args.ranks, cpu_threads=args.cpu_threads, cpu_workers=args.cpu_workers,
                          rank_timeout_s=args.rank_timeout_s)
    limits.check_counts_early(args.ranks, args.cpu_workers, args.cpu_threads, args.device)
    if not args.resume:
        api.check_plan_request(suites=names(args.suites), preset=args.preset, impls=names(args.impl),
                               dtypes=names(args.dtype), sizes=sizes, shapes=shapes)
    device = api.run_device(args.device)
    note = None if device.is_gpu else ("parity: no GPU here: Triton kernels run in the CPU interpreter; "
                                       "their times are labelled wall-interpret and are not performance")
    with _Progress(note) as progress, _GpuBars(cpu=args.cpu_workers is not None) as bars:
        try:
            outcome = api.run_command(device, suites=names(args.suites), preset=args.preset, impls=names(args.impl),
                                      dtypes=names(args.dtype), sizes=sizes, shapes=shapes, out=args.out,
                                      resume=args.resume, time_cap_s=args.time_cap_s, settle_s=args.settle_s,
                                      min_time_s=args.min_time_s, case_timeout_s=args.case_timeout_s,
                                      ranks=args.ranks, all_gpus=args.all_gpus, cpu_workers=args.cpu_workers,
                                      cpu_threads=args.cpu_threads,
                                      rank_timeout_s=args.rank_timeout_s, command=["parity", *argv],
                                      progress=progress, console=make_console(), warn=warn, gpu_progress=bars)
        except api.RunInterrupted as exc:
            progress.close()
            bars.close()
            print(f"parity: interrupted; finished cases are kept in {exc.path}; continue with "
                  f"parity run --resume {exc.path}", file=sys.stderr)
            return EXIT_INTERRUPTED
    if outcome.reported or not outcome.finished:  # the multi-GPU runner reported itself; or ranks ran it
        return outcome.code
    from parity.harness.reporting import report, spread  # pandas: only once there is a run to print

    out = outcome.path
    run = read_run(out)
    report.print_tables(report.frame([run]), make_console())
    spread.print_extra([run], make_console())  # collectives' bandwidths
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.counts.items())) or "nothing new"
    extra = f" ({outcome.skipped_existing} already done)" if outcome.skipped_existing else ""
    print(f"parity: {counts}{extra}; results in {out}", file=sys.stderr)
    return outcome.code


class _Progress:
    """A progress bar on a terminal (suite, case i of N, time left); a line per case otherwise."""

    def __init__(self, note: str | None = None):
        self._note = note  # said once the plan has been accepted, before the first case
        self._bar = None
        self._task = None
        self._tty = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        self._start = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __call__(self, i, total, case, result):
        if self._note:
            print(self._note, file=sys.stderr, flush=True)
            self._note = None
        if not self._tty:
            if self._start is None:
                self._start = time.monotonic()
            if result is not None:
                status = result.status if not result.reason else f"{result.status}: {result.reason}"
                left = (time.monotonic() - self._start) / i * (total - i)
                print(f"[{i}/{total}, ~{left:.0f} s left] {case.label()}: {status}", file=sys.stderr, flush=True)
            return
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("left"), TimeRemainingColumn(), console=make_console(stderr=True),
                                 transient=True)
            self._bar.start()
            self._task = self._bar.add_task("", total=total)
        if result is None:
            self._bar.update(self._task, description=f"{case.suite} {case.op} {case.impl}")
        else:
            self._bar.update(self._task, completed=i, total=total)  # a follow-up may add cases


class _GpuBars(_Progress):
    """--all-gpus and --cpu-workers: a bar per GPU (or worker) from its records on a terminal; a line
    when a worker's count grows otherwise. (Opening and closing as _Progress.)"""

    def __init__(self, cpu: bool = False):
        super().__init__()
        self._what = "worker" if cpu else "GPU"
        self._tasks: dict[int, int] = {}
        self._shown: dict[int, int] = {}

    def __call__(self, done: dict[int, int], total: int):
        if not self._tty:
            for i, n in sorted(done.items()):
                if n != self._shown.get(i):
                    self._shown[i] = n
                    print(f"parity: {self._what} {i}: {n}/{total} cases", file=sys.stderr, flush=True)
            return
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=make_console(stderr=True), transient=True)
            self._bar.start()
        for i, n in sorted(done.items()):
            if i not in self._tasks:
                self._tasks[i] = self._bar.add_task(f"{self._what} {i}", total=total)
            self._bar.update(self._tasks[i], completed=n, total=max(total, n))  # follow-ups may add cases


def cmd_submit(args, argv) -> int:
    from parity.harness.core import limits
    from parity.harness.scaleout import submit

    limits.check_submit_numbers(args)
    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
    suites = ()
    if run_args:  # the run's own arguments are parsed here, where every option of parity run is known
        run = build_parser().parse_args(["run", *run_args])
        if run.out or run.resume:
            raise UsageError("parity submit chooses each node's folder: give --out to parity submit, before --")
        suites = names(run.suites)
    parameters = {"name": "parity", "timeout_min": args.time_min, "nodes": 1, "tasks_per_node": 1,
                  "gpus_per_node": args.gpus_per_node, "cpus_per_task": args.cpus_per_task,
                  "slurm_partition": args.partition, "slurm_account": args.account}
    return submit.submit(run_args, args.out, args.nodes, args.local, parameters, _print_run, suites,
                         wait=not args.no_wait)


def _print_run(run) -> None:
    from parity.harness.reporting import report  # pandas: only for a run to print, not for a refusal

    report.print_run(run, make_console())


def cmd_merge(args, argv) -> int:
    from parity.harness.scaleout import multigpu

    if line := safeio.not_a_folder(args.out):
        raise UsageError(f"--out {line}")
    from parity.harness.core.results import held_run

    if held_run(args.out):
        raise UsageError(f"{args.out} already holds a run ({held_run(args.out)}): choose another --out")
    seen = {}
    for path in args.runs:
        if path.resolve() in seen:
            raise UsageError(f"{path} is given twice: each run is merged once")
        seen[path.resolve()] = path
    run = multigpu.merge([(path, None) for path in args.runs], args.out, ["parity", *argv],
                         {"merged_from": [str(p) for p in args.runs]})
    counts = ", ".join(f"{n} {s}" for s, n in sorted(run.meta["counts"].items()))
    print(f"parity: {counts} from {len(args.runs)} run(s) merged into {args.out}", file=sys.stderr)
    return 0
