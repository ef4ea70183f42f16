"""Language models as data (`llm/*.toml`), and one inference step of a model as kernels.

A model file gives the layer shapes with their sources: layers, hidden, FFN, heads, KV heads, head
dimension, vocabulary, and where present multi-head latent attention (`[mla]`) and a mixture of
experts (`[moe]`). The loader recounts the parameters from the shapes and refuses a file whose
stated total or active count disagrees by more than 2 %.

`step(...)` decomposes one forward step (a prefill of the whole context or one decode token per
sequence) on one GPU of a tensor-parallel group into kernels, each with its work (FLOPs, bytes)
and a count per step: every GEMM at its exact per-GPU shape, attention at the context, the
memory-bound rest (norms, activation, residuals, rotary, KV-cache writes) and the all-reduces.
Tensor parallelism follows Megatron-LM (Shoeybi et al., arXiv 1909.08053): QKV and MLP up/gate
split by columns, attention output and MLP down by rows, two all-reduces per layer.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parity.harness.core import safeio
from parity.harness.core.model import UsageError

MODEL_DIR = Path(__file__).with_name("llm")
SCHEMA = 1
PARAM_TOLERANCE = 0.02
ACT_BYTES = 2  # activations and the all-reduced hidden states in BF16
# Bytes per weight element. MXFP4: 4-bit elements plus one 8-bit scale per 32 (OCP MX spec v1.0).
WEIGHT_BYTES = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5 + 1 / 32}
# The KV cache is kept in BF16 for a BF16 model and in FP8 for FP8/FP4 weights (vLLM's
# --kv-cache-dtype fp8 is the usual pairing with quantized weights).
KV_BYTES = {"bf16": 2, "fp8": 1, "fp4": 1}
DTYPES = tuple(WEIGHT_BYTES)
PHASES = ("prefill", "decode")
TOP_KEYS = {"schema", "id", "name", "layers", "hidden", "ffn", "heads", "kv_heads", "head_dim", "vocab",
            "tied_embeddings", "params_total_b", "params_active_b", "source", "mla", "moe", "sliding_window",
            "quantized", "expert_activations"}
# Which weights a low-precision checkpoint of the model quantizes: "all" linear layers (the usual
# FP8/FP4 checkpoints), or only the routed "experts" (gpt-oss ships MXFP4 experts with every other
# weight in BF16: OpenAI's model card, arXiv 2508.10925; TensorRT-LLM examples/models/core/gpt_oss).
QUANTIZED = ("all", "experts")
# The format the experts' activations are quantized to where the GPU multiplies FP4 in hardware:
# absent, they are FP4 too (W4A4: NVFP4 checkpoints); "fp8" is W4A8, FP4 weights times FP8
# activations at the FP8 rate (gpt-oss: MXFP8 activations on Blackwell in TensorRT-LLM,
# examples/models/core/gpt_oss/README.md; vLLM's A8W4 MoE on MI355X, vllm-project/vllm PR 44804).
EXPERT_ACTIVATIONS = ("fp8",)
MLA_KEYS = {"q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"}
MOE_KEYS = {"experts", "experts_per_token", "shared_experts", "expert_ffn", "dense_layers"}
WINDOW_KEYS = {"tokens", "layers"}


class ModelError(Exception):
    """A model file that breaks the schema; names the file."""


@dataclass(frozen=True)
class Mla:
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class Moe:
    experts: int
    experts_per_token: int
    shared_experts: int
    expert_ffn: int
    dense_layers: int


@dataclass(frozen=True)
class LanguageModel:
    id: str
    name: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    params_total_b: float
    params_active_b: float
    source: tuple[str, ...]
    mla: Mla | None = None
    moe: Moe | None = None
    window_tokens: int = 0  # sliding-window attention: the tokens each of `window_layers` attends to
    window_layers: int = 0
    quantized: str = "all"  # QUANTIZED
    expert_activations: str | None = None  # EXPERT_ACTIVATIONS

    def expert_math(self, dtype: str, native: bool) -> str:
        """The math format of the routed experts' GEMMs when their weights are `dtype` and the GPU
        has `dtype` tensor cores (`native`); without them the engines compute in BF16 (W4A16)."""
        if not native:
            return "bf16"
        if dtype == "fp4" and self.expert_activations:
            return self.expert_activations
        return dtype

    def dense_dtype(self, dtype: str) -> str:
        """The format of the weights outside the routed experts (attention, dense MLP, shared
        experts, LM head) and of the KV cache, when the experts are stored in `dtype`."""
        return "bf16" if self.quantized == "experts" else dtype

    def attention_spans(self, context: float) -> list[tuple[int, float]]:
        """(layers, tokens attended) for a query at `context`: sliding-window layers attend to at
        most their window (gpt-oss alternates 128-token windows with full layers), the rest to all."""
        full = self.layers - self.window_layers
        spans = [(full, context)] if full else []
        if self.window_layers:
            spans.append((self.window_layers, min(context, self.window_tokens)))
        return spans

    @property
    def moe_layers(self) -> int:
        return 0 if self.moe is None else self.layers - self.moe.dense_layers

    def attention_params(self) -> int:
        h, m = self.hidden, self.mla
        if m is None:
            return h * (self.heads + 2 * self.kv_heads) * self.head_dim + self.heads * self.head_dim * h
        return (h * m.q_lora_rank + m.q_lora_rank * self.heads * (m.qk_nope_head_dim + m.qk_rope_head_dim)
                + h * (m.kv_lora_rank + m.qk_rope_head_dim)
                + m.kv_lora_rank * self.heads * (m.qk_nope_head_dim + m.v_head_dim)
                + self.heads * m.v_head_dim * h)

    def params(self, active: bool = False) -> int:
        """Parameters counted from the shapes (norm weights left out: under 0.01 %)."""
        h = self.hidden
        embed = self.vocab * h * (1 if self.tied_embeddings else 2)
        dense_mlp = 3 * h * self.ffn
        total = embed + self.layers * self.attention_params()
        if self.moe is None:
            return total + self.layers * dense_mlp
        e = self.moe
        expert = 3 * h * e.expert_ffn
        routed = e.experts_per_token if active else e.experts
        per_moe = (routed + e.shared_experts) * expert + h * e.experts
        return total + e.dense_layers * dense_mlp + self.moe_layers * per_moe

    def kv_bytes_per_token(self, kv_dtype_bytes: float, tp: int = 1) -> float:
        """KV cache per token of context, summed over layers, on one GPU of a TP group. MLA caches
        one latent (kv_lora_rank + rope dims) per token, shared by the heads, so every GPU holds
        it whole; GQA splits the KV heads (replicated where the group is larger than their count)."""
        if self.mla is not None:
            per_layer = self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        else:
            per_layer = 2 * max(1, self.kv_heads // tp) * self.head_dim
        return self.layers * per_layer * kv_dtype_bytes


def _int(data: dict, key: str, where: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelError(f"{where}: {key} must be a positive integer")
    return value


def _table(data: Any, keys: set[str], where: str) -> dict[str, int]:
    if not isinstance(data, dict):
        raise ModelError(f"{where}: expected a table")
    if set(data) != keys:
        raise ModelError(f"{where}: needs exactly {sorted(keys)}")
    out = {k: data[k] for k in keys}
    for k, v in out.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ModelError(f"{where}: {k} must be a non-negative integer")
    return out


def parse(path: Path) -> LanguageModel:
    where = path.name
    try:
        data = safeio.load_toml(path, "model", where)  # a regular file of a few MiB, nesting bounded
    except safeio.FileRefused as exc:
        raise ModelError(str(exc)) from None
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ModelError(f"{where}: unknown keys {sorted(unknown)}")
    if data.get("schema") != SCHEMA:
        raise ModelError(f"{where}: schema must be {SCHEMA}")
    if data.get("id") != path.stem:
        raise ModelError(f"{where}: id {data.get('id')!r} differs from the file name")
    source = data.get("source")
    if not isinstance(source, list) or not source or not all(isinstance(s, str) and s for s in source):
        raise ModelError(f"{where}: source must be a list of where the shapes come from")
    for key in ("params_total_b", "params_active_b"):
        if isinstance(data.get(key), bool) or not isinstance(data.get(key), (int, float)) or data[key] <= 0:
            raise ModelError(f"{where}: {key} must be a positive number (billions)")
    mla = Mla(**_table(data["mla"], MLA_KEYS, f"{where} [mla]")) if "mla" in data else None
    moe = Moe(**_table(data["moe"], MOE_KEYS, f"{where} [moe]")) if "moe" in data else None
    if moe is not None and not 0 < moe.experts_per_token <= moe.experts:
        raise ModelError(f"{where} [moe]: experts_per_token must be between 1 and experts")
    ints = {k: _int(data, k, where) for k in ("layers", "hidden", "ffn", "heads", "kv_heads", "head_dim", "vocab")}
    if ints["heads"] % ints["kv_heads"]:
        raise ModelError(f"{where}: heads must be a multiple of kv_heads")
    window = _table(data["sliding_window"], WINDOW_KEYS, f"{where} [sliding_window]") if "sliding_window" in data else {}
    if window and not (1 <= window["tokens"] and 1 <= window["layers"] <= ints["layers"]):
        raise ModelError(f"{where} [sliding_window]: tokens must be at least 1 and layers from 1 to {ints['layers']}")
    quantized = data.get("quantized", "all")
    if quantized not in QUANTIZED:
        raise ModelError(f"{where}: quantized must be one of {', '.join(QUANTIZED)}")
    activations = data.get("expert_activations")
    if activations is not None and activations not in EXPERT_ACTIVATIONS:
        raise ModelError(f"{where}: expert_activations must be one of {', '.join(EXPERT_ACTIVATIONS)}")
    model = LanguageModel(id=data["id"], name=str(data.get("name") or data["id"]), **ints,
                          tied_embeddings=bool(data.get("tied_embeddings", False)),
                          params_total_b=float(data["params_total_b"]), params_active_b=float(data["params_active_b"]),
                          source=tuple(source), mla=mla, moe=moe, window_tokens=window.get("tokens", 0),
                          window_layers=window.get("layers", 0), quantized=quantized,
                          expert_activations=activations)
    for active, stated in ((False, model.params_total_b), (True, model.params_active_b)):
        counted = model.params(active) / 1e9
        if abs(counted / stated - 1) > PARAM_TOLERANCE:
            raise ModelError(f"{where}: the shapes give {counted:.2f}B {'active' if active else 'total'} parameters, "
                             f"the file states {stated}B")
    return model


@functools.lru_cache(maxsize=None)
def load_all(directory: Path = MODEL_DIR) -> dict[str, LanguageModel]:
    return {m.id: m for m in (parse(p) for p in sorted(directory.glob("*.toml")))}


def get(model_id: str) -> LanguageModel:
    models = load_all()
    if model_id not in models:
        raise UsageError(f"unknown model {model_id!r} (known: {', '.join(sorted(models))})")
    return models[model_id]


# --- one step as kernels ------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    name: str
    kind: str  # "gemm" | "attention" | "memory" | "allreduce"
    count: int  # calls per step
    flops: float  # per call
    bytes: float  # per call, read + written
    math_dtype: str
    shape: tuple[int, ...] = ()  # GEMM (M, N, K); attention (batch, heads, kv_heads, seq_q, seq_k, head_dim)
    note: str = ""

    @property
    def work(self) -> dict[str, Any]:
        return {"flops": self.flops, "bytes_read": self.bytes, "bytes_written": 0, "math_dtype": self.math_dtype}


@dataclass(frozen=True)
class Step:
    phase: str
    batch: int
    context: int  # tokens of context the step attends to
    tokens: int  # tokens the step produces (decode: one per sequence) or processes (prefill)
    tp: int
    kernels: tuple[Kernel, ...]


def _gemm(name: str, m: int, n: int, k: int, dtype: str, count: int, weight_rows: float | None = None,
          note: str = "", math: str | None = None) -> Kernel:
    """A GEMM y = x W^T with x (m, k) in BF16 activations and W (n, k) stored in `dtype`, its math in
    `math` (default `dtype`); `weight_rows` overrides how many of W's rows are read (experts: only
    those routed to)."""
    rows = n if weight_rows is None else weight_rows
    nbytes = rows * k * WEIGHT_BYTES[dtype] + (m * k + m * n) * ACT_BYTES
    return Kernel(name, "gemm", count, 2.0 * m * n * k, nbytes, math or dtype, (m, n, k), note)


def _split(value: int, tp: int, what: str, model: LanguageModel) -> int:
    if value % tp:
        raise UsageError(f"--tp {tp} does not divide {model.id}'s {what} ({value})")
    return value // tp


def step(model: LanguageModel, phase: str, batch: int, context: int, dtype: str, tp: int = 1) -> Step:
    """The kernels of one step on one GPU of a `tp`-way tensor-parallel group.

    prefill: `batch` sequences of `context` tokens from an empty cache (causal attention);
    decode: one new token per sequence attending to `context` cached tokens."""
    if phase not in PHASES:
        raise UsageError(f"phase must be one of {', '.join(PHASES)}")
    if dtype not in DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}")
    h, L, n = model.hidden, model.layers, tp
    t = batch * context if phase == "prefill" else batch  # tokens through the GEMMs
    seq_q = context if phase == "prefill" else 1
    dd = model.dense_dtype(dtype)  # attention, dense MLP, shared experts, LM head
    kv_bytes = KV_BYTES[dd]
    heads = _split(model.heads, n, "attention heads", model)
    kernels = [Kernel("embedding gather", "memory", 1, 0.0, 2.0 * t * h * ACT_BYTES / n, "bf16",
                      note="vocab-parallel lookup")]
    if model.mla is None:
        kvh = max(1, model.kv_heads // n)
        d = model.head_dim
        kernels += [_gemm("qkv", t, (heads + 2 * kvh) * d, h, dd, L),
                    _gemm("attn_out", t, h, heads * d, dd, L)]
        qk_dim, v_dim, cached = d, d, 2 * kvh * d
        rope_dims = (heads + kvh) * d
    else:
        m = model.mla
        qk_dim, v_dim = m.qk_nope_head_dim + m.qk_rope_head_dim, m.v_head_dim
        kernels += [_gemm("q_a (replicated)", t, m.q_lora_rank, h, dd, L),
                    _gemm("q_b", t, heads * qk_dim, m.q_lora_rank, dd, L),
                    _gemm("kv_a (replicated)", t, m.kv_lora_rank + m.qk_rope_head_dim, h, dd, L),
                    _gemm("kv_b", t, heads * (m.qk_nope_head_dim + v_dim), m.kv_lora_rank, dd, L),
                    _gemm("attn_out", t, h, heads * v_dim, dd, L)]
        cached = m.kv_lora_rank + m.qk_rope_head_dim
        rope_dims = (heads + 1) * m.qk_rope_head_dim
        kvh = 1
    # Attention: FLOPs of QK^T and PV (FlashAttention's 4 * seq_q * seq_k * head_dim per head),
    # halved for causal prefill; bytes: Q and O once, the cache (or K, V) once per KV head.
    if phase == "prefill":
        flops = 2.0 * batch * heads * context * context * (qk_dim + v_dim) / 2
        nbytes = batch * context * (heads * (qk_dim + v_dim) * ACT_BYTES + cached * ACT_BYTES)
    else:
        dims = (m.kv_lora_rank + m.qk_rope_head_dim + m.kv_lora_rank) if model.mla else (qk_dim + v_dim)
        flops = 2.0 * batch * heads * context * dims  # MLA decode attends over the latent (weights absorbed)
        nbytes = batch * (context * cached * kv_bytes + heads * (qk_dim + v_dim) * ACT_BYTES)
    kernels.append(Kernel(f"attention {phase}", "attention", L, flops, nbytes, "bf16",
                          (batch, heads, kvh, seq_q, context, qk_dim),
                          "MLA over the compressed latent" if model.mla else ""))
    # MLP: dense layers, and for a mixture of experts the routed and shared experts.
    dense_layers = L if model.moe is None else model.moe.dense_layers
    ffn_local = _split(model.ffn, n, "FFN dimension", model)
    if dense_layers:
        kernels += [_gemm("mlp_up_gate", t, 2 * ffn_local, h, dd, dense_layers),
                    _gemm("mlp_down", t, h, ffn_local, dd, dense_layers)]
    act_width = ffn_local * dense_layers
    if model.moe is not None:
        e = model.moe
        f = _split(e.expert_ffn, n, "expert FFN dimension", model)
        routed = t * e.experts_per_token
        # Expected distinct experts a step touches when each of t tokens picks k of E uniformly:
        # E * (1 - (1 - k/E)^t); their weights are read once, the GEMM's FLOPs follow the tokens.
        touched = e.experts * (1 - (1 - e.experts_per_token / e.experts) ** t)
        note = f"{touched:.1f} of {e.experts} experts read; M = tokens x experts per token"
        em = model.expert_math(dtype, native=True)  # W4A8 where the model says so
        ml = model.moe_layers
        kernels += [_gemm("router", t, e.experts, h, "bf16", ml),
                    _gemm("experts up_gate", routed, 2 * f, h, dtype, ml, weight_rows=touched * 2 * f, note=note,
                          math=em),
                    _gemm("experts down", routed, h, f, dtype, ml, weight_rows=touched * h, note=note, math=em)]
        if e.shared_experts:
            fs = e.shared_experts * f
            kernels += [_gemm("shared expert up_gate", t, 2 * fs, h, dd, ml),
                        _gemm("shared expert down", t, h, fs, dd, ml)]
        act_width += ml * (routed / max(t, 1) + e.shared_experts) * f
    # The memory-bound rest, per step: two RMSNorms per layer (read x, write y), two residual adds
    # (read 2, write 1), rotary on Q and K (read + write), the KV-cache write, and the activation
    # SiLU(gate) * up (read 2 widths, write 1).
    per_layer = (2 * 2 + 2 * 3) * t * h * ACT_BYTES + 2 * t * rope_dims * ACT_BYTES + t * cached * kv_bytes
    rest = L * per_layer + 3 * t * act_width * ACT_BYTES + 2 * t * h * ACT_BYTES  # + final norm
    kernels.append(Kernel("norms, residuals, rotary, activation, KV-cache write", "memory", 1, 0.0, rest, "bf16"))
    # LM head: logits of the last position of each sequence (serving stacks skip the others).
    kernels.append(_gemm("lm_head", batch, -(-model.vocab // n), h, dd, 1))
    if n > 1:
        # Two all-reduces of the hidden states per layer; the bytes here are the payload, the
        # ring algorithm's 2 (n - 1) / n factor is applied where the time is computed.
        kernels.append(Kernel("tensor-parallel all-reduce", "allreduce", 2 * L, 0.0, t * h * ACT_BYTES, "bf16"))
    return Step(phase, batch, context, batch if phase == "decode" else batch * context, tp, tuple(kernels))


def memory_bytes(model: LanguageModel, dtype: str, tp: int, batch: int, context: int) -> tuple[float, float]:
    """(weights, KV cache) bytes on one GPU of a `tp`-way group, the cache holding `context` tokens
    of each of `batch` sequences. MLA's small replicated projections are counted on every GPU."""
    dd = model.dense_dtype(dtype)
    experts = 0 if model.moe is None else model.moe_layers * model.moe.experts * 3 * model.hidden * model.moe.expert_ffn
    weights = (experts * WEIGHT_BYTES[dtype] + (model.params() - experts) * WEIGHT_BYTES[dd]) / tp
    if model.mla is not None:
        m = model.mla
        replicated = model.layers * model.hidden * (m.q_lora_rank + m.kv_lora_rank + m.qk_rope_head_dim)
        weights += replicated * WEIGHT_BYTES[dd] * (1 - 1 / tp)
    return weights, batch * context * model.kv_bytes_per_token(KV_BYTES[dd], tp)
