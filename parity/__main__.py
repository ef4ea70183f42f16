from parity.harness.cli import main

raise SystemExit(main())
