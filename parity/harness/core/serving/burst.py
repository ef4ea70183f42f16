"""A burst: N requests sent at once (request rate inf), as `vllm bench serve` and benchmark_serving
do by default and as TensorRT-LLM's performance pages state their online runs ("QPS=INF", 500
requests).

The engine admits B = min(N, max concurrency) at once, a wave: their prompts go through in chunks
under the token budget, and the requests whose prompt is done decode in the same steps (vLLM,
TensorRT-LLM) or wait until no prompt is left (SGLang runs prefill batches first); then the wave
decodes. Every request has the same lengths, so a wave's requests end together and the queued
ones enter as the next wave (the waves stay in step; their rate is within a few percent of the
steady state at concurrency B). TTFT and e2e are the means over the N requests from the send, the
queue's wait included; throughput is N x OSL over the makespan. A dataset of varied lengths ends
on its longest requests at a small batch, which this leaves out.
"""
from __future__ import annotations

import math

from parity.harness.core.serving import engines
from parity.harness.core.serving import kernels as K
from parity.harness.core.serving import scenario as S


def _wave(scn: S.Scenario, spec, dev, engine: engines.Engine, p: K.Params, b: int, measured) -> dict:
    """One wave of `b` requests starting together: its span, the mean TTFT and e2e from its start."""
    c = b / scn.replicas  # the wave's requests on one replica
    isl, osl = scn.isl, scn.osl
    budget = engine.max_num_batched_tokens * scn.parallel.batch_ranks
    t_dec, parts = S.decode_pass(scn, spec, dev, engine, p, c, measured)
    # The prefill phase: in a mixed engine the requests already prefilled decode alongside, half
    # the wave on average (near the start of their output), and take their tokens of the budget first.
    dec = min(c / 2, budget / 2) if engine.mixed_prefill else 0.0
    chunk = min(c * isl, budget - dec)
    whole, rest = S._pieces(c * isl, chunk)
    t_chunk = S.chunk_pass_s(scn, spec, dev, engine, p, chunk, measured, dec, isl)
    t_rest = S.chunk_pass_s(scn, spec, dev, engine, p, rest, measured, dec, isl) if rest else 0.0
    steps = whole + (1 if rest else 0)
    t_pre = whole * t_chunk + t_rest
    # The prompts finish evenly over the phase's steps: the mean first token after (steps + 1) / 2.
    ttft = t_pre * (steps + 1) / (2 * steps)
    if engine.mixed_prefill:
        # a prompt done at step s decodes through the steps - s prefill steps left, then at t_dec
        riding = min(osl - 1, (steps - 1) / 2)
        e2e = ttft + riding * t_chunk + (osl - 1 - riding) * t_dec
    else:
        e2e = t_pre + (osl - 1) * t_dec  # every decode waits for the last prompt
    span = t_pre + (osl - 1) * t_dec  # the last prompt's request ends the wave
    return {"b": b, "span": span, "ttft": ttft, "e2e": e2e, "t_dec": t_dec, "t_pre": t_pre, "parts": parts}


def burst(scn: S.Scenario, spec, engine: engines.Engine, p: K.Params, n: int, max_c: int,
          measured: K.Measured | None = None) -> S.Result:
    dev = K.device(spec)
    b = min(n, max_c)
    full, left = divmod(n, b)
    waves = [(_wave(scn, spec, dev, engine, p, b, measured), full)]
    if left:
        waves.append((_wave(scn, spec, dev, engine, p, left, measured), 1))
    front = engine.front_end_ms * 1e-3
    start = ttft_sum = e2e_sum = tpot_sum = pre_s = 0.0
    for w, count in waves:
        # `count` waves of w["b"] requests, each starting when the one before ends
        starts = w["b"] * (count * start + w["span"] * count * (count - 1) / 2)
        ttft_sum += starts + count * w["b"] * (w["ttft"] + front)
        e2e_sum += starts + count * w["b"] * (w["e2e"] + front)
        tpot_sum += count * w["b"] * (w["e2e"] - w["ttft"])
        pre_s += count * w["t_pre"]
        start += count * w["span"]
    first = waves[0][0]
    tpot = tpot_sum / (n * (scn.osl - 1)) if scn.osl > 1 else first["t_dec"]
    out = n * scn.osl / start / scn.gpus
    queued = n - b
    note = (f"a burst of {n} requests at once: {b} in flight at most" + (f", {queued} queued" if queued else ""))
    return S.Result(b, tpot, ttft_sum / n, e2e_sum / n, out, out * (scn.isl + scn.osl) / scn.osl, first["t_dec"],
                    min(1.0, pre_s / start), first["parts"], note)


def solve(scn: S.Scenario, spec, p: K.Params | None = None, measured: K.Measured | None = None,
          values: dict | None = None) -> tuple[S.Memory, S.Result | None]:
    """scenario.solve, and a burst where `scn.requests` is set (None where the model does not fit)."""
    if scn.requests is None:
        return S.solve(scn, spec, p, measured, values)
    engine, p, mem = S.setup(scn, spec, p, values)
    if not mem.fits:
        return mem, None
    return mem, burst(scn, spec, engine, p, scn.requests, mem.max_concurrency, measured)
