"""User kernels with `triton.autotune`, `triton.heuristics`, both, a key with prune_configs_by,
reset_to_zero and restore_value (tests/autotuned_suite.py), through parity.measure, a plugin suite in
`parity run` (in-process) and `parity inspect` (one target, every config); each config validated in
the interpreter, a wrong one caught by name; and the autotuned matmul example (examples/matmul)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import autotuned_suite as s
import parity
from parity.harness.core.results import MEASUREMENTS_FILE, read_records
from test_cli import parity_main

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
MATMUL = ROOT / "examples" / "matmul"


def site(folder: Path, name: str, entry: str) -> Path:
    """A distribution's metadata with one `parity.suites` entry point, as pip leaves it."""
    info = folder / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[parity.suites]\n{entry}\n")
    return folder


@pytest.fixture
def plugin(tmp_path, monkeypatch) -> Path:
    folder = site(tmp_path / "site", "autotuned-tests", "autotuned = autotuned_suite")
    monkeypatch.syspath_prepend(str(folder))
    return folder


def data(n=s.N):
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(n, generator=gen) for _ in range(3)]


def tuned(result, kernel):
    return [t for t in result.autotune if t["kernel"] == kernel and "configs" in t]


def test_autotune_each_config_validated_and_first_timed():
    x, y, out = data()
    r = parity.measure(lambda: s.add(s.add_autotuned, x, y, out), reference=lambda: x + y, time_cap_s=0.02)
    (entry,) = tuned(r, "_add")
    assert entry["configs"] == entry["validated"] == 2
    assert entry["config"] == "BLOCK=16, num_warps=1, num_stages=3" and entry["choice"] == s_choice()
    assert r.validation["passed"]


def s_choice():
    from parity.harness.measurement.autotuning import CHOICE_FIRST

    return CHOICE_FIRST


def test_a_wrong_config_is_caught_naming_it():
    x, y, out = data()
    with pytest.raises(parity.ValidationError, match=r"config 2 of 2 \(_add: BLOCK=32, BUG=1"):
        parity.measure(lambda: s.add(s.add_wrong, x, y, out), reference=lambda: x + y, time_cap_s=0.02)


def test_heuristics_alone_and_under_autotune_are_recorded():
    x, _, out = data()
    r = parity.measure(lambda: s.scale(s.scale_heuristics, x, out), reference=lambda: s.A * x, time_cap_s=0.02)
    assert {"kernel": "_scale", "heuristics": {"BLOCK": 64, "EVEN": False}} in r.autotune
    r = parity.measure(lambda: s.scale(s.scale_both, x, out), reference=lambda: s.A * x, time_cap_s=0.02)
    assert tuned(r, "_scale")[0]["validated"] == 2


def test_prune_reset_to_zero_and_restore_value():
    x, y, out = data()
    r = parity.measure(lambda: s.total(x, out[:1]), reference=lambda: x.double().sum().reshape(1).float(),
                       time_cap_s=0.02)
    (entry,) = tuned(r, "sum_pruned")
    assert (entry["configs"], entry["pruned_from"], entry["validated"]) == (2, 3, 2)
    x0 = x.clone()
    r = parity.measure(lambda: s.axpy(x, y), reference=lambda: x0 + s.A * y, time_cap_s=0.02)
    assert tuned(r, "axpy_inplace")[0]["validated"] == 2  # config 2 ran from x0 again: restore_value


def test_plugin_suite_in_parity_run(plugin, tmp_path):
    proc = parity_main("run", "autotuned", "--preset", "smoke", "--time-cap-s", "0.02", "--out", tmp_path / "r",
                       cwd=tmp_path)
    records = {r["impl"]: r for r in read_records(tmp_path / "r" / MEASUREMENTS_FILE)[0]}
    assert proc.returncode == 1, proc.stderr  # the wrong config's case is invalid
    assert records["wrong-config"]["status"] == "invalid"
    assert "config 2 of 2 (_add: BLOCK=32, BUG=1" in records["wrong-config"]["reason"]
    for impl in ("autotune", "both", "pruned", "restore", "above", "prehook"):
        assert records[impl]["status"] == "ok", records[impl]
        entry = next(t for t in records[impl]["extra"]["autotune"] if "configs" in t)
        assert entry["validated"] == entry["configs"] == 2
    assert records["heuristics"]["extra"]["autotune"][0]["heuristics"] == {"BLOCK": 64, "EVEN": False}


def test_inspect_compiles_every_config(plugin, tmp_path, monkeypatch):
    matmul = site(tmp_path / "msite", "matmul-example", "mymatmul = parity_matmul.suite")
    monkeypatch.setenv("PYTHONPATH", ":".join(map(str, (plugin, matmul, MATMUL, HERE, ROOT, *sys.path))))
    monkeypatch.syspath_prepend(str(matmul))
    monkeypatch.syspath_prepend(str(MATMUL))
    proc = parity_main("inspect", "--suite", "autotuned,mymatmul", "--target", "sm_90a", "--preset", "smoke",
                       "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    if all(r["status"] == "skipped" for r in rows):
        pytest.skip(rows[0]["error"])
    got = {(r["impl"], r["config"]) for r in rows if r["status"] == "compiled"}
    assert {c for i, c in got if i == "pruned"} == {f"BLOCK={b}, num_warps={w}, num_stages=3"
                                                   for b, w in ((16, 1), (32, 2), (64, 2))}  # every config
    assert ("both", "BLOCK=16, EVEN=True, num_warps=1, num_stages=3") in got  # heuristics per config
    assert ("heuristics", "BLOCK=64, EVEN=False") in got
    assert ("above", "EVEN=True, BLOCK=32, num_warps=2, num_stages=3") in got  # a heuristic above: its value shown
    assert {c for i, c in got if i == "prehook"} == {"BLOCK=16, num_warps=4, num_stages=3",  # a memory hook: no error
                                                    "BLOCK=32, num_warps=2, num_stages=3, maxnreg=128"}
    assert len([1 for i, _ in got if i == "triton"]) == 3  # the matmul's three NVIDIA configs
    assert not [r for r in rows if r["status"] == "error"]


def test_the_matmul_example_against_torch():
    sys.path.insert(0, str(MATMUL))
    try:
        from parity_matmul.kernel import matmul
    finally:
        sys.path.remove(str(MATMUL))
    gen = torch.Generator().manual_seed(2)
    for m, n, k in ((40, 24, 56), (33, 17, 64)):  # K not / a multiple of BLOCK_K: EVEN_K both ways
        a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
        r = parity.measure(lambda: matmul(a, b), reference=lambda: a @ b, time_cap_s=0.02)
        assert tuned(r, "matmul_kernel")[0]["validated"] == 2


def test_each_error_of_a_user_kernel_is_one_line_naming_its_cause():
    """A heuristic above the autotuner that reads a config's value (Triton raises a bare KeyError),
    a config that fails, a kernel decorated before the interpreter was on: each names its cause, and
    the parity.detect() hint comes only with the last, where it is the fix."""
    import triton
    from triton import knobs

    x, _, out = data()
    r = parity.measure(lambda: s.scale(s.scale_above, x, out), reference=lambda: s.A * x, time_cap_s=0.02)
    assert tuned(r, "_scale_dns")[0]["validated"] == 2 and {"kernel": "_scale_dns", "heuristics": {"EVEN": True}} in r.autotune
    with pytest.raises(parity.MeasureError, match=r"value EVEN raised KeyError: 'BLOCK': BLOCK is a meta-parameter "
                                                  r"of the @triton.autotune configs below it") as err:
        parity.measure(lambda: s.scale(s.scale_above_wrong, x, out), reference=lambda: s.A * x, time_cap_s=0.02)
    with pytest.raises(parity.MeasureError, match=r"config 2 of 2 \(BLOCK=24.*power of 2") as bad:
        parity.measure(lambda: s.add(s.add_bad_block, x, x, out), reference=lambda: 2 * x, time_cap_s=0.02)
    assert "parity.detect" not in str(err.value) + str(bad.value)
    with knobs.runtime.scope():  # decorated while the interpreter is off: the GPU path, with no GPU here
        knobs.runtime.interpret = False
        early = triton.autotune(configs=s.TWO, key=["n"])(triton.jit(s._add.fn))
    with pytest.raises(parity.MeasureError, match=r"decorated before the interpreter was switched on.*parity.detect") as gpu:
        parity.measure(lambda: s.add(early, x, x, out), reference=lambda: 2 * x, time_cap_s=0.02)
    assert "config" not in str(gpu.value)  # not blamed on a config
