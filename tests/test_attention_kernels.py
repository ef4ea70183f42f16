"""The attention kernels against the fp32 reference: the Triton kernels in the interpreter (on a
machine without a GPU) on small, odd shapes, causal and not, GQA, FP8; and negative cases that a
wrong kernel cannot pass. Checks use the suite's rule (`attention._check`)."""
from __future__ import annotations

import pytest
import torch

from parity.harness.core import capability
from parity.kernels.attention import fp8, reference, torch_attention, triton_attention, triton_decode
from parity.suites import attention
from parity.suites import _attention_op as attention_op

from conftest import HAS_GPU

DEVICE = "cuda" if HAS_GPU else "cpu"
FP8_DTYPES = [d for d in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e4m3fnuz", None)) if d]


def qkv(batch, heads, kv_heads, seq_q, seq_k, head_dim, dtype=torch.float16, seed=0):
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    make = lambda h, s: torch.randn((batch, h, s, head_dim), generator=gen, device=DEVICE).to(dtype)  # noqa: E731
    return make(heads, seq_q), make(kv_heads, seq_k), make(kv_heads, seq_k)


def case(q, k, causal, dtype="fp16", direction="fwd"):
    return attention_op.params(q.shape[0], q.shape[1], k.shape[1], q.shape[2], k.shape[2], q.shape[3], causal,
                            dtype, direction)


def check_forward(out, q, k, v, causal, dtype="fp16", x=None):
    x = x or {"q": q, "k": k, "v": v}
    p = case(q, k, causal, dtype)
    return attention._check(out, attention._reference(x, p), x, p)


def check_backward(grads, q, k, v, do, causal, dtype="fp16"):
    p = case(q, k, causal, dtype, "bwd")
    x = {"q": q, "k": k, "v": v, "do": do}
    return attention._check(grads, attention._reference(x, p), x, p)


# (batch, heads, kv_heads, seq_q, seq_k, head_dim, causal, block): seq 1, 17, 33 against blocks of
# 16 and 32; seq_q < seq_k and seq_q > seq_k (rows that see no key); GQA 1, 2, 4, 8; a head_dim that
# is not a power of two.
SHAPES = [
    (1, 2, 2, 1, 1, 64, False, 16),
    (1, 2, 2, 1, 17, 64, True, 16),
    (1, 2, 1, 17, 33, 64, True, 16),
    (1, 2, 1, 17, 33, 64, False, 32),
    (2, 4, 1, 33, 17, 32, True, 32),
    (1, 8, 1, 33, 33, 16, False, 16),
    (1, 2, 2, 33, 33, 48, True, 32),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}h{}kv{}q{}k{}d{}{}blk{}".format(*s[:6], "c" if s[6] else "", s[7]))
def test_triton_forward_and_backward(shape):
    *dims, causal, block = shape
    q, k, v = qkv(*dims)
    config = {"BLOCK_M": block, "BLOCK_N": block}
    out, lse = triton_attention.forward(q, k, v, causal, config=config)
    result = check_forward(out, q, k, v, causal)
    assert result.passed, result.error
    do = qkv(*dims, seed=1)[0]
    grads = triton_attention.backward(do, q, k, v, out, lse, causal, config=config, dkdv_config={"BLOCK_M": 16, "BLOCK_N": block})
    result = check_backward(grads, q, k, v, do, causal)
    assert result.passed, result.error


def test_triton_bf16_and_default_config():
    q, k, v = qkv(1, 4, 2, 70, 70, 64, torch.bfloat16)
    do = qkv(1, 4, 2, 70, 70, 64, torch.bfloat16, seed=3)[0]
    out, lse = triton_attention.forward(q, k, v, causal=True)
    assert check_forward(out, q, k, v, True, "bf16").passed
    assert check_backward(triton_attention.backward(do, q, k, v, out, lse, True), q, k, v, do, True, "bf16").passed


def test_rows_that_see_no_key_are_zero():
    q, k, v = qkv(1, 2, 2, 20, 5, 16)
    out, lse = triton_attention.forward(q, k, v, causal=True, config={"BLOCK_M": 16, "BLOCK_N": 16})
    assert out[:, :, :15].abs().max() == 0 and torch.isinf(lse[:, :, :15]).all()
    assert out[:, :, 15:].abs().min() > 0


def test_autograd_wrapper_matches_backward():
    q, k, v = (t.requires_grad_(True) for t in qkv(1, 4, 2, 19, 19, 32))
    do = qkv(1, 4, 2, 19, 19, 32, seed=5)[0]
    out = triton_attention.attention(q, k, v, causal=True)
    got = torch.autograd.grad(out, (q, k, v), do)
    _, lse = triton_attention.forward(q.detach(), k.detach(), v.detach(), True)
    want = triton_attention.backward(do, q.detach(), k.detach(), v.detach(), out.detach(), lse, True)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", FP8_DTYPES, ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_triton_fp8_forward(dtype, causal, cpu_device):
    """OCP e4m3fn (NVIDIA, gfx950) and FNUZ e4m3fnuz (gfx942), whose largest values (448, 240) set
    different scales; compared as the dequantized values the kernel sees. Both run in the
    interpreter; a GPU runs its architecture's own."""
    if HAS_GPU and dtype != capability.torch_fp8_dtypes(cpu_device)[0]:
        pytest.skip(f"{dtype} is not this GPU architecture's FP8 format")
    if not HAS_GPU and "fnuz" in str(dtype) and capability.interpreter_problem("fnuz"):
        pytest.skip(capability.interpreter_problem("fnuz"))  # probed: this Triton's interpreter lacks it
    real = qkv(1, 4, 2, 33, 47, 64, torch.float32)
    x = {}
    for name, t in zip("qkv", real):
        x[name], scale = fp8.quantize(t, dtype)
        x.setdefault("descale", []).append(scale)
    x["descale"] = tuple(x["descale"])
    out, _ = triton_attention.forward(x["q"], x["k"], x["v"], causal, descale=x["descale"],
                                      config={"BLOCK_M": 16, "BLOCK_N": 32})
    assert out.dtype == torch.bfloat16
    result = check_forward(out, x["q"], x["k"], x["v"], causal, "fp8", x)
    assert result.passed, result.error
    assert fp8.dequantize(x["q"], x["descale"][0]).abs().max() == pytest.approx(float(real[0].abs().max()), rel=0.07)


@pytest.mark.parametrize("dims,causal,split", [
    ((2, 8, 2, 1, 700, 64), False, 256),  # three slices, the last partial
    ((1, 4, 4, 3, 300, 32), True, 256),  # several query tokens, causal
    ((1, 4, 1, 5, 3, 32), True, 256),  # more queries than keys: empty rows
    ((1, 8, 1, 1, 20, 128), False, 256),  # GQA 8, one slice
])
def test_triton_decode(dims, causal, split):
    q, k, v = qkv(*dims)
    out = triton_decode.decode(q, k, v, causal, split_len=split)
    result = check_forward(out, q, k, v, causal)
    assert result.passed, result.error


def test_decode_refuses_prefill_and_launchers_refuse_bad_shapes():
    q, k, v = qkv(1, 8, 1, 17, 64, 32)
    with pytest.raises(ValueError, match="prefill"):
        triton_decode.decode(q, k, v)
    with pytest.raises(ValueError, match="multiple"):
        triton_attention.forward(q, *qkv(1, 3, 3, 1, 64, 32)[1:])
    with pytest.raises(ValueError, match="dtype"):
        triton_attention.forward(q.float(), k.float(), v.float())
    with pytest.raises(ValueError, match="descale"):
        triton_attention.forward(*(t.to(FP8_DTYPES[0]) for t in (q, k, v)))


# --- negative cases: what a wrong kernel produces does not pass --------------------------------------


def test_perturbed_output_or_nan_is_caught():
    q, k, v = qkv(1, 2, 1, 33, 33, 64)
    out, _ = triton_attention.forward(q, k, v, False, config={"BLOCK_M": 16, "BLOCK_N": 16})
    bad = out.clone()
    bad[0, 1, 17, 5] *= 1.02  # 2 % on one element: ten times fp16's rounding
    assert not check_forward(bad, q, k, v, False).passed
    bad = out.clone()
    bad[0, 0, 3, 0] = float("nan")
    result = check_forward(bad, q, k, v, False)
    assert not result.passed and "1 of" in result.error


@pytest.mark.parametrize("which", [0, 1, 2])
def test_perturbed_gradient_is_caught(which):
    q, k, v = qkv(1, 4, 2, 33, 33, 32)
    do = qkv(1, 4, 2, 33, 33, 32, seed=7)[0]
    out, lse = triton_attention.forward(q, k, v, True)
    grads = list(triton_attention.backward(do, q, k, v, out, lse, True))
    assert check_backward(grads, q, k, v, do, True).passed
    grads[which] = grads[which].clone()
    grads[which][0, 0, 20] *= 1.03  # one row of one gradient, 3 %
    result = check_backward(grads, q, k, v, do, True)
    assert not result.passed and ("dq", "dk", "dv")[which] in result.error


def test_a_missing_key_or_the_wrong_causal_alignment_is_caught():
    q, k, v = qkv(1, 2, 2, 17, 33, 64)
    short, _ = triton_attention.forward(q, k[:, :, :-1], v[:, :, :-1], False, config={"BLOCK_M": 16, "BLOCK_N": 16})
    assert not check_forward(short, q, k, v, False).passed
    # SDPA's is_causal is top-left aligned: with seq_q < seq_k it is not the suite's mask.
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([SDPBackend.MATH]):
        top_left = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert not check_forward(top_left, q, k, v, True).passed


def test_a_missing_gqa_group_member_in_dk_is_caught():
    """dK of a KV head sums over the query heads that share it: leaving one out must fail."""
    q, k, v = qkv(1, 4, 2, 33, 33, 32)
    do = qkv(1, 4, 2, 33, 33, 32, seed=9)[0]
    out, lse = triton_attention.forward(q, k, v, False)
    dq, dk, dv = triton_attention.backward(do, q, k, v, out, lse, False)
    # Heads 0, 1 share KV head 0: the gradient through head 1 alone is what head 0 adds.
    only_first = triton_attention.backward(do[:, ::2], q[:, ::2], k, v, out[:, ::2], lse[:, ::2], False)
    assert not check_backward((dq, only_first[1], dv), q, k, v, do, False).passed


# --- PyTorch paths -----------------------------------------------------------------------------------


def test_forced_sdpa_backends_run_the_op_the_record_names():
    from torch.profiler import profile

    q, k, v = qkv(1, 4, 2, 33, 33, 64, torch.bfloat16)
    for backend in torch_attention.SDPA_BACKENDS:
        op = torch_attention.sdpa_op(backend, q.device.type)
        if HAS_GPU and torch_attention.sdpa_problem(backend, q, k, v, True):
            continue  # this GPU's PyTorch refuses the backend for the shape (the suite skips it too)
        if op is None:
            with pytest.raises(RuntimeError):
                torch_attention.sdpa(q, k, v, True, backend)
            continue
        with profile() as prof:
            out = torch_attention.sdpa(q, k, v, True, backend)
        assert op in {e.name for e in prof.events()}, backend
        assert check_forward(out, q, k, v, True, "bf16").passed


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_mask_is_bottom_right():
    """The mask FlexAttention is given (eager path: compiling costs seconds on the CPU)."""
    if not torch_attention.has_flex():
        pytest.skip(f"torch {torch.__version__} has no FlexAttention")
    q, k, v = qkv(1, 4, 2, 24, 40, 64)
    mask = torch_attention.flex_block_mask(24, 40, True, q.device)
    out = torch_attention.flex(q, k, v, block_mask=mask, compiled=False)
    assert check_forward(out, q, k, v, True).passed


def test_reference_alignment_and_empty_rows():
    seen = reference.visible(3, 5, slice(None), "cpu")
    assert seen.tolist() == [[True, True, True, False, False], [True, True, True, True, False], [True] * 5]
    q, k, v = qkv(1, 1, 1, 4, 2, 8, torch.float32)
    out = reference.forward(q, k, v, causal=True)["o"]
    assert out[0, 0, :2].abs().max() == 0 and torch.allclose(out[0, 0, 2], v[0, 0, 0])


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_kernels_at_benchmark_shapes(causal):
    """Autotuned kernels on the GPU, at a shape of the quick preset's kind."""
    q, k, v = qkv(2, 16, 4, 1024, 1024, 128, torch.bfloat16)
    do = qkv(2, 16, 4, 1024, 1024, 128, torch.bfloat16, seed=2)[0]
    out, lse = triton_attention.forward(q, k, v, causal)
    assert check_forward(out, q, k, v, causal, "bf16").passed
    assert check_backward(triton_attention.backward(do, q, k, v, out, lse, causal), q, k, v, do, causal, "bf16").passed
    q, k, v = qkv(4, 32, 8, 1, 8192, 128, torch.bfloat16)
    assert check_forward(triton_decode.decode(q, k, v), q, k, v, False, "bf16").passed
