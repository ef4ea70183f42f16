"""The TMA forward (`triton-tma`) against the fp32 reference in the interpreter, its tile order and
layout checks, and the attention config lists: their shape, and (compiled offline for sm_90a, in a
process without the interpreter) that the lead configs load and do not spill."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import triton
import triton.language as tl

from parity.kernels.attention import configs, inspection, triton_attention, triton_attention_tma, triton_decode
from parity.suites import attention
from parity.suites import _attention_op as attention_op

from test_attention_kernels import DEVICE, check_forward, qkv

ROOT = Path(__file__).resolve().parents[1]


# --- the TMA forward in the interpreter -----------------------------------------------------------

# (batch, heads, kv_heads, seq_q, seq_k, head_dim, causal, block): sequence lengths 1, 37 and 129,
# none a multiple of the block; seq_q > seq_k (rows that see no key) and seq_q < seq_k; GQA 2 and 4;
# head_dim 48 (BLOCK_D 64: columns past head_dim read as TMA's zero fill).
TMA_SHAPES = [
    (1, 2, 2, 1, 129, 64, False, 32),
    (1, 2, 1, 37, 37, 64, True, 16),
    (2, 4, 1, 129, 37, 32, True, 32),
    (1, 2, 2, 37, 129, 48, True, 16),
    (1, 4, 2, 37, 37, 48, False, 16),
]


@pytest.mark.parametrize("shape", TMA_SHAPES, ids=lambda s: "b{}h{}kv{}q{}k{}d{}{}blk{}".format(*s[:6], "c" if s[6] else "", s[7]))
def test_tma_forward_matches_the_reference_and_the_pointer_kernel(shape):
    *dims, causal, block = shape
    q, k, v = qkv(*dims)
    config = {"BLOCK_M": block, "BLOCK_N": block}
    out, lse = triton_attention_tma.forward(q, k, v, causal, config=config)
    result = check_forward(out, q, k, v, causal)
    assert result.passed, result.error
    want_out, want_lse = triton_attention.forward(q, k, v, causal, config=config)
    seen = torch.isfinite(want_lse)
    assert torch.equal(seen, torch.isfinite(lse))  # the same rows see no key (+inf)
    # The same algorithm: equal up to summation order (fp32) and one fp16 rounding of the output.
    assert torch.allclose(lse[seen], want_lse[seen], rtol=1e-4, atol=1e-4)
    assert torch.allclose(out.float(), want_out.float(), rtol=2e-3, atol=2e-3)


def test_tma_forward_bf16_default_config():
    q, k, v = qkv(1, 4, 2, 70, 70, 64, torch.bfloat16, seed=4)
    out, _ = triton_attention_tma.forward(q, k, v, causal=True)
    assert out.dtype == torch.bfloat16
    assert check_forward(out, q, k, v, True, "bf16").passed


def test_tma_forward_wrong_mask_or_perturbation_is_caught():
    q, k, v = qkv(1, 2, 2, 37, 37, 32)
    out, _ = triton_attention_tma.forward(q, k, v, causal=False, config={"BLOCK_M": 16, "BLOCK_N": 16})
    assert not check_forward(out, q, k, v, causal=True).passed  # a non-causal result is not a causal one
    out, _ = triton_attention_tma.forward(q, k, v, causal=True, config={"BLOCK_M": 16, "BLOCK_N": 16})
    assert check_forward(out, q, k, v, causal=True).passed
    out[0, 1, 36, 5] += 0.05
    assert not check_forward(out, q, k, v, causal=True).passed


def test_tma_forward_refuses_what_tma_cannot_address():
    q, k, v = qkv(1, 2, 2, 16, 16, 64)
    with pytest.raises(ValueError, match="contiguous head_dim"):
        triton_attention_tma.forward(q.transpose(-1, -2).contiguous().transpose(-1, -2), k, v)
    odd = torch.randn((1, 2, 16, 36), device=DEVICE).half()  # rows of 72 bytes: not 16-byte aligned
    with pytest.raises(ValueError, match="16-byte aligned"):
        triton_attention_tma.forward(odd, odd, odd)
    with pytest.raises(ValueError, match="bf16"):
        triton_attention_tma.forward(q.float(), k.float(), v.float())
    with pytest.raises(ValueError, match="multiple"):
        triton_attention_tma.forward(*qkv(1, 3, 2, 8, 8, 64))


@triton.jit
def _order_probe(OUT, CAUSAL: tl.constexpr):
    # The TMA kernel's own mapping, from the same program ids.
    if CAUSAL:
        start_m = tl.num_programs(1) - 1 - tl.program_id(1)
    else:
        start_m = tl.program_id(1)
    tl.store(OUT + tl.program_id(0) * tl.num_programs(1) + tl.program_id(1), start_m)


def test_causal_tiles_are_issued_heaviest_first():
    """Program (h, j) of the TMA kernel's grid takes query tile n-1-j when causal: the kernel's
    source holds that mapping (checked here by text, then by running the same expressions)."""
    source = Path(triton_attention_tma.__file__).read_text()
    assert "start_m = tl.num_programs(1) - 1 - tl.program_id(1)" in source
    assert "grid = lambda meta: (batch * heads, triton.cdiv(seq_q, meta[\"BLOCK_M\"]))" in source
    out = torch.empty((2, 5), dtype=torch.int32, device=DEVICE)
    _order_probe[(2, 5)](out, CAUSAL=True)
    assert out.tolist() == [[4, 3, 2, 1, 0]] * 2
    _order_probe[(2, 5)](out, CAUSAL=False)
    assert out.tolist() == [[0, 1, 2, 3, 4]] * 2


def test_tma_impl_in_the_suite(cpu_device):
    tma = next(i for i in attention.SUITE.impls if i.name == "triton-tma")
    fwd = attention_op.params(1, 2, 2, 100, 100, 64, True, "bf16")
    assert tma.supports(cpu_device, fwd) is None
    assert "forward" in tma.supports(cpu_device, {**fwd, "direction": "bwd"})
    assert "fp8" in tma.supports(cpu_device, {**fwd, "dtype": "fp8"})
    assert "16-byte" in tma.supports(cpu_device, {**fwd, "head_dim": 36})


# --- config lists ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", configs.KERNELS)
def test_every_list_is_nonempty_per_target_and_head_dim(kernel):
    for target in configs.ARCHS:
        for block_d in configs.BLOCK_DS:
            cfgs = configs.lists(kernel, target, block_d)
            assert cfgs, (kernel, target, block_d)
            for cfg in cfgs:
                assert cfg.kwargs["BLOCK_N"] & (cfg.kwargs["BLOCK_N"] - 1) == 0
                if kernel == "decode":
                    assert triton_decode.SPLIT_QUANTUM % cfg.kwargs["BLOCK_N"] == 0  # slices hold whole blocks
                if target == "hip":
                    assert cfg.num_stages == 1


def test_lists_refuse_unknowns_and_launchers_use_the_head_dim_bucket():
    with pytest.raises(ValueError):
        configs.lists("fwd", "metal", 64)
    with pytest.raises(ValueError):
        configs.lists("fwd", "cuda", 96)
    with pytest.raises(ValueError):
        configs.target_of("sm_75")
    at_128 = configs.lists("fwd", "cuda", 128)
    at_256 = configs.lists("fwd", "cuda", 256)
    assert [str(c) for c in at_128] != [str(c) for c in at_256]
    launcher = triton_attention._LAUNCHERS[("fwd", 256)]
    assert [str(c) for c in launcher.configs["cuda"]] == [str(c) for c in at_256]


def test_compile_cases_cover_every_kernel_and_match_the_signature():
    cases = inspection.cases("sm_90a", head_dims=(128,), lead_only=True)
    assert [(c.kernel_name, c.dtype) for c in cases] == [("fwd", "bf16"), ("fwd", "fp8")] + [
        (name, "bf16") for name in configs.KERNELS[1:]]
    assert all(c.lead for c in cases)
    fp8 = cases[1]
    assert fp8.signature["Q"] == "*fp8e4nv" and fp8.constexprs["FP8"] is True and fp8.constexprs["stride_vn"] == 1
    assert inspection.cases("gfx942", head_dims=(128,), kernels=("fwd",), lead_only=True)[1].signature["V"] == "*fp8e4b8"
    for c in cases:
        assert set(c.signature) == set(c.kernel.arg_names)
        assert {n for n, t in c.signature.items() if t == "constexpr"} == set(c.constexprs)
    gfx = inspection.cases("gfx942", head_dims=(64,), kernels=("fwd",))
    assert all("waves_per_eu" in c.options and c.options["num_stages"] == 1 for c in gfx)


_COMPILE_SCRIPT = r"""
import json, os, re, subprocess, sys, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from parity.kernels.attention import configs, inspection
ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas-blackwell")
if not os.path.exists(ptxas):
    ptxas = os.path.join(os.path.dirname(ptxas), "ptxas")
rows = []
for c in inspection.cases("sm_90a", head_dims=(128,), lead_only=True):
    ck = triton.compile(ASTSource(c.kernel, c.signature, c.constexprs, c.attrs), target=GPUTarget("cuda", 90, 32),
                        options=c.options)
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "k.ptx"), "w").write(ck.asm["ptx"])
        r = subprocess.run([ptxas, "-v", "--gpu-name=sm_90a", os.path.join(d, "k.ptx"), "-o", os.path.join(d, "k.o")],
                           capture_output=True, text=True)
    log = r.stdout + r.stderr
    rows.append({"kernel": c.kernel_name + "/" + c.dtype, "shared": ck.metadata.shared,
                 "registers": int(re.search(r"Used (\d+) registers", log).group(1)),
                 "spill": int(re.search(r"(\d+) bytes spill stores", log).group(1)),
                 "tma": "cp.async.bulk.tensor" in ck.asm["ptx"], "wgmma": "wgmma.mma_async" in ck.asm["ptx"],
                 "mma": "mma.sync" in ck.asm["ptx"]})
print(json.dumps(rows))
"""


def test_lead_configs_compile_for_sm90a_without_spills_within_shared_memory():
    """Compiled offline for sm_90a at head_dim 128 (no GPU): each kernel's lead config fits 227 KiB,
    does not spill and uses the tensor cores (wgmma; mma.sync for decoding's 16-row tile); the TMA
    forward uses TMA and the pointer forward does not."""
    ptxas_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    if not any((ptxas_dir / name).exists() for name in ("ptxas", "ptxas-blackwell")):
        pytest.skip(f"triton {triton.__version__} ships no ptxas in {ptxas_dir}: no offline NVIDIA compile")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=str(ROOT), TRITON_DEFAULT_FP_FUSION="1")
    proc = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["kernel"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])}
    assert set(rows) == {f"{name}/bf16" for name in configs.KERNELS} | {"fwd/fp8"}
    for name, row in rows.items():
        assert row["spill"] == 0, row
        assert 0 < row["shared"] <= configs.SHARED_LIMIT_BYTES["sm_90a"], row
        # Decoding's tile is 16 query rows here, below wgmma's 64: it runs mma.sync (memory-bound).
        assert row["mma"] if name == "decode/bf16" else row["wgmma"], row
    assert rows["fwd_tma/bf16"]["tma"] and not rows["fwd/bf16"]["tma"]


def test_an_older_triton_is_a_skip_with_its_reason(cpu_device, monkeypatch):
    assert triton_attention_tma.unavailable() is None
    monkeypatch.delattr(tl, "make_tensor_descriptor")
    reason = triton_attention_tma.unavailable()
    assert "make_tensor_descriptor" in reason
    tma = next(i for i in attention.SUITE.impls if i.name == "triton-tma")
    assert tma.supports(cpu_device, attention_op.params(1, 2, 2, 100, 100, 64, False, "bf16")) == reason


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_tma_forward_at_a_benchmark_shape(causal):
    """Autotuned over the device's list, TMA (Hopper, Blackwell) or ordinary loads (elsewhere)."""
    q, k, v = qkv(2, 16, 4, 1024, 1024, 128, torch.bfloat16)
    out, _ = triton_attention_tma.forward(q, k, v, causal)
    result = check_forward(out, q, k, v, causal, "bf16")
    assert result.passed, result.error
