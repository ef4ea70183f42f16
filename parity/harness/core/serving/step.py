"""One engine step of one replica as kernels: the mixed batch of continuous batching.

A step holds `decode` sequences generating one token each at a mean context, and `prefill` prompt
tokens (chunks of prompts under the engine's token budget) attending to a mean causal context, as
vLLM, SGLang and TensorRT-LLM schedule them (Agrawal et al., Sarathi-Serve, OSDI'24: chunked
prefill mixed with decode). All GEMMs see every token of the step (M = decode + prefill, weights
read once); attention splits into paged decode and prefill parts.

Parallelism inside one replica of `tp` GPUs, after Megatron-LM (arXiv 1909.08053) and the engines:
- attention and dense MLP: tensor parallel over `tp` (heads and FFN split, two all-reduces a
  layer), or data parallel (`attention_dp`: every GPU holds the attention weights and 1/tp of the
  sequences; DeepSeek-V3's and TensorRT-LLM's "DEP");
- MoE layers: experts split over `ep` GPUs, each expert's FFN over tp / ep; under attention DP the
  tokens go to their experts' GPUs and back by two all-to-alls (dispatch, combine), else the
  tensor-parallel all-reduce combines them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from parity.harness.core.serving import collectives
from parity.harness.core.serving import kernels as K

# Kernel launches per layer besides the GEMMs counted below (vLLM/TRT-LLM decoder layers): two
# RMSNorms (residual add fused), rotary + KV-cache write, attention, activation.
SMALL_PER_LAYER = 5
MOE_EXTRA = 4  # router top-k, token permute/align, unpermute/combine, shared/routed sum
PER_STEP = 8  # embedding, final norm, LM head, logits gather, sampling (top-k/top-p), penalties, copy-out


@dataclass(frozen=True)
class Parallel:
    tp: int = 1
    ep: int = 1
    attention_dp: bool = False

    @property
    def attn_tp(self) -> int:
        return 1 if self.attention_dp else self.tp

    @property
    def batch_ranks(self) -> int:  # GPUs the sequences are split over for attention
        return self.tp if self.attention_dp else 1

    @property
    def moe_tp(self) -> int:
        return max(1, self.tp // self.ep)


@dataclass(frozen=True)
class Batch:
    decode: float  # sequences decoding one token each
    context: float  # mean tokens a decode sequence attends to
    prefill: float = 0.0  # prompt tokens in this step
    prefill_context: float = 0.0  # mean tokens a prefill token attends to (causal)
    prefill_seqs: float = 0.0  # prompts whose last chunk is in this step (they need logits)


@dataclass
class Breakdown:
    """Seconds of one step on one GPU by part; `gpu_s` is their sum with the launch overheads."""
    gemm_s: float = 0.0
    attention_s: float = 0.0
    memory_s: float = 0.0
    comm_s: float = 0.0
    overhead_s: float = 0.0
    launches: int = 0
    algorithms: set = field(default_factory=set)
    times: list = field(default_factory=list)  # (seconds per call, calls)

    def add(self, part: str, seconds: float, calls: int) -> None:
        setattr(self, part, getattr(self, part) + seconds * calls)
        self.times.append((seconds, calls))
        self.launches += calls

    @property
    def kernels_s(self) -> float:
        return self.gemm_s + self.attention_s + self.memory_s + self.comm_s

    @property
    def gpu_s(self) -> float:
        return self.kernels_s + self.overhead_s


def kv_layer_bytes(model, kv_bytes: float, attn_tp: int) -> float:
    """KV cache bytes per token per layer on one GPU."""
    return model.kv_bytes_per_token(kv_bytes, attn_tp) / model.layers


def step(model, spec, dev: K.Device, dtype: str, par: Parallel, batch: Batch, p: K.Params,
         graphs: bool, measured: K.Measured | None = None) -> Breakdown:
    out = Breakdown()
    h, L = model.hidden, model.layers
    t_rep = batch.decode + batch.prefill  # tokens through the replica's step
    # Under attention DP the prompt chunks are spread evenly over the ranks: TensorRT-LLM's
    # max-throughput recipes balance them (attention_dp_config enable_balance: the ranks take their
    # context requests in the same step), else the rank with a chunk would hold the others back at
    # every MoE layer.
    t = t_rep / par.batch_ranks  # tokens through one GPU's attention and dense layers
    seqs = batch.decode / par.batch_ranks
    pre = batch.prefill / par.batch_ranks
    n = par.attn_tp
    heads = model.heads // n
    dense = model.dense_dtype(dtype)  # everything but the routed experts (gpt-oss: BF16)
    kvb = K.KV_BYTES[dense]
    gemm = lambda m, nn, k, d=dense: K.gemm_s(dev, m, nn, k, d, p, measured=measured)  # noqa: E731
    if model.mla is None:
        kvh, d = max(1, model.kv_heads // n), model.head_dim
        out.add("gemm_s", gemm(t, (heads + 2 * kvh) * d, h), L)
        out.add("gemm_s", gemm(t, h, heads * d), L)
        dec_flops = 2.0 * seqs * heads * batch.context * 2 * d
        pre_flops = 2.0 * pre * heads * batch.prefill_context * 2 * d
        rope = (heads + kvh) * d
        qo = heads * 2 * d
    else:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        out.add("gemm_s", gemm(t, m.q_lora_rank, h), L)
        out.add("gemm_s", gemm(t, heads * qk, m.q_lora_rank), L)
        out.add("gemm_s", gemm(t, m.kv_lora_rank + m.qk_rope_head_dim, h), L)
        out.add("gemm_s", gemm(t, heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank), L)
        out.add("gemm_s", gemm(t, h, heads * m.v_head_dim), L)
        # decode attends over the latent with the up-projections absorbed (DeepSeek-V2, arXiv 2405.04434)
        dec_flops = 2.0 * seqs * heads * batch.context * (2 * m.kv_lora_rank + m.qk_rope_head_dim)
        pre_flops = 2.0 * pre * heads * batch.prefill_context * (qk + m.v_head_dim)
        rope = (heads + 1) * m.qk_rope_head_dim
        qo = heads * (qk + m.v_head_dim)
        out.launches += 4 * L  # the latent norms and the absorbed per-head projections
    kv_layer = kv_layer_bytes(model, kvb, n)
    # Sliding-window layers attend to at most their window (the mean context capped at it).
    if seqs > 0:
        for count, ctx in model.attention_spans(batch.context):
            share = ctx / batch.context if batch.context else 1.0
            out.add("attention_s", K.decode_attention_s(dev, seqs * ctx * kv_layer, dec_flops * share, p, measured),
                    count)
    if pre > 0:
        for count, ctx in model.attention_spans(batch.prefill_context):
            share = ctx / batch.prefill_context if batch.prefill_context else 1.0
            # Q read and O written once; K and V streamed once per query tile, not once per query
            # token (FlashAttention's tiling, Dao et al. 2022, arXiv 2205.14135, section 3.2; the
            # kernels pack a KV group's query heads into one tile, FA3 pack_gqa / FlashInfer).
            pre_bytes = pre * qo * K.ACT_BYTES + math.ceil(pre / K.ATTN_Q_TILE) * ctx * kv_layer
            out.add("attention_s", K.prefill_attention_s(dev, pre_flops * share, pre_bytes, measured), count)
    # MLP: dense layers, then the experts of the MoE layers.
    dense_layers = L if model.moe is None else model.moe.dense_layers
    act_width = 0.0
    if dense_layers:
        f = model.ffn // n
        out.add("gemm_s", gemm(t, 2 * f, h), dense_layers)
        out.add("gemm_s", gemm(t, h, f), dense_layers)
        act_width += f * dense_layers
    if model.moe is not None:
        e, ml = model.moe, model.moe_layers
        local = e.experts // par.ep
        f = e.expert_ffn // par.moe_tp
        # token-expert pairs on the busiest GPU (every GPU holds a slice of every expert without EP)
        busiest = K.busiest_rank_share(p, e.experts, par.ep, t_rep * e.experts_per_token, e.experts_per_token)
        routed = t_rep * e.experts_per_token / par.ep * busiest
        # distinct experts a step touches when each of t_rep tokens picks k of E: E (1 - (1 - k/E)^t)
        touched = local * (1 - (1 - e.experts_per_token / e.experts) ** t_rep)
        out.add("gemm_s", K.gemm_s(dev, t, e.experts, h, "bf16", p, measured=measured), ml)
        emath = model.expert_math(dtype, dtype in dev.peak_flops)
        out.add("gemm_s", K.grouped_gemm_s(dev, routed, touched, 2 * f, h, dtype, p, measured, emath), ml)
        out.add("gemm_s", K.grouped_gemm_s(dev, routed, touched, h, f, dtype, p, measured, emath), ml)
        out.launches += MOE_EXTRA * ml
        if e.shared_experts:
            fs = e.shared_experts * e.expert_ffn // n
            out.add("gemm_s", gemm(t, 2 * fs, h), ml)
            out.add("gemm_s", gemm(t, h, fs), ml)
        act_width += ml * (e.experts_per_token * f / par.ep + e.shared_experts * e.expert_ffn / n)
    # The memory-bound rest: norms (read, write), residual adds (2 reads, 1 write), rotary on Q
    # and K, the KV-cache write, SiLU(gate) x up (2 reads, 1 write); the logits and sampling.
    per_layer = (2 * 2 + 2 * 3) * t * h * K.ACT_BYTES + 2 * t * rope * K.ACT_BYTES + t * kv_layer
    rest = L * per_layer + 3 * t * act_width * K.ACT_BYTES + 4 * t * h * K.ACT_BYTES
    out.add("memory_s", K.memory_s(dev, rest / (L * SMALL_PER_LAYER)), L * SMALL_PER_LAYER)
    logits = (seqs + batch.prefill_seqs / par.batch_ranks)
    out.add("gemm_s", gemm(logits, -(-model.vocab // n), h), 1)
    out.add("memory_s", K.memory_s(dev, logits * model.vocab * 4 * 3), PER_STEP)
    # Communication: two all-reduces a layer under tensor parallelism; dispatch and combine
    # all-to-alls of the MoE layers under attention DP with expert parallelism.
    if par.attention_dp:
        if model.moe is not None and par.ep > 1:
            # Dispatch and combine: every token to the ranks of its k experts and back. Inside a
            # node the engines gather and reduce-scatter instead ("for EP4/EP8 Reduce/Scatter is
            # used, while for EP>8 All2All", TensorRT-LLM tech blog 4), the same bytes when k >= ep.
            # The busiest rank's share scales them (it receives that much more): priced as the
            # gather's uniform bytes, the calibration objective rose from 3.92 to 4.75-4.94 (session 8),
            # so the fitted load spread also carries MoE costs the model does not have (docs/estimate.md).
            k = model.moe.experts_per_token
            sent = t * min(k, par.ep) * (par.ep - 1) / par.ep * h * K.ACT_BYTES * busiest
            out.add("comm_s", collectives.alltoall_s(spec, par.ep, sent), 2 * model.moe_layers)
            out.algorithms.add("all-to-all")
    elif par.tp > 1:
        seconds, algo = collectives.allreduce_s(spec, par.tp, t_rep * h * K.ACT_BYTES)
        out.add("comm_s", seconds, 2 * L)
        out.algorithms.add(algo)
    # Launch overheads: inside a graph a gap per kernel; eager, a kernel shorter than its host
    # launch leaves the GPU waiting for the next one.
    if graphs:
        out.overhead_s = out.launches * p.kernel_gap_us * 1e-6
    else:
        launch = p.eager_launch_us * 1e-6
        counted = sum(c for _, c in out.times)
        idle = sum(max(0.0, launch - s) * c for s, c in out.times)
        out.overhead_s = idle + (out.launches - counted) * launch + out.launches * p.kernel_gap_us * 1e-6
    return out
