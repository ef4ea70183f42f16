"""Kernel times by shape on one device: the pieces of an engine step.

Each kernel is max(memory time, compute time), never less than the roofline:
- GEMM y = x W^T with x (m, k) and W (n, k): memory = weights streamed at the device's published
  copy efficiency x `weight_stream` (a small-M GEMM is a weight read, a GEMV-like kernel that
  streams less well than a copy) + activations at the copy efficiency; compute = FLOPs of the
  padded tile grid at the published GEMM efficiency of the math dtype, over the wave utilisation.
  Tiles: M padded to 64 (m <= 64, the smallest tensor-core tile: Hopper wgmma m64, CDNA MFMA
  blocks) or to 128, N to 128; split-K fills a device with fewer tiles than compute units (as
  stream-K / split-K GEMMs do for decode shapes), and the last partial wave idles the rest
  (wave quantization, CUTLASS profiler docs).
- Paged decode attention: the KV cache read at copy efficiency x `attn_decode` (gathers of
  16-token pages through block tables), or its FLOPs at the attention efficiency where larger
  (MLA decode with absorbed weights is compute-heavy at large batch).
- Prefill attention: FLOPs at the device's published FlashAttention-class efficiency.
- The memory-bound rest at copy efficiency.
A run's measured kernel (its share of the roofline at a near shape) replaces the model where the
caller gives one: the roofline time over that share.
"""
from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from typing import Callable

from parity.harness.core import priors
from parity.harness.core.model import UsageError

ACT_BYTES = 2
TILE_N = 128
SPLIT_K_MIN = 512  # the shortest K slice a split-K GEMM hands one block
ATTN_Q_TILE = 128  # query rows per prefill-attention tile (FA2/FA3 block M on Hopper/Blackwell/CDNA3)

# Bytes per weight: FP4 is the format each vendor serves. NVFP4 (Blackwell): 4-bit E2M1 + one FP8
# scale per 16 (NVIDIA, 'Introducing NVFP4', 2025); MXFP4 (MI355X, OCP MX v1.0): one E8M0 per 32.
WEIGHT_BYTES = {"bf16": 2.0, "fp8": 1.0}
FP4_BYTES = {"nvidia": 0.5 + 1 / 16, "amd": 0.5 + 1 / 32}
KV_BYTES = {"bf16": 2, "fp8": 1, "fp4": 1}  # FP8 KV cache with quantized weights (engines' usual pairing)
# A weight-only GEMM (4-bit weights dequantized to BF16 in the main loop) is issue-bound, not
# tensor-core-bound: SGLang's nsys capture of Marlin's W4A16 MoE GEMM on H100 (prefill chunks of 16k
# tokens) measured 254 TFLOPS, 25.7 % of BF16 peak, with 64 of 220 inner-loop instructions on HMMA
# and the rest on dequant, scale and pack (sgl-project/sglang PR #38884, 2026-09). Up to decode
# sizes (64 rows) the same kernels stream the weights: Marlin keeps close to the ideal 4x over FP16
# up to 16-32 tokens (IST-DASLab/marlin README), which the weight read already prices.
WEIGHT_ONLY_EFF = 0.257
GEMM_CLASS = {"bf16": "gemm_bf16_best", "fp8": "gemm_fp8_best", "fp4": "gemm_fp4_best"}


def weight_bytes(dtype: str, vendor: str) -> float:
    if dtype == "fp4":
        return FP4_BYTES.get(vendor, FP4_BYTES["amd"])
    return WEIGHT_BYTES[dtype]


@dataclass(frozen=True)
class Device:
    """What the kernel model needs of a spec: peaks, bandwidth, compute units, priors."""
    id: str
    vendor: str
    bw_bps: float
    peak_flops: dict  # math dtype -> FLOP/s
    compute_units: int | None
    copy_eff: float
    gemm_eff: dict  # math dtype -> efficiency
    attn_eff: float


@functools.lru_cache(maxsize=None)
def _prior(spec_id: str, op_class: str) -> float:
    found = priors.prior(spec_id, op_class)
    if found is None:
        raise UsageError(f"no published efficiency for {op_class} on {spec_id} or its vendor")
    return found.efficiency


def device(spec) -> Device:
    bw = spec.value("memory_bandwidth_tbps")
    if not bw:
        raise UsageError(f"{spec.id} has no memory bandwidth in its spec")
    peaks, effs = {}, {}
    for dtype in ("bf16", "fp8", "fp4"):
        fig = spec.peak(dtype)
        if fig is not None:
            peaks[dtype] = fig.value * 1e12
            effs[dtype] = _prior(spec.id, GEMM_CLASS[dtype])
    cu = spec.value("compute_units")
    return Device(spec.id, spec.vendor, bw * 1e12, peaks, int(cu) if cu else None,
                  _prior(spec.id, "hbm_copy"), effs, _prior(spec.id, "attention_fwd_d128"))


@dataclass(frozen=True)
class Params:
    """The mechanism constants the calibration fits (calibration.toml); priors in engines.toml."""
    weight_stream: float = 0.85  # small-M GEMM weight streaming, relative to the copy efficiency
    attn_decode: float = 0.70  # paged decode attention KV read, relative to the copy efficiency
    kernel_gap_us: float = 1.5  # per kernel inside a graph
    eager_launch_us: float = 4.0  # host cost per kernel issued without a graph (fitted)
    # Coefficient of variation of the experts' routed loads: a learned router does not spread
    # tokens evenly (DeepSeek-V3 report, arXiv 2412.19437, section 3.4: redundant experts to balance
    # EP ranks), and a step waits for its busiest rank (busiest_rank_share). 0 is uniform routing;
    # the default is the fit's prior (fit.PARAMS).
    expert_load_cv: float = 2.1


def _expected_max_normal(n: int) -> float:
    """E[max of n standard normals], Blom's approximation: the normal quantile at
    (n - 0.375) / (n + 0.25) (within 0.03 of the exact value for n >= 2)."""
    return statistics.NormalDist().inv_cdf((n - 0.375) / (n + 0.25)) if n > 1 else 0.0


def busiest_rank_share(p: Params, experts: int, ep: int, pairs: float, k: int) -> float:
    """The routed token-expert pairs on the busiest of `ep` expert-parallel ranks over the mean
    rank's, for `pairs` pairs over `experts` experts (E / ep on each rank), `k` a token.

    An expert's load varies by the router's skew (`expert_load_cv`) and by sampling (a Poisson count
    of mean pairs / E: variance 1 / mean, relative); a rank sums E / ep independent experts, so its
    relative spread is the experts' over sqrt(E / ep), and the busiest of ep ranks sits about
    E[max of ep normals] spreads above the mean. Two bounds: the skew is at most sqrt(E / k - 1)
    (every token on the same k experts), and a token puts at most min(k, E / ep) of its k pairs on
    one rank, so the share is at most ep x min(k, E / ep) / k.
    TensorRT-LLM measured 2.56 on DeepSeek-R1 at EP32 in decode without load balancing (tech blog 4,
    Table 1): a spread of 2.1 per expert in this form, the prior of the fit."""
    if ep <= 1 or pairs <= 0:
        return 1.0
    per_expert = pairs / experts
    skew = min(p.expert_load_cv, math.sqrt(max(0.0, experts / k - 1)))
    spread = math.sqrt((skew ** 2 + 1.0 / per_expert) / (experts / ep))
    return min(ep * min(k, experts / ep) / k, 1.0 + spread * _expected_max_normal(ep))


# measured(kind, shape, device_id) -> efficiency or None; kind "gemm_<dtype>", "attention_<phase>"
Measured = Callable[[str, tuple, str], "float | None"]


def _wave_util(tiles: int, k: int, cu: int | None) -> float:
    if not cu:
        return 1.0
    splits = 1
    if tiles < cu:
        splits = max(1, min(cu // tiles, k // SPLIT_K_MIN))
    total = tiles * splits
    return total / (math.ceil(total / cu) * cu)


def gemm_s(dev: Device, m: float, n: int, k: int, dtype: str, p: Params, measured: Measured | None = None,
           math_in: str | None = None, groups: float = 1.0) -> float:
    """Seconds of one launch of `groups` GEMMs of (m, n, k) each (1: a plain GEMM; a MoE grouped
    GEMM: one per touched expert), with W stored in `dtype`. The math runs in `math_in` (W4A8: FP4
    weights, FP8 math), else in `dtype` where the GPU has it and in BF16 where it does not
    (weight-only). The groups' tiles share one grid (CUTLASS grouped GEMM, Triton fused_moe), so
    wave quantization applies to their sum, not to each group."""
    if m <= 0 or groups <= 0:
        return 0.0
    math_dtype = math_in or (dtype if dtype in dev.peak_flops else "bf16")
    wbytes = groups * n * k * weight_bytes(dtype, dev.vendor)
    abytes = groups * (m * k + m * n) * ACT_BYTES
    if measured is not None:  # a run's kernel at this shape: its share of the roofline, kept
        found = measured(f"gemm_{math_dtype}", (m, n, k), dev.id)
        if found:
            flops = 2.0 * groups * m * n * k
            return max((wbytes + abytes) / dev.bw_bps, flops / dev.peak_flops[math_dtype]) / found
    t_mem = wbytes / (dev.bw_bps * dev.copy_eff * p.weight_stream) + abytes / (dev.bw_bps * dev.copy_eff)
    m_pad = 64 * math.ceil(m / 64) if m <= 64 else 128 * math.ceil(m / 128)
    tiles = max(1, round(groups * math.ceil(m_pad / (64 if m <= 64 else 128)) * math.ceil(n / TILE_N)))
    eff = dev.gemm_eff.get(math_dtype, dev.gemm_eff["bf16"])
    if dtype not in dev.peak_flops and math_dtype == "bf16" and m > 64:  # weight-only, beyond decode sizes
        eff = min(eff, WEIGHT_ONLY_EFF)
    t_comp = 2.0 * groups * m_pad * n * k / (dev.peak_flops[math_dtype] * eff
                                             * _wave_util(tiles, k, dev.compute_units))
    return max(t_mem, t_comp)


def grouped_gemm_s(dev: Device, routed: float, touched: float, n: int, k: int, dtype: str,
                   p: Params, measured: Measured | None = None, math_in: str | None = None) -> float:
    """A MoE grouped GEMM: `routed` token-expert pairs spread over `touched` of this GPU's experts;
    each touched expert's weights are read once and its rows padded to the tile."""
    if routed <= 0 or touched <= 0:
        return 0.0
    return gemm_s(dev, routed / touched, n, k, dtype, p, measured=measured, math_in=math_in, groups=touched)


def decode_attention_s(dev: Device, kv_bytes: float, flops: float, p: Params,
                       measured: Measured | None = None) -> float:
    found = measured("attention_decode", (), dev.id) if measured is not None else None
    if found:
        return max(kv_bytes / dev.bw_bps, flops / dev.peak_flops["bf16"]) / found
    eff = p.attn_decode
    return max(kv_bytes / (dev.bw_bps * dev.copy_eff * eff), flops / (dev.peak_flops["bf16"] * dev.attn_eff))


def prefill_attention_s(dev: Device, flops: float, nbytes: float, measured: Measured | None = None) -> float:
    found = measured("attention_prefill", (), dev.id) if measured is not None else None
    if found:
        return max(flops / dev.peak_flops["bf16"], nbytes / dev.bw_bps) / found
    eff = dev.attn_eff
    return max(flops / (dev.peak_flops["bf16"] * eff), nbytes / (dev.bw_bps * dev.copy_eff))


def memory_s(dev: Device, nbytes: float) -> float:
    return nbytes / (dev.bw_bps * dev.copy_eff)
