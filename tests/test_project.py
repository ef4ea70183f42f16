"""Projection onto another spec: measured efficiency kept, the target's roofline applied."""
from __future__ import annotations

import pytest

from parity.harness.reporting import project
from parity.harness.core import roofline, specs
from parity.harness.core.model import UsageError
from synthetic import CPU, H100, record, run

GB = 10**9


def test_roofline_bound_and_range():
    work = {"flops": 0, "bytes_read": 4 * GB, "bytes_written": 4 * GB, "math_dtype": "fp32"}
    r = roofline.roof(work, specs.get("h200"))
    assert r.bound == "memory" and r.seconds == pytest.approx(8e9 / 4.8e12)
    r = roofline.roof(work, specs.get("mi455x"))
    # the announced part's bandwidth runs from the 10 TB/s projection to the 23.3 TB/s product page
    assert r.seconds_range == pytest.approx((8e9 / 23.3e12, 8e9 / 10e12))
    gemm = {"flops": 2 * 8192**3, "bytes_read": 2 * 2 * 8192**2, "bytes_written": 2 * 8192**2, "math_dtype": "bf16"}
    assert roofline.roof(gemm, specs.get("h100-sxm")).bound == "compute"
    assert roofline.roof({"flops": 10, "bytes_read": 0, "bytes_written": 0, "math_dtype": "fp4"},
                         specs.get("h100-sxm")) is None  # no FP4 peak, no bytes: no roof


def test_memory_bound_case_keeps_its_efficiency():
    # 8 GB in 3.2 ms on an H100 SXM: 2500 GB/s of 3350, efficiency 74.6 %
    h100_run = run([record(time_ms=3.2, bytes_read=4 * GB, bytes_written=4 * GB, device=H100["name"])], device=H100)
    df = project.project(h100_run, specs.get("h200"), stack="keep")
    row = df.iloc[0]
    efficiency = (8e9 / 3.35e12) / 3.2e-3
    assert row["efficiency"] == pytest.approx(efficiency)
    assert row["projected_ms"] == pytest.approx(8e9 / 4.8e12 / efficiency * 1e3)
    assert row["projected_rate"] == pytest.approx(2500 * 4.8 / 3.35)
    assert row["projected_rate_low"] == row["projected_rate_high"] == pytest.approx(row["projected_rate"])
    assert row["target_confidence"] == "datasheet"


def test_projection_onto_an_announced_part_carries_its_range():
    h100_run = run([record(time_ms=3.2, bytes_read=4 * GB, bytes_written=4 * GB, device=H100["name"])], device=H100)
    row = project.project(h100_run, specs.get("mi455x"), stack="keep").iloc[0]
    assert row["projected_rate_low"] == pytest.approx(2500 * 10 / 3.35)
    assert row["projected_rate_high"] == pytest.approx(2500 * 23.3 / 3.35)
    assert row["target_confidence"] == "announced"


def test_check_against_a_run_on_the_target():
    h100_run = run([record(time_ms=3.2, bytes_read=4 * GB, bytes_written=4 * GB, device=H100["name"])], device=H100)
    projected = project.project(h100_run, specs.get("h200"), stack="keep")
    actual = run([record(time_ms=2.0, bytes_read=4 * GB, bytes_written=4 * GB)])
    checked = project.check_against(projected, actual)
    expected_ms = projected.iloc[0]["projected_ms"]
    assert checked.iloc[0]["actual_ms"] == 2.0
    assert checked.iloc[0]["error_pct"] == pytest.approx(100 * (expected_ms / 2.0 - 1))


def test_cases_that_cannot_be_projected_say_why():
    recs = [record(op="copy", time_ms=1.0, bytes_read=3 * GB, bytes_written=3 * GB, device=H100["name"]),  # > peak
            record(op="gemm", suite="gemm", metric="TFLOPS", dtype="fp4", flops=2 * 4096**3, path="emulated",
                   device=H100["name"]),
            record(op="write", status="skipped", device=H100["name"])]
    df = project.project(run(recs, device=H100), specs.get("b200"))
    assert len(df) == 2  # the skipped record is not a measurement
    notes = list(df["note"])
    assert "measurement error" in notes[0] and "emulated" in notes[1]


def test_runs_without_a_spec_or_gpu_are_refused():
    with pytest.raises(UsageError, match="only GPU runs"):
        project.project(run([record(timing="wall")], device=CPU), specs.get("h200"))
    unknown = {"backend": "cuda", "name": "NVIDIA A100-SXM4-80GB", "arch": "sm_80"}
    with pytest.raises(UsageError, match="matches no spec"):
        project.project(run([record()], device=unknown), specs.get("h200"))


# --- carrying the software stack (issue 16) -----------------------------------------------------

from parity.harness import cli  # noqa: E402
from parity.harness.core import priors  # noqa: E402
from synthetic import gemm_record, write_run  # noqa: E402


def _h100_mamf_run():
    """An H100 SXM run at mamf-finder's published 794.5 TFLOPS BF16 at 8192^3."""
    return run([gemm_record(m=8192, tflops=794.5, device=H100["name"])], device=H100)


@pytest.mark.parametrize("target", ["h200", "b200", "mi300x", "mi355x"])
def test_an_h100_gemm_lands_within_the_targets_published_range(target):
    row = project.project(_h100_mamf_run(), specs.get(target)).iloc[0]
    db = priors.load_all()
    published = [f.value for cls in ("gemm_bf16_8192", "gemm_bf16_best") for f in db.used(target, cls)] or [794.5]
    own = [f.value for f in db.used(target, "gemm_bf16_8192")] or [f.value for f in db.used(target, "gemm_bf16_best")]
    assert row["projected_rate_low"] <= row["projected_rate"] <= row["projected_rate_high"]
    if own:  # the target's own figures of the nearest class fall within the projected range
        assert row["projected_rate_low"] <= min(own) * 1.0001 and max(own) <= row["projected_rate_high"] * 1.0001
    assert min(published) * 0.9 <= row["projected_rate"] <= max(published) * 1.1
    assert row["measured"].startswith("kernel efficiency 80.3% on h100-sxm")


def test_across_vendors_the_old_projection_was_far_off_and_the_carried_one_is_not():
    kept = project.project(_h100_mamf_run(), specs.get("mi300x"), stack="keep").iloc[0]
    carried = project.project(_h100_mamf_run(), specs.get("mi300x")).iloc[0]
    assert kept["projected_rate"] == pytest.approx(794.5 * 1307.4 / 989.4, rel=1e-3)  # ~1,050: 50 % above 668-708
    assert 668 <= carried["projected_rate"] <= 708
    assert (carried["projected_rate_low"], carried["projected_rate_high"]) == pytest.approx((668, 708), rel=1e-3)
    assert "h100-sxm" in carried["carried"] and "mi300x" in carried["carried"]


def test_an_unreleased_target_says_its_prior_is_a_trend():
    row = project.project(_h100_mamf_run(), specs.get("mi455x")).iloc[0]
    assert "trend" in row["assumed"] and "announced" in row["assumed"]


def test_project_json_and_validation_through_the_cli(tmp_path, capsys):
    folder = write_run(tmp_path / "h100", [gemm_record(m=8192, tflops=794.5, device=H100["name"])], device=H100)
    assert cli.main(["project", str(folder), "--to", "mi355x", "--format", "json"]) == 0
    rows = __import__("json").loads(capsys.readouterr().out)
    assert rows[0]["target_spec"] == "mi355x" and rows[0]["op_class"] == "gemm_bf16_8192"
    assert cli.main(["project", "--validate", "--format", "json"]) == 0
    out = __import__("json").loads(capsys.readouterr().out)
    pairs = {(s["op_class"], s["pairs"]) for s in out["summary"]}
    assert ("all", "within a vendor") in pairs and ("all", "across vendors") in pairs
    h100_to_h200 = [r for r in out["projections"] if (r["op_class"], r["source"], r["target"]) ==
                    ("hbm_copy", "h100-sxm", "h200")]
    assert h100_to_h200 and "same generation" in h100_to_h200[0]["target_prior"]  # H200's own figures hidden
    assert cli.main(["project", "--validate", "--to", "h200"]) == 2
