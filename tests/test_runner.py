"""The runner on the CPU: run.json, one record per case, invalid/failed/skipped records, resume."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from parity.harness.measurement import registry
from parity.harness.measurement import runner
from parity.harness.core.model import Check, Impl, Op, Suite, UsageError, Work
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, ResultsError, read_records, read_run
from parity.harness.measurement.runner import RunPlan, execute

SMOKE = RunPlan(suites=("stream",), preset="smoke", dtypes=("fp32",), time_cap_s=0.2)
RECORD_FIELDS = ("suite", "impl", "params", "status", "reason", "timing", "time_ms", "work", "validation")


def expected_timing(device, backend: str) -> str:
    if device.is_gpu:
        return "events"
    return "wall-interpret" if backend == "triton" else "wall"


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


# --- a toy suite with implementations that go wrong in every way ----------------------------------


def _inputs(params, device):
    gen = torch.Generator().manual_seed(1)
    return {"x": torch.randn(params["n"], generator=gen) + 3.0}


def _reference(inputs, params):
    return 2.0 * inputs["x"]


def _check(output, expected, inputs, params):
    err = float((output - expected).abs().max())
    ok = err <= 1e-6
    return Check(passed=ok, max_abs_error=err, tolerance={"atol": 1e-6},
                 error=None if ok else f"max abs error {err:.3g} above 1e-6")


def _good(inputs, params):
    x = inputs["x"]
    out = torch.empty_like(x)
    return lambda: torch.mul(x, 2.0, out=out)


def _wrong(inputs, params):
    x = inputs["x"]
    return lambda: 2.0 * x + 0.5


def _raises_in_prepare(inputs, params):
    raise RuntimeError("no kernel for this\nsecond line of the message " + "x" * 2000)


def _raises_in_thunk(inputs, params):
    def thunk():
        raise ValueError("launch failed")
    return thunk


def _unsupported(device, params):
    return "needs a unicorn"


TOY_OP = Op(name="double", inputs=_inputs, work=lambda p: Work(p["n"], 4 * p["n"], 4 * p["n"], "fp32"),
            reference=_reference, check=_check, description="y = 2x", cache="warm", metric="GB/s")


def toy_suite(*impls: Impl) -> Suite:
    return Suite(name="toy", description="a toy suite", ops=(TOY_OP,), impls=impls,
                 presets=("smoke",), dtypes=("fp32",),
                 params_for=lambda preset, device, dtypes, sizes: [("double", {"dtype": "fp32", "n": 64})])


TOY_IMPLS = (
    Impl("wrong", "double", "torch", _wrong),
    Impl("raise-prepare", "double", "torch", _raises_in_prepare),
    Impl("raise-thunk", "double", "torch", _raises_in_thunk),
    Impl("unsupported", "double", "torch", _good, _unsupported),
    Impl("good", "double", "torch", _good),
)


@pytest.fixture
def use_toy(monkeypatch):
    real = registry.load

    def install(suite: Suite):
        monkeypatch.setattr(registry, "load", lambda name: suite if name == suite.name else real(name))
        return suite

    return install


def run_toy(tmp_path, cpu_device, use_toy, impls=TOY_IMPLS):
    use_toy(toy_suite(*impls))
    out = tmp_path / "toy"
    outcome = execute(RunPlan(suites=("toy",), preset="smoke", time_cap_s=0.2), cpu_device, out, ["test"])
    records, notes = read_records(out / MEASUREMENTS_FILE)
    assert notes == []
    return outcome, {r["impl"]: r for r in records}, records


# --- a real run -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, cpu_device):
    out = tmp_path_factory.mktemp("runner") / "run"
    calls = []
    outcome = execute(SMOKE, cpu_device, out, ["parity", "run", "--test"],
                      progress=lambda i, n, case, result: calls.append((i, n, case.key, result)))
    return out, outcome, calls


def test_run_json(smoke_run, cpu_device):
    out, _, _ = smoke_run
    meta = json.loads((out / RUN_FILE).read_text())
    for key in ("run_id", "started_at", "ended_at", "command", "device", "versions", "git", "host", "status"):
        assert key in meta, key
    assert meta["status"] == "complete"
    assert meta["run_id"] and meta["started_at"] and meta["ended_at"]
    assert meta["ended_at"] >= meta["started_at"]
    assert meta["command"] == ["parity", "run", "--test"]
    assert meta["device"]["name"] == cpu_device.name and meta["device"]["backend"] == cpu_device.backend
    versions = meta["versions"]
    assert versions["python"] and versions["torch"] == torch.__version__
    import triton

    assert versions["triton"] == triton.__version__
    assert "driver" in versions
    assert meta["host"]["hostname"]
    repo = Path(runner.__file__).resolve().parents[2]
    if (repo / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", meta["git"]["revision"])
        assert isinstance(meta["git"]["dirty"], bool)


def test_one_record_per_case_with_the_documented_fields(smoke_run, cpu_device):
    out, outcome, _ = smoke_run
    cases = runner.plan_cases(SMOKE, cpu_device)
    records, notes = read_records(out / MEASUREMENTS_FILE)
    assert notes == []
    assert len(records) == len(cases) == 7 * 2 * 2  # ops x smoke sizes x impls
    assert [r["key"] for r in records] == [c.key for _, c in cases]
    assert outcome.counts == {"ok": len(cases)}
    for r in records:
        for name in RECORD_FIELDS:
            assert name in r, name
        assert r["suite"] == "stream" and r["impl"] in ("triton", "torch")
        assert r["status"] == "ok" and r["reason"] is None
        assert r["params"]["dtype"] == "fp32" and r["params"]["n"] > 0
        assert r["timing"] == expected_timing(cpu_device, r["backend"])
        t = r["time_ms"]
        assert {"median", "p10", "p90", "n", "samples"} <= set(t)
        assert t["n"] == len(t["samples"]) >= 1
        assert 0 < t["p10"] <= t["median"] <= t["p90"]
        assert set(r["work"]) >= {"flops", "bytes_read", "bytes_written", "math_dtype"}
        assert r["work"]["bytes_read"] + r["work"]["bytes_written"] == r["params"]["working_set_bytes"]
        v = r["validation"]
        assert v["passed"] is True and v["error"] is None and v["tolerance"]


def test_both_backends_and_every_op_ran(smoke_run):
    out, _, _ = smoke_run
    records, _ = read_records(out / MEASUREMENTS_FILE)
    assert {(r["op"], r["impl"]) for r in records} == {
        (op, impl) for op in ("copy", "scale", "add", "triad", "dot", "read", "write") for impl in ("triton", "torch")}


def test_progress_is_reported_for_each_case(smoke_run):
    _, _, calls = smoke_run
    finished = [c for c in calls if c[3] is not None]
    assert len(finished) == 28
    assert [c[0] for c in finished] == list(range(1, 29))
    assert all(c[1] == 28 for c in calls)


def test_run_json_counts_match_the_file(smoke_run):
    out, _, _ = smoke_run
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["counts"] == {"ok": 28}
    assert meta["plan"]["preset"] == "smoke"


# --- records for what goes wrong --------------------------------------------------------------------


def test_wrong_output_is_invalid_and_the_run_goes_on(tmp_path, cpu_device, use_toy):
    outcome, by_impl, records = run_toy(tmp_path, cpu_device, use_toy)
    assert len(records) == len(TOY_IMPLS)
    wrong = by_impl["wrong"]
    assert wrong["status"] == "invalid"
    assert wrong["validation"]["passed"] is False
    assert "above 1e-6" in wrong["validation"]["error"] and wrong["reason"]
    assert wrong["time_ms"] is None  # an invalid output is never timed or published
    assert by_impl["good"]["status"] == "ok"  # after it, the run went on
    assert by_impl["good"]["time_ms"]["n"] >= 1
    assert by_impl["good"]["timing"] == expected_timing(cpu_device, "torch")
    assert json.loads((tmp_path / "toy" / RUN_FILE).read_text())["status"] == "complete"
    assert outcome.counts == {"invalid": 1, "failed": 2, "skipped": 1, "ok": 1}


def test_an_impl_that_raises_is_failed_with_a_one_line_reason(tmp_path, cpu_device, use_toy):
    _, by_impl, _ = run_toy(tmp_path, cpu_device, use_toy)
    for name, text in (("raise-prepare", "RuntimeError: no kernel for this"), ("raise-thunk", "ValueError: launch failed")):
        rec = by_impl[name]
        assert rec["status"] == "failed"
        assert rec["reason"].startswith(text)
        assert "\n" not in rec["reason"] and len(rec["reason"]) <= 500
        assert rec["time_ms"] is None


def test_an_unsupported_case_is_skipped_with_its_reason(tmp_path, cpu_device, use_toy):
    _, by_impl, _ = run_toy(tmp_path, cpu_device, use_toy)
    rec = by_impl["unsupported"]
    assert rec["status"] == "skipped"
    assert rec["reason"] == "needs a unicorn"
    assert rec["time_ms"] is None
    assert rec["work"]["bytes_read"] == 256  # a skip is a full record


def test_a_check_that_raises_is_a_failed_record(tmp_path, cpu_device, use_toy):
    def broken_check(output, expected, inputs, params):
        raise TypeError("cannot compare")

    suite = dataclasses.replace(toy_suite(Impl("good", "double", "torch", _good)),
                                ops=(dataclasses.replace(TOY_OP, check=broken_check),))
    use_toy(suite)
    out = tmp_path / "toy"
    execute(RunPlan(suites=("toy",), preset="smoke", time_cap_s=0.2), cpu_device, out, ["test"])
    (rec,), _ = read_records(out / MEASUREMENTS_FILE)
    assert rec["status"] == "failed" and "cannot compare" in rec["reason"]


def test_an_impl_whose_supports_raises_is_a_failed_record_and_the_run_goes_on(tmp_path, cpu_device, use_toy):
    # An exception in supports() is that case's failure, not the end of the run (it once ended
    # the whole run with a traceback, leaving run.json "running").
    def supports(device, params):
        raise AttributeError("device has no attribute 'warp_size'")

    impls = (Impl("bad-supports", "double", "torch", _good, supports), Impl("good", "double", "torch", _good))
    use_toy(toy_suite(*impls))
    out = tmp_path / "toy"
    execute(RunPlan(suites=("toy",), preset="smoke", time_cap_s=0.2), cpu_device, out, ["test"])
    records, _ = read_records(out / MEASUREMENTS_FILE)
    assert [r["status"] for r in records] == ["failed", "ok"]


def test_impl_subset_runs_only_those(tmp_path, cpu_device):
    plan = dataclasses.replace(SMOKE, impls=("torch",))
    execute(plan, cpu_device, tmp_path / "run", ["test"])
    records, _ = read_records(tmp_path / "run" / MEASUREMENTS_FILE)
    assert len(records) == 14 and {r["impl"] for r in records} == {"torch"}


@pytest.mark.parametrize("plan", [
    RunPlan(suites=("nope",), preset="smoke"),
    RunPlan(suites=("stream",), preset="enormous"),
    RunPlan(suites=("stream",), preset="smoke", impls=("cuda-magic",)),
    RunPlan(suites=("stream",), preset="smoke", dtypes=("fp64",)),
    RunPlan(suites=("stream",), preset="smoke", sizes_bytes=(100 << 40,)),
], ids=["suite", "preset", "impl", "dtype", "size"])
def test_bad_plan_is_refused_before_anything_is_written(tmp_path, cpu_device, plan):
    with pytest.raises(UsageError) as exc:
        execute(plan, cpu_device, tmp_path / "run", ["test"])
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "run").exists()


# --- resume -------------------------------------------------------------------------------------------


def test_resume_runs_only_the_missing_cases(tmp_path, cpu_device):
    out = tmp_path / "run"
    execute(SMOKE, cpu_device, out, ["first"])
    path = out / MEASUREMENTS_FILE
    all_lines = lines(path)
    total = len(all_lines)
    kept = all_lines[:-2]
    path.write_text("".join(kept))
    calls = []
    outcome = execute(SMOKE, cpu_device, out, ["second"], resume=True,
                      progress=lambda i, n, case, result: calls.append((n, case.key, result)))
    assert outcome.skipped_existing == total - 2
    assert sum(outcome.counts.values()) == 2
    ran = {key for _, key, result in calls if result is not None}
    assert ran == {json.loads(line)["key"] for line in all_lines[-2:]}
    new_lines = lines(path)
    assert new_lines[: total - 2] == kept  # what was written is untouched
    records, notes = read_records(path)
    assert notes == [] and len(records) == total
    keys = [r["key"] for r in records]
    assert len(set(keys)) == len(keys)
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["status"] == "complete" and meta["resumed_at"]
    assert meta["command"] == ["first"]  # the run's identity stays


def test_resume_after_a_cut_off_line(tmp_path, cpu_device):
    out = tmp_path / "run"
    execute(SMOKE, cpu_device, out, ["first"])
    path = out / MEASUREMENTS_FILE
    all_lines = lines(path)
    path.write_text("".join(all_lines[:-3]) + all_lines[-3][:50])  # killed mid-write
    assert len(read_run(out).warnings) == 1
    execute(SMOKE, cpu_device, out, ["first"], resume=True)
    records, notes = read_records(path)
    assert notes == []
    assert sorted(r["key"] for r in records) == sorted(json.loads(line)["key"] for line in all_lines)
    assert (out / (MEASUREMENTS_FILE + ".partial")).read_text() == all_lines[-3][:50]


def test_resume_of_a_complete_run_runs_nothing(tmp_path, cpu_device):
    out = tmp_path / "run"
    execute(SMOKE, cpu_device, out, ["first"])
    before = (out / MEASUREMENTS_FILE).read_bytes()
    outcome = execute(SMOKE, cpu_device, out, ["first"], resume=True)
    assert outcome.counts == {} and outcome.skipped_existing == 28
    assert (out / MEASUREMENTS_FILE).read_bytes() == before


def test_resume_refuses_another_device(tmp_path, cpu_device):
    out = tmp_path / "run"
    execute(dataclasses.replace(SMOKE, impls=("torch",)), cpu_device, out, ["first"])
    path = out / MEASUREMENTS_FILE
    path.write_text("".join(lines(path)[:-2]))
    before = path.read_bytes()
    meta_before = (out / RUN_FILE).read_bytes()
    other = dataclasses.replace(cpu_device, name="NVIDIA H100 80GB HBM3")
    with pytest.raises(UsageError) as exc:
        execute(SMOKE, other, out, ["again"], resume=True)
    assert "H100" in str(exc.value) and "\n" not in str(exc.value)
    assert path.read_bytes() == before and (out / RUN_FILE).read_bytes() == meta_before


def test_resume_of_a_missing_or_foreign_folder_is_refused(tmp_path, cpu_device):
    with pytest.raises(ResultsError):
        execute(SMOKE, cpu_device, tmp_path / "missing", ["x"], resume=True)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("hello\n")
    with pytest.raises(ResultsError):
        execute(SMOKE, cpu_device, tmp_path / "foreign", ["x"], resume=True)
    assert sorted(p.name for p in (tmp_path / "foreign").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("field, value, problem", [
    ("ranks", "x", "ranks"), ("ranks", 0, "ranks"), ("ranks", True, "ranks"),
    ("min_time_s", "soon", "min_time_s"), ("case_timeout_s", [1], "case_timeout_s"),
])
def test_a_damaged_recorded_plan_is_one_line_not_a_traceback_later(tmp_path, field, value, problem):
    from parity.harness.core.results import ResultsError
    from parity.harness.measurement.runner import RunPlan

    data = RunPlan(suites=("collectives",), ranks=2).to_dict()
    data[field] = value
    with pytest.raises(ResultsError, match=f"recorded plan is damaged .*{problem}"):
        RunPlan.recorded({"plan": data}, tmp_path)
    RunPlan.recorded({"plan": RunPlan(suites=("collectives",), ranks=2).to_dict()}, tmp_path)  # a sound one loads
