"""The limits trtllm-bench throughput tunes when given none (core/serving/trtllm_bench.py), worked
by hand from tensorrt_llm/bench/build/tuning.py, and how a scenario uses them."""
import pytest

from parity.harness.cli import main
from parity.harness.core import llm, specs
from parity.harness.core.model import UsageError
from parity.harness.core.serving import scenario, trtllm_bench
from parity.harness.core.serving.scenario import Scenario

H100, B200 = specs.get("h100-sxm"), specs.get("b200")


@pytest.mark.parametrize("raw, batch", [(1, 64), (65, 96), (255, 256), (256, 256), (300, 384), (1023, 1024),
                                        (1025, 1280), (4096, 4096)])
def test_the_batch_rounds_up_in_the_steps_of_the_heuristic(raw, batch):
    assert trtllm_bench._round_batch(raw) == batch


@pytest.mark.parametrize("raw, tokens", [(10, 2048), (2049, 2304), (4095, 4096), (4097, 4608), (8191, 8192),
                                         (8193, 9216)])
def test_the_token_budget_rounds_up_in_the_steps_of_the_heuristic(raw, tokens):
    assert trtllm_bench._round_tokens(raw) == tokens


def test_llama3_8b_fp8_on_an_h100_worked_by_hand():
    # KV: 2 x 32 layers x 8 heads x 128 x 1 byte = 65,536 B a token; engine 8.03e9 x 1 B = 7.48 GiB;
    # 79.68 GiB visible; (79.68 - 7.48) x 0.9 = 64.98 GiB of cache; 128 + 2048 tokens a request:
    # 64.98 GiB / (65,536 B x 2176) = 489 requests -> 512; 489 x (1 + 128/2048) = 520 tokens -> 2048
    got = trtllm_bench.limits(llm.get("llama3-8b"), "fp8", H100.memory_bytes, 1, 128, 2048, 0.9)
    assert got == (512, 2048)


def test_the_caps_hold_on_a_small_model_with_much_memory():
    # far more than 4096 requests fit: the batch stops at 4096 and the budget at 4096 x 2 = 8192
    assert trtllm_bench.limits(llm.get("llama3-8b"), "fp8", B200.memory_bytes, 1, 128, 128, 0.9) == (4096, 8192)
    # 1024/16: 2424 requests ask for 65 x 2424 tokens a step, capped at 32,768
    assert trtllm_bench.limits(llm.get("llama3-8b"), "fp8", B200.memory_bytes, 1, 1024, 16, 0.9) == (2560, 32768)


def test_without_chunked_prefill_the_budget_holds_a_whole_prompt_and_the_batch():
    batch, tokens = trtllm_bench.limits(llm.get("llama3-70b"), "fp8", B200.memory_bytes, 4, 20000, 2000, 0.9)
    assert tokens >= 20000 + batch


def test_more_kv_memory_means_a_larger_batch_and_a_longer_request_a_smaller_one():
    model = llm.get("llama3-70b")
    small = trtllm_bench.limits(model, "fp8", H100.memory_bytes, 2, 1000, 1000, 0.9)
    big = trtllm_bench.limits(model, "fp8", H100.memory_bytes, 4, 1000, 1000, 0.9)
    longer = trtllm_bench.limits(model, "fp8", H100.memory_bytes, 4, 1000, 8000, 0.9)
    assert big[0] > small[0] and longer[0] < big[0]


def test_an_mxfp4_checkpoint_is_not_tuned_and_keeps_the_build_defaults():
    assert trtllm_bench.limits(llm.get("gpt-oss-120b"), "fp4", H100.memory_bytes, 4, 1024, 1024, 0.9) == (2048, 8192)


def test_a_scenario_takes_the_tuned_limits_unless_the_source_states_its_own():
    scn = Scenario("llama3-8b", "fp8", 1, 1, 128, 2048, "trtllm", limits="trtllm-bench")
    engine, _, mem = scenario.setup(scn, H100)
    assert (engine.max_num_seqs, engine.max_num_batched_tokens, engine.graph_max_batch) == (512, 2048, 512)
    stated = Scenario("llama3-8b", "fp8", 1, 1, 128, 2048, "trtllm", limits="trtllm-bench",
                      overrides=(("max_num_seqs", 256),))
    engine, _, _ = scenario.setup(stated, H100)
    assert (engine.max_num_seqs, engine.max_num_batched_tokens) == (256, 2048)
    default, _, _ = scenario.setup(Scenario("llama3-8b", "fp8", 1, 1, 128, 2048, "trtllm"), H100)
    assert (default.max_num_seqs, default.max_num_batched_tokens) == (2048, 8192)
    # `trtllm-bench build` tunes TensorRT engines at its default KV share, 0.95, not the runtime's 0.9
    model = llm.get("llama3-70b")
    built = Scenario("llama3-70b", "fp8", 2, 2, 128, 2048, "trtllm-cpp", limits="trtllm-bench")
    cpp, _, _ = scenario.setup(built, H100)
    assert cpp.max_num_seqs == trtllm_bench.limits(model, "fp8", H100.memory_bytes, 2, 128, 2048, 0.95)[0]
    assert cpp.max_num_seqs > trtllm_bench.limits(model, "fp8", H100.memory_bytes, 2, 128, 2048, 0.9)[0]


def test_unknown_limits_and_limits_of_another_engine_are_refused():
    with pytest.raises(UsageError, match="--limits"):
        Scenario("llama3-8b", "fp8", 1, 1, 128, 2048, "trtllm", limits="tuned").check()
    for engine in ("vllm", "sglang"):
        with pytest.raises(UsageError, match="TensorRT-LLM"):
            Scenario("llama3-8b", "fp8", 1, 1, 128, 2048, engine, limits="trtllm-bench").check()
    Scenario("llama3-8b", "fp8", 1, 1, 128, 2048, "trtllm-cpp", limits="trtllm-bench").check()


def test_the_cli_reports_the_limits_it_used(capsys):
    import json
    args = ["estimate", "--model", "llama3-8b", "--dtype", "fp8", "--to", "h100-sxm", "--isl", "128", "--osl", "2048",
            "--engine", "trtllm", "--limits", "trtllm-bench", "--concurrency", "max", "--format", "json"]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["limits"] == {"from": "trtllm-bench", "max_num_seqs": 512, "max_num_batched_tokens": 2048}
    bad = ["estimate", "--model", "llama3-8b", "--isl", "128", "--osl", "2048", "--engine", "trtllm",
           "--limits", "fastest"]
    assert main(bad) == 2 and "--limits" in capsys.readouterr().err


def test_an_untuned_quantization_still_holds_a_whole_prompt_in_the_pytorch_flow():
    # gpt-oss's MXFP4 keeps BuildConfig's 2048 / 8192, and general.py's floor still applies after it
    gpt_oss = llm.get("gpt-oss-120b")
    assert trtllm_bench.limits(gpt_oss, "fp4", H100.memory_bytes, 4, 8192, 1024, 0.9) == (2048, 8192 + 2048)
    built = trtllm_bench.limits(gpt_oss, "fp4", H100.memory_bytes, 4, 8192, 1024, 0.9, whole_prompts=False)
    assert built == (2048, 8192)


def test_a_tensorrt_engine_build_keeps_the_heuristics_budget_and_its_graph_setting():
    # `trtllm-bench build` calls the heuristic without general.py's floor, and TensorRT engines run
    # without CUDA graphs unless asked (engines.toml trtllm-cpp graph_max_batch = 0)
    built = Scenario("llama3-70b", "fp8", 4, 4, 20000, 2000, "trtllm-cpp", limits="trtllm-bench")
    engine, _, _ = scenario.setup(built, B200)
    assert engine.max_num_batched_tokens < 20000 and engine.graph_max_batch == 0
    torch_flow, _, _ = scenario.setup(Scenario("llama3-70b", "fp8", 4, 4, 20000, 2000, "trtllm",
                                               limits="trtllm-bench"), B200)
    assert torch_flow.max_num_batched_tokens >= 20000 + torch_flow.max_num_seqs
    assert torch_flow.graph_max_batch == torch_flow.max_num_seqs


def test_where_trtllm_bench_would_refuse_the_engine_keeps_its_defaults_and_says_so():
    from parity.harness.core.serving import engines
    trtllm = engines.get("trtllm")
    model = llm.get("llama3-70b")
    # 70B in FP8 (65 GiB) on a 48 GiB part: no request fits by the heuristic's estimate
    small, note = trtllm_bench.apply(trtllm, model, "fp8", 48 * 2**30, 1, 1024, 1024, {})
    assert (small.max_num_seqs, small.max_num_batched_tokens) == (2048, 8192)
    assert "trtllm-bench would stop here" in note
    roomy, note = trtllm_bench.apply(trtllm, model, "fp8", B200.memory_bytes, 1, 1024, 1024, {})
    assert note == "" and roomy.max_num_seqs < 2048


def test_the_report_row_carries_what_the_setup_said():
    from parity.harness.reporting import serving
    scn = Scenario("llama3-8b", "fp8", 1, 1, 128, 2048, "trtllm", concurrency=8, limits="trtllm-bench")
    mem, res = scenario.solve(scn, H100)
    assert serving._row(scn, H100, mem, res, None)["note"] is None
    mem.note = "trtllm-bench would stop here: by its estimate 0.50 requests' KV cache fits (default limits used)"
    assert "trtllm-bench would stop here" in serving._row(scn, H100, mem, res, None)["note"]
