"""A serving scenario on one device: memory, the largest batch, and the steady state of the engine.

Continuous batching in steady state at concurrency C (C users, each sending its next request when
the last one ends: InferenceX, vLLM benchmark_serving --max-concurrency, and with C at its maximum
the offline max-throughput runs of trtllm-bench and benchmark_throughput):
- every output round advances each of the c = C / replicas sequences of a replica by one token;
  new requests arrive at c / OSL per round, so the round also carries P = c x ISL / OSL prompt
  tokens, in chunks of at most the token budget left after the decode tokens;
- TPOT = one pure decode step + the extra time of the chunks (mixed steps), interpolated in the
  prompt tokens: TPOT = T_d + (T_mixed - T_d) x P / chunk;
- TTFT = half a step in flight + the prompt's chunks (the last at its own size), stretched by the
  M/D/1 wait behind the other prompts (rho / (2 (1 - rho)), rho the share of time on prompt chunks),
  + the engine's HTTP front end (as a client measures it);
- engines that mix (vLLM, TensorRT-LLM) carry the chunks in decode steps, after the decode tokens
  took their share of the budget; SGLang runs prefill batches of their own between decode steps;
- e2e = TTFT + (OSL - 1) x TPOT, output tokens/s = C x OSL / e2e.
A static batch (vLLM benchmark_latency) prefills all C prompts first, then decodes C sequences.
Decode attention is linear in the context, so the mean context ISL + OSL / 2 gives the exact mean.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from parity.harness.core import llm
from parity.harness.core.model import UsageError
from parity.harness.core.serving import engines
from parity.harness.core.serving import kernels as K
from parity.harness.core.serving import trtllm_bench
from parity.harness.core.serving.step import Batch, Parallel, step

MAX_GPUS = 4096
MAX_TOKENS = 1_048_576  # ISL or OSL beyond a million tokens: no model in the database serves it
MAX_CONCURRENCY = 1_000_000
WORKSPACE_BYTES_PER_TOKEN_HIDDEN = 24  # activations of one budget's worth of tokens (BF16 q, k, v, MLP)
MODES = ("serving", "static")
DTYPES = ("bf16", "fp8", "fp4")
# Where the batch and token limits come from: the engine's defaults (engines.toml, with the
# scenario's overrides), or the tuning heuristic of `trtllm-bench throughput` (trtllm_bench.py).
LIMITS = ("engine", "trtllm-bench")


@dataclass(frozen=True)
class Scenario:
    model: str
    dtype: str
    gpus: int
    tp: int
    isl: int
    osl: int
    engine: str
    concurrency: int | None = None  # None: the maximum the engine and memory allow
    ep: int = 1
    attention_dp: bool = False
    mode: str = "serving"
    request_rate: float | None = None  # open loop (requests/s, whole deployment): C from Little's law
    requests: int | None = None  # a burst of this many requests sent at once (request rate inf): burst.solve
    overrides: tuple = ()  # engine settings the source states: (("max_num_seqs", 256), ...)
    limits: str = "engine"  # LIMITS

    @property
    def parallel(self) -> Parallel:
        return Parallel(self.tp, self.ep, self.attention_dp)

    @property
    def replicas(self) -> int:
        return self.gpus // self.tp

    def check(self) -> None:
        """Every bad input as one UsageError line."""
        model = llm.get(self.model)
        engines.get(self.engine)
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}")
        for name, value, top in (("--gpus", self.gpus, MAX_GPUS), ("--tp", self.tp, MAX_GPUS),
                                 ("--ep", self.ep, MAX_GPUS), ("--isl", self.isl, MAX_TOKENS),
                                 ("--osl", self.osl, MAX_TOKENS)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise UsageError(f"{name} must be an integer from 1 to {top:,}")
        if self.concurrency is not None and not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise UsageError(f"--concurrency must be from 1 to {MAX_CONCURRENCY:,} (or max)")
        if self.gpus % self.tp:
            raise UsageError(f"--gpus {self.gpus} is not a multiple of --tp {self.tp}")
        attn_tp = self.parallel.attn_tp
        if model.heads % attn_tp:
            raise UsageError(f"--tp {self.tp} does not divide {model.id}'s {model.heads} attention heads")
        if model.moe is None and model.ffn % self.tp:
            raise UsageError(f"--tp {self.tp} does not divide {model.id}'s FFN dimension ({model.ffn})")
        if self.ep > 1:
            if model.moe is None:
                raise UsageError(f"--ep needs a mixture-of-experts model; {model.id} is dense")
            if self.tp % self.ep or model.moe.experts % self.ep:
                raise UsageError(f"--ep {self.ep} must divide --tp {self.tp} and {model.id}'s "
                                 f"{model.moe.experts} experts")
        if model.moe is not None and model.moe.expert_ffn % self.parallel.moe_tp:
            raise UsageError(f"tp / ep = {self.parallel.moe_tp} does not divide {model.id}'s expert FFN "
                             f"({model.moe.expert_ffn})")
        if self.mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}")
        if self.limits not in LIMITS:
            raise UsageError(f"--limits must be one of {', '.join(LIMITS)}")
        if self.limits == "trtllm-bench" and self.engine not in trtllm_bench.ENGINES:
            raise UsageError(f"--limits trtllm-bench tunes TensorRT-LLM's engines ({', '.join(trtllm_bench.ENGINES)}), "
                             f"not {self.engine}")
        if self.request_rate is not None and not 0 < self.request_rate <= 1e6:
            raise UsageError("--request-rate must be above 0 and at most 1e6 requests/s")
        if self.requests is not None:
            if isinstance(self.requests, bool) or not isinstance(self.requests, int) or not 1 <= self.requests <= 10**7:
                raise UsageError("--requests must be an integer from 1 to 10,000,000")
            if self.request_rate is not None or self.concurrency is not None or self.mode != "serving":
                raise UsageError("--requests is a burst sent at once: give it without --request-rate and --concurrency")


@dataclass
class Memory:
    capacity_gb: float
    usable_gb: float
    weights_gb: float
    workspace_gb: float
    kv_per_token_bytes: float
    kv_tokens: float  # tokens of KV cache one GPU holds
    tokens_per_seq: float
    max_concurrency: int  # whole deployment
    note: str = ""  # what the setup has to say (trtllm-bench's refusal); the report's row shows it

    @property
    def fits(self) -> bool:
        return self.max_concurrency >= 1

    @property
    def needed_gb(self) -> float:  # weights + workspace + the KV cache of one sequence
        return self.weights_gb + self.workspace_gb + self.kv_per_token_bytes * self.tokens_per_seq / 1e9


def weights_per_gpu(model, dtype: str, vendor: str, par: Parallel) -> float:
    """Bytes of weights on one GPU: attention, dense MLP and embeddings split over the attention TP
    group (or whole under attention DP), experts over EP and their FFN over tp / ep."""
    wb, eb = K.weight_bytes(model.dense_dtype(dtype), vendor), K.weight_bytes(dtype, vendor)
    h, n = model.hidden, par.attn_tp
    embed = model.vocab * h * (1 if model.tied_embeddings else 2)
    shared = model.layers * model.attention_params() + embed
    dense_layers = model.layers if model.moe is None else model.moe.dense_layers
    shared += dense_layers * 3 * h * model.ffn
    total = shared / n
    if model.mla is not None and n > 1:  # MLA's small down-projections are replicated
        m = model.mla
        total += model.layers * h * (m.q_lora_rank + m.kv_lora_rank + m.qk_rope_head_dim) * (1 - 1 / n)
    routed = 0.0  # the routed experts' weights, in their own format (`eb`)
    if model.moe is not None:
        e = model.moe
        expert = 3 * h * e.expert_ffn
        routed = model.moe_layers * (e.experts // par.ep) * expert / par.moe_tp
        total += model.moe_layers * (e.shared_experts * expert / n + h * e.experts)
    return total * wb + routed * eb


def memory(scn: Scenario, spec, engine: engines.Engine) -> Memory:
    model = llm.get(scn.model)
    par = scn.parallel
    capacity = spec.memory_bytes or 0.0
    weights = weights_per_gpu(model, scn.dtype, spec.vendor, par)
    workspace = engine.max_num_batched_tokens * model.hidden * WORKSPACE_BYTES_PER_TOKEN_HIDDEN
    # vLLM's gpu_memory_utilization and SGLang's mem_fraction_static are shares of the whole memory;
    # TensorRT-LLM's kv_cache_free_gpu_mem_fraction is a share of what the weights and activations
    # leave free (llm_args.py KvCacheConfig.free_gpu_memory_fraction).
    if engine.memory_fraction_of == "free":
        usable = weights + workspace + max(0.0, capacity - weights - workspace) * engine.gpu_memory_utilization
    else:
        usable = capacity * engine.gpu_memory_utilization
    # TRT-LLM's GUARANTEED_NO_EVICT reserves a request's whole length; paged allocation on demand
    # holds ISL + OSL / 2 on average over a request's life.
    per_seq = scn.isl + (scn.osl if engine.kv_allocation == "reserve" else scn.osl / 2)
    # Sliding-window layers: engines with a hybrid KV cache (vLLM, SGLang) keep only the window's
    # tokens there; TensorRT-LLM's pools per window size are split by a static fraction, counted
    # here at the full length (the lower concurrency). `per_seq` becomes full-layer tokens.
    if model.window_layers and engine.window_kv == "window":
        full = model.layers - model.window_layers
        per_seq = (full * per_seq + model.window_layers * min(per_seq, model.window_tokens)) / model.layers
    kv_token = model.kv_bytes_per_token(K.KV_BYTES[model.dense_dtype(scn.dtype)], par.attn_tp)
    kv_tokens = max(0.0, usable - weights - workspace) / kv_token
    per_replica = min(engine.max_num_seqs * par.batch_ranks, math.floor(kv_tokens / per_seq) * par.batch_ranks)
    return Memory(capacity / 1e9, usable / 1e9, weights / 1e9, workspace / 1e9, kv_token, kv_tokens, per_seq,
                  int(per_replica) * scn.replicas)


@dataclass
class Result:
    concurrency: float
    tpot_s: float
    ttft_s: float
    e2e_s: float
    output_tps_per_gpu: float
    tps_per_gpu: float
    decode_step_s: float
    prefill_share: float  # share of GPU time spent on prompt tokens
    parts: dict = field(default_factory=dict)  # seconds per decode step by part
    note: str = ""


def add_note(note: str, more: str) -> str:
    return f"{note}; {more}" if note else more


def _pieces(tokens: float, chunk: float) -> tuple[int, float]:
    """Whole chunks of `tokens`, and the tokens left for a last, smaller step (0 below one token)."""
    whole = math.floor(tokens / chunk + 1e-9)
    rest = tokens - whole * chunk
    return whole, (rest if rest >= 1.0 else 0.0)


def _pass_s(scn, spec, dev, engine, p, batch: Batch, measured) -> tuple[float, object]:
    model = llm.get(scn.model)
    graphs = batch.prefill == 0 and batch.decode / scn.parallel.batch_ranks <= engine.graph_max_batch
    br = step(model, spec, dev, scn.dtype, scn.parallel, batch, p, graphs, measured)
    # Under attention DP every rank runs its own scheduler over its share of the sequences
    # (TensorRT-LLM's PyExecutor per rank with attention DP; SGLang's DP-attention schedulers), so the
    # host's step is that share's, in parallel with the other ranks'.
    host = engine.host_s((batch.decode + batch.prefill_seqs) / scn.parallel.batch_ranks)
    return (max(br.gpu_s, host) if engine.async_scheduling else br.gpu_s + host), br


def decode_pass(scn: Scenario, spec, dev, engine: engines.Engine, p: K.Params, c: float, measured) -> tuple[float, dict]:
    """One output round of `c` decoding sequences on a replica (in passes of at most the token
    budget), and its seconds by part."""
    budget = engine.max_num_batched_tokens * scn.parallel.batch_ranks
    n_dec = max(1, math.ceil(c / budget))
    t_dec, br = _pass_s(scn, spec, dev, engine, p, Batch(c / n_dec, scn.isl + scn.osl / 2), measured)
    parts = {k: getattr(br, k) * n_dec for k in ("gemm_s", "attention_s", "memory_s", "comm_s", "overhead_s")}
    parts["host_s"] = engine.host_s(c / scn.parallel.batch_ranks)
    return t_dec * n_dec, parts


def chunk_pass_s(scn: Scenario, spec, dev, engine: engines.Engine, p: K.Params, tokens: float, measured,
                 dec: float = 0.0, ctx: float = 0.0) -> float:
    """Seconds of a step with `tokens` prompt tokens, and `dec` decodes at context `ctx` beside them."""
    batch = Batch(dec, ctx if dec else 0.0, tokens, scn.isl / 2, tokens / scn.isl)
    return _pass_s(scn, spec, dev, engine, p, batch, measured)[0]


def steady_state(scn: Scenario, spec, engine: engines.Engine, p: K.Params, c_total: float,
                 measured: K.Measured | None = None) -> Result:
    dev = K.device(spec)
    c = max(c_total / scn.replicas, 1e-9)
    # Under attention DP every rank schedules its own batch under its own token budget
    # (TensorRT-LLM's PyExecutor per rank, SGLang's scheduler per DP rank), as with max_num_seqs.
    ranks = scn.parallel.batch_ranks
    isl, osl, budget = scn.isl, scn.osl, engine.max_num_batched_tokens * ranks
    ctx = isl + osl / 2
    n_dec = max(1, math.ceil(c / budget))
    t_dec, parts = decode_pass(scn, spec, dev, engine, p, c, measured)

    def chunk_s(tokens: float, dec: float = 0.0) -> float:
        return chunk_pass_s(scn, spec, dev, engine, p, tokens, measured, dec, ctx)

    if scn.mode == "static":
        chunk = min(budget, c * isl)
        whole, rest = _pieces(c * isl, chunk)
        ttft = whole * chunk_s(chunk) + (chunk_s(rest) if rest else 0.0)
        e2e = ttft + (osl - 1) * t_dec
        return Result(c * scn.replicas, t_dec, ttft, e2e, c * osl / e2e / scn.tp,
                      c * (isl + osl) / e2e / scn.tp, t_dec, ttft / e2e, parts)
    if engine.mixed_prefill and c * (isl + osl) > budget * osl:
        return _prefill_bound(scn, spec, dev, engine, p, c, measured)
    prompt = c * isl / osl  # prompt tokens per output round
    # The engines pack the prompt tokens of several requests into one step, up to the token budget:
    # vLLM's V1 scheduler and TensorRT-LLM's in-flight batching put the prompt chunks in the decode
    # step, after the decode tokens took their share of the budget (max_num_batched_tokens,
    # max_num_tokens); SGLang runs a prefill batch of its own, under the whole chunked_prefill_size,
    # while the decodes wait (enable_mixed_chunk off by default). With less than one arrival per
    # round, one whole prompt arrives at a time.
    dec = c / n_dec if engine.mixed_prefill else 0.0
    room = budget - dec
    waiting = max(isl, prompt)
    chunk = max(1.0, min(waiting, room)) if room > 0 else min(waiting, budget / 2)
    t_mix = chunk_s(chunk, dec)
    # A mixed step costs the decode step it replaces plus the chunk; a prefill batch costs all of it.
    extra = max(0.0, t_mix - t_dec / n_dec) if dec else t_mix
    tpot = t_dec + extra * prompt / chunk
    busy = min(0.9, (prompt / chunk) * t_mix / tpot)
    # The prompt's steps: whole chunks, then the rest in a step of its own size when this prompt is
    # the only one waiting (an 8192-token prompt under an 8192 budget shared with 4 decodes: one
    # step of 8188 tokens, one of 4), else a full step of the prompts behind it.
    whole, rest = _pieces(isl, chunk)
    last = 0.0 if not rest else (chunk_s(rest, dec) if prompt <= isl else t_mix)
    # Client-side TTFT also holds the request's time in the HTTP server (parsing, tokenization, the
    # stream back), which a static offline batch does not have.
    ttft = 0.5 * t_dec + (whole * t_mix + last) * (1 + busy / (2 * (1 - busy))) + engine.front_end_ms * 1e-3
    e2e = ttft + (osl - 1) * tpot
    out_rate = c * osl / e2e
    return Result(c * scn.replicas, tpot, ttft, e2e, out_rate / scn.tp, out_rate * (isl + osl) / osl / scn.tp,
                  t_dec, extra * prompt / chunk / tpot, parts)


def _prefill_bound(scn: Scenario, spec, dev, engine: engines.Engine, p: K.Params, c: float, measured) -> Result:
    """The steady state of a mixing engine whose token budget cannot feed `c` decoding sequences.

    A step holds D decodes and budget - D prompt tokens. Requests end at D / OSL a step, and as many
    start, with D x ISL / OSL prompt tokens, so the budget sustains at most
    D = budget x OSL / (ISL + OSL) decodes (c x (ISL + OSL) > budget x OSL is this case); the other
    requests wait for their prompt's turn, every step is a full one, and each step's host cost is
    paid once per step (a round cannot carry several steps' prompt tokens under one host step).
    Output tokens/s is D per step; by Little's law e2e = c x OSL / rate, the wait inside TTFT."""
    isl, osl = scn.isl, scn.osl
    budget = engine.max_num_batched_tokens * scn.parallel.batch_ranks
    d = budget * osl / (isl + osl)
    t_dec, parts = decode_pass(scn, spec, dev, engine, p, d, measured)
    t_step = chunk_pass_s(scn, spec, dev, engine, p, budget - d, measured, d, isl + osl / 2)
    e2e = c * osl * t_step / d + engine.front_end_ms * 1e-3
    ttft = e2e - (osl - 1) * t_step
    out_rate = c * osl / e2e
    return Result(c * scn.replicas, t_step, ttft, e2e, out_rate / scn.tp, out_rate * (isl + osl) / osl / scn.tp,
                  t_dec, max(0.0, t_step - t_dec) / t_step, parts,
                  f"prefill-bound: the {engine.max_num_batched_tokens}-token budget feeds {d * scn.replicas:.0f} "
                  f"decoding requests; the other {(c - d) * scn.replicas:.0f} wait for their prompt")


def setup(scn: Scenario, spec, p: K.Params | None = None, values: dict | None = None):
    """The engine (with the scenario's overrides), the constants and the memory of `scn` on `spec`."""
    engine_map, _ = engines.fitted(values)
    given = dict(scn.overrides)
    engine = engine_map[scn.engine].with_overrides(given)
    note = ""
    if scn.limits == "trtllm-bench":
        engine, note = trtllm_bench.apply(engine, llm.get(scn.model), scn.dtype, spec.memory_bytes or 0.0, scn.tp,
                                          scn.isl, scn.osl, given)
    mem = memory(scn, spec, engine)
    mem.note = note
    return engine, (params(values, engine) if p is None else p), mem


def solve(scn: Scenario, spec, p: K.Params | None = None, measured: K.Measured | None = None,
          values: dict | None = None) -> tuple[Memory, Result | None]:
    """Memory and the steady state of `scn` on `spec` (None where the model does not fit)."""
    if scn.requests is not None:
        raise UsageError("a burst (requests=N) is solved by core.serving.burst.solve")
    engine, p, mem = setup(scn, spec, p, values)
    if not mem.fits:
        return mem, None
    if scn.request_rate is not None:  # open loop: C = rate x e2e(C) (Little's law)
        c, saturated = open_loop_concurrency(
            lambda x: scn.request_rate * steady_state(scn, spec, engine, p, x, measured).e2e_s, mem.max_concurrency)
        res = steady_state(scn, spec, engine, p, c, measured)
        if saturated:
            res.note = add_note(res.note, f"{scn.request_rate:g} requests/s is more than the engine serves even at its {mem.max_concurrency} "
                        f"concurrent requests: the queue grows without bound (figures at that maximum)")
        return mem, res
    c = mem.max_concurrency if scn.concurrency is None else min(scn.concurrency, mem.max_concurrency)
    res = steady_state(scn, spec, engine, p, c, measured)
    if scn.concurrency is not None and scn.concurrency > mem.max_concurrency:
        res.note = add_note(res.note, f"concurrency {scn.concurrency} is above the {mem.max_concurrency} the memory and engine "
                    f"allow: the rest wait in the queue")
    return mem, res


def open_loop_concurrency(in_flight, top: int, points: int = 48, rounds: int = 50) -> tuple[float, bool]:
    """The concurrency an open-loop arrival rate holds: the smallest C in [1, top] with
    in_flight(C) = rate x e2e(C) <= C, where the system settles filling up from empty (e2e grows
    with C, so below it the requests in flight keep growing), found by a log-spaced scan and
    bisection; (top, True) where even `top` cannot keep up. A damped iteration could stop short
    where in_flight(C) stays just above C over a long range, as it does near saturation."""
    if in_flight(1.0) <= 1.0:
        return 1.0, False
    lo = 1.0
    for k in range(1, points + 1):
        hi = top ** (k / points)
        if in_flight(hi) <= hi:
            break
        lo = hi
    else:
        return float(top), True
    for _ in range(rounds):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if in_flight(mid) > mid else (lo, mid)
        if hi / lo < 1 + 1e-6:
            break
    return hi, False


def params(values: dict | None = None, engine: engines.Engine | None = None) -> K.Params:
    """The mechanism constants; a compiled runtime issues its kernels at cudaLaunchKernel's cost
    (the prior), not at the fitted cost of a launch from Python."""
    _, gpu = engines.fitted(values)
    fit = engines.calibration().get("fitted", {}) if values is None else values
    launch = engines.priors()[1]["eager_launch_us"] if engine is not None and engine.runtime != "python" \
        else gpu["eager_launch_us"]
    return K.Params(weight_stream=fit.get("weight_stream", K.Params.weight_stream),
                    attn_decode=fit.get("attn_decode", K.Params.attn_decode),
                    kernel_gap_us=gpu["kernel_gap_us"], eager_launch_us=launch,
                    expert_load_cv=fit.get("expert_load_cv", K.Params.expert_load_cv))
