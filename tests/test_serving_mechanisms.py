"""The step model's mechanisms one at a time: prompt packing under the token budget, the grouped
GEMM's per-expert tiles, the host per attention-DP rank, models that quantize only their experts,
and the validation set's reading of finite bursts (Little's law)."""
import dataclasses
import math
import re

import pytest

from parity.harness.core import llm, specs
from parity.harness.core.serving import engines, scenario, validation
from parity.harness.core.serving import kernels as K
from parity.harness.core.serving.scenario import Scenario


def mixed_batches(monkeypatch, scn):
    """The Batch of every step the steady state prices, with the engine's real costs."""
    seen = []
    real = scenario._pass_s

    def spy(s, spec, dev, engine, p, batch, measured):
        seen.append(batch)
        return real(s, spec, dev, engine, p, batch, measured)
    monkeypatch.setattr(scenario, "_pass_s", spy)
    scenario.solve(scn, specs.get("h200"))
    return seen


@pytest.mark.parametrize("conc,isl,osl", [(64, 1024, 128), (512, 300, 150), (3, 2000, 500), (1, 128, 2048)])
def test_a_mixed_step_packs_the_waiting_prompts_up_to_the_budget(monkeypatch, conc, isl, osl):
    scn = Scenario("llama3-8b", "fp8", 1, 1, isl, osl, "vllm", concurrency=conc)
    budget = engines.get("vllm").max_num_batched_tokens
    batches = mixed_batches(monkeypatch, scn)
    mixed = [b for b in batches if b.prefill > 0][-1]
    waiting = max(isl, conc * isl / osl)  # a whole prompt, or the round's prompts where more arrive
    assert mixed.prefill == pytest.approx(min(waiting, budget - conc))
    assert mixed.decode + mixed.prefill <= budget + 1e-9


def test_ttft_alone_is_one_prompt_not_a_trickle():
    # one user: its prompt goes through in ceil(ISL / budget) steps (one eager step of 467 tokens,
    # a few decode steps' time), not in OSL steps of ISL / OSL tokens each (a trickle: ~256 steps)
    scn = Scenario("llama3-8b", "bf16", 1, 1, 467, 256, "trtllm", concurrency=1)
    _, res = scenario.solve(scn, specs.get("h100-sxm"))
    assert res.ttft_s < 5 * res.tpot_s


def test_grouped_gemm_pads_each_expert_to_the_tile_shares_one_grid_and_reads_only_touched_experts():
    dev = K.device(specs.get("h200"))
    p = K.Params()
    # compute-bound experts (4096 rows each): 8 experts cost about 8 dense GEMMs of one expert's rows
    one = K.gemm_s(dev, 4096, 14336, 4096, "fp8", p)
    eight = K.grouped_gemm_s(dev, 8 * 4096, 8, 14336, 4096, "fp8", p)
    assert eight <= 8 * one and eight == pytest.approx(8 * one, rel=0.05)  # one wave tail, not eight
    # 1030 rows per expert pad to 1152: as slow as 1152 rows (compute-bound), 9/8 of 1024 rows'
    padded = K.grouped_gemm_s(dev, 8 * 1030, 8, 14336, 4096, "fp8", p)
    assert padded == pytest.approx(K.grouped_gemm_s(dev, 8 * 1152, 8, 14336, 4096, "fp8", p), rel=1e-9)
    assert padded > 1.1 * K.grouped_gemm_s(dev, 8 * 1024, 8, 14336, 4096, "fp8", p)
    # the experts' tiles share one grid: 16 experts of 144 tiles each fill 132 SMs' waves (2304 of
    # 2376 slots) where one expert alone leaves a half-empty second wave (144 of 264)
    shared = K.grouped_gemm_s(dev, 16 * 720, 16, 3072, 4096, "fp8", p)
    assert shared < 0.6 * 16 * K.gemm_s(dev, 720, 3072, 4096, "fp8", p)
    # a decode step touching 2 of 8 experts reads 2 experts' weights, not 8
    two = K.grouped_gemm_s(dev, 4, 2, 14336, 4096, "fp8", p)
    assert two == pytest.approx(2 * K.gemm_s(dev, 2, 14336, 4096, "fp8", p), rel=1e-9)
    assert two < K.grouped_gemm_s(dev, 16, 8, 14336, 4096, "fp8", p) / 3


def test_finite_bursts_are_read_at_the_concurrency_their_own_row_reports():
    """A QPS=INF row with a fixed request count is read at Little's law's in-flight count from the
    row's reported request rate and mean latencies, not at the request count."""
    burst = [e for e in validation.entries() if e["subset"] != "skipped" and "QPS=INF" in e["scenario"]["assumptions"]]
    assert len(burst) >= 3
    for e in burst:
        notes, s = e["published"]["notes"], e["scenario"]
        rps = float(re.search(r"(\d+(?:\.\d+)?) req/s", notes).group(1))
        ttft = float(re.search(r"mean TTFT (\d+(?:\.\d+)?) ms", notes).group(1))
        itl = float(re.search(r"mean ITL (\d+(?:\.\d+)?) ms", notes).group(1))
        assert s["concurrency"] == round(rps * (ttft + (s["osl"] - 1) * itl) / 1e3), e["id"]


def test_a_runs_kernels_replace_the_model_on_its_own_device_only(tmp_path, capsys):
    import json
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from synthetic import H100, attention_record, gemm_record, write_run

    from parity.harness.cli import main
    # llama3-8b's projections at M = 64 (a decode step of 64 sequences), measured slow: 20 TFLOPS
    recs = [gemm_record(m=64, n=n, k=k, dtype="fp8", tflops=20.0, device=H100["name"])
            for n, k in ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336))]
    recs.append(attention_record(op="decode", seq=1536, rate=500.0, device=H100["name"]))
    folder = write_run(tmp_path / "h100", recs, device=H100)
    argv = ["estimate", "--model", "llama3-8b", "--dtype", "fp8", "--to", "h100-sxm,mi300x", "--gpus", "1",
            "--isl", "1024", "--osl", "1024", "--concurrency", "64", "--engine", "vllm", "--format", "json"]
    assert main(argv) == 0
    plain = {r["device"]: r for r in json.loads(capsys.readouterr().out)}
    assert main(argv + [str(folder)]) == 0
    with_run = {r["device"]: r for r in json.loads(capsys.readouterr().out)}
    h100, mi = with_run["h100-sxm"], with_run["mi300x"]
    assert h100["kernels_from_run"] and "attention_decode" in h100["note"] and "gemm_fp8" in h100["note"]
    assert h100["tpot_ms"] > 1.5 * plain["h100-sxm"]["tpot_ms"]  # the slow kernels show
    assert mi["tpot_ms"] == plain["mi300x"]["tpot_ms"] and "kernels_from_run" not in mi


def test_sliding_window_layers_attend_to_their_window_only(tmp_path):
    from dataclasses import replace

    from parity.harness.core import llm
    from parity.harness.core.serving.step import Batch, Parallel, step
    oss = llm.get("gpt-oss-120b")
    assert (oss.window_tokens, oss.window_layers) == (128, 18)
    assert oss.attention_spans(4096) == [(18, 4096), (18, 128)] and oss.attention_spans(100) == [(18, 100), (18, 100)]
    spec = specs.get("h200")
    dev, p = K.device(spec), K.Params()
    full = replace(oss, window_tokens=0, window_layers=0)

    def attn(model, ctx):
        return step(model, spec, dev, "fp8", Parallel(), Batch(64, ctx, 512, ctx / 2, 1), p, True).attention_s
    # at 8k tokens the windowed half costs next to nothing: about half the full model's attention
    assert attn(oss, 8192) == pytest.approx(attn(full, 8192) / 2, rel=0.1)
    # inside the window nothing changes
    assert attn(oss, 100) == pytest.approx(attn(full, 100), rel=1e-9)
    bad = tmp_path / "gpt-oss-120b.toml"
    bad.write_text(llm.MODEL_DIR.joinpath("gpt-oss-120b.toml").read_text().replace("layers = 18", "layers = 40"))
    with pytest.raises(llm.ModelError, match="sliding_window"):
        llm.parse(bad)


@pytest.mark.parametrize("ranks", [2, 4, 8])
def test_under_attention_dp_each_rank_schedules_its_own_share(monkeypatch, ranks):
    """The host's step cost follows one rank's sequences under attention DP (a scheduler per rank),
    and all of the replica's sequences under tensor parallelism (every rank runs the same batch)."""
    seen = []
    real = engines.Engine.host_s
    monkeypatch.setattr(engines.Engine, "host_s", lambda self, seqs: seen.append(seqs) or real(self, seqs))
    conc = 64 * ranks
    for dp in (True, False):
        seen.clear()
        scn = Scenario("gpt-oss-120b", "fp4", ranks, ranks, 1024, 1024, "trtllm", ep=ranks, attention_dp=dp,
                       concurrency=conc)
        mem, res = scenario.solve(scn, specs.get("h200"))
        assert res is not None and max(seen) <= conc / (ranks if dp else 1) + conc / 8, (dp, max(seen))
        assert max(seen) >= conc / (ranks if dp else 1)
        assert res.parts["host_s"] == pytest.approx(real(engines.get("trtllm"), conc / (ranks if dp else 1)))


@pytest.mark.parametrize("ranks", [2, 8])
def test_under_attention_dp_each_rank_has_its_own_token_budget(monkeypatch, ranks):
    """A replica of `ranks` attention-DP ranks, each with 96 sequences and a 128-token budget, runs
    them in one decode pass a step (96 <= 128 on every rank); under tensor parallelism the one
    budget of the replica must split 96 x ranks sequences into passes."""
    passes = []
    real = scenario.step
    monkeypatch.setattr(scenario, "step", lambda *a, **k: passes.append(a[5]) or real(*a, **k))
    for dp in (True, False):
        passes.clear()
        scn = Scenario("gpt-oss-120b", "fp4", ranks, ranks, 256, 256, "trtllm", ep=ranks, attention_dp=dp,
                       concurrency=96 * ranks, overrides=(("max_num_batched_tokens", 128),))
        scenario.solve(scn, specs.get("h200"))
        decode = passes[0]  # the first pass of the steady state is the pure decode step
        assert decode.prefill == 0
        assert decode.decode == pytest.approx(96 * ranks if dp else 96 * ranks / math.ceil(96 * ranks / 128))


def test_a_model_with_only_its_experts_quantized_keeps_the_rest_in_bf16(tmp_path):
    """gpt-oss ships MXFP4 experts and BF16 elsewhere: at --dtype fp4 only the routed experts take
    FP4 bytes; attention, embeddings and the KV cache stay BF16, in the serving estimate's memory and
    step and in the single-step view alike. A model quantized throughout is unchanged."""
    from dataclasses import replace

    from parity.harness.core import llm
    from parity.harness.core.serving.step import Batch, Parallel, step
    oss = llm.get("gpt-oss-120b")
    whole = replace(oss, quantized="all")
    assert oss.quantized == "experts" and oss.dense_dtype("fp4") == "bf16" and whole.dense_dtype("fp4") == "fp4"
    par = Parallel(tp=4, ep=4, attention_dp=True)
    e = oss.moe
    experts = oss.moe_layers * e.experts * 3 * oss.hidden * e.expert_ffn
    rest = oss.params() - experts
    for vendor in ("nvidia", "amd"):
        got = scenario.weights_per_gpu(oss, "fp4", vendor, par)
        # under attention DP every GPU holds the whole attention; the experts split over EP 4
        want = experts / 4 * K.weight_bytes("fp4", vendor) + rest * K.weight_bytes("bf16", vendor)
        assert got == pytest.approx(want, rel=1e-9)
        assert scenario.weights_per_gpu(whole, "fp4", vendor, par) < got
    w_exp, kv_exp = llm.memory_bytes(oss, "fp4", 1, 8, 1000)
    w_all, kv_all = llm.memory_bytes(whole, "fp4", 1, 8, 1000)
    assert w_exp == pytest.approx(experts * llm.WEIGHT_BYTES["fp4"] + rest * 2.0) and kv_exp == 2 * kv_all
    # the attention projections of a step price BF16 weights (twice FP8's bytes at decode)
    spec = specs.get("h100-sxm")
    dev, p = K.device(spec), K.Params()
    dense = lambda m: step(m, spec, dev, "fp8", Parallel(), Batch(1, 512), p, True)  # noqa: E731
    assert dense(oss).gemm_s > dense(replace(oss, quantized="all")).gemm_s
    # names from the single-step view: attention in BF16, experts in the chosen format
    kinds = {k.name: k.math_dtype for k in llm.step(oss, "decode", 8, 512, "fp8").kernels if k.kind == "gemm"}
    assert kinds["qkv"] == "bf16" and kinds["experts up_gate"] == "fp8" and kinds["lm_head"] == "bf16"
    bad = tmp_path / "gpt-oss-120b.toml"
    bad.write_text(llm.MODEL_DIR.joinpath("gpt-oss-120b.toml").read_text().replace('"experts"', '"attention"'))
    with pytest.raises(llm.ModelError, match="quantized must be one of"):
        llm.parse(bad)


@pytest.mark.parametrize("engine_id", ["vllm", "sglang"])
def test_a_hybrid_kv_cache_holds_only_the_window_of_sliding_layers(engine_id):
    """vLLM's hybrid KV cache manager and SGLang's SWA pool keep a sliding-window layer's last
    window only: gpt-oss's 18 windowed layers of 36 hold 128 tokens, so a 4096-token request takes
    (18 x 4096 + 18 x 128) / 36 full-layer tokens; an engine counted at the full length (TensorRT-LLM)
    and a model without windows are unchanged."""
    from dataclasses import replace

    from parity.harness.core import llm
    spec = specs.get("h200")
    engine = engines.get(engine_id)
    scn = Scenario("gpt-oss-120b", "fp4", 1, 1, 4096, 2048, engine_id)
    per_seq = 4096 + 2048 / 2
    windowed = scenario.memory(scn, spec, engine)
    full = scenario.memory(scn, spec, replace(engine, window_kv="full"))
    assert engine.window_kv == "window" and engines.get("trtllm").window_kv == "full"
    assert full.tokens_per_seq == per_seq
    assert windowed.tokens_per_seq == pytest.approx((18 * per_seq + 18 * 128) / 36)
    assert windowed.max_concurrency >= full.max_concurrency and windowed.needed_gb < full.needed_gb
    dense = Scenario("llama3-8b", "fp8", 1, 1, 4096, 2048, engine_id)
    assert scenario.memory(dense, spec, engine) == scenario.memory(dense, spec, replace(engine, window_kv="full"))
    assert llm.get("llama3-8b").window_layers == 0


def test_w4a8_experts_multiply_at_the_fp8_rate_where_fp4_is_hardware(tmp_path):
    """gpt-oss's MXFP4 experts meet FP8 activations on Blackwell and MI355X (W4A8): FP4 weight bytes,
    FP8 math; without FP4 tensor cores BF16 math (W4A16); a model without the field is W4A4."""
    from parity.harness.core import llm
    oss, llama = llm.get("gpt-oss-120b"), llm.get("llama3-8b")
    assert oss.expert_math("fp4", native=True) == "fp8" and oss.expert_math("fp4", native=False) == "bf16"
    assert oss.expert_math("fp8", native=True) == "fp8" and llama.expert_math("fp4", native=True) == "fp4"
    dev = K.device(specs.get("b200"))
    p = K.Params()
    # compute-bound experts (4096 rows each): the FP8 math takes the FP4/FP8 peak ratio longer
    w4a4 = K.grouped_gemm_s(dev, 8 * 4096, 8, 5760, 2880, "fp4", p)
    w4a8 = K.grouped_gemm_s(dev, 8 * 4096, 8, 5760, 2880, "fp4", p, math_in="fp8")
    ratio = (dev.peak_flops["fp4"] * dev.gemm_eff.get("fp4", dev.gemm_eff["bf16"])) / (
        dev.peak_flops["fp8"] * dev.gemm_eff.get("fp8", dev.gemm_eff["bf16"]))
    assert w4a8 / w4a4 == pytest.approx(ratio, rel=1e-6) and ratio > 1.5
    # a decode step reads the same 4-bit weights either way
    assert K.grouped_gemm_s(dev, 8, 8, 5760, 2880, "fp4", p, math_in="fp8") == pytest.approx(
        K.grouped_gemm_s(dev, 8, 8, 5760, 2880, "fp4", p))
    kinds = {k.name: k.math_dtype for k in llm.step(oss, "decode", 8, 512, "fp4").kernels}
    assert kinds["experts up_gate"] == "fp8" and kinds["qkv"] == "bf16"
    bad = tmp_path / "gpt-oss-120b.toml"
    bad.write_text(llm.MODEL_DIR.joinpath("gpt-oss-120b.toml").read_text().replace(
        'expert_activations = "fp8"', 'expert_activations = "fp6"'))
    with pytest.raises(llm.ModelError, match="expert_activations must be one of"):
        llm.parse(bad)


@pytest.mark.parametrize("spec_id", ["h100-sxm", "mi300x"])
def test_a_weight_only_gemm_is_issue_bound_when_compute_bound_and_a_4_bit_read_when_not(spec_id):
    """FP4 weights on a GPU without FP4 tensor cores (W4A16): a prefill-sized GEMM runs at the
    measured issue-bound rate (WEIGHT_ONLY_EFF of BF16 peak), slower than the BF16 GEMM itself;
    a decode GEMM is a read of 4-bit weights, faster than BF16's 2 bytes a weight."""
    dev = K.device(specs.get(spec_id))
    p = K.Params()
    assert "fp4" not in dev.peak_flops
    big_w4 = K.gemm_s(dev, 8192, 8192, 8192, "fp4", p)
    big_bf16 = K.gemm_s(dev, 8192, 8192, 8192, "bf16", p)
    flops = 2.0 * 8192 ** 3
    assert big_w4 == pytest.approx(flops / (dev.peak_flops["bf16"] * K.WEIGHT_ONLY_EFF), rel=0.05)  # + wave tail
    assert big_w4 > 2 * big_bf16
    assert K.gemm_s(dev, 4, 8192, 8192, "fp4", p) < 0.5 * K.gemm_s(dev, 4, 8192, 8192, "bf16", p)
    # the same weights where FP4 is hardware multiply at the FP4 rate
    b200 = K.device(specs.get("b200"))
    assert K.gemm_s(b200, 8192, 8192, 8192, "fp4", p) < K.gemm_s(b200, 8192, 8192, 8192, "bf16", p)



@pytest.mark.parametrize("model,spec_id,tp,prompt", [("llama3-70b", "h100-sxm", 8, 8192), ("deepseek-r1", "b200", 4, 8192),
                                                    ("llama3-8b", "mi300x", 1, 4096), ("qwen3-235b-a22b", "h200", 8, 2000)])
def test_prefill_attention_streams_kv_once_per_query_tile(model, spec_id, tp, prompt):
    # FlashAttention reads K and V once per 128-row query tile; priced once per query token, a long
    # prompt's attention was memory-bound at ~100x its real traffic (an 8k DeepSeek prompt: 172 ms
    # of attention on a B200 instead of ~29 ms).
    from parity.harness.core import llm
    from parity.harness.core.serving.step import Batch, Parallel, step
    m, spec = llm.get(model), specs.get(spec_id)
    dev, p = K.device(spec), scenario.params()
    br = step(m, spec, dev, "fp8", Parallel(tp), Batch(0, 0, prompt, prompt / 2, 1), p, False)
    per_token_reads = K.memory_s(dev, prompt * prompt / 2 * m.kv_bytes_per_token(1, tp))
    # priced per query token the attention was at least these reads; streamed per tile it is its FLOPs
    assert 0 < br.attention_s < per_token_reads / 4


@pytest.mark.parametrize("engine_id", ["vllm", "trtllm", "sglang"])
@pytest.mark.parametrize("conc,isl,osl", [(4, 8192, 1024), (64, 1024, 1024), (700, 300, 150)])
def test_prompt_chunks_share_the_decode_step_only_where_the_engine_mixes(monkeypatch, engine_id, conc, isl, osl):
    """vLLM and TensorRT-LLM put the prompt chunks in the decode step, after the decodes took their
    tokens of the budget; SGLang (enable_mixed_chunk off) runs a prefill batch of its own under the
    whole budget, and its TPOT pays that batch's whole time, not only the chunk's share."""
    scn = Scenario("llama3-70b", "fp8", 8, 8, isl, osl, engine_id, concurrency=conc)
    engine = engines.get(engine_id)
    prefill = [b for b in mixed_batches(monkeypatch, scn) if b.prefill > 0]
    assert prefill
    for b in prefill:
        assert b.prefill <= engine.max_num_batched_tokens - b.decode + 1e-9
        assert (b.decode > 0) == engine.mixed_prefill
    monkeypatch.undo()
    spec = specs.get("h200")
    _, res = scenario.solve(scn, spec)
    dev, p = K.device(spec), scenario.params()
    big = max(prefill, key=lambda b: b.prefill)
    t_chunk, _ = scenario._pass_s(scn, spec, dev, engine, p, big, None)
    extra = t_chunk - (res.decode_step_s if engine.mixed_prefill else 0.0)
    assert res.tpot_s == pytest.approx(res.decode_step_s + extra * (conc * isl / osl) / big.prefill, rel=1e-6)


@pytest.mark.parametrize("mode", ["serving", "static"])
@pytest.mark.parametrize("engine_id", ["vllm", "trtllm", "sglang"])
@pytest.mark.parametrize("conc", [1, 4, 32])
def test_a_prompt_a_token_past_its_chunk_pays_for_that_token_not_a_whole_step(mode, engine_id, conc):
    """The prompt's last piece runs in a step of its own size: TTFT grows smoothly with the prompt
    instead of jumping by a whole chunk's time where the prompt outgrows the budget left (in a
    static batch, where the batch's prompts outgrow the budget)."""
    budget = engines.get(engine_id).max_num_batched_tokens
    if mode == "static":
        room = budget // conc
    else:
        room = budget - (conc if engines.get(engine_id).mixed_prefill else 0)
    ttft, step_s = {}, {}
    for isl in (room, room + 1):
        _, res = scenario.solve(Scenario("llama3-8b", "bf16", 1, 1, isl, 256, engine_id, concurrency=conc,
                                         mode=mode), specs.get("h100-sxm"))
        ttft[isl], step_s[isl] = res.ttft_s, res.decode_step_s
    chunk_s = ttft[room] - 0.5 * step_s[room]  # the one whole chunk (with its wait) of the shorter prompt
    assert 0 < ttft[room + 1] - ttft[room] < 0.5 * chunk_s


def test_an_open_loop_rate_settles_where_littles_law_holds_and_latency_rises_with_the_rate():
    """At every arrival rate the concurrency solves C = rate x e2e(C) (Little's law), TPOT never
    falls as the rate rises (a damped iteration once stopped short near saturation and read half
    the latency), and a rate beyond what the engine serves at its maximum says so."""
    spec = specs.get("mi300x")
    base = Scenario("llama2-70b", "fp8", 8, 1, 300, 293, "vllm", request_rate=1.0)
    engine = engines.get("vllm")
    mem = scenario.memory(base, spec, engine)
    last = 0.0
    for rate in (0.5, 5, 20, 40, 60, 70, 71, 71.74, 72, 73, 74, 78):
        scn = dataclasses.replace(base, request_rate=rate)
        _, res = scenario.solve(scn, spec)
        assert res.note == ""
        assert rate * res.e2e_s == pytest.approx(res.concurrency, rel=1e-3) or res.concurrency == 1.0
        assert res.tpot_s >= last * (1 - 1e-6), rate
        last = res.tpot_s
    _, res = scenario.solve(dataclasses.replace(base, request_rate=1e5), spec)
    assert res.concurrency == mem.max_concurrency and "grows without bound" in res.note


def test_trtllm_bench_rows_are_bursts_of_their_pages_request_counts_under_the_tuned_limits():
    """NVIDIA's trtllm-bench pages pass no max_batch_size or max_num_tokens (so the tool tunes them)
    and list the requests each length pair ran (perf-overview.md's num_requests tables): every row
    of those pages is read with the tuned limits and as a burst of that count, where one is listed."""
    v1 = {(128, 128): 30000, (128, 2048): 3000, (128, 4096): 1500, (1000, 2000): 1500, (2048, 128): 3000,
          (2048, 2048): 1500, (5000, 500): 1500, (1000, 1000): 3000, (500, 2000): 3000, (20000, 2000): 1000}
    guide = {(1024, 1024): 3000, (8192, 1024): 1500, (1024, 8192): 1500, (32768, 1024): 1000, (1024, 32768): 1000}
    rows = [e for e in validation.entries()
            if e["subset"] != "skipped" and e["family"] in ("trtllm-v1", "trtllm-dev-guide")]
    assert len(rows) >= 20
    for e in rows:
        s = e["scenario"]
        table = v1 if e["family"] == "trtllm-v1" else guide
        assert s["limits"] == "trtllm-bench", e["id"]
        assert s.get("requests") == table.get((s["isl"], s["osl"])), e["id"]
        assert s["concurrency"] == (None if s.get("requests") else "max"), e["id"]
        if llm.get(s["model"]).moe is not None:  # both pages' MoE options enable attention DP
            assert s["attention_dp"], e["id"]


def _routed_max_over_mean(experts, ep, k, tokens, trials, rng):
    per_rank = experts // ep
    total = 0.0
    for _ in range(trials):
        load = [0] * ep
        for _ in range(tokens):
            for expert in rng.sample(range(experts), k):
                load[expert // per_rank] += 1
        total += max(load) / (tokens * k / ep)
    return total / trials


def test_the_busiest_rank_under_uniform_routing_is_the_sampling_spread():
    """With no router skew the busiest rank's share is sampling alone: against a seeded Monte Carlo of
    uniform top-k routing (DeepSeek-R1's 256 experts, 8 a token, EP8), within 8 %."""
    import random
    rng = random.Random(0)
    p = K.Params(expert_load_cv=0.0)
    for tokens in (8, 64):
        simulated = _routed_max_over_mean(256, 8, 8, tokens, 300, rng)
        assert K.busiest_rank_share(p, 256, 8, tokens * 8, 8) == pytest.approx(simulated, rel=0.08)


def test_the_busiest_rank_shrinks_with_the_batch_and_the_experts_a_rank_and_has_bounds():
    p = K.Params(expert_load_cv=2.0)
    share = lambda experts, ep, pairs, k=8: K.busiest_rank_share(p, experts, ep, pairs, k)  # noqa: E731
    assert share(256, 1, 1000) == 1.0  # no EP: every GPU holds a slice of every expert
    assert share(256, 8, 80) > share(256, 8, 8000) > share(256, 8, 800000) > 1.0
    assert share(128, 8, 8000) > share(256, 8, 8000)  # 16 experts a rank spread more than 32
    # Mixtral (8 experts, 2 a token) at EP8: one expert a rank, a token puts at most one pair there,
    # so the busiest rank holds at most every token's one pair: 8 x 1 / 2 = 4x the mean (one token,
    # where sampling alone would put it above)
    wild = K.Params(expert_load_cv=100.0)
    assert K.busiest_rank_share(wild, 8, 8, 2, 2) == pytest.approx(4.0)
    assert all(K.busiest_rank_share(wild, 8, 8, 2 * t, 2) <= 4.0 for t in (1, 4, 64, 4096))
    # a skew beyond sqrt(E / k - 1) (every token on the same k experts) is no skew a router has
    assert K.busiest_rank_share(wild, 256, 8, 8000, 8) == K.busiest_rank_share(
        K.Params(expert_load_cv=math.sqrt(256 / 8 - 1)), 256, 8, 8000, 8)


def test_every_entry_is_a_valid_scenario_and_a_bad_reading_is_refused():
    for e in validation.entries():
        if e["subset"] != "skipped":
            validation.scenario(e).check()
    good = next(e for e in validation.entries() if e["id"] == "sp00")
    bad = dict(good, scenario=dict(good["scenario"], limits="trtllm_bench"))
    with pytest.raises(scenario.UsageError, match="--limits"):
        validation.scenario(bad)
    vllm = dict(good, scenario=dict(good["scenario"], engine="vllm"))
    with pytest.raises(scenario.UsageError, match="TensorRT-LLM"):
        validation.scenario(vllm)
