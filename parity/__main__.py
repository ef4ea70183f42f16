from parity.harness.core import lifeline

lifeline.hold()  # started by another parity process (a per-GPU worker): end when it ends

from parity.harness.cli import main  # noqa: E402 - after the lifeline: imports take seconds

raise SystemExit(main())
