"""What an offline `triton.compile` of each attention kernel needs, per architecture, head_dim and
config: the kernel object, its signature, constexprs, attributes and compile options, for a
representative case (contiguous bf16 tensors, 4 x 16 heads x 4096 tokens; decode: 32 query heads
on 8 KV heads, one token, a 64k cache).

The signature mirrors what `triton.jit` specializes at a launch on those tensors: pointers and
integers divisible by 16 carry `tt.divisibility` 16, integers equal to 1 (the head_dim stride) are
constexprs. This module only describes the compile; `parity inspect` (or a test) compiles it in a
process without TRITON_INTERPRET (the interpreter's `triton.jit` cannot be compiled).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parity.kernels.attention import (
    configs,
    tiles,
    triton_attention,
    triton_attention_bwd,
    triton_attention_tma,
    triton_decode,
)

BATCH, HEADS, SEQ = 4, 16, 4096
DECODE_HEADS, DECODE_KV_HEADS, DECODE_SEQ = 32, 8, 65536
IMPLS = {"fwd": "triton", "fwd_tma": "triton-tma", "dkdv": "triton", "dq": "triton", "decode": "triton"}
OPS = {"fwd": "prefill", "fwd_tma": "prefill", "dkdv": "prefill", "dq": "prefill", "decode": "decode"}
# Triton's names for each architecture's e4m3 (FNUZ on gfx942, OCP elsewhere); only `fwd` takes FP8.
FP8_TYPES = {"sm_90a": "fp8e4nv", "sm_100a": "fp8e4nv", "gfx942": "fp8e4b8", "gfx950": "fp8e4nv"}


@dataclass(frozen=True)
class CompileCase:
    """One kernel x config x architecture x head_dim, ready for `triton.compile(ASTSource(kernel,
    signature, constexprs, attrs), target=GPUTarget(...), options=options)`."""
    kernel_name: str  # fwd, fwd_tma, dkdv, dq, decode
    impl: str  # the suite's implementation name
    op: str  # the suite's op
    arch: str  # sm_90a, sm_100a, gfx942, gfx950
    head_dim: int
    dtype: str  # bf16 or fp8
    config: str  # "BLOCK_M=128 BLOCK_N=64 warps=8 stages=3 ..."
    lead: bool  # the list's first config: held to "no spill"
    kernel: Any = field(repr=False)  # the triton.jit function
    signature: dict = field(repr=False, default_factory=dict)
    constexprs: dict = field(repr=False, default_factory=dict)
    attrs: dict = field(repr=False, default_factory=dict)
    options: dict = field(repr=False, default_factory=dict)


def _ptr(dtype: str = "bf16") -> tuple[str, str]:
    return ("ptr", dtype)


def _bhsd(prefix: str, heads: int, seq: int, head_dim: int, names: str = "bhmd") -> dict[str, int]:
    """Strides of a contiguous (batch, heads, seq, head_dim) tensor under the kernel's names."""
    strides = (heads * seq * head_dim, seq * head_dim, head_dim, 1)
    return {f"{prefix}{n}": s for n, s in zip(names, strides)}


def _fp8(values: dict[str, Any], arch: str) -> dict[str, Any]:
    """The FP8 forward's arguments: e4m3 Q, K, V, and V with its sequence dimension contiguous (the
    suite's FP8 layout, for Hopper's K-major second operand)."""
    e4m3 = _ptr(FP8_TYPES[arch])
    return {**values, "Q": e4m3, "K": e4m3, "V": e4m3, "stride_vn": 1, "stride_vd": SEQ, "FP8": True}


def _prefill_values(kernel_name: str, head_dim: int, block_d: int, causal: bool) -> dict[str, Any]:
    v: dict[str, Any] = {}
    kv_names = "bhnd"
    if kernel_name in ("fwd", "fwd_tma"):
        v.update(Q=_ptr(), K=_ptr(), V=_ptr(), O=_ptr(), LSE=_ptr("fp32"))
        for t in "qkvo":
            v.update(_bhsd(f"stride_{t}", HEADS, SEQ, head_dim, kv_names if t in "kv" else "bhmd"))
        v.update(heads=HEADS, group=1, seq_q=SEQ, seq_k=SEQ, head_dim=head_dim, qk_scale=0.125)
        v.update(CAUSAL=causal, BLOCK_D=block_d, UPCAST=False)
        if kernel_name == "fwd":
            v.update(p_scale=1.0, p_emin=0.0, o_scale=1.0, PAD_D=block_d != head_dim, FP8=False)
        else:
            v.update(WARP_SPECIALIZE=False)
        return v
    v.update(Q=_ptr(), K=_ptr(), V=_ptr(), DO=_ptr(), LSE=_ptr("fp32"), DELTA=_ptr("fp32"))
    for t in ("q", "k", "v", "do"):
        v.update(_bhsd(f"stride_{t}", HEADS, SEQ, head_dim, kv_names if t in "kv" else "bhmd"))
    if kernel_name == "dkdv":
        v.update(DK=_ptr(), DV=_ptr(), kv_heads=HEADS)
        v.update(_bhsd("stride_dk", HEADS, SEQ, head_dim, kv_names))
        v.update(_bhsd("stride_dv", HEADS, SEQ, head_dim, kv_names))
    else:
        v.update(DQ=_ptr())
        v.update(_bhsd("stride_dq", HEADS, SEQ, head_dim))
    v.update(heads=HEADS, group=1, seq_q=SEQ, seq_k=SEQ, head_dim=head_dim, sm_scale=0.08, qk_scale=0.125,
             CAUSAL=causal, BLOCK_D=block_d, PAD_D=block_d != head_dim, UPCAST=False)
    return v


def _decode_values(head_dim: int, block_d: int) -> dict[str, Any]:
    group = DECODE_HEADS // DECODE_KV_HEADS
    v: dict[str, Any] = dict(Q=_ptr(), K=_ptr(), V=_ptr(), PO=_ptr("fp32"), PL=_ptr("fp32"))
    v.update(_bhsd("stride_q", DECODE_HEADS, 1, head_dim))
    v.update(_bhsd("stride_k", DECODE_KV_HEADS, DECODE_SEQ, head_dim, "bhnd"))
    v.update(_bhsd("stride_v", DECODE_KV_HEADS, DECODE_SEQ, head_dim, "bhnd"))
    v.update(kv_heads=DECODE_KV_HEADS, group=group, seq_q=1, seq_k=DECODE_SEQ, head_dim=head_dim,
             split_len=2048, splits=32, qk_scale=0.125, CAUSAL=False,
             BLOCK_R=max(16, group), BLOCK_D=block_d, PAD_D=block_d != head_dim, UPCAST=False)
    return v


KERNEL_OBJECTS = {"fwd": triton_attention._attn_fwd, "fwd_tma": triton_attention_tma._attn_fwd_tma,
                  "dkdv": triton_attention_bwd._attn_bwd_dkdv, "dq": triton_attention_bwd._attn_bwd_dq,
                  "decode": triton_decode._decode_split}


def signature(kernel, values: dict[str, Any]) -> tuple[dict, dict, dict]:
    """(signature, constexprs, attrs) of `kernel` launched with `values` (argument name -> a
    ("ptr", dtype) pair, a bool or int or float, or a meta-parameter), as triton.jit specializes."""
    sig, const, attrs = {}, {}, {}
    for i, name in enumerate(kernel.arg_names):
        value = values[name]
        if isinstance(value, tuple):
            sig[name] = "*" + value[1]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(value, bool) or name.isupper() or value == 1 and isinstance(value, int):
            sig[name], const[name] = "constexpr", value
        elif isinstance(value, int):
            sig[name] = "i32"
            if value % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[name] = "fp32"
    return sig, const, attrs


def _describe(cfg) -> str:
    parts = [f"{k}={v}" for k, v in cfg.kwargs.items()]
    return " ".join(parts + [f"warps={cfg.num_warps}", f"stages={cfg.num_stages}"])


def cases(arch: str, head_dims=(64, 128, 256), kernels=configs.KERNELS, causal: bool = True,
          lead_only: bool = False, dtypes=("bf16", "fp8")) -> list[CompileCase]:
    """Every config of every attention kernel's list for `arch`, at each head_dim, in BF16 and (the
    pointer forward only) FP8."""
    target = configs.target_of(arch)
    out = []
    for head_dim in head_dims:
        block_d = tiles._block_d(head_dim)
        for name, dtype in ((n, d) for n in kernels for d in dtypes if d == "bf16" or n == "fwd"):
            for i, cfg in enumerate(configs.lists(name, target, block_d)):
                if lead_only and i:
                    break
                values = (_decode_values(head_dim, block_d) if name == "decode"
                          else _prefill_values(name, head_dim, block_d, causal))
                if dtype == "fp8":
                    values = _fp8(values, arch)
                meta = {k: v for k, v in cfg.kwargs.items() if k in ("BLOCK_M", "BLOCK_N")}
                values.update(meta)
                if name == "fwd_tma":
                    values["WARP_SPECIALIZE"] = arch == "sm_100a" and block_d <= triton_attention_tma.WS_MAX_BLOCK_D
                kernel = KERNEL_OBJECTS[name]
                sig, const, attrs = signature(kernel, values)
                options = {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages,
                           **{k: v for k, v in cfg.kwargs.items() if k not in meta}}
                out.append(CompileCase(name, IMPLS[name], OPS[name], arch, head_dim, dtype, _describe(cfg), i == 0,
                                       kernel, sig, const, attrs, options))
    return out
