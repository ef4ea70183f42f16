"""parity compare: the Mann-Whitney test, the bootstrap interval, verdicts on known shifts and on
none, geometric means, one-sided cases, timing kinds, the golden table and the CLI's exit codes."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from parity.harness.reporting import compare, report
from parity.harness.core.model import UsageError
from synthetic import CPU, H100, record, run, write_run
from test_cli import assert_one_error_line, parity


def u_statistic(a, b) -> float:
    """U of the first sample by counting pairs (ties count a half): independent of ranking."""
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)


def permutation_p(a, b) -> float:
    """The normal approximation with the EXACT variance of U over every split of the pooled sample
    (which is what the tie correction must reproduce), with the continuity correction."""
    pooled = list(a) + list(b)
    us = [u_statistic([pooled[i] for i in idx], [pooled[i] for i in range(len(pooled)) if i not in idx])
          for idx in itertools.combinations(range(len(pooled)), len(a))]
    mean, var = np.mean(us), np.var(us)
    z = max(abs(u_statistic(a, b) - mean) - 0.5, 0) / math.sqrt(var)
    return math.erfc(z / math.sqrt(2))


def test_mann_whitney_textbook_value():
    # scipy.stats.mannwhitneyu([1, 2, 3], [4, 5, 6], method="asymptotic") gives p = 0.0809
    assert compare.mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.0808556, rel=1e-4)
    assert compare.mann_whitney_p([4, 5, 6], [1, 2, 3]) == pytest.approx(0.0808556, rel=1e-4)


@pytest.mark.parametrize("a,b", [
    ([1.0, 1.0, 2.0, 3.0], [2.0, 3.0, 3.0, 4.0, 4.0]),  # ties within and across the samples
    ([0.5, 0.5, 0.5, 1.0], [0.5, 1.0, 1.0, 1.5]),
    ([10.0, 11.0, 12.0, 13.0, 14.0], [10.5, 11.5, 12.0, 15.0]),
])
def test_mann_whitney_tie_correction_matches_the_permutation_variance(a, b):
    assert compare.mann_whitney_p(a, b) == pytest.approx(permutation_p(a, b), rel=1e-9)


def test_mann_whitney_degenerate_samples():
    assert compare.mann_whitney_p([1.0, 1.0], [1.0, 1.0, 1.0]) == 1.0  # nothing to rank
    assert compare.mann_whitney_p([], [1.0]) == 1.0


def test_bootstrap_interval_is_reproducible_and_brackets_the_ratio():
    rng = np.random.default_rng(3)
    base, new = 1 + 0.01 * rng.standard_normal(30), 1.05 * (1 + 0.01 * rng.standard_normal(30))
    low, high = compare.ratio_interval(base, new)
    assert (low, high) == compare.ratio_interval(base, new)
    assert low < np.median(new) / np.median(base) < high
    assert 1.02 < low and high < 1.08


# Samples shaped like real timings: GPU events (n >= 10, ~0.5 % noise), quantized event clocks (many
# ties), the CPU's wall clock with a long right tail, and a bimodal sample (a core shared with CI).
def _gpu(rng, n, shift=0.0):
    return (1 + shift) * (1 + 0.005 * rng.standard_normal(n))


def _quantized(rng, n, shift=0.0):
    return np.round((1 + shift) * 10.0 * (1 + 0.01 * rng.standard_normal(n)) / 0.05) * 0.05  # 10 us kernel, 0.5 % ticks


def _tail(rng, n, shift=0.0):
    return (1 + shift) * np.exp(0.03 * rng.standard_normal(n)) * (1 + rng.exponential(0.02, n))


def _bimodal(rng, n, shift=0.0):
    return (1 + shift) * np.where(rng.random(n) < 0.7, 1.0, 1.3) * (1 + 0.01 * rng.standard_normal(n))


SHAPES = {"gpu": _gpu, "quantized": _quantized, "tail": _tail, "bimodal": _bimodal}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sizes", [(10, 10), (25, 40), (200, 200)])
def test_no_false_verdict_on_samples_from_one_distribution(shape, sizes):
    make = SHAPES[shape]
    verdicts = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        verdicts.append(compare.judge(make(rng, sizes[0]), make(rng, sizes[1])).verdict)
    assert "faster" not in verdicts and "slower" not in verdicts, verdicts
    if shape == "gpu" and sizes[0] >= 25:
        assert verdicts.count("same") > 45  # quiet samples from one distribution are called the same


@pytest.mark.parametrize("shape,size", [("gpu", 30), ("quantized", 30), ("tail", 30)])
@pytest.mark.parametrize("direction,expected", [(1, "slower"), (-1, "faster")])
def test_a_known_shift_is_found(shape, size, direction, expected):
    # 5 % on quiet samples; the tail shape has ~3 % noise, so it takes a 10 % shift to be sure at
    # alpha 0.001 with 30 samples (a 5 % shift there is often "uncertain", which is no false verdict)
    shift = direction * (0.10 if shape == "tail" else 0.05)
    make = SHAPES[shape]
    for seed in range(30):
        rng = np.random.default_rng(seed)
        v = compare.judge(make(rng, size), make(rng, size, shift))
        assert v.verdict == expected, (seed, v)
        assert v.low <= v.ratio <= v.high and abs(v.ratio - (1 + shift)) < 0.03


def test_a_shift_inside_the_band_is_same_and_too_few_samples_is_uncertain():
    rng = np.random.default_rng(0)
    assert compare.judge(_gpu(rng, 50), _gpu(rng, 50, 0.003)).verdict == "same"
    # three samples each can never reach p < 0.001: however clear the shift looks, it is uncertain
    assert compare.judge([1.0, 1.01, 0.99], [1.5, 1.51, 1.49]).verdict == "uncertain"
    assert compare.judge([1.0, 1.01, 0.99], [1.5, 1.51, 1.49], compare.Settings(alpha=0.1)).verdict == "slower"


def test_settings_are_checked():
    with pytest.raises(UsageError):
        compare.Settings(alpha=0)
    with pytest.raises(UsageError):
        compare.Settings(same_within=1.5)


# --- whole runs -----------------------------------------------------------------------------------


def timed(op, samples, **kw):
    return record(op=op, time_ms=float(np.median(samples)), samples=list(samples), bytes_read=10**9, **kw)


def shifted(center, n=12, spread=0.004):
    return [center * (1 + spread * (i - (n - 1) / 2) / n) for i in range(n)]


def runs_with_changes():
    base = [timed("copy", shifted(1.0)), timed("scale", shifted(1.0)), timed("add", shifted(1.0)),
            timed("triad", shifted(1.0)), record(op="dot", status="skipped"), timed("read", shifted(1.0))]
    new = [timed("copy", shifted(1.10)), timed("scale", shifted(0.80)), timed("add", shifted(1.001)),
           timed("triad", shifted(1.0), timing="wall"), record(op="dot", status="skipped"),
           timed("write", shifted(1.0))]
    return run(base, run_id="base"), run(new, run_id="new")


def test_compare_runs_verdicts_geomean_and_one_sided_cases():
    c = compare.compare(*runs_with_changes())
    by_op = {r["op"]: r for _, r in c.rows.iterrows()}
    assert by_op["copy"]["verdict"] == "slower" and by_op["copy"]["ratio"] == pytest.approx(1.10)
    assert by_op["scale"]["verdict"] == "faster" and by_op["scale"]["ratio"] == pytest.approx(0.80)
    assert by_op["add"]["verdict"] == "same"
    assert by_op["triad"]["verdict"] == compare.NOT_COMPARED and "events vs wall" in by_op["triad"]["note"]
    assert by_op["dot"]["verdict"] == compare.NOT_COMPARED and "skipped" in by_op["dot"]["note"]
    assert list(c.only_base["op"]) == ["read"] and list(c.only_new["op"]) == ["write"]
    geo = c.geomeans().iloc[0]
    assert geo["cases"] == 3  # copy, scale, add: the triad timed two ways and the skipped dot do not count
    # the mean is over the significant cases only (copy, scale): the `same` add does not dilute it
    assert geo["significant"] == 2 and geo["geomean"] == pytest.approx((1.10 * 0.80) ** (1 / 2), rel=1e-6)
    assert geo["geomean_low"] < geo["geomean"] < geo["geomean_high"]
    assert (geo["slower"], geo["faster"], geo["same"], geo["no_change"]) == (1, 1, 1, 1)


@pytest.mark.parametrize("shift", [0.001, 500.0])
def test_headline_claims_no_change_when_no_case_is_significant(shift):
    # three samples per side: any ratio, even 500x, is `uncertain` (a p below 0.001 needs more), so the
    # headline must count verdicts and give no "Nx faster" (the fault: a geomean over uncertain cases)
    ops = ("copy", "scale", "add")
    base = [record(op=o, samples=[1.0, 1.02, 0.98], time_ms=1.0) for o in ops]
    new = [record(op=o, samples=[s * shift for s in (1.0, 1.02, 0.98)], time_ms=shift) for o in ops]
    c = compare.compare(run(base, run_id="a"), run(new, run_id="b"))
    assert set(c.rows["verdict"]) == {"uncertain"}
    geo = c.geomeans().iloc[0]
    assert geo["no_change"] == 3 and geo["significant"] == 0 and math.isnan(geo["geomean"])
    text = report.render(compare.tables(c), "md")
    assert "0 faster, 0 slower, 3 no significant change" in text
    assert "x faster" not in text and "x slower" not in text


def test_geomean_interval_widens_with_the_cases_intervals():
    # a case whose own interval is wide makes the mean's interval wider: the interval is not decoration
    def side(spread, shift):
        rng = np.random.default_rng(1)
        return [record(op="copy", samples=list(shift * (1 + spread * rng.standard_normal(40))), time_ms=shift)]
    quiet = compare.compare(run(side(0.001, 1.0), run_id="a"), run(side(0.001, 2.0), run_id="b")).geomeans().iloc[0]
    noisy = compare.compare(run(side(0.05, 1.0), run_id="a"), run(side(0.05, 2.0), run_id="b")).geomeans().iloc[0]
    assert quiet["significant"] == noisy["significant"] == 1
    assert (noisy["geomean_high"] - noisy["geomean_low"]) > 5 * (quiet["geomean_high"] - quiet["geomean_low"])


def test_regressions_respect_the_threshold_and_ignore_interpreter_times():
    c = compare.compare(*runs_with_changes())
    assert list(c.regressions(5)["op"]) == ["copy"]  # 10 % slower, interval well above 1.05
    assert c.regressions(20).empty
    interp = [record(op="copy", impl="triton", timing="wall-interpret", samples=shifted(1.0), time_ms=1.0)]
    slow = [record(op="copy", impl="triton", timing="wall-interpret", samples=shifted(2.0), time_ms=2.0)]
    ci = compare.compare(run(interp, run_id="a"), run(slow, run_id="b"))
    assert ci.rows.iloc[0]["verdict"] == "slower" and "interpreter" in ci.rows.iloc[0]["note"]
    assert ci.regressions(5).empty and ci.geomeans().empty


def test_different_devices_are_refused_unless_asked():
    a = run([record(op="copy", bytes_read=10**9)], run_id="a")
    b = run([record(op="copy", bytes_read=10**9, device="NVIDIA H100 80GB HBM3")], device=H100, run_id="b")
    with pytest.raises(UsageError, match="ignore-devices"):
        compare.compare(a, b)
    assert len(compare.compare(a, b, ignore_devices=True).rows) == 1


GOLDEN = """\
### NVIDIA H200 (base) -> NVIDIA H200 (new): GPU, timed with device events; time ratio new/base with its 95% interval, verdict at alpha 0.001, same within 1 %; within-run only: one run per side, interval by block bootstrap over batches, Mann-Whitney p; drift between runs is not seen (give several runs per side: A1,A2,A3 B1,B2,B3)

| suite | op | impl | dtype | case | base ms | new ms | new/base | interval | p | n | verdict | note |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
| stream | copy | torch | fp32 | n=250000000 | 1 | 1.1 | 1.100 | [1.098, 1.101] | 3.7e-05 | 12/12 | slower |  |
| stream | scale | torch | fp32 | n=250000000 | 1 | 0.8 | 0.800 | [0.799, 0.801] | 3.7e-05 | 12/12 | faster |  |
| stream | add | torch | fp32 | n=250000000 | 1 | 1.001 | 1.001 | [1.000, 1.002] | 0.089 | 12/12 | same |  |
| stream | triad | torch | fp32 | n=250000000 | - | - | - | - | - | - | n/a | timed differently (events vs wall): not compared |
| stream | dot | torch | fp32 | n=1 | - | - | - | - | - | - | n/a | status skipped -> skipped: because |

### NVIDIA H200 (base) -> NVIDIA H200 (new): verdicts per suite; geometric mean of the time ratios over the significant (faster or slower) cases only, with its 95% interval

| suite | timing | cases | faster | slower | no significant change | geomean new/base | interval | change |
|---|---|---|---|---|---|---|---|---|
| stream | events | 3 | 1 | 1 | 1 | 0.938 | [0.937, 0.939] | 1 faster, 1 slower, 1 no significant change; significant cases 1.07x faster |

### only in BASE NVIDIA H200 (base)

| suite | op | impl | dtype | case | timing |
|---|---|---|---|---|---|
| stream | read | torch | fp32 | n=250000000 | events |

### only in NEW NVIDIA H200 (new)

| suite | op | impl | dtype | case | timing |
|---|---|---|---|---|---|
| stream | write | torch | fp32 | n=250000000 | events |

"""


def test_golden_compare_markdown():
    # p of two fully separated samples of 12: U = 0, z = (72 - 0.5) / sqrt(144 / 12 * 25) = 4.13, p = 3.7e-05;
    # geometric mean over the two significant cases: (1.1 * 0.8) ** (1/2) = 0.938
    c = compare.compare(*runs_with_changes())
    assert report.render(compare.tables(c), "md") == GOLDEN


# --- the command line -----------------------------------------------------------------------------


def test_cli_compare_exit_codes(tmp_path):
    base, new = runs_with_changes()
    b = write_run(tmp_path / "base", base.records, run_id="base")
    n = write_run(tmp_path / "new", new.records, run_id="new")
    cpu = write_run(tmp_path / "cpu", [record(op="copy", timing="wall", device="Some CPU")], device=CPU, run_id="c")
    calls = {"md": (b, n, "--format", "md"), "gate5": (b, n, "--fail-on-regression", "5"),
             "gate20": (b, n, "--fail-on-regression", "20"),
             "same": (b, b, "--fail-on-regression", "0", "--format", "csv"),
             "alpha": (b, n, "--alpha", "2"), "devices": (b, cpu)}
    proc = {name: parity("compare", *args, cwd=tmp_path) for name, args in calls.items()}
    assert proc["md"].returncode == 0, proc["md"].stderr
    assert "| slower |" in proc["md"].stdout and "geometric mean" in proc["md"].stdout
    assert ("5 case(s) in both runs: 1 faster, 1 slower, 1 same, 2 not compared; 1 only in BASE, 1 only in NEW; "
            "verdicts within-run only (one run per side)" in proc["md"].stderr)
    assert proc["gate5"].returncode == 1, proc["gate5"].stderr
    assert "parity: regression: stream/copy/torch/" in proc["gate5"].stderr
    assert "Traceback" not in proc["gate5"].stderr and "scale" not in proc["gate5"].stderr
    assert proc["gate20"].returncode == 0, proc["gate20"].stderr
    assert proc["same"].returncode == 0 and proc["same"].stdout.startswith("key,")
    assert_one_error_line(proc["alpha"], "alpha")
    assert_one_error_line(proc["devices"], "--ignore-devices")


def test_cli_a_case_that_broke_fails_the_gate(tmp_path):
    ok = [timed("copy", shifted(1.0))]
    bad = [record(op="copy", status="invalid", bytes_read=10**9)]
    b = write_run(tmp_path / "b", ok, run_id="b")
    n = write_run(tmp_path / "n", bad, run_id="n")
    proc = parity("compare", b, n, "--fail-on-regression", "5", cwd=tmp_path)
    assert proc.returncode == 1 and "status ok -> invalid" in proc.stderr


# --- run-to-run variance (issue 13) ------------------------------------------------------------------


def test_student_t_matches_textbook_values():
    # scipy.stats.ttest_ind([1, 2, 3], [4, 5, 6]): t = -3.674, p = 0.02131 (df 4)
    assert compare.t_two_sided_p(3.6742346, 4) == pytest.approx(0.021311641, rel=1e-6)
    assert compare.t_quantile(0.975, 4) == pytest.approx(2.7764451, rel=1e-6)
    assert compare.t_quantile(0.975, 1) == pytest.approx(12.7062047, rel=1e-6)
    v = compare.judge_runs([1.0, 1.0, 1.0], [1.0, 1.0])  # identical runs: the same, surely
    assert v.verdict == "same" and v.p == 1.0


def batched_run(rng, n_batches=15, batch=32, level=1.0, batch_sd=0.01, sample_sd=0.001):
    """Samples of one run taken in batches: each batch has its own offset (clock, heat, the host),
    so the samples inside a batch are correlated."""
    out = []
    for _ in range(n_batches):
        offset = level * (1 + batch_sd * rng.standard_normal())
        out.extend(offset * (1 + sample_sd * rng.standard_normal(batch)))
    return np.asarray(out)


def test_batch_correlated_samples_fool_the_iid_test_but_not_the_block_bootstrap():
    iid, blocked = [], []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        a, b = batched_run(rng, n_batches=6, batch_sd=0.03), batched_run(rng, n_batches=6, batch_sd=0.03)
        iid.append(compare.judge(a, b).verdict)
        blocked.append(compare.judge(a, b, base_block=32, new_block=32).verdict)
    assert iid.count("slower") + iid.count("faster") >= 3  # the old test sees a change in noise (5 of 30 seeds)
    assert "slower" not in blocked and "faster" not in blocked
    rng = np.random.default_rng(1)
    v = compare.judge(batched_run(rng, batch_sd=0.002), batched_run(rng, level=1.1, batch_sd=0.002), base_block=32,
                      new_block=32)
    assert v.verdict == "slower"  # a real 10 % change is still found


def drifting_runs(rng, count, level=1.0, drift_sd=0.015, n=400):
    """Runs of one build one after another on a busy host: each run sits at its own level."""
    return [level * (1 + drift_sd * rng.standard_normal()) * (1 + 0.002 * rng.standard_normal(n))
            for _ in range(count)]


def timed_run(samples, run_id, batches=None):
    from synthetic import run as make_run

    rec = timed("copy", samples)
    if batches:
        rec["time_ms"]["batches"] = batches
    return make_run([rec], run_id=run_id)


def test_a_same_build_drift_is_not_called_a_change_with_several_runs_per_side():
    single, several = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        base, new = drifting_runs(rng, 3), drifting_runs(rng, 3)
        one = compare.compare(timed_run(base[0], "a1"), timed_run(new[0], "b1"))
        single.append(one.rows.iloc[0]["verdict"])
        assert one.rows.iloc[0]["basis"] == "within-run" and one.within_run_only
        many = compare.compare([timed_run(s, f"a{i}") for i, s in enumerate(base)],
                               [timed_run(s, f"b{i}") for i, s in enumerate(new)])
        assert many.rows.iloc[0]["basis"] == "runs" and not many.within_run_only
        several.append(many.rows.iloc[0]["verdict"])
    assert single.count("slower") + single.count("faster") >= 10  # one run per side: drift looks like change
    assert "slower" not in several and "faster" not in several


def test_a_real_change_is_found_across_several_runs():
    rng = np.random.default_rng(5)
    base = drifting_runs(rng, 4, drift_sd=0.003)
    new = drifting_runs(rng, 4, level=1.10, drift_sd=0.003)
    c = compare.compare([timed_run(s, f"a{i}") for i, s in enumerate(base)],
                        [timed_run(s, f"b{i}") for i, s in enumerate(new)])
    row = c.rows.iloc[0]
    assert row["verdict"] == "slower" and row["base_n"] == 4 and row["p"] < 0.001
    assert row["ci_low"] < row["ratio"] < row["ci_high"] and abs(row["ratio"] - 1.10) < 0.01
    table = report.render(compare.tables(c), "md")
    assert "| 4/4 runs |" in table and "from run-to-run variance over 4/4 runs" in table


def test_recorded_batches_set_the_bootstrap_block():
    assert compare.block_length([10, 32, 32, 32, 7]) == 32 and compare.block_length(None) == 1
    rng = np.random.default_rng(2)
    a, b = batched_run(rng), batched_run(rng, level=1.004)
    plain = compare.compare(timed_run(a, "a"), timed_run(b, "b")).rows.iloc[0]
    blocked = compare.compare(timed_run(a, "a", [32] * 15), timed_run(b, "b", [32] * 15)).rows.iloc[0]
    assert blocked["ci_high"] - blocked["ci_low"] > 2 * (plain["ci_high"] - plain["ci_low"])


def test_cli_compare_several_runs_per_side(tmp_path):
    rng = np.random.default_rng(9)
    folders = {}
    for side, level in (("a", 1.0), ("b", 1.0)):
        folders[side] = [write_run(tmp_path / f"{side}{i}", [timed("copy", list(s))], run_id=f"{side}{i}")
                         for i, s in enumerate(drifting_runs(rng, 3, level=level))]
    joined = {side: ",".join(str(f) for f in fs) for side, fs in folders.items()}
    proc = parity("compare", joined["a"], joined["b"], "--format", "md", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "| 3/3 runs |" in proc.stdout and "(a0, a1, a2) -> NVIDIA H200 (b0, b1, b2)" in proc.stdout
    assert "within-run only" not in proc.stderr
    bad = parity("compare", joined["a"] + ",", joined["b"], cwd=tmp_path)
    assert_one_error_line(bad, "empty path")
    missing = parity("compare", joined["a"] + "," + str(tmp_path / "nope"), joined["b"], cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "nope" in missing.stderr


def merged(times_by_worker, run_id):
    """A run over CPU workers as the multi-GPU merge lays it out: each record tagged with its worker."""
    recs = [dict(timed("copy", shifted(t)), gpu_index=w, device_part=w) for w, t in times_by_worker.items()]
    r = run(recs, device=CPU, run_id=run_id)
    r.meta["multi_gpu"] = {"workers": len(times_by_worker), "cpu_workers": len(times_by_worker)}
    return r


def test_a_run_over_workers_is_compared_worker_by_worker_or_pooled():
    # the same workers on both sides: each against itself (worker 1 got slower, worker 0 did not),
    # where before only the last worker's record of each case was read
    c = compare.compare(merged({0: 1.0, 1: 1.0}, "a"), merged({0: 1.0, 1: 1.5}, "b"))
    assert list(c.rows["part"]) == ["worker 0", "worker 1"] and list(c.rows["verdict"]) == ["same", "slower"]
    (table, _) = compare.tables(c)
    assert [r["worker"] for r in table[1]] == ["worker 0", "worker 1"]
    assert compare.summary_line(c).startswith("1 case(s) in both runs, 2 (case, worker) pairs: 1 slower, 1 same")
    # workers on one side only: each worker's median one observation of the device, said so
    c = compare.compare(merged({0: 1.0, 1: 1.01}, "a"), run([timed("copy", shifted(1.0))], device=CPU, run_id="c"))
    ((_, row),) = c.rows.iterrows()
    assert row["basis"] == "parts" and (row["base_n"], row["new_n"]) == (2, 1) and row["part"] is None
    assert "the spread between the parts" in compare.tables(c)[0][0]
