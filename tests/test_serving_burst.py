"""A burst of N requests sent at once (request rate inf): its limits are the steady state's."""
import pytest

from parity.harness.core import specs
from parity.harness.core.serving import burst, engines, scenario
from parity.harness.core.serving.scenario import Scenario

H100 = specs.get("h100-sxm")


def solve(engine_id, **kw):
    mem, res = burst.solve(Scenario("llama3-8b", "bf16", 1, 1, 1024, 512, engine_id, **kw), H100)
    return mem, res


@pytest.mark.parametrize("engine_id", ["vllm", "trtllm", "sglang"])
def test_a_long_burst_runs_at_the_steady_state_of_the_largest_batch_and_one_request_is_one_user(engine_id):
    mem, top = solve(engine_id)  # the steady state at the maximum concurrency
    _, long = solve(engine_id, requests=200 * mem.max_concurrency)
    assert long.concurrency == mem.max_concurrency
    # waves in step against a staggered steady state: the same work, some percent apart (a wave
    # packs its prompts into full-budget steps, the steady state spreads them over more, smaller
    # ones, each paying the launches of a step without a graph); in a wave the prompts' time lands
    # in TTFT, not between the tokens
    assert long.output_tps_per_gpu == pytest.approx(top.output_tps_per_gpu, rel=0.15)
    assert long.tpot_s < top.tpot_s and long.ttft_s > 100 * top.ttft_s
    _, one = solve(engine_id, concurrency=1)
    _, single = solve(engine_id, requests=1)
    assert single.tpot_s == pytest.approx(one.tpot_s, rel=0.02)
    assert single.ttft_s <= one.ttft_s  # nothing in flight to wait for


@pytest.mark.parametrize("engine_id", ["vllm", "trtllm", "sglang"])
def test_a_bigger_burst_waits_longer_for_its_first_token_and_moves_more_tokens(engine_id):
    mem, _ = solve(engine_id)
    last = None
    for n in (1, 8, 64, mem.max_concurrency, 4 * mem.max_concurrency):
        _, res = solve(engine_id, requests=n)
        assert res.concurrency == min(n, mem.max_concurrency) and f"burst of {n} requests" in res.note
        if last is not None:
            assert res.ttft_s > last.ttft_s and res.output_tps_per_gpu >= last.output_tps_per_gpu * 0.999
        last = res


def test_without_mixing_every_request_of_the_wave_ends_with_the_wave():
    """SGLang runs its prefill batches first: no decode starts before the wave's last prompt, so
    each request's e2e is the wave's makespan; vLLM's early prompts decode alongside and end sooner."""
    for engine_id, together in (("sglang", True), ("vllm", False)):
        front = engines.get(engine_id).front_end_ms * 1e-3
        _, res = solve(engine_id, requests=200)
        makespan = 200 * 512 / res.output_tps_per_gpu
        assert (res.e2e_s - front == pytest.approx(makespan, rel=1e-6)) == together


@pytest.mark.parametrize("bad", [dict(requests=0), dict(requests=10**8), dict(requests=True),
                                 dict(requests=5, concurrency=4), dict(requests=5, request_rate=2.0),
                                 dict(requests=5, mode="static")])
def test_a_bad_burst_is_refused(bad):
    with pytest.raises(scenario.UsageError):
        Scenario("llama3-8b", "bf16", 1, 1, 1024, 512, "vllm", **bad).check()


def test_the_steady_state_solver_refuses_a_burst_rather_than_ignore_it():
    with pytest.raises(scenario.UsageError, match="burst.solve"):
        scenario.solve(Scenario("llama3-8b", "bf16", 1, 1, 1024, 512, "vllm", requests=10), H100)
