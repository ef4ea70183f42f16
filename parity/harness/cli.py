"""The command line: parses arguments into a plan and passes no argparse object further.

Bad input (an unknown suite, preset, implementation or dtype, an impossible size, a missing or
corrupt run folder) gets one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path

from parity.harness.scaleout.distributed import EXIT_RANK, RankError
from parity.harness.core.model import UsageError
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, ResultsError
from parity.harness.core.specs import SpecError
from parity.harness.core.llm import ModelError
from parity.harness.core.prices import PriceError
from parity.harness.core.priors import PriorError

EXIT_USAGE = 2
EXIT_CASES_FAILED = 1
EXIT_INTERRUPTED = 130

SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 2**10, "m": 2**20, "g": 2**30}


class _StoreOnce(argparse._StoreAction):
    """An option that takes one value refuses a second (`--out a --out b`): argparse would keep
    the last one silently, and the user meant one of them."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = namespace.__dict__.setdefault("_given_once", set())
        if option_string and self.dest in seen:
            raise UsageError(f"{'/'.join(self.option_strings)} is given twice: give it once")
        seen.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", "store", _StoreOnce)
        self.register("action", None, _StoreOnce)

    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see {self.prog} --help)")


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in SIZE_UNITS:
        raise UsageError(f"cannot read size {text!r}: write e.g. 65536, 64KiB, 256MiB, 1GiB or 2GB")
    size = int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])
    if size <= 0:
        raise UsageError(f"size {text!r} must be positive")
    return size


def parse_shape(text: str) -> tuple[int, ...]:
    """A shape such as 4096x4096x4096 (GEMM MxNxK): positive integers joined by "x"."""
    if not re.fullmatch(r"\s*\d+(\s*[xX]\s*\d+)*\s*", text):
        raise UsageError(f"cannot read shape {text!r}: write MxNxK, e.g. 4096x4096x4096")
    dims = tuple(int(d) for d in re.split(r"[xX]", text))
    if min(dims) <= 0:
        raise UsageError(f"shape {text!r} has a zero dimension: every dimension must be positive")
    return dims


def _path(text: str) -> Path:
    """A path argument; an empty one (`--out ""`) would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def _paths(text: str) -> tuple[Path, ...]:
    """One path, or several separated by commas (`parity compare A1,A2,A3 B1,B2,B3`)."""
    return tuple(_path(part) for part in text.split(","))


def _spec_id(text: str) -> str:
    """A spec id argument; an empty one (`--to ""`) would silently mean "the matched spec"."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty spec id")
    return text


def _names(values: list[str] | None) -> tuple[str, ...]:
    """Repeated and comma-separated options, in order, without duplicates."""
    out: list[str] = []
    for value in values or []:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return tuple(dict.fromkeys(out))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="parity", description="Cross-vendor GPU microbenchmarks, normalized against specs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("devices", help="what is here")
    p.add_argument("--device", type=int, default=0, help="GPU index among the visible ones")
    p.add_argument("--json", action="store_true", help="print the detection as JSON")

    p = sub.add_parser("list", help="suites, implementations, presets")
    p.add_argument("--json", action="store_true", help="print the suites as JSON")

    p = sub.add_parser("run", help="run suites (default: the quick preset of every suite)")
    p.add_argument("suites", nargs="*", help="suites to run (default: all)")
    p.add_argument("--preset", help="smoke | quick | full (default quick)")
    p.add_argument("--impl", action="append", help="implementations to run, e.g. triton,torch")
    p.add_argument("--dtype", action="append", help="dtypes to run, e.g. fp32,bf16")
    p.add_argument("--size", action="append", help="sizes replacing the preset's sweep, e.g. 64KiB,1GiB")
    p.add_argument("--shape", action="append", help="shapes replacing the preset's, e.g. GEMM MxNxK 4096x4096x4096")
    p.add_argument("--out", type=_path, help="run folder to create (default runs/<time>-<device>)")
    p.add_argument("--resume", type=_path, metavar="DIR", help="finish an interrupted run: only missing cases")
    p.add_argument("--device", type=int, default=0, help="GPU index among the visible ones")
    p.add_argument("--time-cap-s", type=float, help="cap on the sampling time of one case")
    p.add_argument("--settle-s", type=float, help="idle seconds before each timed compute case (default 0.5 on a GPU, 0 on the CPU)")
    p.add_argument("--min-time-s", type=float,
                   help="least sampling time of one case (default 0.5 on a GPU: the sustained clock; 0 on the CPU)")
    p.add_argument("--all-gpus", action="store_true", help="run the suites on every visible GPU at once, one process each")
    p.add_argument("--cpu-workers", type=int, metavar="N", help="as --all-gpus with N CPU workers (tests, CI)")
    p.add_argument("--ranks", type=int, metavar="N", help="ranks of a collective suite (default: one per GPU, 2 on the CPU)")
    p.add_argument("--rank-timeout-s", type=float, metavar="S",
                   help="how long a collective waits for a peer, or a rank or GPU worker may go without news (default 300)")
    p.add_argument("--case-timeout-s", type=float, metavar="S",
                   help="wall-clock limit of one case: past it the case is recorded failed and the run goes on "
                        "(default 900 on a GPU, 300 on the CPU)")

    p = sub.add_parser("submit", help="run on several Slurm nodes through submitit, gathered into one run")
    p.add_argument("--out", type=_path, required=True, help="folder of the gathered run (nodes/, slurm/ inside)")
    p.add_argument("--nodes", type=int, default=1, help="nodes, one job each (a job array)")
    p.add_argument("--local", action="store_true", help="run the jobs on this machine (submitit's local executor)")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--account", help="Slurm account")
    p.add_argument("--time-min", type=int, default=60, help="time limit of each job, minutes (default 60)")
    p.add_argument("--gpus-per-node", type=int, help="GPUs to ask for on each node")
    p.add_argument("--cpus-per-task", type=int, help="CPUs to ask for on each node")
    p.add_argument("--no-wait", action="store_true", help="submit and return; gather later with parity merge")
    p.add_argument("run_args", nargs=argparse.REMAINDER, help="after --: the arguments of parity run on each node")

    p = sub.add_parser("merge", help="gather runs (of several nodes, e.g. from sbatch) into one run folder")
    p.add_argument("runs", nargs="+", type=_path, help="run folders")
    p.add_argument("--out", type=_path, required=True, help="folder of the merged run")

    p = sub.add_parser("report", help="print the tables of one or more runs")
    p.add_argument("runs", nargs="*", type=_path, help="run folders")
    p.add_argument("--format", choices=("text", "md", "html", "csv", "parquet"), default="text")
    p.add_argument("--to", metavar="SPEC", type=_spec_id, help="normalize against this spec instead of the matched one")
    p.add_argument("--out", type=_path, metavar="FILE", help="write the report to FILE (parquet needs one)")
    p.add_argument("--plots", type=_path, metavar="DIR", help="also write every plot as DIR/<name>.png")
    p.add_argument("--publish", action="store_true",
                   help="copy the runs into the results folder, re-render every run there, rewrite its README.md")
    p.add_argument("--results", type=_path, default=Path("results"), metavar="DIR",
                   help="the results folder --publish works on (default results)")

    p = sub.add_parser("compare", help="two runs (or sets of runs) of one device, case by case, with a significance test")
    p.add_argument("base", type=_paths, help="run folder(s), comma-separated: the reference (several runs: "
                                             "the verdict rests on run-to-run variance)")
    p.add_argument("new", type=_paths, help="run folder(s), comma-separated: the candidate")
    p.add_argument("--format", choices=("text", "md", "csv", "json"), default="text")
    p.add_argument("--fail-on-regression", type=float, metavar="PCT",
                   help="exit 1 when a case is significantly slower by more than PCT %% (or broke)")
    p.add_argument("--alpha", type=float, help="significance level of the Mann-Whitney test (default 0.001)")
    p.add_argument("--same-within", type=float, metavar="PCT", help="changes within PCT %% are 'same' (default 1)")
    p.add_argument("--ignore-devices", action="store_true", help="compare runs made on different devices")

    p = sub.add_parser("specs", help="the spec database, or every figure of one spec with its sources")
    p.add_argument("spec", nargs="?", help="a spec id, e.g. h200 or mi455x")
    p.add_argument("--json", action="store_true", help="every figure with its range, sources and confidence, as JSON")
    p.add_argument("--check", type=_path, metavar="FILE", help="check one spec file against the schema")

    p = sub.add_parser("project", help="what a run would do on another device")
    p.add_argument("run", type=_path, nargs="?", help="run folder (a GPU run)")
    p.add_argument("--to", metavar="SPEC", type=_spec_id, help="target spec id")
    p.add_argument("--against", type=_path, metavar="RUN", help="a run measured on the target: check the projection")
    p.add_argument("--format", choices=("text", "md", "csv", "json"), default="text")
    p.add_argument("--stack", choices=("carry", "keep"), default="carry",
                   help="carry the software stack's achieved efficiency across (default) or keep the measured one")
    p.add_argument("--validate", action="store_true",
                   help="no run: project every device with published figures onto every other, leaving the target out")

    p = sub.add_parser("estimate", help="a model's step from its kernels: tokens/s per GPU and $/Mtok per device")
    p.add_argument("run", type=_path, nargs="?", help="a GPU run whose measured kernels are used (optional)")
    p.add_argument("--model", help="model id (see --list-models)")
    p.add_argument("--list-models", action="store_true", help="the model database, with sources")
    p.add_argument("--phase", choices=("prefill", "decode"), default="decode")
    p.add_argument("--batch", type=int, default=1, help="sequences in the batch (default 1)")
    p.add_argument("--context", type=int, default=2048, help="tokens of context (default 2048)")
    p.add_argument("--output-tokens", type=int, default=0, help="decode: tokens generated after the context")
    p.add_argument("--dtype", choices=("bf16", "fp8", "fp4"), default="bf16", help="weights (and GEMM math)")
    p.add_argument("--tp", type=int, help="tensor-parallel GPUs (default: the least that fits)")
    p.add_argument("--reserve", type=float, default=0.10, help="memory fraction held back for the runtime (default 0.10)")
    p.add_argument("--to", metavar="SPEC,...", help="target spec ids (default: every spec)")
    p.add_argument("--format", choices=("text", "md", "json", "html"), default="text")
    p.add_argument("--out", type=_path, metavar="FILE", help="write the output to FILE (html needs one)")

    p = sub.add_parser("history", help="each case's trend over the published runs of a device, with compare verdicts")
    p.add_argument("results", nargs="?", type=_path, default=Path("results"), help="results folder (default results)")
    p.add_argument("--device", help="the device name (default: every device, a table each)")
    p.add_argument("--format", choices=("text", "md", "json", "html"), default="text")
    p.add_argument("--out", type=_path, metavar="FILE", help="write to FILE (html needs one)")

    p = sub.add_parser("selfcheck", help="check the harness: agreement with an independent timer, spread, flush, telemetry")
    p.add_argument("--device", type=int, default=0, help="GPU index among the visible ones")
    p.add_argument("--repeats", type=int, default=5, help="runs of one case for the spread check (default 5)")
    p.add_argument("--settle-s", type=float, help="idle seconds before each timing (default 0.5 on a GPU, 0 on the CPU)")
    p.add_argument("--format", choices=("text", "md"), default="text")
    p.add_argument("--json", type=_path, metavar="FILE", help="also write the results, device and versions as JSON")

    p = sub.add_parser("inspect", help="what each Triton kernel compiles to, offline, per target (no GPU needed)")
    p.add_argument("--target", metavar="T,...", help="targets: sm_90a, sm_100a, gfx942, gfx950 (default: all)")
    p.add_argument("--suite", action="append", metavar="S", help="only these suites (repeat or comma-separate)")
    p.add_argument("--preset", action="append", metavar="P", help="a representative case of these presets only "
                   "(default: every preset of each suite)")
    p.add_argument("--lead-only", action="store_true", help="compile only the first config of each list")
    p.add_argument("--one-case", action="store_true", help="compile each kernel variant (constexprs, operand "
                   "types, config) for its first case only: a quick check")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args, argv)
    except (UsageError, ResultsError, SpecError, PriorError, ModelError, PriceError) as exc:
        print(f"parity: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RankError as exc:
        from parity.harness.scaleout.distributed import launched_by_parity

        if not launched_by_parity():  # else the process that started the ranks says it, once
            print(f"parity: error: {exc}", file=sys.stderr)
        return EXIT_RANK
    except OSError as exc:  # a path the system refuses (a file where a folder belongs, /proc, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"parity: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("parity: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False,
                   width=None if sys.stdout.isatty() else 200)


def _detect(index: int, select: bool = True):
    from parity.harness.core import device as device_mod

    return device_mod.detect(index, select)


def _warn(line: str) -> None:
    print(f"parity: warning: {line}", file=sys.stderr)


def _require_triton() -> None:
    from parity.harness.core.registry import triton_problem

    problem = triton_problem()
    if problem:
        raise UsageError(problem)


def cmd_devices(args, argv) -> int:
    from parity.harness.core.registry import triton_problem

    device = _detect(args.device)
    info = device.to_dict()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    mode = "GPU" if device.is_gpu else "no GPU: Triton kernels run in the CPU interpreter (TRITON_INTERPRET=1)"
    print(f"backend        {device.backend} ({mode})")
    print(f"name           {device.name}")
    print(f"architecture   {device.arch}")
    print(f"memory         {device.memory_bytes / 2**30:.1f} GiB")
    print(f"{'CUs' if device.backend == 'rocm' else 'SMs' if device.is_gpu else 'cores':<15}{device.multiprocessors}")
    _size = lambda b: "unknown" if not b else f"{b / 2**20:g} MiB"  # noqa: E731
    print(f"L2             {_size(device.l2_bytes)}")
    print(f"last level     {_size(device.llc_bytes)}")
    print(f"driver         {device.driver_version or 'n/a'}")
    print(f"runtime        {device.runtime_version or 'n/a'}")
    print(f"spec           {device.spec_id or 'none (normalized against its own measured ceilings only)'}")
    if device.spec_note and device.is_gpu:
        print(f"spec match     {device.spec_note}")
    if device.is_gpu:
        for i, name in enumerate(device.visible):
            print(f"visible [{i}]    {name}{'  <- selected' if i == device.index else ''}")
    for key, value in device.visibility_env.items():
        print(f"{key:<15}{value}")
    problem = triton_problem()
    if problem:
        print(f"triton         {problem}")
    return 0


def cmd_list(args, argv) -> int:
    device = _detect(0)
    _require_triton()
    from parity.harness.core import registry
    from parity.harness.reporting import machine

    suites = registry.load_all()
    for line in registry.problems():
        _warn(line)
    if args.json:
        print(json.dumps(machine.suites_json(suites, device), indent=2))
        return 0
    name_w = max((len(op.name) for suite in suites for op in suite.ops), default=8)
    text_w = max((len(op.description) for suite in suites for op in suite.ops), default=34)
    for suite in suites:
        print(f"{suite.name}: {suite.description}")
        print(f"  from:    {registry.origin(suite.name)}")
        for op in suite.ops:
            impls = [i.name for i in suite.impls if i.op == op.name]
            print(f"  {op.name:<{name_w}} {op.description:<{text_w}} impls: {', '.join(impls)}")
            for impl in impls:
                where = registry.origin(suite.name, impl)
                if where != registry.origin(suite.name):  # an implementation another package adds
                    print(f"  {'':<{name_w}} {'':<{text_w}}   {impl} from {where}")
        counts = ", ".join(f"{p} ({len(suite.cases(p, device))} cases here)" for p in suite.presets)
        print(f"  presets: {counts}")
        print(f"  dtypes:  {', '.join(suite.dtypes)}")
        if suite.size_help:
            print(f"  sizes:   {suite.size_help}")
        if suite.shape_help:
            print(f"  shapes:  {suite.shape_help}")
    return 0


def cmd_run(args, argv) -> int:
    from parity.harness import api
    from parity.harness.reporting import report, spread
    from parity.harness.core import limits
    from parity.harness.core.results import read_run

    if args.resume and (args.out or args.suites or args.impl or args.dtype or args.size or args.shape
                        or args.preset or args.time_cap_s is not None or args.settle_s is not None
                        or args.min_time_s is not None or args.case_timeout_s is not None):
        raise UsageError("--resume takes its plan from the run folder: give no suites, --out, --preset, --impl, "
                         "--dtype, --size, --shape, --time-cap-s, --settle-s, --min-time-s or --case-timeout-s")
    limits.check_run_numbers(args)
    if args.cpu_workers is not None and args.all_gpus:
        raise UsageError("--cpu-workers runs CPU workers in place of the GPUs: give it or --all-gpus, not both")
    if args.time_cap_s is not None and not (math.isfinite(args.time_cap_s) and args.time_cap_s > 0):
        raise UsageError("--time-cap-s must be a positive number of seconds")
    if args.settle_s is not None and not (math.isfinite(args.settle_s) and args.settle_s >= 0):
        raise UsageError("--settle-s must be a number of seconds, 0 or more")
    if args.min_time_s is not None and not (math.isfinite(args.min_time_s) and args.min_time_s >= 0):
        raise UsageError("--min-time-s must be a number of seconds, 0 or more")
    sizes = tuple(parse_size(s) for s in _names(args.size))
    shapes = tuple(dict.fromkeys(parse_shape(s) for s in _names(args.shape)))
    device = api.run_device(args.device)
    note = None if device.is_gpu else ("parity: no GPU here: Triton kernels run in the CPU interpreter; "
                                       "their times are labelled wall-interpret and are not performance")
    with _Progress(note) as progress, _GpuBars(cpu=args.cpu_workers is not None) as bars:
        try:
            outcome = api.run_command(device, suites=_names(args.suites), preset=args.preset, impls=_names(args.impl),
                                      dtypes=_names(args.dtype), sizes=sizes, shapes=shapes, out=args.out,
                                      resume=args.resume, time_cap_s=args.time_cap_s, settle_s=args.settle_s,
                                      min_time_s=args.min_time_s, case_timeout_s=args.case_timeout_s,
                                      ranks=args.ranks, all_gpus=args.all_gpus, cpu_workers=args.cpu_workers,
                                      rank_timeout_s=args.rank_timeout_s, command=["parity", *argv],
                                      progress=progress, console=_console(), warn=_warn, gpu_progress=bars)
        except api.RunInterrupted as exc:
            progress.close()
            bars.close()
            print(f"parity: interrupted; finished cases are kept in {exc.path}; continue with "
                  f"parity run --resume {exc.path}", file=sys.stderr)
            return EXIT_INTERRUPTED
    if outcome.reported or not outcome.finished:  # the multi-GPU runner reported itself; or ranks ran it
        return outcome.code
    out = outcome.path
    run = read_run(out)
    report.print_tables(report.frame([run]), _console())
    spread.print_extra([run], _console())  # collectives' bandwidths
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.counts.items())) or "nothing new"
    extra = f" ({outcome.skipped_existing} already done)" if outcome.skipped_existing else ""
    print(f"parity: {counts}{extra}; results in {out}", file=sys.stderr)
    return outcome.code


def cmd_report(args, argv) -> int:
    from parity.harness.reporting import report
    from parity.harness.core.results import read_run

    from parity.harness.core import specs

    if args.publish:
        return _publish(args)
    if not args.runs:
        raise UsageError("give one or more run folders (or --publish to re-render the results folder)")
    _check_report_needs(args)
    target = specs.get(args.to) if args.to else None
    runs = [read_run(path) for path in args.runs]
    _refuse_overwriting_runs(args.out, args.runs)
    for run in runs:
        for note in run.warnings:
            print(f"parity: warning: {note}", file=sys.stderr)
    df = report.frame(runs, to_spec=target)
    if df.empty:
        print("parity: the run(s) hold no records yet", file=sys.stderr)
        return 0
    if args.plots or args.format == "html":
        from parity.harness.reporting import plots

        figures = plots.make_plots(runs, df)
        if args.plots:
            if args.plots.exists() and not args.plots.is_dir():
                raise UsageError(f"--plots {args.plots} is a file, not a folder")
            plots.write_pngs(figures, args.plots)
    from parity.harness.scaleout import multigpu

    if args.format == "md":
        from parity.harness.reporting import crosstab

        extra = report.render(multigpu.extra_tables(runs), "md")  # spread between GPUs, collectives
        _emit(report.to_markdown(df) + crosstab.to_markdown(df) + extra, args.out)
    elif args.format == "csv":
        _emit(report.to_csv(df), args.out)
    elif args.format == "html":
        from parity.harness.reporting import html

        _emit(html.page(runs, df, figures), args.out)
    elif args.format == "parquet":
        try:
            report.to_parquet(df, args.out)
        except OSError as exc:
            raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        print(f"parity: wrote {args.out}", file=sys.stderr)
    else:
        from parity.harness.reporting import crosstab

        report.print_tables(df, _console())
        report.render(crosstab.side_by_side(df) + multigpu.extra_tables(runs), "text", _console())
    if args.format in ("text", "md"):
        for line in multigpu.spread_warnings(runs):
            print(f"parity: warning: {line}", file=sys.stderr)
    return 0


def _refuse_overwriting_runs(out: Path | None, run_dirs: list[Path]) -> None:
    """A report written over a run's own files would destroy the run it was made from."""
    if out is None:
        return
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder: give a file name")
    for run_dir in run_dirs:
        for name in (RUN_FILE, MEASUREMENTS_FILE):
            if out.resolve() == (run_dir / name).resolve():
                raise UsageError(f"--out {out} is a file of the run {run_dir}: the report would replace it")


def _check_report_needs(args) -> None:
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


def _refuse_run_file(out: Path | None, option: str = "--out") -> None:
    """A file written over a run's own files (run.json, measurements.jsonl) destroys that run."""
    if out is not None and out.name in (RUN_FILE, MEASUREMENTS_FILE) and (out.parent / RUN_FILE).exists():
        raise UsageError(f"{option} {out} is a file of the run {out.parent}: writing it would destroy the run")


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    _refuse_run_file(out)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"parity: wrote {out}", file=sys.stderr)


def _publish(args) -> int:
    from parity.harness.reporting import plots, publish

    if args.format != "text" or args.out or args.plots or args.to:
        raise UsageError("--publish renders md and html beside each run itself: give no --format, --out, --plots or --to")
    problem = plots.problem()
    if problem:
        raise UsageError(problem)
    done = publish.publish(args.results, add=list(args.runs))
    for note in done.warnings:
        print(f"parity: warning: {note}", file=sys.stderr)
    print(f"parity: {len(done.runs)} run(s) rendered; index in {done.index}", file=sys.stderr)
    return 0


def cmd_compare(args, argv) -> int:
    from parity.harness.reporting import compare, report
    from parity.harness.core.results import read_run

    if args.fail_on_regression is not None and not (math.isfinite(args.fail_on_regression)
                                                    and args.fail_on_regression >= 0):
        raise UsageError("--fail-on-regression takes a percentage of zero or more")
    settings = compare.Settings(alpha=compare.ALPHA if args.alpha is None else args.alpha,
                                same_within=compare.SAME_WITHIN if args.same_within is None else args.same_within / 100)
    result = compare.compare([read_run(p) for p in args.base], [read_run(p) for p in args.new], settings,
                             ignore_devices=args.ignore_devices)
    for note in result.notes:
        print(f"parity: warning: {note}", file=sys.stderr)
    if args.format == "csv":
        sys.stdout.write(compare.to_csv(result))
    elif args.format == "json":
        from parity.harness.reporting import machine

        sys.stdout.write(machine.dumps(machine.compare_json(result)))
    else:
        text = report.render(compare.tables(result), args.format, _console())
        if text:
            sys.stdout.write(text)
    print(f"parity: {compare.summary_line(result)}", file=sys.stderr)
    if args.fail_on_regression is None:
        return 0
    if result.rows.empty:  # a gate that compared nothing must not pass
        print("parity: regression: the two runs have no case in common: nothing was compared", file=sys.stderr)
        return EXIT_CASES_FAILED
    failing = [f"{r['key']}: {r['ratio']:.3f}x the time, interval [{r['ci_low']:.3f}, {r['ci_high']:.3f}], "
               f"p {r['p']:.2g}" for _, r in result.regressions(args.fail_on_regression).iterrows()]
    failing += [f"{r['key']}: {r['note']}" for _, r in result.broken().iterrows()]
    for line in failing:
        print(f"parity: regression: {line}", file=sys.stderr)
    return EXIT_CASES_FAILED if failing else 0


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
                                 TextColumn("left"), TimeRemainingColumn(), console=_console(stderr=True),
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
                                 TimeRemainingColumn(), console=_console(stderr=True), transient=True)
            self._bar.start()
        for i, n in sorted(done.items()):
            if i not in self._tasks:
                self._tasks[i] = self._bar.add_task(f"{self._what} {i}", total=total)
            self._bar.update(self._tasks[i], completed=n, total=max(total, n))  # follow-ups may add cases


def _figure_text(fig) -> str:
    if fig is None:
        return "-"
    if not fig.supported:
        return "not in hardware"
    if fig.value is None:
        return f"unpublished{f' ({fig.range[0]:g}-{fig.range[1]:g})' if fig.range else ''}"
    text = f"{fig.value:g}"
    if fig.range and fig.range != (fig.value, fig.value):
        text += f" ({fig.range[0]:g}-{fig.range[1]:g})"
    return text


def cmd_specs(args, argv) -> int:
    from parity.harness.reporting import report
    from parity.harness.core import specs

    if args.check is not None:
        if args.spec is not None or args.json:
            raise UsageError("--check checks one file: give no spec id and no --json")
        spec = specs.parse(args.check)
        print(f"parity: {args.check}: a valid spec ({spec.id}, {spec.name}: {len(spec.figures)} figures, "
              f"{len(spec.peaks)} peaks)", file=sys.stderr)
        return 0
    if args.json:
        from parity.harness.reporting import machine

        chosen = [specs.get(args.spec)] if args.spec else list(specs.load_all().values())
        sys.stdout.write(machine.dumps(machine.specs_json(chosen)))
        return 0
    if args.spec is None:
        rows = [{"id": s.id, "name": s.name, "status": s.status, "arch": s.arch,
                 "bf16 TFLOPS": _figure_text(s.peaks.get("bf16")), "fp8 TFLOPS": _figure_text(s.peaks.get("fp8")),
                 "fp4 TFLOPS": _figure_text(s.peaks.get("fp4")),
                 "memory GB": _figure_text(s.figure("memory_gb")),
                 "TB/s": _figure_text(s.figure("memory_bandwidth_tbps")),
                 "fp8": s.fp8_format, "confidence": s.identity_confidence}
                for s in specs.load_all().values()]
        report.render([("Dense peaks per GPU (parity specs ID for every figure and its source)", rows)],
                      "text", _console())
        return 0
    spec = specs.get(args.spec)
    console = _console()
    console.print(f"{spec.name} ({spec.id}): {spec.status}, {spec.architecture} {spec.arch}, {spec.memory_type}, "
                  f"FP8 {spec.fp8_format}, FP4 in hardware: {'yes' if spec.fp4_hardware else 'no'}", markup=False)
    console.print(f"matches backend {spec.match_backend}, arch {spec.match_arch}, name /{spec.name_regex}/; "
                  f"identity from {', '.join(spec.identity_source)} ({spec.identity_confidence})", markup=False)
    rows = []
    for group, figures in (("figure", spec.figures), ("dense peak, TFLOPS (int8: TOPS)", spec.peaks)):
        for name, fig in figures.items():
            extra = ", ".join(f"{k} {v}" for k, v in fig.extra.items())
            rows.append({"kind": group, "name": name, "value": _figure_text(fig), "other": extra,
                         "confidence": fig.confidence, "source": ", ".join(fig.source), "note": fig.note or ""})
            for var in fig.variants:
                value = var.get("value", "") if "value" in var else "{}-{}".format(*var.get("range", ("", "")))
                rows.append({"kind": "  variant", "name": var.get("label", ""), "value": str(value), "other": "",
                             "confidence": var.get("confidence", ""), "source": ", ".join(var.get("source", ())),
                             "note": var.get("note", "")})
    report.render([(f"{spec.id}: every figure", rows),
                   ("sources", [{"id": k, "title": v.get("title", ""), "ref": v.get("ref", ""), "how": v.get("how", "")}
                                for k, v in spec.sources.items()])], "text", console)
    if spec.disagreements:
        console.print("Where sources disagree:", markup=False)
        for text in spec.disagreements:
            console.print(f"- {text}", markup=False)
    return 0


def cmd_project(args, argv) -> int:
    from parity.harness.reporting import project, report
    from parity.harness.core import specs
    from parity.harness.core.results import read_run

    if args.validate:
        if args.run is not None or args.to or args.against:
            raise UsageError("--validate takes no run, --to or --against: it projects the published figures")
        return _project_validation(args)
    if args.run is None or not args.to:
        raise UsageError("project needs a RUN and --to SPEC (or --validate)")
    target = specs.get(args.to)
    run = read_run(args.run)
    df = project.project(run, target, stack=args.stack)
    if args.against is not None:
        df = project.check_against(df, read_run(args.against))
    if df.empty:
        print("parity: the run holds no timed GPU records to project", file=sys.stderr)
        return 0
    if args.format == "csv":
        sys.stdout.write(df.to_csv(index=False))
        return 0
    if args.format == "json":
        sys.stdout.write(json.dumps(project.records(df), indent=1) + "\n")
        return 0
    how = ("kernel efficiency kept, the stack's achieved efficiency carried across, target roofline applied"
           if args.stack == "carry" else "measured efficiency kept, target roofline applied")
    title = (f"{run.meta.get('device', {}).get('name')} ({df['source_spec'].iloc[0]}) projected onto "
             f"{target.name} ({target.id}, {target.status}): {how}")
    text = report.render([(title, project.display_rows(df))], args.format, _console())
    if text:
        sys.stdout.write(text)
    return 0


def _project_validation(args) -> int:
    from parity.harness.reporting import project, report

    rows = project.validate()
    summary = project.validation_summary(rows)
    if args.format == "json":
        sys.stdout.write(json.dumps({"projections": rows, "summary": summary}, indent=1) + "\n")
        return 0
    if args.format == "csv":
        import pandas as pd

        sys.stdout.write(pd.DataFrame(rows).to_csv(index=False))
        return 0
    shown = [{"op class": r["op_class"], "source": r["source"], "target": r["target"],
              "source figure": f"{r['source_figure']:,.2f} ({r['source_stack']})",
              "projected": f"{r['projected']:,.2f} ({r['low']:,.2f}-{r['high']:,.2f})",
              "published": f"{r['published']:,.2f} ({r['published_min']:,.2f}-{r['published_max']:,.2f})",
              "error": f"{r['error_pct']:+.1f} %", "in range": "yes" if r["in_range"] else "no",
              "target prior (target left out)": r["target_prior"]} for r in rows]
    totals = [{"op class": s["op_class"], "pairs": s["pairs"], "projections": str(s["projections"]),
               "median |error|": f"{s['median_abs_error_pct']:.1f} %", "worst |error|": f"{s['worst_abs_error_pct']:.1f} %",
               "in range": f"{s['in_range_pct']:.0f} %",
               "--stack keep: median": f"{s['kept_median_abs_error_pct']:.1f} %",
               "worst": f"{s['kept_worst_abs_error_pct']:.1f} %"} for s in summary]
    text = report.render([("leave-one-out: every published figure projected onto every other device, the target's "
                           "figures hidden from the priors", shown), ("errors", totals)], args.format, _console())
    if text:
        sys.stdout.write(text)
    return 0


def cmd_estimate(args, argv) -> int:
    from parity.harness.core import llm, specs
    from parity.harness.core.results import read_run
    from parity.harness.reporting import estimate, report

    if args.list_models:
        rows = [{"model": m.id, "name": m.name, "layers": str(m.layers), "hidden": str(m.hidden),
                 "heads/kv": f"{m.heads}/{m.kv_heads}", "params total": f"{m.params_total_b:g}B",
                 "active": f"{m.params_active_b:g}B",
                 "kind": ", ".join(k for k, v in (("MLA", m.mla), ("MoE", m.moe)) if v) or "dense, GQA",
                 "source": "; ".join(m.source)} for m in llm.load_all().values()]
        if args.format == "json":
            sys.stdout.write(json.dumps(rows, indent=1) + "\n")
            return 0
        text = report.render([("models", rows)], "md" if args.format == "md" else "text", _console())
        if text:
            sys.stdout.write(text)
        return 0
    if not args.model:
        raise UsageError("estimate needs --model (see --list-models)")
    if args.format == "html" and args.out is None:
        raise UsageError("--format html needs --out FILE")
    if args.out is not None and args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder: give a file name")
    _refuse_run_file(args.out)
    targets = ([specs.get(t.strip()) for t in args.to.split(",") if t.strip()] if args.to
               else list(specs.load_all().values()))
    if not targets:
        raise UsageError("--to names no spec")
    req = estimate.Request(model=args.model, phase=args.phase, batch=args.batch, context=args.context,
                           dtype=args.dtype, output_tokens=args.output_tokens, tp=args.tp, reserve=args.reserve)
    run = read_run(args.run) if args.run is not None else None
    rows = estimate.estimate(req, targets, run)
    title = (f"{llm.get(args.model).name}, {args.phase}, batch {args.batch}, context {args.context}"
             + (f" + {args.output_tokens} output tokens" if args.output_tokens else "") + f", {args.dtype}"
             + (f", TP {args.tp}" if args.tp else "") + (f", kernels from {args.run}" if run else ""))
    if args.format == "json":
        text = json.dumps(rows, indent=1) + "\n"
    elif args.format == "html":
        text = estimate.html_page(rows, title)
    else:  # text goes to the console, or as markdown to --out
        tables = [(title, estimate.display_rows(rows))]
        tables += [(f"{r['device']}: one step on {r['gpus']} GPU(s)", estimate.kernel_rows(r)) for r in rows if r.get("kernels")]
        text = report.render(tables, "md" if args.out is not None else args.format, _console())
    if args.out is not None or text:
        _emit(text or "", args.out)
    if not any(r["fits"] for r in rows):
        print("parity: estimate: fits on none of the devices asked for (see each row's note)", file=sys.stderr)
    return 0


def cmd_selfcheck(args, argv) -> int:
    from parity.harness.core import provenance
    from parity.harness.reporting import report
    from parity.harness.measurement import selfcheck
    from parity.harness.core.results import write_json_atomic

    if args.repeats < 2:
        raise UsageError("--repeats must be at least 2")
    if args.settle_s is not None and not (math.isfinite(args.settle_s) and args.settle_s >= 0):
        raise UsageError("--settle-s must be a number of seconds, 0 or more")
    if args.json is not None and not args.json.parent.is_dir():
        raise UsageError(f"--json {args.json}: no folder {args.json.parent}")
    if args.json is not None and args.json.is_dir():
        raise UsageError(f"--json {args.json} is a folder: give a file name")
    _refuse_run_file(args.json, "--json")
    device = _detect(args.device)
    results = selfcheck.run(device, repeats=args.repeats, settle_s=args.settle_s,
                            progress=lambda text: print(f"parity: selfcheck: {text}", file=sys.stderr, flush=True))
    title = f"parity selfcheck on {device.name} ({device.backend})"
    text = report.render([(title, selfcheck.rows(results))], args.format, _console())
    if text:
        sys.stdout.write(text)
    if args.json is not None:
        write_json_atomic(args.json, {"schema": "parity.selfcheck/1", "command": ["parity", *argv],
                                      "device": device.to_dict(), "versions": provenance.versions(device),
                                      "git": provenance.git_revision(), "host": provenance.host(),
                                      "passed": not selfcheck.failed(results),
                                      "checks": [r.to_dict() for r in results]})
    return EXIT_CASES_FAILED if selfcheck.failed(results) else 0


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
        suites = _names(run.suites)
    parameters = {"name": "parity", "timeout_min": args.time_min, "nodes": 1, "tasks_per_node": 1,
                  "gpus_per_node": args.gpus_per_node, "cpus_per_task": args.cpus_per_task,
                  "slurm_partition": args.partition, "slurm_account": args.account}
    return submit.submit(run_args, args.out, args.nodes, args.local, parameters, _console(), suites,
                         wait=not args.no_wait)


def cmd_merge(args, argv) -> int:
    from parity.harness.scaleout import multigpu

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    if (args.out / MEASUREMENTS_FILE).exists():
        raise UsageError(f"{args.out} already holds a run: choose another --out")
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


def cmd_history(args, argv) -> int:
    from parity.harness.reporting import history, machine, report

    skipped: list[str] = []
    _refuse_run_file(args.out)
    groups = history.by_device(history.find_runs(args.results, skipped))
    for line in skipped:
        _warn(line)
    if args.device is not None:
        if args.device not in groups:
            raise UsageError(f"no published run of {args.device!r} in {args.results} "
                             f"(devices: {', '.join(sorted(groups)) or 'none'})")
        groups = {args.device: groups[args.device]}
    if not groups:
        print(f"parity: no published run in {args.results}", file=sys.stderr)
        return 0
    trends = {device: history.trend(runs) for device, runs in groups.items()}
    if args.format == "html":
        from parity.harness.reporting import plots

        if args.out is None:
            raise UsageError("--format html writes a file: give --out FILE")
        if plots.problem():
            raise UsageError(plots.problem())
        _emit(history.page(groups, trends), args.out)
        return 0
    if args.format == "json":
        _emit(machine.dumps({"schema": "parity.history/1", "devices": [
            {"device": d, "runs": [str(r.path) for r in groups[d]], "cases": t} for d, t in trends.items()]}), args.out)
        return 0
    tables = [(f"{device}: median ms over {len(groups[device])} run(s), oldest first; faster/slower against the "
               "previous run (compare's verdict)", history.rows(t)) for device, t in trends.items()]
    text = report.render(tables, "md" if args.out is not None and args.format == "text" else args.format, _console())
    if args.out is not None or text:
        _emit(text or "", args.out)
    return 0


def cmd_inspect(args, argv) -> int:
    from parity.harness.core import registry
    from parity.harness.measurement import inspection

    _require_triton()
    targets = inspection.parse_targets(args.target)
    suites = list(_names(args.suite)) or None
    presets = list(_names(args.preset)) or None
    for name in suites or ():
        registry.load(name)  # an unknown suite is a usage error here, not in the child
    if presets:
        known = {p for s in (suites or registry.suite_names()) for p in registry.load(s).presets}
        unknown = [p for p in presets if p not in known]
        if unknown:
            raise UsageError(f"unknown preset {', '.join(unknown)} (presets: {', '.join(sorted(known))})")
    progress = None if args.json else (lambda line: print(f"parity inspect: {line}", file=sys.stderr, flush=True))
    try:
        rows = inspection.run_inspection([t.name for t in targets], suites, presets, args.lead_only, args.one_case,
                                         progress=progress)
    except RuntimeError as exc:
        print(f"parity: error: {exc}", file=sys.stderr)
        return EXIT_CASES_FAILED
    print(json.dumps(rows, indent=1) if args.json else inspection.format_table(rows))
    return 0


COMMANDS = {"devices": cmd_devices, "list": cmd_list, "run": cmd_run, "report": cmd_report,
            "specs": cmd_specs, "project": cmd_project, "submit": cmd_submit, "merge": cmd_merge,
            "selfcheck": cmd_selfcheck, "compare": cmd_compare, "estimate": cmd_estimate,
            "history": cmd_history, "inspect": cmd_inspect}
