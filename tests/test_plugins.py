"""Suites and implementations from other packages, through entry points: examples/plugin/ is
pip-installed into a temporary folder (offline: no index, no build isolation) and run through the
command line, in one process and with --cpu-workers 2; a broken plugin is one warning line naming
it while the rest runs; the pytest plugin runs parity's cases in another repository only when asked.

The commands run through main() in this process with the folder on sys.path and the plugin
registry emptied (plugins_main), as a fresh process finds them; the processes a run starts (case
workers, CPU workers) are real ones that find the plugin on PYTHONPATH, and the pytest plugin runs
in real pytest processes."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parity.harness.core.results import MEASUREMENTS_FILE, read_records
from test_cli import TIMEOUT_S, assert_one_error_line, clean_env, parity_main

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin"
SMOKE = ["--preset", "smoke", "--time-cap-s", "0.05"]


def env_with(*folders: Path) -> dict[str, str]:
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join([*map(str, folders), str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def plugins_main(*args, cwd: Path, site: Path) -> subprocess.CompletedProcess:
    """`parity ARGS` by main() in this process with `site`'s distributions on sys.path (and on
    PYTHONPATH for the processes the command starts), the plugin registry and the plugins' modules
    as a fresh process has them (empty, not imported); both are put back as they were after."""
    from parity.harness.measurement import registry

    tables = (registry._LOADED, registry._PROBLEMS, registry._IMPL_ORIGINS)
    saved = [dict(t) for t in tables]

    def forget():
        for t in tables:
            t.clear()
        for name in [m for m in sys.modules if m == "parity_example" or m.startswith("parity_example.")]:
            del sys.modules[name]

    forget()
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        return parity_main(*args, cwd=cwd, env={"PYTHONPATH": env_with(site)["PYTHONPATH"]})
    finally:
        sys.path.remove(str(site))
        importlib.invalidate_caches()
        forget()
        for t, before in zip(tables, saved):
            t.update(before)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """examples/plugin installed with pip into a folder of its own, as a user installs it, offline."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("src") / "plugin"
    import shutil

    shutil.copytree(PLUGIN, build)  # pip builds in place: keep the repository's example clean
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--no-build-isolation", "--target", str(target), str(build)],
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("pip is not available in this environment")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (target / "parity_example" / "saxpy.py").is_file()
    return target


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    """A distribution whose entry points name modules that do not exist, and one that is not a suite."""
    site = tmp_path_factory.mktemp("broken")
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[parity.suites]\nbroken = no_such_module.suite\nstream = json\n"
                                           "notasuite = json\n[parity.impls]\nbad = no_such_module:IMPLS\n")
    return site


def test_list_shows_the_plugin_suite_and_where_it_came_from(installed, tmp_path):
    proc = plugins_main("list", cwd=tmp_path, site=installed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "saxpy: out = a*x + y" in out
    assert "from:    parity-example-plugin 0.1.0 (entry point parity.suites: saxpy = parity_example.saxpy)" in out
    assert "example-copy from parity-example-plugin 0.1.0 (entry point parity.impls" in out
    assert out.count("from:    parity (built in)") == 4
    proc = plugins_main("list", "--json", cwd=tmp_path, site=installed)
    data = json.loads(proc.stdout)
    saxpy = next(s for s in data["suites"] if s["name"] == "saxpy")
    assert saxpy["origin"].startswith("parity-example-plugin 0.1.0") and saxpy["presets"]["smoke"] == 8
    stream = next(s for s in data["suites"] if s["name"] == "stream")
    copy = next(op for op in stream["ops"] if op["name"] == "copy")
    assert [i["name"] for i in copy["impls"]] == ["triton", "torch", "example-copy"]


def test_run_the_plugin_suite_validates_and_times_it(installed, tmp_path):
    proc = plugins_main("run", "saxpy", *SMOKE, "--out", tmp_path / "run", cwd=tmp_path, site=installed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records, _ = read_records(tmp_path / "run" / MEASUREMENTS_FILE)
    assert len(records) == 8  # 2 dtypes x 2 lengths x (triton, torch)
    assert all(r["status"] == "ok" and r["validation"]["passed"] for r in records)
    assert {r["timing"] for r in records if r["impl"] == "triton"} <= {"wall-interpret", "events"}
    assert all(r["time_ms"]["n"] >= 1 for r in records)


def test_run_the_plugin_suite_on_cpu_workers(installed, tmp_path):
    proc = plugins_main("run", "saxpy", *SMOKE, "--dtype", "fp32", "--cpu-workers", "2", "--out", tmp_path / "run",
                        cwd=tmp_path, site=installed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records, _ = read_records(tmp_path / "run" / MEASUREMENTS_FILE)
    assert len(records) == 2 * 4 and {r["gpu_index"] for r in records} == {0, 1}  # each worker found the plugin
    for worker in (0, 1):  # the progress of each worker, from its records (no terminal: a line per change)
        assert f"parity: worker {worker}: 4/4 cases" in proc.stderr, proc.stderr
    assert all(r["status"] == "ok" for r in records)


def test_the_plugin_implementation_runs_beside_the_built_in_ones(installed, tmp_path):
    proc = plugins_main("run", "stream", *SMOKE, "--dtype", "fp32", "--impl", "example-copy", "--out",
                        tmp_path / "run", cwd=tmp_path, site=installed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records, _ = read_records(tmp_path / "run" / MEASUREMENTS_FILE)
    assert len(records) == 2 and {r["op"] for r in records} == {"copy"}
    assert all(r["status"] == "ok" and r["validation"]["passed"] for r in records)


def test_a_broken_plugin_is_one_line_and_the_rest_runs(broken, tmp_path):
    proc = plugins_main("list", cwd=tmp_path, site=broken)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr
    assert any("plugin 'broken' of broken-plugin" in w and "ModuleNotFoundError" in w for w in warnings), warnings
    assert any("plugin 'stream' of broken-plugin" in w and "built-in suite" in w for w in warnings), warnings
    assert any("plugin 'bad' of broken-plugin" in w for w in warnings), warnings
    assert all(w.startswith("parity: warning: ") for w in warnings)
    assert "stream: HBM streaming" in proc.stdout and "gemm:" in proc.stdout
    run = plugins_main("run", "stream", *SMOKE, "--dtype", "fp32", "--impl", "torch", "--out", tmp_path / "run",
                       cwd=tmp_path, site=broken)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "plugin 'bad' of broken-plugin" in run.stderr
    assert len(read_records(tmp_path / "run" / MEASUREMENTS_FILE)[0]) == 14


def test_asking_for_a_broken_plugin_suite_is_one_error_line(broken, tmp_path):
    proc = plugins_main("run", "broken", *SMOKE, "--out", tmp_path / "run", cwd=tmp_path, site=broken)
    assert_one_error_line(proc, "suite 'broken' cannot be used", "broken-plugin", "no_such_module")
    assert not (tmp_path / "run").exists()
    proc = plugins_main("run", "notasuite", *SMOKE, cwd=tmp_path, site=broken)
    assert_one_error_line(proc, "notasuite", "not a module defining SUITE")


def test_the_plugin_kernel_against_its_reference_in_the_interpreter(monkeypatch):
    """The example's own check: odd lengths, two block sizes, and the negative cases."""
    monkeypatch.syspath_prepend(str(PLUGIN))
    import torch

    from parity.harness.core.device import detect
    from parity_example import kernels, saxpy

    device = detect()
    for dtype in ("fp32", "bf16"):
        for n in (1, 7, 1000, 4097):
            for block in (128, 1024):
                params = {"dtype": dtype, "n": n}
                arrays = saxpy.inputs(params, device)
                expected = saxpy.reference(arrays, params)
                out = kernels.saxpy_triton(saxpy.ALPHA, arrays["x"], arrays["y"], arrays["out"], block=block)
                assert saxpy.check(out, expected, arrays, params).passed, (dtype, n, block)
    params = {"dtype": "fp32", "n": 4097}
    arrays = saxpy.inputs(params, device)
    expected = saxpy.reference(arrays, params)
    untouched = arrays["out"].clone()
    assert not saxpy.check(untouched, expected, arrays, params).passed  # a kernel that writes nothing
    good = kernels.saxpy_torch(saxpy.ALPHA, arrays["x"], arrays["y"], arrays["out"]).clone()
    bad = good.clone()
    bad[4096] += 1e-3  # the last, partial block
    assert not saxpy.check(bad, expected, arrays, params).passed
    bad[4096] = float("nan")
    assert not saxpy.check(bad, expected, arrays, params).passed
    assert saxpy.check(good, expected, arrays, params).passed
    assert torch.equal(good, good)


def test_the_pytest_plugin_does_nothing_unless_asked(tmp_path):
    (tmp_path / "test_mine.py").write_text("def test_mine():\n    assert 1 + 1 == 2\n")
    env = clean_env()
    env["PARITY_BENCH_SUITES"] = "stream"
    plain = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-only"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert "parity" not in plain.stdout.lower() and "1 skipped" in plain.stdout, plain.stdout[-2000:]


def test_the_pytest_plugin_runs_parity_cases_in_another_repository(tmp_path):
    probe = subprocess.run([sys.executable, "-c", "from importlib import metadata; print(any(ep.name == 'parity' "
                            "for ep in metadata.entry_points(group='pytest11')))"], cwd=tmp_path, env=clean_env(),
                           capture_output=True, text=True, timeout=TIMEOUT_S)
    if probe.stdout.strip() != "True":
        pytest.skip("parity's pytest11 entry point is not installed here (pip install -e . registers it)")
    (tmp_path / "test_mine.py").write_text("def test_mine():\n    assert 1 + 1 == 2\n")
    env = clean_env()
    env.update(PARITY_BENCH_SUITES="stream", PARITY_BENCH_DTYPES="fp32", PARITY_BENCH_IMPLS="torch",
               PARITY_BENCH_TIME_CAP_S="0.02")
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-only",
                           "--parity", f"--benchmark-json={out}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    benchmarks = json.loads(out.read_text())["benchmarks"]
    assert len(benchmarks) == 7 * 2  # stream ops x smoke sizes, torch, fp32
    assert all(b["extra_info"]["suite"] == "stream" and b["extra_info"]["status"] == "ok" for b in benchmarks)
