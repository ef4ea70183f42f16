"""`parity estimate`: models and prices as data, a step as kernels, memory fit, $/Mtok; the CLI."""
from __future__ import annotations

import json
import statistics
import tomllib
from pathlib import Path

import pytest

from parity.harness import cli
from parity.harness.core import llm, prices, specs
from parity.harness.core.model import UsageError
from parity.harness.reporting import estimate
from synthetic import CPU, H100, attention_record, gemm_record, run, write_run
from test_cli import assert_one_error_line, parity

CORE = Path(llm.__file__).parent


def req(model="llama3-8b", phase="decode", batch=1, context=1024, dtype="bf16", **kw):
    return estimate.Request(model=model, phase=phase, batch=batch, context=context, dtype=dtype, **kw)


def one(request, spec_id, source_run=None):
    return estimate.estimate(request, [specs.get(spec_id)], source_run)[0]


# --- models ----------------------------------------------------------------------------------


def test_every_model_file_loads_and_counts_its_stated_parameters():
    models = llm.load_all()
    assert set(models) == {"llama3-8b", "llama3-70b", "llama3-405b", "mixtral-8x7b", "deepseek-v3", "deepseek-r1",
                           "llama2-70b", "mixtral-8x22b", "qwen3-235b-a22b", "gpt-oss-120b"}
    for m in models.values():
        assert m.params() / 1e9 == pytest.approx(m.params_total_b, rel=llm.PARAM_TOLERANCE)
        assert m.params(active=True) / 1e9 == pytest.approx(m.params_active_b, rel=llm.PARAM_TOLERANCE)
    assert models["deepseek-v3"].params(active=True) < models["deepseek-v3"].params() / 10  # MoE: active << total


def test_llama_gemm_shapes_are_the_gemm_suites():
    from parity.suites import _gemm_op as gemm_op

    for model_id, (hidden, ffn, heads, kv_heads) in gemm_op.LLAMA3.items():
        m = llm.get(model_id)
        assert (m.hidden, m.ffn, m.heads, m.kv_heads) == (hidden, ffn, heads, kv_heads)
        step = llm.step(m, "decode", 1, 16, "bf16")
        mine = {k.name: k.shape[1:] for k in step.kernels if k.kind == "gemm" and k.name != "lm_head"}
        assert mine == {proj: (n, k) for proj, n, k in gemm_op.llama_projections(model_id)}


def test_a_model_file_whose_shapes_miss_its_parameter_count_is_refused(tmp_path):
    text = (CORE / "llm" / "llama3-8b.toml").read_text().replace("params_total_b = 8.03", "params_total_b = 9.5")
    (tmp_path / "llama3-8b.toml").write_text(text)
    with pytest.raises(llm.ModelError, match="8.03B total parameters, the file states 9.5B"):
        llm.parse(tmp_path / "llama3-8b.toml")
    (tmp_path / "llama3-8b.toml").write_text(text.replace("params_total_b = 9.5", "params_total_b = 8.03\nlayer = 3"))
    with pytest.raises(llm.ModelError, match="unknown keys"):
        llm.parse(tmp_path / "llama3-8b.toml")


def test_moe_decode_reads_only_the_routed_experts():
    mixtral = llm.get("mixtral-8x7b")
    step = llm.step(mixtral, "decode", 1, 1, "bf16")
    weights_read = sum(k.count * k.bytes for k in step.kernels if k.kind == "gemm")  # + tiny activations
    # batch 1: 2 of 8 experts per layer, so about the active parameters (12.9B), not the total (46.7B)
    assert weights_read / 2 == pytest.approx(mixtral.params(active=True) - mixtral.vocab * mixtral.hidden, rel=0.01)


# --- prices ----------------------------------------------------------------------------------


def test_monthly_prices_are_converted_per_gpu_hour_and_every_price_has_a_source():
    data = tomllib.loads((CORE / "prices" / "mi300x.toml").read_text())  # one file per device
    pairs = [tuple(v / p["gpus"] / (8760 / 12) for v in p["usd_per_month"]) if "usd_per_month" in p
             else tuple(p["usd_per_gpu_hour"]) for p in data["price"]]
    assert any("usd_per_month" in p for p in data["price"])
    price = prices.get("mi300x")
    assert (price.low, price.high) == pytest.approx((min(lo for lo, _ in pairs), max(hi for _, hi in pairs)))
    assert price.usd_per_gpu_hour == pytest.approx(statistics.median((lo + hi) / 2 for lo, hi in pairs))
    assert all(p.sources for p in prices.load_all().values())


def per_gpu_hour(entry):
    """The entry's [low, high] per GPU-hour, from the published figure (independent of the loader)."""
    if "usd_per_gpu_hour" in entry:
        return tuple(entry["usd_per_gpu_hour"])
    hours = 8760 / 12 if "usd_per_month" in entry else 1
    return tuple(v / entry["gpus"] / hours for v in entry.get("usd_per_month", entry.get("usd_per_hour")))


def test_every_price_file_is_one_device_and_an_instance_price_is_divided_by_its_gpus():
    kinds = set()
    for path in sorted((CORE / "prices").glob("*.toml")):
        entries = tomllib.loads(path.read_text())["price"]
        assert {e["device"] for e in entries} == {path.stem}, path.name  # one file per device, named for it
        kinds.update(k for e in entries for k in ("usd_per_gpu_hour", "usd_per_hour", "usd_per_month") if k in e)
        pairs = [per_gpu_hour(e) for e in entries]
        price = prices.get(path.stem)
        assert price.usd_per_gpu_hour == pytest.approx(statistics.median((lo + hi) / 2 for lo, hi in pairs))
        assert (price.low, price.high) == pytest.approx((min(p[0] for p in pairs), max(p[1] for p in pairs)))
        assert len(price.sources) == len(entries) and all(price.sources)
    assert kinds == {"usd_per_gpu_hour", "usd_per_hour", "usd_per_month"}  # each conversion is exercised
    gb200 = prices.get("gb200")  # $42/h for a 4-GPU slice, $9.08/h for a 2-GPU superchip
    assert (gb200.low, gb200.high) == pytest.approx((9.08 / 2, 42.00 / 4))


@pytest.mark.parametrize("figure, match", [
    ('usd_per_hour = [8, 9]', "needs gpus"),
    ('usd_per_hour = [8, 9]\ngpus = 0', "needs gpus"),
    ('usd_per_gpu_hour = [1, 2]\nusd_per_hour = [8, 9]\ngpus = 4', "give one of"),
    ('usd_per_gpu_hour = [1, 2]\ngpus = 4', "not a per-GPU price"),
    ('usd_per_hour = [9, 8]\ngpus = 4', "low, high"),
])
def test_a_malformed_price_figure_is_refused(tmp_path, figure, match):
    (tmp_path / "p.toml").write_text(f'schema = 1\n[[price]]\ndevice = "gb200"\n{figure}\n'
                                     'basis = "x"\ndate = "2026"\nsource = "y"\n')
    with pytest.raises(prices.PriceError, match=match):
        prices.parse(tmp_path / "p.toml")


@pytest.fixture
def only_h100_sxm_priced(tmp_path, monkeypatch):
    """A price folder holding h100-sxm's file alone: every other device is one without a sourced price."""
    (tmp_path / "h100-sxm.toml").write_text((CORE / "prices" / "h100-sxm.toml").read_text())
    monkeypatch.setattr(prices, "get", lambda device: prices.load_all(tmp_path).get(device))


def test_a_price_file_without_a_source_is_refused(tmp_path):
    (tmp_path / "p.toml").write_text('schema = 1\n[[price]]\ndevice = "h200"\nusd_per_gpu_hour = [1, 2]\n'
                                     'basis = "x"\ndate = "2026"\n')
    with pytest.raises(prices.PriceError, match="source is required"):
        prices.parse(tmp_path / "p.toml")


# --- the estimate ----------------------------------------------------------------------------


def test_llama3_8b_decode_at_batch_1_is_memory_bound_at_the_achieved_bandwidth():
    model = llm.get("llama3-8b")
    context = 4096
    row = one(req(context=context), "h200")
    assert row["fits"] and row["gpus"] == 1 and row["bound"] == "memory" and row["bound_share"] > 0.999
    # Independent formula: every weight but the embedding table is read once per token, and the
    # KV cache of `context` tokens (2 x layers x kv_heads x head_dim x 2 bytes each) once.
    bytes_per_token = ((model.params() - model.vocab * model.hidden) * 2
                       + context * model.layers * 2 * model.kv_heads * model.head_dim * 2)
    # bandwidth x efficiency = H200's published achieved copy bandwidth (priors/nvidia.toml: 4.01 and 4.3 TB/s)
    achieved_bps = statistics.median([4.01e12, 4.3e12])
    assert row["tokens_per_s_per_gpu"] == pytest.approx(achieved_bps / bytes_per_token, rel=2e-3)
    assert row["ms_per_output_token"] == pytest.approx(1e3 / row["tokens_per_s_per_gpu"])
    assert row["tokens_per_s_per_gpu_low"] < row["tokens_per_s_per_gpu"] < row["tokens_per_s_per_gpu_high"]


def test_llama3_70b_bf16_needs_two_h200s_and_one_mi300x():
    rows = estimate.estimate(req(model="llama3-70b", context=2048), [specs.get("h200"), specs.get("mi300x")])
    assert [(r["device"], r["gpus"], r["fits"]) for r in rows] == [("h200", 2, True), ("mi300x", 1, True)]
    h200 = rows[0]
    assert h200["weights_gb_per_gpu"] == pytest.approx(llm.get("llama3-70b").params() * 2 / 2 / 1e9)
    assert any(k["kernel"] == "tensor-parallel all-reduce" and k["basis"].startswith("assumed") for k in h200["kernels"])
    with pytest.raises(UsageError, match="--tp must be one of"):
        one(req(model="llama3-70b", tp=3), "h200")
    with pytest.raises(UsageError, match="--tp 64 does not divide mixtral-8x7b's attention heads"):
        one(req(model="mixtral-8x7b", tp=64), "h200")


def test_usd_per_mtok_follows_from_price_and_rate(only_h100_sxm_priced):
    row = one(req(), "h100-sxm")
    data = tomllib.loads((CORE / "prices" / "h100-sxm.toml").read_text())
    mids = [sum(p["usd_per_gpu_hour"]) / 2 for p in data["price"] if p["device"] == "h100-sxm"]
    usd_per_hour = statistics.median(mids)
    assert row["usd_per_gpu_hour"] == pytest.approx(usd_per_hour)
    assert row["usd_per_mtok"] == pytest.approx(usd_per_hour * 1e6 / (3600 * row["tokens_per_s_per_gpu"]))
    assert row["usd_per_mtok_low"] == pytest.approx(row["usd_per_gpu_hour_low"] * 1e6 / (3600 * row["tokens_per_s_per_gpu_high"]))
    assert "mercatus" in row["price_source"].lower()
    assert row["joules_per_token"] == pytest.approx(700 / row["tokens_per_s_per_gpu"])  # H100 SXM TDP 700 W
    assert "usd_per_mtok" not in one(req(), "mi355x")  # no sourced price: no $/Mtok, said so
    assert "no sourced price" in one(req(), "mi355x")["price_source"]
    assert "usd_per_gpu_hour" not in one(req(), "mi355x")


def test_prefill_is_compute_bound_and_reports_time_to_first_token():
    row = one(req(model="llama3-70b", phase="prefill", batch=4, context=4096, dtype="fp8"), "b200")
    assert row["bound"] == "compute" and row["ttft_ms"] > 0 and "ms_per_output_token" not in row
    assert row["tokens_per_s_per_gpu"] == pytest.approx(4 * 4096 / (row["ttft_ms"] * 1e-3) / row["gpus"])


def test_a_batch_that_fits_nowhere_says_so_per_device():
    rows = estimate.estimate(req(model="llama3-405b", batch=64, context=131072, tp=8),
                             [specs.get("h200"), specs.get("mi455x")])
    assert [r["fits"] for r in rows] == [False, False]
    assert all("does not fit on 8 GPU(s)" in r["note"] and "KV cache" in r["note"] for r in rows)


def test_a_part_with_a_range_of_capacities_shows_both_ends():
    # Llama 3.1 405B in FP8 (~406 GB of weights): AMD's 432 GB are binary, 462e9 bytes a program
    # sees, 416e9 after a 10 % reserve: one MI455X; at the seed article's 288 GB (277e9 usable), 2.
    row = one(req(model="llama3-405b", dtype="fp8", context=4096), "mi455x")
    assert row["gpus"] == 1 and row["gpus_at_memory_low"] == 2 and "288 GB): 2 GPU(s)" in row["note"]
    assert row["memory_gb_per_gpu"] == pytest.approx(432 * 2**30 * 0.996 / 1e9)
    row = one(req(model="llama3-405b", dtype="fp8", context=4096, reserve=0.2), "mi455x")
    assert row["gpus"] == 2 and row["gpus_at_memory_low"] == 2


def test_fp4_on_a_part_without_fp4_is_not_estimated():
    row = one(req(dtype="fp4"), "h100-sxm")
    assert not row["fits"] and "no fp4 peak" in row["note"]
    assert one(req(dtype="fp4"), "b200")["fits"]


def _llama8b_gemm_run(device=H100, tflops=600.0):
    """An H100 run of the 8B model's projections at M = 1 (the gemm suite's llama shapes)."""
    recs = [gemm_record(m=1, n=n, k=k, tflops=tflops / 1000, device=device["name"])  # memory-bound: low TFLOPS
            for n, k in ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336))]
    return run(recs, device=device)


def test_kernels_from_a_run_are_measured_on_its_device_and_carried_to_others():
    source = _llama8b_gemm_run()
    measured = one(req(), "h100-sxm", source)
    bases = {k["kernel"]: k["basis"] for k in measured["kernels"]}
    assert bases["qkv"].startswith("measured (same shape") and bases["mlp_down"].startswith("measured")
    assert bases["attention decode"].startswith("roofline x prior")
    assert measured["kernels_measured"] == 4
    carried = one(req(), "mi300x", source)
    bases = {k["kernel"]: k["basis"] for k in carried["kernels"]}
    assert bases["qkv"].startswith("carried from the h100-sxm run") and "hbm_copy" in bases["qkv"]
    # the run's kernels were slower than the priors' copy rate, so the estimate is slower with the run
    assert carried["tokens_per_s_per_gpu"] < one(req(), "mi300x")["tokens_per_s_per_gpu"]


def test_attention_decode_from_a_run_at_a_near_context():
    source = run([attention_record(op="decode", seq=1536, rate=2000.0, device=H100["name"])], device=H100)
    row = one(req(context=1024), "h100-sxm", source)
    basis = next(k["basis"] for k in row["kernels"] if k["kernel"] == "attention decode")
    assert basis.startswith("measured (near shape") and "attention/decode" in basis
    far = one(req(context=8192), "h100-sxm", source)  # 8192 is more than 2x from 1536: the prior
    assert next(k["basis"] for k in far["kernels"] if k["kernel"] == "attention decode").startswith("roofline")


def test_a_cpu_run_is_refused():
    with pytest.raises(UsageError, match="only GPU runs"):
        estimate.estimate(req(), [specs.get("h200")], run([gemm_record(timing="wall", device="cpu")], device=CPU))


# --- the command line ------------------------------------------------------------------------


def test_cli_estimate_json_rows(capsys):
    assert cli.main(["estimate", "--model", "llama3-8b", "--batch", "1", "--context", "2048",
                     "--to", "h100-sxm,mi300x", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["device"] for r in rows] == ["h100-sxm", "mi300x"]
    for key in ("gpus", "fits", "tokens_per_s_per_gpu", "tokens_per_s_per_gpu_low", "tokens_per_s_per_gpu_high",
                "ms_per_output_token", "bound", "usd_per_gpu_hour", "price_source", "usd_per_mtok",
                "usd_per_mtok_low", "usd_per_mtok_high", "joules_per_token", "kernels"):
        assert key in rows[0], key


def test_cli_estimate_html_holds_the_plot(tmp_path, capsys, only_h100_sxm_priced):
    out = tmp_path / "e.html"
    assert cli.main(["estimate", "--model", "llama3-70b", "--to", "h100-sxm,h200,b200,mi300x,mi355x",
                     "--format", "html", "--out", str(out)]) == 0
    page = out.read_text()
    assert "data:image/png;base64," in page and "no sourced price: h200, b200, mi300x, mi355x" in page and "mercatus" in page.lower()


def test_cli_estimate_list_models_and_fits_nowhere(capsys):
    assert cli.main(["estimate", "--list-models", "--format", "md"]) == 0
    listed = capsys.readouterr().out
    assert all(m in listed for m in llm.load_all())
    assert cli.main(["estimate", "--model", "llama3-405b", "--tp", "1", "--to", "h100-sxm", "--format", "md"]) == 0
    captured = capsys.readouterr()
    assert "does not fit on 1 GPU(s)" in captured.out and "fits on none" in captured.err


def test_cli_estimate_bad_input_is_one_line(tmp_path):
    assert_one_error_line(parity("estimate", "--model", "llama9", cwd=tmp_path), "unknown model 'llama9'")
    assert_one_error_line(parity("estimate", "--model", "llama3-8b", "--to", "h100,zz", cwd=tmp_path), "unknown spec")
    cpu_run = write_run(tmp_path / "cpu", [gemm_record(timing="wall-interpret", device="cpu")], device=CPU)
    assert_one_error_line(parity("estimate", cpu_run, "--model", "llama3-8b", "--to", "h200", cwd=tmp_path),
                          "only GPU runs")
    assert_one_error_line(parity("estimate", "--model", "llama3-8b", "--batch", "0", cwd=tmp_path), "--batch")
