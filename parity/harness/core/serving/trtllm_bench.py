"""The engine limits `trtllm-bench throughput` picks when the command line gives none.

NVIDIA's TensorRT-LLM performance tables are trtllm-bench runs that pass no max_batch_size and no
max_num_tokens. trtllm-bench then sets both from a tuning heuristic over the model, the GPUs and
the dataset's mean lengths (NVIDIA/TensorRT-LLM tensorrt_llm/bench/build/tuning.py
@ 04cba882, calc_engine_setting and finetune_setting; called from
tensorrt_llm/bench/benchmark/utils/general.py @ 0171265e, get_settings, for the PyTorch backend, and
from `trtllm-bench build` for TensorRT engines; GPU memory from NVML's total, ModelConfig's
param_count from the checkpoint's safetensors, tensorrt_llm/bench/build/{utils,dataclasses}.py):

- KV bytes per token = 2 x layers x max(tp, num_key_value_heads) x head_size x KV bytes per value
  (1 for an FP8 cache, else 2), for the whole TP group;
- engine size = the checkpoint's stored elements x bytes per element (FP8 1, NVFP4 0.5, else 2);
- KV memory = (GPU memory x tp x pp - engine size) x kv_cache_free_gpu_mem_fraction;
- requests = KV memory / (KV bytes per token x (ISL + OSL)); raw batch = min(requests, 4096) / pp;
  raw tokens = min(raw batch x (1 + ISL / OSL), 32768): the budget that feeds the batch's prompts
  in steady state;
- the batch rounded up (to 32 below 256, at least 64; to 128 below 1024; else to 256), the tokens
  rounded up (to 256 below 4096, at least 2048; to 512 below 8192; else to 1024);
- with chunked prefill off (trtllm-bench's default), the PyTorch flow raises max_num_tokens to at
  least ISL + max_batch_size (general.py); `trtllm-bench build` does not.

Quantizations outside the tuned set (NVFP4, FP8, FP8 block scales, none) start from the
BuildConfig defaults, 2048 and 8192: gpt-oss's MXFP4 checkpoint is one. Where the heuristic finds
room for less than one request, trtllm-bench stops; the estimate keeps the defaults and says so.
Under attention DP the PyTorch backend applies max_batch_size and max_num_tokens per rank (its
executor per rank), as the estimate does with every engine limit.
"""
from __future__ import annotations

import math

from parity.harness.core.serving import kernels as K

ENGINES = ("trtllm", "trtllm-cpp")  # the engines trtllm-bench runs: the PyTorch backend and TensorRT engines
GIB = 1024 ** 3
MAX_BATCH = 4096  # "cap total batch size to avoid decoder buffer size becoming too large"
MAX_TOKENS = 32768  # "cap num tokens to avoid TRT activation buffer becoming too large"
UNTUNED = (2048, 8192)  # BuildConfig.max_batch_size, max_num_tokens
BUILD_KV_FRACTION = 0.95  # get_benchmark_engine_settings' default, which `trtllm-bench build` keeps
# Bytes per stored element of the checkpoint (tuning.py BYTES_PER_ELEM). An NVFP4 checkpoint
# stores two 4-bit weights per uint8 element and one FP8 scale per 16 weights, and safetensors
# counts elements, so the heuristic sees its quantized weights at (1/2 + 1/16) x 0.5 bytes each.
BYTES_PER_ELEMENT = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5}
FP4_ELEMENTS_PER_WEIGHT = 0.5 + 1 / 16


# finetune_setting's rounding: (below this value, round up to a multiple of this step), and a floor
BATCH_STEPS, BATCH_FLOOR = ((256, 32), (1024, 128), (math.inf, 256)), 64
TOKEN_STEPS, TOKEN_FLOOR = ((4096, 256), (8192, 512), (math.inf, 1024)), 2048


def _round_up(raw: float, steps, floor: int) -> int:
    step = next(step for below, step in steps if raw < below)
    return max(floor, step * math.ceil(raw / step))


def _round_batch(raw: float) -> int:
    return _round_up(raw, BATCH_STEPS, BATCH_FLOOR)


def _round_tokens(raw: float) -> int:
    return _round_up(raw, TOKEN_STEPS, TOKEN_FLOOR)


def _stored_elements(model, dtype: str) -> float:
    """Elements in the checkpoint's safetensors (ModelConfig.param_count sums them)."""
    total = model.params()
    if dtype != "fp4":
        return float(total)
    embed = model.vocab * model.hidden * (1 if model.tied_embeddings else 2)
    quantized = total - embed  # ModelOpt's NVFP4 quantizes the linear layers, not the embeddings
    return total - quantized + quantized * FP4_ELEMENTS_PER_WEIGHT


def kv_requests(model, dtype: str, memory_bytes: float, tp: int, isl: int, osl: int, kv_fraction: float,
                pp: int = 1) -> float | None:
    """The requests of ISL + OSL tokens whose KV cache fits by the heuristic's estimate (None for
    a quantization it does not tune)."""
    if model.quantized == "experts" and dtype == "fp4":
        return None  # an MXFP4 checkpoint (W4A16_MXFP4) is not among the tuned quantizations
    # The Hugging Face config's head size: DeepSeek-V3's config.json has no head_dim, and
    # ModelConfig falls back to hidden / heads (with all 128 heads as KV heads).
    head = model.hidden // model.heads if model.mla is not None else model.head_dim
    kv_bytes = K.KV_BYTES[model.dense_dtype(dtype)]
    per_token_gib = 2 * model.layers * max(tp, model.kv_heads) * head * kv_bytes / GIB
    engine_gib = _stored_elements(model, dtype) * BYTES_PER_ELEMENT[dtype] / GIB
    cache_gib = (memory_bytes / GIB * tp * pp - engine_gib) * kv_fraction
    return cache_gib / (per_token_gib * (isl + osl))


def limits(model, dtype: str, memory_bytes: float, tp: int, isl: int, osl: int,
           kv_fraction: float, pp: int = 1, whole_prompts: bool = True) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) as trtllm-bench sets them for this model and run.
    `whole_prompts`: the PyTorch flow's floor without chunked prefill (general.py: at least
    ISL + max_batch_size, applied to the untuned defaults too); `trtllm-bench build` keeps the
    heuristic's budget as it is."""
    requests = kv_requests(model, dtype, memory_bytes, tp, isl, osl, kv_fraction, pp)
    if requests is None or requests < 1:  # untuned; or trtllm-bench refuses (the row's note says so)
        batch, tokens = UNTUNED
    else:
        raw_batch = min(requests, MAX_BATCH) / pp
        raw_tokens = min(raw_batch * (1 + isl / osl), MAX_TOKENS)
        batch, tokens = _round_batch(raw_batch), _round_tokens(raw_tokens)
    return batch, (max(tokens, isl + batch) if whole_prompts else tokens)


def apply(engine, model, dtype: str, memory_bytes: float, tp: int, isl: int, osl: int,
          given: dict) -> tuple[object, str]:
    """`engine` with the tuned limits where the scenario's source did not state its own, and a note
    where trtllm-bench would refuse the run. `trtllm-bench build` (TensorRT engines) tunes at its
    default KV share and keeps the budget; the PyTorch flow passes --kv_cache_free_gpu_mem_fraction,
    holds whole prompts and captures CUDA graphs up to its max_batch_size (general.py,
    cuda_graph_config)."""
    pytorch = engine.runtime != "cpp"
    args = (model, dtype, memory_bytes, tp, isl, osl, engine.gpu_memory_utilization if pytorch else BUILD_KV_FRACTION)
    batch, tokens = limits(*args, whole_prompts=pytorch)
    tuned = {"max_num_seqs": batch, "max_num_batched_tokens": tokens}
    if pytorch:
        tuned["graph_max_batch"] = batch
    engine = engine.with_overrides({k: v for k, v in tuned.items() if k not in given})
    fit = kv_requests(*args)
    note = "" if fit is None or fit >= 1 else (
        f"trtllm-bench would stop here: by its estimate {fit:.2f} requests' KV cache fits (default limits used)")
    return engine, note
