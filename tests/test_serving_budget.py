"""What the token budget and the runtime allow: a mixing engine cannot process more tokens a second
than full steps carry (the prefill-bound steady state), and a compiled runtime has its own host
costs (trtllm-cpp)."""
import pytest

from parity.harness.core import specs
from parity.harness.core.serving import engines, fit, scenario
from parity.harness.core.serving import kernels as K
from parity.harness.core.serving.scenario import Scenario

CASES = [("mixtral-8x7b", "h200", 8, 2048, 128), ("mixtral-8x7b", "h200", 4, 5000, 500),
         ("llama3-8b", "h100-sxm", 1, 2048, 128), ("llama3-70b", "h200", 8, 20000, 2000),
         ("llama3-8b", "h200", 1, 1000, 1000), ("llama3-70b", "h100-sxm", 4, 128, 2048)]


@pytest.mark.parametrize("engine_id", ["vllm", "trtllm", "trtllm-cpp"])
@pytest.mark.parametrize("model,spec_id,tp,isl,osl", CASES)
def test_a_replica_processes_no_more_tokens_than_full_steps_carry(engine_id, model, spec_id, tp, isl, osl):
    """Input + output tokens a second of one replica <= budget / (the time of a step holding the whole
    budget). Before the prefill-bound state, several steps' prompt chunks rode on one decode step
    whose host time hid them: Mixtral on 8x H200 at 2048/128 read 4x its published throughput."""
    spec = specs.get(spec_id)
    scn = Scenario(model, "fp8", tp, tp, isl, osl, engine_id)
    engine, p, mem = scenario.setup(scn, spec)
    _, res = scenario.solve(scn, spec)
    budget = engine.max_num_batched_tokens
    dev = K.device(spec)
    full = min(scenario.chunk_pass_s(scn, spec, dev, engine, p, budget, None),
               scenario.chunk_pass_s(scn, spec, dev, engine, p, budget / 2, None, budget / 2, isl + osl / 2))
    assert res.tps_per_gpu * tp <= budget / full * 1.05


@pytest.mark.parametrize("engine_id", ["vllm", "trtllm", "trtllm-cpp"])
def test_the_prefill_bound_state_joins_the_other_at_its_edge(engine_id):
    """At c = budget x OSL / (ISL + OSL) both states describe the same full step: throughput is
    continuous across the edge and falls on neither side by more than the step's own change."""
    engine = engines.get(engine_id)
    isl, osl = 2048, 128
    edge = engine.max_num_batched_tokens * osl / (isl + osl)
    spec = specs.get("h200")
    rates = []
    for c in (edge * 0.98, edge * 1.02):
        _, res = scenario.solve(Scenario("llama3-8b", "fp8", 1, 1, isl, osl, engine_id, concurrency=round(c)), spec)
        rates.append(res.output_tps_per_gpu)
        assert ("prefill-bound" in res.note) == (round(c) > edge)
    assert rates[1] == pytest.approx(rates[0], rel=0.08)


def test_queued_requests_wait_in_ttft_when_prefill_bound():
    """Past the edge more concurrency only lengthens the queue: the rate stays, TTFT grows by
    Little's law (e2e = C x OSL / rate)."""
    spec = specs.get("h200")
    out = {}
    for c in (520, 780):  # the edge is at 482, the memory's maximum at 827
        _, res = scenario.solve(Scenario("llama3-8b", "fp8", 1, 1, 2048, 128, "trtllm", concurrency=c), spec)
        assert "prefill-bound" in res.note and not res.note.startswith("concurrency")
        out[c] = res
    assert out[780].output_tps_per_gpu == pytest.approx(out[520].output_tps_per_gpu, rel=1e-3)
    assert out[780].e2e_s == pytest.approx(1.5 * out[520].e2e_s, rel=1e-2)
    assert out[780].ttft_s > out[520].ttft_s + 0.3 * out[520].e2e_s


def test_a_compiled_runtime_launches_at_the_prior_and_fits_its_own_host_cost():
    cpp, py = engines.get("trtllm-cpp"), engines.get("trtllm")
    assert (cpp.runtime, py.runtime) == ("cpp", "python")
    prior = engines.priors()[1]["eager_launch_us"]
    assert scenario.params(None, cpp).eager_launch_us == prior
    assert scenario.params(None, py).eager_launch_us == engines.fitted()[1]["eager_launch_us"]
    assert engines.per_seq_key(cpp) != engines.per_seq_key(py)
    assert {engines.per_seq_key(e) for e in (py, engines.get("vllm"), engines.get("sglang"))} == {"host_per_seq_us"}
    assert engines.per_seq_key(cpp) in fit.space()


def test_the_runtime_is_checked(tmp_path, monkeypatch):
    text = engines.DATA.read_text(encoding="utf-8").replace('runtime = "cpp"', 'runtime = "rust"', 1)
    bad = tmp_path / "engines.toml"
    bad.write_text(text, encoding="utf-8")
    monkeypatch.setattr(engines, "DATA", bad)
    engines.priors.cache_clear()
    try:
        with pytest.raises(Exception, match="runtime must be one of"):
            engines.priors()
    finally:
        monkeypatch.undo()
        engines.priors.cache_clear()


@pytest.mark.parametrize("bad", [{"gpu_memory_utilization": 0.0}, {"gpu_memory_utilization": 1.5},
                                 {"max_num_seqs": 0}, {"max_num_batched_tokens": -1}, {"eager_launch_us": 3}])
def test_engine_overrides_are_checked(bad):
    from parity.harness.core.model import UsageError
    with pytest.raises(UsageError):
        engines.get("trtllm").with_overrides(bad)


def test_a_kv_fraction_of_the_free_memory_leaves_the_weights_theirs():
    """TensorRT-LLM's kv_cache_free_gpu_mem_fraction is a share of what the weights leave: 70B in
    FP8 on one H100 (80 GiB) keeps some KV room, where a share of the whole memory (vLLM's
    gpu_memory_utilization) leaves almost none."""
    spec = specs.get("h100-sxm")
    trt = scenario.memory(Scenario("llama3-70b", "fp8", 1, 1, 1000, 1000, "trtllm"), spec, engines.get("trtllm"))
    vll = scenario.memory(Scenario("llama3-70b", "fp8", 1, 1, 1000, 1000, "vllm"), spec, engines.get("vllm"))
    free = spec.memory_bytes - trt.weights_gb * 1e9 - trt.workspace_gb * 1e9
    assert trt.kv_tokens * trt.kv_per_token_bytes == pytest.approx(0.9 * free, rel=1e-6)
    assert vll.kv_tokens < trt.kv_tokens
    assert spec.memory_bytes == pytest.approx(81559 * 2**20, rel=0.002)  # nvidia-smi's total on H100 80GB
