"""The serving scenario, its bad input and the validation report, through main() in-process."""
import json
import math

import pytest

from parity.harness.cli import main
from parity.harness.core.serving import collectives, validation
from parity.harness.core.serving.scenario import Scenario, solve
from parity.harness.core import specs

BASE = ["estimate", "--model", "llama3-70b", "--dtype", "fp8", "--to", "mi300x,h200", "--gpus", "8", "--tp", "8",
        "--isl", "1024", "--osl", "1024", "--engine", "vllm"]


def with_flags(argv, extra):
    """argv with each flag of `extra` replacing its value where present, else appended."""
    argv = list(argv)
    for i in range(0, len(extra), 2):
        if extra[i] in argv:
            argv[argv.index(extra[i]) + 1] = extra[i + 1]
        else:
            argv += extra[i:i + 2]
    return argv


def run_json(capsys, argv, extra=()):
    argv = with_flags(argv, list(extra))
    assert main(argv + ["--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_rows_have_ranges_of_nonzero_width(capsys):
    rows = run_json(capsys, BASE + ["--concurrency", "64"])
    assert [r["device"] for r in rows] == ["mi300x", "h200"]
    for r in rows:
        assert r["fits"] and r["concurrency"] == 64
        for key in ("output_tokens_per_s_per_gpu", "tokens_per_s_per_gpu", "tpot_ms", "ttft_ms", "e2e_ms",
                    "tokens_per_s_per_user", "usd_per_m_output_tokens", "usd_per_m_input_tokens"):
            assert r[f"{key}_low"] < r[key] < r[f"{key}_high"], key
        assert r["e2e_ms"] == pytest.approx(r["ttft_ms"] + 1023 * r["tpot_ms"], rel=1e-9)


def test_curve_throughput_rises_and_user_rate_falls(capsys):
    rows = run_json(capsys, BASE, ["--to", "h200", "--concurrency", "1,16,256"])
    out = [r["output_tokens_per_s_per_gpu"] for r in rows]
    user = [r["tokens_per_s_per_user"] for r in rows]
    assert out == sorted(out) and user == sorted(user, reverse=True)


def test_slo_picks_a_point_that_meets_it(capsys):
    rows = run_json(capsys, BASE, ["--to", "h200", "--slo-tpot-ms", "30"])
    assert rows[0]["tpot_ms"] <= 30 and rows[0]["concurrency"] > 1


def test_price_override_and_model_too_big(capsys):
    rows = run_json(capsys, BASE, ["--to", "h200", "--concurrency", "1", "--price", "h200=10"])
    assert rows[0]["usd_per_gpu_hour"] == 10
    rows = run_json(capsys, ["estimate", "--model", "llama3-405b", "--dtype", "bf16", "--to", "h100-sxm", "--tp", "1",
                             "--isl", "128", "--osl", "128", "--engine", "vllm", "--concurrency", "1"])
    assert rows[0]["fits"] is False and "needs" in rows[0]["note"] and rows[0]["memory_needed_gb_per_gpu"] > 800


@pytest.mark.parametrize("extra", [["--tp", "3"], ["--engine", "nope"], ["--ep", "2"], ["--gpus", "12"],
                                   ["--isl", "0"], ["--osl", "99999999"], ["--concurrency", "0"],
                                   ["--concurrency", "x"], ["--price", "h200=-1"], ["--to", "nope"]])
def test_bad_input_is_one_line_exit_2(capsys, extra):
    argv = BASE + ["--concurrency", "4"]
    for i in range(0, len(extra), 2):  # replace a flag's value where present, else append it
        if extra[i] in argv:
            argv[argv.index(extra[i]) + 1] = extra[i + 1]
        else:
            argv += extra[i:i + 2]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("parity: error:")


def test_validate_json_has_every_entry_and_both_subsets(capsys):
    data = run_json(capsys, ["estimate", "--validate"])
    subsets = {r["subset"] for r in data["entries"]}
    assert subsets == {"calibration", "check"} and set(data["subsets"]) == {"calibration", "check"}
    for r in data["entries"]:
        assert r["low"] < r["estimate"] < r["high"]
        assert r["error"] == pytest.approx(r["estimate"] / r["published"] - 1)
        assert r["inside"] == (r["low"] <= r["published"] <= r["high"])
    assert len(data["entries"]) + len(data["skipped"]) == 72


def test_split_is_stored_and_stratified():
    entries = validation.entries()
    by = {}
    for e in entries:
        if e["subset"] != "skipped":
            by.setdefault(e["family"], []).append(e["subset"])
    for family, subs in by.items():
        assert abs(subs.count("calibration") - subs.count("check")) <= 1, family


def test_allreduce_latency_then_bandwidth_and_mesh_uses_fewer_links():
    h200, mi300x = specs.get("h200"), specs.get("mi300x")
    small, _ = collectives.allreduce_s(h200, 8, 16384)
    large, algo = collectives.allreduce_s(h200, 8, 256e6)
    assert 3e-6 < small < 3e-5 and algo == "nvls" and large > 256e6 * 1.75 / (450e9 * 1.2)
    assert collectives.allreduce_s(mi300x, 4, 64e6)[0] > collectives.allreduce_s(mi300x, 8, 64e6)[0] * 1.5


def test_more_concurrency_costs_more_per_step_but_less_per_token():
    spec = specs.get("h200")
    one = solve(Scenario("llama3-8b", "fp8", 1, 1, 1024, 1024, "trtllm", concurrency=1), spec)[1]
    many = solve(Scenario("llama3-8b", "fp8", 1, 1, 1024, 1024, "trtllm", concurrency=128), spec)[1]
    assert many.tpot_s > one.tpot_s and many.output_tps_per_gpu > 20 * one.output_tps_per_gpu


def test_fit_sees_only_the_calibration_subset(monkeypatch):
    from parity.harness.core.serving import fit

    real = validation.entries()
    # three of the constants keep the fits short; which entries the objective reads is the question
    full = fit.space(real)
    monkeypatch.setattr(fit, "space", lambda entries=None: {k: full[k] for k in
                                                             ("weight_stream", "host_per_seq_us", "expert_load_cv")})
    # the check entries' published figures moved tenfold: a fit that read them would move
    moved = tuple(dict(e, published=dict(e["published"], value=e["published"]["value"] * 10))
                  if e["subset"] == "check" else e for e in real)
    assert {e["id"] for e in fit.calibration_entries(moved)} == {e["id"] for e in real if e["subset"] == "calibration"}
    base = fit.fit(real, rounds=1, restarts=0)  # deterministic (the next line needs it to be): fitted once
    assert fit.fit(moved, rounds=1, restarts=0) == base
    # and the calibration entries do move it
    shifted = tuple(dict(e, published=dict(e["published"], value=e["published"]["value"] * 2))
                    if e["subset"] == "calibration" else e for e in real)
    assert fit.fit(shifted, rounds=1, restarts=0) != base


def test_a_constant_the_calibration_cannot_see_keeps_its_prior_inside_what_the_data_tolerate(monkeypatch):
    from parity.harness.core.serving import fit

    # a: pinned at 2 by the objective; b: free below 5, penalised above; c: invisible
    monkeypatch.setattr(fit, "objective", lambda v, entries=None: 10 + abs(math.log(v["a"] / 2)) + max(0.0, v["b"] - 5))
    dims = {"a": (1.0, 0.5, 8.0), "b": (8.0, 0.1, 10.0), "c": (3.0, 0.1, 10.0)}
    values = fit._descend({k: d[0] for k, d in dims.items()}, dims, None, 6)
    assert values["a"] == pytest.approx(2, rel=0.05)
    held = fit.undetermined(values, dims)
    assert set(held) == {"b", "c"}
    assert held["c"] == 3.0  # the prior, untouched
    assert 2.0 < held["b"] <= 5.1  # the prior 8 is not tolerated: the edge of the interval that is


def test_the_fit_keeps_the_lowest_objective_of_its_starts(monkeypatch):
    from parity.harness.core.serving import fit

    # two basins: a shallow one around the prior (1.2, objective 1) and the deep one at 50 (0)
    monkeypatch.setattr(fit, "objective", lambda v, entries=None: min(abs(math.log(v["a"] / 1.2)) + 1,
                                                                     abs(math.log(v["a"] / 50))))
    monkeypatch.setattr(fit, "space", lambda entries=None: {"a": (1.0, 0.1, 100.0)})
    monkeypatch.setattr(fit, "undetermined", lambda values, dims, entries=None: {})
    one, _ = fit.fit_held(restarts=0)
    assert one["a"] == pytest.approx(1.2, rel=0.05)
    found, _ = fit.fit_held()
    assert found["a"] == pytest.approx(50, rel=0.05) and found == fit.fit_held()[0]  # seeded: the same


def test_band_is_the_stored_calibration_band_and_never_zero_width():
    q_low, q_high = validation.band()
    assert q_low < 0 < q_high
    low, high = validation.bounds(100.0, False, (0.0, 0.0))  # even a zero band keeps +-5 %
    assert low < 100.0 < high and high / low > 1.09


def test_validate_json_shape(capsys):
    data = run_json(capsys, ["estimate", "--validate"])
    assert set(data) >= {"entries", "subsets"}
    for r in data["entries"]:
        assert {"id", "source", "subset", "published", "estimate", "low", "high", "error", "inside"} <= set(r)
        assert r["source"]
    for s in data["subsets"].values():
        assert {"median_abs_error", "worst_abs_error", "share_inside", "entries"} <= set(s)


@pytest.mark.parametrize("extra", [["--model", "nope"], ["--gpus", "0"], ["--gpus", "100000"], ["--tp", "16"],
                                   ["--price", "nope=3"], ["--slo-tpot-ms", "-1"], ["--isl", "-5"],
                                   ["--request-rate", "0"], ["--request-rate", "nan"], ["--request-rate", "inf"],
                                   ["--request-rate", "-3"], ["--request-rate", "2"], ["--request-rate", "x"],
                                   ["--requests", "0"], ["--requests", "5"], ["--requests", "1e3"]])
def test_more_bad_input_is_one_line_exit_2(capsys, extra):
    assert main(with_flags(BASE + ["--concurrency", "4"], extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("parity: error:")


def test_html_has_the_curve_and_max_concurrency_row(capsys, tmp_path):
    out = tmp_path / "s.html"
    assert main(with_flags(BASE, ["--to", "h200", "--concurrency", "1,8,64", "--format", "html", "--out", str(out)])) == 0
    text = out.read_text()
    assert text.count("<circle") == 3 and "<polyline" in text
    rows = run_json(capsys, BASE, ["--to", "mi300x", "--concurrency", "max"])
    assert rows[0]["concurrency"] == rows[0]["max_concurrency"] > 1


def test_max_inside_a_curve_is_the_maximum_concurrency(capsys):
    rows = run_json(capsys, BASE, ["--to", "h200", "--concurrency", "4,max"])
    assert [r["concurrency"] for r in rows] == [4, rows[1]["max_concurrency"]] and rows[1]["max_concurrency"] > 4


def test_a_curve_past_the_maximum_has_one_point_there_that_names_the_rest(capsys):
    rows = run_json(capsys, BASE, ["--to", "h200", "--concurrency", "4,100000,200000"])
    top = rows[0]["max_concurrency"]
    assert [r["concurrency"] for r in rows] == [4, top]
    assert "100000, 200000 are above the" in rows[1]["note"] and not rows[0].get("note")
    rows = run_json(capsys, BASE, ["--to", "h200", "--concurrency", f"4,{top},100000"])
    assert [r["concurrency"] for r in rows] == [4, top] and "100000 is above the" in rows[1]["note"]


def test_a_format_without_tensor_cores_is_priced_weight_only(capsys):
    """FP4 on Hopper or MI300X is served weight-only (W4A16: Marlin, TensorRT-LLM's gpt-oss on
    Hopper): the row is estimated and says so, and one user's decode GEMMs, a weight read, are
    faster than with FP8 weights (0.53 bytes a weight against 1). (TPOT also carries the prompt's
    chunks, which weight-only GEMMs compute at a quarter of the BF16 rate.)"""
    argv = ["estimate", "--model", "llama3-8b", "--to", "h100-sxm,mi300x", "--gpus", "1", "--tp", "1",
            "--isl", "1024", "--osl", "256", "--engine", "vllm"]
    fp4 = run_json(capsys, argv, ["--dtype", "fp4", "--concurrency", "1"])
    fp8 = run_json(capsys, argv, ["--dtype", "fp8", "--concurrency", "1"])
    for w4, w8 in zip(fp4, fp8, strict=True):
        assert w4["fits"] and "no fp4 tensor cores" in w4["note"] and "weight-only" in w4["note"]
        assert w4["decode_step_ms"]["gemm_s"] < 0.95 * w8["decode_step_ms"]["gemm_s"]
    b200 = run_json(capsys, argv, ["--dtype", "fp4", "--to", "b200", "--concurrency", "1"])
    assert not b200[0].get("note")


@pytest.mark.parametrize("usd, shown", [(0.000192, "0.000192"), (0.0583, "0.0583"), (1.234, "1.23"), (12.34, "12.3"),
                                        (1234.5, "1,234")])
def test_dollar_figures_keep_three_significant_digits(usd, shown):
    # A fixed three decimals printed the input price of a short prompt on a B200 as 0.000.
    from parity.harness.reporting.serving import display_rows
    row = {"device": "b200", "concurrency": 1, "max_concurrency": 1, "fits": True,
           "usd_per_m_input_tokens": usd, "usd_per_m_input_tokens_low": usd / 2,
           "usd_per_m_input_tokens_high": usd * 2}
    cell = display_rows([row])[0]["$/Mtok in"]
    assert cell.startswith(shown + " (")
    assert not cell.startswith("0.000 ")


@pytest.mark.parametrize("flags", [["--price", "h200=abc"], ["--price", "h200=3"], ["--ep", "2"], ["--attention-dp"],
                                   ["--request-rate", "2"], ["--requests", "50"], ["--limits", "trtllm-bench"]])
def test_a_serving_flag_without_a_serving_scenario_is_refused_not_ignored(capsys, flags):
    # These used to switch nothing on: the single-step estimate ran and dropped them, exit 0.
    assert main(["estimate", "--model", "llama3-8b"] + flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("parity: error:")


def test_an_open_loop_rate_serves_that_load_and_puts_the_range_in_the_latency(capsys):
    """--request-rate R: the row's throughput is R x OSL over the GPUs (an input, exact), the
    concurrency is what Little's law makes of the latency (with its range), and a rate beyond the
    engine's capacity at its maximum concurrency says so and keeps the speed's range."""
    argv = with_flags(BASE, ["--to", "h200"])
    for rate in (0.5, 2.0, 6.0):
        row, = run_json(capsys, argv, ["--to", "h200", "--request-rate", str(rate)])
        assert row["request_rate"] == rate
        assert row["output_tokens_per_s_per_gpu"] == pytest.approx(rate * 1024 / 8, rel=1e-3)
        assert row["output_tokens_per_s_per_gpu_low"] == row["output_tokens_per_s_per_gpu_high"]
        assert row["concurrency"] == pytest.approx(rate * row["e2e_ms"] / 1e3, rel=1e-3)
        assert row["concurrency_low"] < row["concurrency"] < row["concurrency_high"]
        assert row["tpot_ms_low"] < row["tpot_ms"] < row["tpot_ms_high"]
        assert "open loop" in row["note"]
    row, = run_json(capsys, argv, ["--to", "h200", "--request-rate", "100000"])
    assert row["concurrency"] == row["max_concurrency"] and "grows without bound" in row["note"]
    assert row["output_tokens_per_s_per_gpu_low"] < row["output_tokens_per_s_per_gpu"]


def test_a_burst_from_the_cli_says_how_many_were_in_flight_and_queued(capsys):
    rows = run_json(capsys, with_flags(BASE, ["--to", "h200"]), ["--requests", "3000"])
    row, = rows
    assert row["requests"] == 3000 and row["concurrency"] == row["max_concurrency"] < 3000
    assert f"{3000 - row['max_concurrency']} queued" in row["note"]
    assert row["output_tokens_per_s_per_gpu_low"] < row["output_tokens_per_s_per_gpu"] < row["output_tokens_per_s_per_gpu_high"]
