"""The command line: parses arguments into a plan and passes no argparse object further.

Bad input (an unknown suite, preset, implementation or dtype, an impossible size, a missing or
corrupt run folder) gets one line on stderr and exit status 2, never a traceback. One module per
command group: info (devices, list, specs, selfcheck, inspect), run (run, submit, merge), report
(report, compare, history), estimate (project, estimate); the parser and the shared helpers apart.
"""
from __future__ import annotations

import sys

from parity.harness.cli.common import EXIT_INTERRUPTED, EXIT_USAGE
from parity.harness.cli.estimate import cmd_estimate, cmd_project
from parity.harness.cli.info import cmd_devices, cmd_inspect, cmd_list, cmd_selfcheck, cmd_specs
from parity.harness.cli.parser import build_parser
from parity.harness.cli.report import cmd_compare, cmd_history, cmd_report
from parity.harness.cli.run import cmd_merge, cmd_run, cmd_submit
from parity.harness.core.llm import ModelError
from parity.harness.core.model import UsageError
from parity.harness.core.prices import PriceError
from parity.harness.core.priors import PriorError
from parity.harness.core.ranks import EXIT_RANK, RankError
from parity.harness.core.results import ResultsError
from parity.harness.core.specs import SpecError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args, argv)
    except (UsageError, ResultsError, SpecError, PriorError, ModelError, PriceError) as exc:
        print(f"parity: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RankError as exc:
        from parity.harness.core.ranks import launched_by_parity

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


COMMANDS = {"devices": cmd_devices, "list": cmd_list, "run": cmd_run, "report": cmd_report,
            "specs": cmd_specs, "project": cmd_project, "submit": cmd_submit, "merge": cmd_merge,
            "selfcheck": cmd_selfcheck, "compare": cmd_compare, "estimate": cmd_estimate,
            "history": cmd_history, "inspect": cmd_inspect}
