"""parity report, compare and history: reading run folders into tables."""
from __future__ import annotations

import math
import sys

from parity.harness.cli.common import (
    EXIT_CASES_FAILED,
    check_report_needs,
    emit,
    make_console,
    refuse_overwriting_runs,
    refuse_run_file,
    write_file,
    warn,
)
from parity.harness.core import safeio
from parity.harness.core.model import UsageError


def cmd_report(args, argv) -> int:
    from parity.harness.core import specs
    from parity.harness.core.results import read_run

    if args.publish:
        return _publish(args)
    if not args.runs:
        raise UsageError("give one or more run folders (or --publish to re-render the results folder)")
    if args.plots is not None and (line := safeio.not_a_folder(args.plots)):
        raise UsageError(f"--plots {line}")
    check_report_needs(args)
    target = specs.get(args.to) if args.to else None
    runs = [read_run(path) for path in args.runs]
    refuse_overwriting_runs(args.out, args.runs)
    for run in runs:
        for note in run.warnings:
            print(f"parity: warning: {note}", file=sys.stderr)
    from parity.harness.reporting import report  # pandas: after every refusal

    df = report.frame(runs, to_spec=target)
    if df.empty:
        print("parity: the run(s) hold no records yet", file=sys.stderr)
        return 0
    if args.plots or args.format == "html":
        from parity.harness.reporting import plots

        figures = plots.make_plots(runs, df)
        if args.plots:
            plots.write_pngs(figures, args.plots)
    from parity.harness.reporting import spread

    if args.format == "md":
        from parity.harness.reporting import crosstab

        extra = report.render(spread.extra_tables(runs), "md")  # spread between GPUs, collectives
        emit(report.to_markdown(df) + crosstab.to_markdown(df) + extra, args.out)
    elif args.format == "csv":
        emit(report.to_csv(df), args.out)
    elif args.format == "html":
        from parity.harness.reporting import html

        emit(html.page(runs, df, figures), args.out)
    elif args.format == "parquet":
        write_file(args.out, report.to_parquet(df))
    else:
        from parity.harness.reporting import crosstab

        report.print_tables(df, make_console())
        report.render(crosstab.side_by_side(df) + spread.extra_tables(runs), "text", make_console())
    if args.format in ("text", "md"):
        for line in spread.spread_warnings(runs):
            print(f"parity: warning: {line}", file=sys.stderr)
    return 0


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
    from parity.harness.core.results import read_run
    from parity.harness.reporting import stats

    if args.fail_on_regression is not None and not (math.isfinite(args.fail_on_regression)
                                                    and args.fail_on_regression >= 0):
        raise UsageError("--fail-on-regression takes a percentage of zero or more")
    settings = stats.Settings(alpha=stats.ALPHA if args.alpha is None else args.alpha,
                                same_within=stats.SAME_WITHIN if args.same_within is None else args.same_within / 100)
    base, new = [read_run(p) for p in args.base], [read_run(p) for p in args.new]
    from parity.harness.reporting import compare, report  # pandas: after every refusal of a path

    result = compare.compare(base, new, settings, ignore_devices=args.ignore_devices)
    for note in result.notes:
        print(f"parity: warning: {note}", file=sys.stderr)
    if args.format == "csv":
        sys.stdout.write(compare.to_csv(result))
    elif args.format == "json":
        from parity.harness.reporting import machine

        sys.stdout.write(machine.dumps(machine.compare_json(result)))
    else:
        text = report.render(compare.tables(result), args.format, make_console())
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


def cmd_history(args, argv) -> int:
    from parity.harness.reporting import history, machine

    skipped: list[str] = []
    refuse_run_file(args.out)
    groups = history.by_device(history.find_runs(args.results, skipped))
    for line in skipped:
        warn(line)
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
        emit(history.page(groups, trends), args.out)
        return 0
    if args.format == "json":
        emit(machine.dumps({"schema": "parity.history/1", "devices": [
            {"device": d, "runs": [str(r.path) for r in groups[d]], "cases": t} for d, t in trends.items()]}), args.out)
        return 0
    from parity.harness.reporting import report

    tables = [(f"{device}: median ms over {len(groups[device])} run(s), oldest first; faster/slower against the "
               "previous run (compare's verdict)", history.rows(t)) for device, t in trends.items()]
    text = report.render(tables, "md" if args.out is not None and args.format == "text" else args.format, make_console())
    if args.out is not None or text:
        emit(text or "", args.out)
    return 0
