"""The test session's expensive commands, started once when the session starts and read by the tests
that check them.

Two groups of commands take most of the suite's time and much of it waiting: `parity inspect` of
every kernel family for four targets (two minutes of compiling), and the collectives runs (ranks
that start interpreters, hang on purpose and time out). Run as a fixture, each would hold one
pytest-xdist worker while the other worker ran out of tests, and a module split over both workers
would run it twice. Instead the session's first process (the xdist controller, or pytest itself
without -n; conftest.py) starts each group that the session's paths include in the background,
here, and the fixtures wait for its results file; those tests go last (conftest.py), by which time
the results are usually there. A fixture that finds no started group runs it itself.

Run as a script: `python tests/background.py GROUP DIR` runs GROUP's commands and writes
DIR/GROUP.json ({name: {returncode, stdout, stderr}}) when all have ended.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ENV = "PARITY_TEST_BACKGROUND"  # the folder of this session's background groups
HERE = Path(__file__).resolve().parent
TIMEOUT_S = 1500  # one command; the inspect of four targets takes about two minutes on two cores


def clean_env() -> dict[str, str]:
    """The environment of a parity command a test starts."""
    env = dict(os.environ)
    # conftest switched the interpreter on for this process: the CLI must do it by itself.
    env.pop("TRITON_INTERPRET", None)
    # A test run spread over pytest-xdist workers must not tell a pytest started here that it is a
    # worker (pytest-benchmark then refuses --benchmark-only).
    for key in [k for k in env if k.startswith("PYTEST_XDIST")]:
        env.pop(key)
    env.pop(ENV, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _parity(*args) -> list[str]:
    return [sys.executable, "-m", "parity", *map(str, args)]


def _inspect(d: Path):
    """tests/test_inspect.py's CI check: one representative case per op of `quick` in its lead config
    (every config with PARITY_INSPECT_FULL=1), and every config of the stream kernels."""
    env = {"PARITY_INSPECT_CACHE": os.environ.get("PARITY_INSPECT_CACHE") or str(d / "cache")}
    configs = [] if os.environ.get("PARITY_INSPECT_FULL") == "1" else ["--lead-only"]
    yield "kernels", _parity("inspect", "--json", "--preset", "quick", "--one-case", *configs), env
    yield "stream", _parity("inspect", "--json", "--suite", "stream", "--preset", "smoke", "--one-case"), env


def _collectives(d: Path):
    """tests/test_collectives.py's runs over gloo ranks: faults injected into one rank per run."""
    from parity.harness.core.ranks import FAULT_ENV

    fast = ["--preset", "smoke", "--time-cap-s", "0.02"]
    runs = {
        "two": ["run", "collectives", *fast, "--out", d / "two"],
        # two ranks (no more than this machine's cores): rank 1 fails at the sixth case, which is
        # recorded failed; the group is replaced and the run goes on
        "four": ["run", "collectives", *fast, "--dtype", "fp32", "--size", "4KiB,64KiB", "--ranks", "2",
                 "--rank-timeout-s", "10", "--out", d / "four"],
        "hang": ["run", "collectives", *fast, "--dtype", "fp32", "--rank-timeout-s", "6", "--out", d / "hang"],
        "rank0": ["run", "collectives", *fast, "--dtype", "fp32", "--rank-timeout-s", "10", "--out", d / "rank0"],
        "slow": ["run", "collectives", *fast, "--dtype", "fp32", "--rank-timeout-s", "60", "--case-timeout-s", "3",
                 "--out", d / "slow"],
    }
    faults = {"hang": "1:hang:1", "four": "1:raise:5", "rank0": "0:raise:2", "slow": "1:hang:3"}
    for name, args in runs.items():
        yield name, _parity(*args), {FAULT_ENV: faults[name]} if name in faults else {}
    yield "torchrun", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                       "-m", "parity", "run", "collectives", *fast, "--dtype", "fp32", "--size", "4KiB",
                       "--out", str(d / "torchrun")], {}


# group: (its commands, how many run at once, the test file whose tests read it)
GROUPS = {
    "inspect": (_inspect, 1, "test_inspect.py"),  # one inspect already compiles on every core
    "collectives": (_collectives, 3, "test_collectives.py"),  # their ranks mostly wait
}


def run_group(group: str, base: Path) -> dict:
    """Every command of `group`, run from base/group; the results, also written to base/group.json."""
    commands, at_once, _ = GROUPS[group]
    d = base / group
    d.mkdir(parents=True, exist_ok=True)

    def one(command):
        name, argv, extra = command
        env = clean_env()
        env.update(extra)
        try:
            proc = subprocess.run(argv, cwd=d, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
            return name, {"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
        except subprocess.TimeoutExpired as exc:
            return name, {"returncode": None, "stdout": str(exc.stdout or ""), "stderr": f"timed out after {TIMEOUT_S} s"}

    with ThreadPoolExecutor(max_workers=at_once) as pool:
        results = dict(pool.map(one, list(commands(d))))
    tmp = base / f"{group}.json.tmp"
    tmp.write_text(json.dumps(results))
    os.replace(tmp, base / f"{group}.json")  # the reader sees all of it or nothing
    return results


def wanted(args: list[str], invocation_dir: Path) -> list[str]:
    """The groups whose test file the session's paths include (a path is the file, a folder above
    it, or the file with ::test)."""
    out = []
    for group, (_, _, filename) in GROUPS.items():
        target = HERE / filename
        for arg in args:
            path = Path(arg.split("::", 1)[0])
            path = (path if path.is_absolute() else invocation_dir / path).resolve()
            if path == target or path in target.parents:
                out.append(group)
                break
    return out


def start(groups: list[str], base: Path) -> list[subprocess.Popen]:
    """Each group in a process of its own session (its whole tree is stopped at the end)."""
    procs = []
    for group in groups:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), group, str(base)],
                                env={**clean_env(), "PYTHONPATH": os.pathsep.join(filter(None, (
                                    str(HERE), os.environ.get("PYTHONPATH"))))},
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        (base / f"{group}.pid").write_text(str(proc.pid))
        procs.append(proc)
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (ended, not yet waited for by the controller) has ended
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def results(group: str, own_dir: Path) -> tuple[Path, dict[str, subprocess.CompletedProcess]]:
    """The folder the group's commands ran in and each command's CompletedProcess: the session's
    background results (waited for), or, where the session started none, run here into own_dir."""
    base = Path(os.environ[ENV]) if os.environ.get(ENV) else None
    if base is not None and (base / f"{group}.pid").is_file():
        pid = int((base / f"{group}.pid").read_text())
        deadline = time.monotonic() + TIMEOUT_S * 2
        while not (base / f"{group}.json").exists():
            if not _alive(pid) or time.monotonic() > deadline:
                raise RuntimeError(f"the background {group} commands (pid {pid}) ended without results")
            time.sleep(0.2)
        raw = json.loads((base / f"{group}.json").read_text())
    else:
        base = own_dir
        raw = run_group(group, base)
    return base / group, {name: subprocess.CompletedProcess(name, r["returncode"], r["stdout"], r["stderr"])
                          for name, r in raw.items()}


if __name__ == "__main__":
    run_group(sys.argv[1], Path(sys.argv[2]))
