"""Survey of `parity`'s refusals: runs many bad inputs, each in a fresh process, and prints for each
its exit status, wall time, stderr lines and the heavy modules (torch, triton, pandas, matplotlib)
it imported before refusing. The rule is one line, exit 2, well under a second; a heavy import is
what breaks the last part (torch alone is 1.5 s or more).

    python tools/refusal_survey.py          # every case; `--only run` for one command's
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "triton", "pandas", "matplotlib", "numpy")
CHILD = """
import json, sys
from parity.harness.cli import main
try:
    rc = main(json.loads(sys.argv[1]))
except SystemExit as exc:
    rc = exc.code
print(json.dumps({"rc": rc, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def fixtures(tmp: Path) -> dict[str, str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from synthetic import stream_record, write_run

    (tmp / "bad.txt").write_text("not a run\n")
    os.mkfifo(tmp / "fifo")
    (tmp / "empty").mkdir()
    (tmp / "corrupt").mkdir()
    (tmp / "corrupt" / "measurements.jsonl").write_text("garbage\n")
    write_run(tmp / "run", [stream_record()])
    return {"FILE": str(tmp / "bad.txt"), "FIFO": str(tmp / "fifo"), "EMPTY": str(tmp / "empty"),
            "NOPE": str(tmp / "nope"), "CORRUPT": str(tmp / "corrupt"), "RUN": str(tmp / "run"),
            "NEW": str(tmp / "new"), "UNDERFILE": str(tmp / "bad.txt" / "sub")}


CASES = [
    # run: paths
    "run --resume FILE", "run --resume NOPE", "run --resume EMPTY", "run --resume FIFO", "run --resume CORRUPT",
    "run --resume RUN --preset quick", "run stream --out FILE", "run stream --out UNDERFILE", "run stream --out FIFO",
    "run stream --out RUN",
    # run: numbers and names
    "run collectives --ranks 100000", "run collectives --ranks 5", "run collectives --ranks 0",
    "run stream --cpu-workers 100000", "run stream --cpu-workers 0", "run stream --cpu-threads 100000",
    "run stream --cpu-threads 0", "run stream --all-gpus --cpu-workers 1", "run --time-cap-s nan",
    "run --rank-timeout-s -1", "run --case-timeout-s 1e9", "run --device -1", "run --device 3",
    "run nosuchsuite", "run stream --preset nope", "run stream --impl nope", "run stream --dtype nope",
    "run stream --size abc", "run gemm --shape 1x0x1", "run stream --size 1PiB", "run stream --size 100TiB",
    "run ''", "run --bogus",
    # submit
    "submit --out FILE", "submit --out NEW --time-min 0", "submit --out NEW --nodes 0",
    "submit --out NEW -- --bogus", "submit --out NEW -- nosuchsuite", "submit --out NEW -- --out x",
    "submit --out NEW --gpus-per-node 0", "submit --out NEW -- --ranks 0",
    # merge
    "merge NOPE --out NEW", "merge FILE --out NEW", "merge EMPTY --out NEW", "merge RUN RUN --out NEW",
    "merge RUN --out FILE", "merge RUN --out RUN", "merge FIFO --out NEW", "merge CORRUPT --out NEW",
    # report
    "report NOPE", "report FILE", "report FIFO", "report EMPTY", "report CORRUPT", "report RUN --to nosuch",
    "report RUN --format parquet", "report RUN --out RUN/measurements.jsonl", "report RUN --out FIFO",
    "report RUN --plots FILE", "report RUN --to ''",
    # compare
    "compare NOPE RUN", "compare FILE RUN", "compare RUN EMPTY", "compare RUN RUN --alpha 2",
    "compare RUN RUN --alpha nan", "compare RUN RUN --same-within -1", "compare RUN RUN --fail-on-regression nan",
    "compare CORRUPT RUN",
    # specs
    "specs nosuch", "specs --check NOPE", "specs --check FILE", "specs --check FIFO", "specs --check EMPTY",
    "specs h200 --check FILE",
    # project
    "project NOPE --to h200", "project FILE --to h200", "project RUN --to nosuch", "project RUN",
    "project EMPTY --to h200", "project RUN --to h200 --against NOPE", "project CORRUPT --to h200",
    # estimate
    "estimate --model nosuch", "estimate --model llama3-8b --batch 0", "estimate NOPE --model llama3-8b",
    "estimate --model llama3-8b --to nosuch", "estimate --model llama3-8b --concurrency abc",
    "estimate --model llama3-8b --reserve 2", "estimate --model llama3-8b --tp 0",
    "estimate --model llama3-8b --format html", "estimate --model llama3-8b --out FIFO",
    "estimate --model llama3-8b --price h200=abc", "estimate --model llama3-8b --context -1",
    "estimate", "estimate --model llama3-8b --isl 0",
    # history
    "history NOPE", "history FILE", "history FIFO", "history EMPTY --device nosuch", "history --format html",
    # selfcheck
    "selfcheck --repeats 1", "selfcheck --repeats 100000", "selfcheck --settle-s nan", "selfcheck --json EMPTY",
    "selfcheck --json FIFO", "selfcheck --device -1", "selfcheck --device 3",
    # inspect
    "inspect --target nosuch", "inspect --suite nosuch", "inspect --preset nosuch",
    # devices, list, the parser
    "devices --device -1", "devices --device 3", "list --bogus", "nosuchcommand",
]


def run_case(case: str, paths: dict[str, str]) -> dict:
    import shlex

    argv = [paths.get(w, w) for w in shlex.split(case)]
    argv = [w.replace("RUN/", paths["RUN"] + "/") for w in argv]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(argv)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    wall = time.perf_counter() - start
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out = {"rc": proc.returncode, "heavy": ["?"]}
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    return {"case": case, "wall": wall, "rc": out["rc"], "heavy": out["heavy"], "lines": len(err),
            "first": err[0] if err else ""}


def main() -> int:
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    with tempfile.TemporaryDirectory() as tmp:
        paths = fixtures(Path(tmp))
        bad = 0
        for case in CASES:
            if only and case.split()[0] != only:
                continue
            r = run_case(case, paths)
            flag = "" if r["rc"] == 2 and r["lines"] == 1 and not set(r["heavy"]) - {"numpy"} else "  <--"
            bad += bool(flag)
            print(f"{r['wall']:5.2f}s rc={r['rc']} lines={r['lines']} heavy={','.join(r['heavy']) or '-':<28} "
                  f"{r['case']:<45} | {r['first'][:110]}{flag}", flush=True)
    print(f"{bad} case(s) not one light line with exit 2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
