"""The collectives suite: nccl-tests' bandwidth formulas on hand-computed cases, the references
against hand-built answers, the merge of rank records, and real gloo runs on 2 and 4 ranks (started
by parity and by torchrun), with injected rank failures and hangs."""
from __future__ import annotations

import json

import pytest
import torch

from parity.harness.reporting import collective_report, report
from parity.harness.measurement import instep
from parity.harness.scaleout import distributed
from parity.harness.core import roofline, specs
from parity.harness.core.model import Case
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, Measurement, read_records
from parity.suites import collectives as coll
from synthetic import CPU, H100, record, run
from test_cli import parity

FAST = ["--preset", "smoke", "--time-cap-s", "0.02"]


# --- formulas ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op,n,factor", [
    ("all_reduce", 2, 1.0), ("all_reduce", 4, 1.5), ("all_reduce", 8, 1.75),
    ("all_gather", 2, 0.5), ("all_gather", 8, 0.875), ("reduce_scatter", 4, 0.75),
    ("all_to_all", 4, 0.75), ("all_to_all", 8, 0.875), ("broadcast", 2, 1.0), ("broadcast", 8, 1.0),
])
def test_bus_bytes_follow_nccl_tests(op, n, factor):
    # doc/PERFORMANCE.md: all-reduce 2(n-1)/n; all-gather, reduce-scatter, all-to-all (n-1)/n; broadcast 1
    assert coll.bus_bytes(op, 1_000_000, n) == pytest.approx(1_000_000 * factor)


def test_element_counts_round_to_whole_chunks():
    assert coll.elements("all_reduce", 10, 4, 3) == 2  # 10 B of fp32: 2 elements, no chunks
    assert coll.elements("broadcast", 2, 4, 8) == 1  # never zero
    assert coll.elements("all_gather", 8, 4, 8) == 8  # one element per rank at least
    assert coll.elements("reduce_scatter", 4004, 4, 2) == 1000  # 1001 rounded down to a multiple of 2
    assert coll.elements("all_to_all", 4004, 4, 4) == 1000


def test_work_declares_bus_bytes_over_the_interconnect():
    op = coll.SUITE.op("all_reduce")
    work = op.work({"dtype": "fp32", "size_bytes": 1 << 20, "ranks": 4})
    assert work.bytes_read == 1.5 * (1 << 20) and work.bytes_written == 0 and work.flops == 0
    assert work.to_dict()["bytes_over"] == "interconnect"
    from parity.suites import stream

    assert "bytes_over" not in stream.SUITE.op("copy").work({"dtype": "fp32", "n": 10}).to_dict()


def collective_record(op="all_reduce", n=4, size=10**9, time_ms=10.0, device="NVIDIA H100 80GB HBM3",
                      timing="events", dtype="fp32"):
    params = {"dtype": dtype, "size_bytes": size, "ranks": n}
    rec = record(op=op, suite="collectives", time_ms=time_ms, bytes_read=coll.bus_bytes(op, size, n),
                 dtype=dtype, device=device, timing=timing, params=params)
    rec["work"]["bytes_over"] = "interconnect"
    return rec


def test_algbw_and_busbw_hand_computed():
    # 1 GB all-reduced over 4 ranks in 10 ms: algbw 1e9 / 0.01 = 100 GB/s; busbw x 2*3/4 = 150 GB/s
    assert collective_report.bandwidths(collective_record()) == pytest.approx((100.0, 150.0))
    # all-gather over 8 ranks, S = 8 GB gathered in 40 ms: algbw 200, busbw x 7/8 = 175
    rec = collective_record("all_gather", 8, 8 * 10**9, 40.0)
    assert collective_report.bandwidths(rec) == pytest.approx((200.0, 175.0))
    # broadcast: busbw = algbw
    rec = collective_record("broadcast", 8, 10**9, 5.0)
    assert collective_report.bandwidths(rec) == pytest.approx((200.0, 200.0))


def test_gpu_run_normalized_against_the_interconnect_per_direction():
    spec = specs.get("h100-sxm")
    link = spec.value("interconnect_gbps_per_direction")
    r = run([collective_record(), record(op="copy", bytes_read=4 * 10**9, bytes_written=4 * 10**9, time_ms=4.0)],
            device=H100)
    df = report.frame([r]).set_index("op")
    assert df.loc["all_reduce", "gbps"] == pytest.approx(150.0)  # the rate is the bus bandwidth
    assert df.loc["all_reduce", "bound"] == "interconnect"
    assert df.loc["all_reduce", "pct_of_spec"] == pytest.approx(150.0 / link)
    assert "per direction" in df.loc["all_reduce", "roof"]
    assert df.loc["copy", "bound"] == "memory"
    # % of best compares link bytes with link bytes, memory bytes with memory bytes
    assert df.loc["all_reduce", "pct_of_best"] == pytest.approx(1.0)
    assert df.loc["copy", "pct_of_best"] == pytest.approx(1.0)
    [(title, rows)] = collective_report.tables([r])
    assert f"{link:g} GB/s per direction" in title and "h100-sxm" in title
    assert rows[0]["algbw GB/s"] == "100" and rows[0]["busbw GB/s"] == "150"
    assert rows[0]["busbw % of link"] == f"{100 * 150 / link:.1f} %"


def test_busbw_above_the_link_is_flagged_not_published():
    fast = collective_record(time_ms=0.1)  # 15 TB/s of bus bandwidth
    [(_, rows)] = collective_report.tables([run([fast], device=H100)])
    assert "error" in rows[0]["busbw % of link"]
    df = report.frame([run([fast], device=H100)])
    assert "above the peak" in df["flag"].iloc[0]


def test_cpu_run_says_there_is_no_spec():
    r = run([collective_record(device="Some CPU", timing="wall")], device=CPU)
    df = report.frame([r])
    assert df["pct_of_spec"].isna().all() and df["spec_id"].isna().all()
    [(title, rows)] = collective_report.tables([r])
    assert "no spec" in title and "busbw % of link" not in rows[0]


def test_roof_of_interconnect_bytes_uses_the_link_figure():
    spec = specs.get("mi355x")
    roof = roofline.roof({"flops": 0, "bytes_read": 535.5e9, "bytes_written": 0, "math_dtype": "bf16",
                          "bytes_over": "interconnect"}, spec)
    assert roof.bound == "interconnect" and roof.seconds == pytest.approx(1.0)


# --- references against hand-built answers (no process group needed) --------------------------------


def rank_inputs(n, count):
    return [coll._rank_input(r, count, "fp32", "cpu") for r in range(n)]


@pytest.mark.parametrize("op", [c.name for c in coll.COLLECTIVES])
def test_reference_and_check_on_three_ranks(op):
    n, rank, size = 3, 1, 4 * 3 * 7  # 21 fp32 elements: 7 per rank's chunk
    params = {"dtype": "fp32", "size_bytes": size, "ranks": n}
    suite_op = coll.SUITE.op(op)
    count = size // 4
    n_in = count // n if op == "all_gather" else count
    xs = rank_inputs(n, n_in)
    right = {
        "all_reduce": lambda: xs[0] + xs[1] + xs[2],
        "broadcast": lambda: xs[coll.ROOT],
        "all_gather": lambda: torch.cat(xs),
        "reduce_scatter": lambda: (xs[0] + xs[1] + xs[2])[rank * 7:(rank + 1) * 7],
        "all_to_all": lambda: torch.cat([x[rank * 7:(rank + 1) * 7] for x in xs]),
    }[op]()
    arrays = {"x": xs[rank], "out": None, "rank": rank, "where": "cpu"}
    expected = suite_op.reference(arrays, params)
    good = suite_op.check(right.clone(), expected, arrays, params)
    assert good.passed, good.error
    bad = right.clone()
    bad[5] += 1e-3 * (1 + bad[5].abs())  # one element off by more than the summation bound
    check = suite_op.check(bad, expected, arrays, params)
    assert not check.passed and "rank 1" in check.error and "1 of" in check.error
    nan = right.clone()
    nan[0] = float("nan")
    assert not suite_op.check(nan, expected, arrays, params).passed


def test_supports_without_a_process_group_says_how_to_get_one(cpu_device):
    impl = coll.SUITE.impls[0]
    reason = impl.supports(cpu_device, {"dtype": "fp32", "size_bytes": 64, "ranks": 2})
    assert "process group" in reason and "torchrun" in reason


def test_presets_on_the_cpu_are_small(host_cpu):
    quick = coll.SUITE.cases("quick", host_cpu)
    assert {c.params["ranks"] for c in quick} == {2}
    assert max(c.params["size_bytes"] for c in quick) <= 1 << 20
    assert len(quick) <= 30
    full = coll.sweep_bytes("full", host_cpu)
    assert full[0] == 8 and full[-1] <= 256 << 20


# --- merging the ranks' records --------------------------------------------------------------------------


def measurement(status="ok", error=None, reason=None, duration=0.1, max_err=0.0):
    validation = {"passed": error is None, "error": error, "tolerance": {"exact": 0.0}, "max_abs_error": max_err}
    return Measurement(suite="collectives", op="all_gather", impl="torch", backend="torch", params={"ranks": 3},
                       status=status, reason=reason, timing="wall", key="k", device="cpu", duration_s=duration,
                       validation=None if status == "failed" else validation,
                       time_ms={"median": 1.0} if status == "ok" else None)


CASE = Case("collectives", "all_gather", "torch", {"dtype": "fp32", "size_bytes": 12, "ranks": 3})


def test_merge_takes_validation_from_every_rank():
    others = {1: measurement(max_err=0.5).to_dict(),
              2: measurement("invalid", error="rank 2: 1 of 3 elements differ", max_err=2.0).to_dict()}
    merged = distributed.merge(CASE, measurement(), others)
    assert merged.status == "invalid" and merged.time_ms is None
    assert merged.validation["max_abs_error"] == 2.0 and "rank 2" in merged.reason
    clean = distributed.merge(CASE, measurement(), {1: measurement(max_err=0.25).to_dict()})
    assert clean.status == "ok" and clean.validation["max_abs_error"] == 0.25


def test_merge_names_the_rank_that_failed_first():
    others = {1: measurement("failed", reason="RuntimeError: out of memory", duration=0.01).to_dict(),
              2: measurement("failed", reason="RuntimeError: Timed out", duration=5.0).to_dict()}
    with pytest.raises(distributed.RankError, match="rank 1 failed .*out of memory"):
        distributed.merge(CASE, measurement("failed", reason="RuntimeError: Timed out", duration=5.0), others)
    # the same failure on every rank is an ordinary failed record
    same = {1: measurement("failed", reason="unsupported").to_dict()}
    assert distributed.merge(CASE, measurement("failed", reason="unsupported"), same).status == "failed"


# --- real runs with gloo ---------------------------------------------------------------------------------


def records_of(folder):
    records, notes = read_records(folder / MEASUREMENTS_FILE)
    assert notes == []
    return records


def test_two_ranks_every_collective_validated(gloo_runs):
    d, procs = gloo_runs
    proc = procs["two"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = records_of(d / "two")
    assert len(records) == 5 * 2 * 2  # ops x dtypes x smoke sizes
    assert {r["op"] for r in records} == {c.name for c in coll.COLLECTIVES}
    for rec in records:
        assert rec["status"] == "ok", rec
        assert rec["validation"]["passed"] and rec["timing"] == "wall"
        assert rec["params"]["ranks"] == 2 and rec["work"]["bytes_over"] == "interconnect"
        assert rec["work"]["bytes_read"] == pytest.approx(coll.bus_bytes(rec["op"], rec["params"]["size_bytes"], 2))
        assert rec["time_ms"]["n"] >= 5
        assert rec["time_ms"]["launches_per_sample"] >= 1 and len(rec["time_ms"]["batches"]) >= 1
    meta = json.loads((d / "two" / RUN_FILE).read_text())
    assert meta["plan"]["ranks"] == 2 and meta["status"] == "complete"
    assert "nccl-tests" in proc.stdout and "no spec" in proc.stdout  # the collectives table, unnormalized
    assert not (d / "two" / "ranks" / "rank-1.log").read_text().strip().startswith("Traceback")


def assert_case_failed_and_run_went_on(proc, folder, index: int, total: int, *needles):
    """The case the fault hit is failed, naming the rank; every other case ran in a fresh group."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "parity: error:" not in proc.stderr, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("parity: warning:")]
    assert len(warnings) == 1 and "start again from the next case" in warnings[0], proc.stderr[-3000:]
    records = records_of(folder)
    assert len(records) == total and len({r["key"] for r in records}) == total
    failed = records[index]
    assert failed["status"] == "failed", failed
    for needle in needles:
        assert needle in failed["reason"], failed["reason"]
    assert all(r["status"] == "ok" and r["validation"]["passed"] for i, r in enumerate(records) if i != index)
    assert json.loads((folder / RUN_FILE).read_text())["status"] == "complete"
    return records


def test_a_failing_rank_fails_its_case_and_the_run_goes_on(gloo_runs):
    d, procs = gloo_runs
    records = assert_case_failed_and_run_went_on(procs["four"], d / "four", 5, 10, "rank 1 failed", "injected fault")
    assert [r["op"] for r in records[:5]] == ["all_reduce", "all_reduce", "all_gather", "all_gather", "reduce_scatter"]
    assert sorted(p.name for p in (d / "four" / "ranks").iterdir()) == ["rank-1.log"]


def test_a_fault_in_rank_0_fails_its_case_and_the_run_goes_on(gloo_runs):
    d, procs = gloo_runs
    assert_case_failed_and_run_went_on(procs["rank0"], d / "rank0", 2, 10, "rank 0 failed", "injected fault")


def test_a_collective_case_past_its_limit_fails_and_the_run_goes_on(gloo_runs):
    d, procs = gloo_runs
    assert_case_failed_and_run_went_on(procs["slow"], d / "slow", 3, 10, "timed out after 3 s (rank 1)")


def test_under_torchrun(gloo_runs):
    d, procs = gloo_runs
    proc = procs["torchrun"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = records_of(d / "torchrun")
    assert len(records) == 5 and {r["status"] for r in records} == {"ok"}
    assert {r["params"]["ranks"] for r in records} == {2}


def assert_rank_error(proc, *needles):
    assert proc.returncode == distributed.EXIT_RANK, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("parity: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_a_hung_rank_fails_its_case_named_and_the_run_goes_on(gloo_runs):
    d, procs = gloo_runs
    assert_case_failed_and_run_went_on(procs["hang"], d / "hang", 1, 10, "rank 1")


def test_report_of_a_collectives_run(gloo_runs):
    d, _ = gloo_runs
    proc = parity("report", d / "two", "--format", "md", cwd=d)
    assert proc.returncode == 0, proc.stderr
    assert "collectives, nccl-tests bandwidths" in proc.stdout and "busbw GB/s" in proc.stdout
    assert proc.stdout.count("| all_reduce |") >= 4  # the generic table and the collectives table


def test_one_rank_is_refused(tmp_path):
    proc = parity("run", "collectives", *FAST, "--ranks", "1", "--out", tmp_path / "x", cwd=tmp_path)
    assert proc.returncode == 2 and "two or more" in proc.stderr
    assert not (tmp_path / "x").exists()


# --- timing in step (issue 13, point 8) ---------------------------------------------------------------


def test_in_step_small_messages_are_timed_several_calls_per_sample_with_a_barrier_per_batch(monkeypatch):
    """One rank's view, the others faked: the agreed maximum is the rank's own value. A call of a
    few microseconds is timed nccl-tests' way, many calls per sample; each batch starts at a barrier."""
    from parity.harness.measurement.timing import MODE_BACK_TO_BACK, Policy, launches_for

    barriers = []
    monkeypatch.setattr(instep, "_agree_max", lambda values: list(values))
    monkeypatch.setattr(instep, "_barrier", lambda: barriers.append(1))
    policy = Policy(warmup_ms=1.0, min_samples=5, max_samples=40, noise_target=0.0, time_cap_s=0.05)
    stats = instep.measure_in_step(lambda: None, "wall", policy)
    # an empty call takes well under a microsecond: many per sample (how many depends on the host's load)
    assert 1 < stats.launches_per_sample <= launches_for(0.0) and stats.timing_mode == MODE_BACK_TO_BACK
    assert len(barriers) == len(stats.batches) >= 1
    slow = instep.measure_in_step(lambda: sum(range(20_000)), "wall", policy)  # ~0.3 ms a call
    assert slow.launches_per_sample == 1


def test_every_rank_holds_its_stream_for_the_slowest_ranks_queueing():
    """Rank 0 queues a sample in 14 us; another rank took 0.4 ms. The hold is sized from the
    slowest, so that rank's first sample carries no skew; the barrier runs before every batch."""
    from fakes.timeline import Timeline
    from parity.harness.measurement.timing import EventSampler, hold_ms

    tl = Timeline(launch_ms=0.005, record_ms=0.002)
    holds, barriers = [], []
    real_sleep = tl._sleep
    tl._sleep = lambda cycles: holds.append(cycles / tl.cycles_per_ms) or real_sleep(cycles)
    # The other rank: 0.4 ms to queue a sample; no stall (a flag, 0 or 1, passes as this rank's).
    agree = lambda values: [v if v in (0.0, 1.0) else max(v, 0.4) for v in values]  # noqa: E731
    take = EventSampler(lambda: tl.kernel(0.001), flush=lambda: tl.kernel(0.001), cuda=tl, clock=tl.clock,
                        before_batch=lambda: barriers.append(tl.host_ms), agree=agree)
    take(16)
    take(16)
    assert holds[-1] == pytest.approx(hold_ms(16, 0.4))  # not hold_ms(16, 0.014)
    assert len(barriers) == 2 and take.retaken == 0
