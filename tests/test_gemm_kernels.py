"""GEMM kernels without a GPU: the quantizers (FP8, OCP -> FNUZ, MXFP4), every Triton GEMM in the
interpreter on odd shapes against the test's own fp64 reference, and the PyTorch paths the CPU has."""
from __future__ import annotations

import math

import pytest
import torch

from parity.harness.core import capability
from parity.kernels.gemm import quant, torch_gemm, triton_fp8, triton_gemm, triton_mxfp4

# Small blocks so that even these shapes span several tiles in M, N and K, with ragged edges.
SMALL = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=32, GROUP_M=2)
MX_SMALL = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=64, GROUP_M=2)
ODD = [(17, 33, 65), (1, 40, 7), (33, 1, 100), (70, 50, 129)]
OCP = (torch.float8_e4m3fn, torch.float8_e5m2)
FNUZ = (torch.float8_e4m3fnuz, torch.float8_e5m2fnuz)


def operands(m, n, k, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=gen).to(device), torch.randn(n, k, generator=gen).to(device)


def skip_unless_runs_here(kernel_device, fp8=None, mxfp4=False):
    """Skip, with the reason, a Triton kernel this host cannot run: on a GPU, an FP8 family that is
    not its architecture's (FNUZ is gfx942's) or a tl.dot_scaled this Triton cannot compile; in the
    interpreter, what an older Triton's interpreter lacks (capability.interpreter_problem)."""
    fnuz = fp8 is not None and "fnuz" in str(fp8)
    if kernel_device == "cpu":
        problem = (capability.interpreter_problem("fnuz") if fnuz else None) or \
            (capability.interpreter_problem("dot_scaled") if mxfp4 else None)
    else:
        from parity.harness.core.device import detect

        gpu = detect()
        problem = capability.dot_scaled_problem(gpu.backend, gpu.arch) if mxfp4 else None
        family = capability.fp8_format(gpu.backend, gpu.arch)
        if fp8 is not None and family != ("fnuz" if fnuz else "ocp"):
            problem = f"{fp8} is not the FP8 of {gpu.arch} ({family}): Triton runs it in the interpreter only"
    if problem:
        pytest.skip(problem)


def assert_close_to_product(out, a64, b64, out_dtype):
    """|out - a b| within the output's rounding plus fp32 accumulation (worst case, K * u32)."""
    exact = a64 @ b64
    k = a64.shape[1]
    bound = torch.finfo(out_dtype).eps * exact.abs() + (k + 2) * 2.0**-24 * (a64.abs() @ b64.abs())
    err = (out.double() - exact).abs()
    assert bool((err <= bound).all()), f"max error {float(err.max()):.3g}, worst excess {float((err - bound).max()):.3g}"


# --- quantizers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", OCP + FNUZ)
@pytest.mark.parametrize("scaling", ["tensor", "row"])
def test_fp8_quantization_uses_the_formats_own_range(dtype, scaling):
    x, _ = operands(9, 1, 70)
    q, s = quant.quantize_fp8(x, dtype, scaling)
    assert q.dtype == dtype and s.dtype == torch.float32
    assert s.shape == (() if scaling == "tensor" else (9, 1))
    top = torch.finfo(dtype).max
    amax = x.abs().amax() if scaling == "tensor" else x.abs().amax(dim=1, keepdim=True)
    assert torch.allclose(s, amax / top)  # largest value on the largest finite FP8 value
    back = quant.dequantize_fp8(q, s)
    assert torch.isfinite(back).all()
    # one rounding in FP8: relative error of at most 2^-(mantissa bits + 1) above the subnormals
    mantissa = 3 if "e4m3" in str(dtype) else 2
    normal = x.abs() >= s * torch.finfo(dtype).tiny
    rel = ((back - x).abs() / x.abs())[normal]
    assert float(rel.max()) <= 2.0 ** -(mantissa + 1) * (1 + 1e-6)


def test_fp8_zero_tensor_gets_a_finite_scale():
    q, s = quant.quantize_fp8(torch.zeros(4, 32), torch.float8_e4m3fn, "row")
    assert torch.isfinite(s).all() and (q.float() == 0).all()


@pytest.mark.parametrize("ocp, fnuz", [(torch.float8_e4m3fn, torch.float8_e4m3fnuz),
                                       (torch.float8_e5m2, torch.float8_e5m2fnuz)])
def test_ocp_to_fnuz_keeps_bits_doubles_the_scale_and_the_values(ocp, fnuz):
    x, _ = operands(8, 1, 64, seed=3)
    x[0, :4] = torch.tensor([0.0, -0.0, 1e-9, -1e-9])  # zeros and values that quantize to -0
    q, s = quant.quantize_fp8(x, ocp, "row")
    assert (q.view(torch.uint8) == 0x80).any()  # a -0 is present: the 0x80 rule is exercised
    qz, sz = quant.ocp_to_fnuz(q, s)
    assert qz.dtype == fnuz
    assert torch.equal(sz, 2 * s)
    bits, zbits = q.view(torch.uint8), qz.view(torch.uint8)
    assert torch.equal(zbits, torch.where(bits == 0x80, torch.zeros_like(bits), bits))
    # same bits, half the value in FNUZ, twice the scale: the numbers are unchanged
    assert torch.equal(quant.dequantize_fp8(qz, sz), quant.dequantize_fp8(q, s))
    assert not torch.isnan(qz.float()).any()  # no -0 became FNUZ's NaN


def test_fnuz_bits_are_worth_half():
    bits = torch.arange(0, 0x7F, dtype=torch.uint8)
    ocp = bits.view(torch.float8_e4m3fn).float()
    fnuz = bits.view(torch.float8_e4m3fnuz).float()
    assert torch.equal(fnuz * 2, ocp)


def test_ocp_to_fnuz_refuses_fnuz_input():
    with pytest.raises(ValueError, match="not an OCP"):
        quant.ocp_to_fnuz(torch.zeros(2, dtype=torch.float8_e4m3fnuz), torch.ones(()))


def test_e2m1_rounds_to_nearest_even_and_saturates():
    values = torch.tensor([0.0, 0.2, 0.25, 0.26, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 5.1, 6.0, 7.9, 1e9])
    codes = quant._round_to_e2m1_codes(values)
    got = quant.e2m1_codes_to_float(codes)
    # ties go to the even code: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4
    want = torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, 6.0, 6.0, 6.0])
    assert torch.equal(got, want)


def test_mxfp4_quantization_blocks_scales_and_packing():
    x, _ = operands(5, 1, 70, seed=4)  # K = 70: padded to 96, three blocks
    packed, scales = quant.quantize_mxfp4(x)
    assert packed.shape == (5, 48) and scales.shape == (5, 3)
    assert packed.dtype == torch.uint8 and scales.dtype == torch.uint8
    codes = quant.unpack_e2m1(packed)
    assert torch.equal(codes[:, 0::2], packed & 0xF)  # first value of a byte in the low nibble
    assert (codes[:, 70:] & 7 == 0).all()  # padding is zero
    # the scale puts each block's amax in [4, 8): exponent = floor(log2 amax) - 2
    amax = torch.nn.functional.pad(x, (0, 26)).view(5, 3, 32).abs().amax(dim=2)
    assert torch.equal(scales.long() - 127, torch.floor(torch.log2(amax)).long() - 2)
    back = quant.dequantize_mxfp4(packed, scales, 70)
    assert back.shape == x.shape
    # each value is within half a step of e2m1 at its block's scale, or saturated at 6 * scale
    step = quant.e8m0_to_float(scales).repeat_interleave(32, dim=1)[:, :70]
    err = (back - x).abs()
    assert bool(((err <= step) | (back.abs() == 6 * step)).all())


def test_e8m0_extremes():
    assert quant.e8m0_to_float(torch.tensor([127], dtype=torch.uint8)).item() == 1.0
    assert quant.e8m0_to_float(torch.tensor([0], dtype=torch.uint8)).item() == 2.0**-127


def test_to_blocked_matches_the_cublas_layout():
    rows, cols = 130, 5  # padded to 256 x 8: two row tiles, two column tiles
    scales = torch.arange(rows * cols, dtype=torch.int32).reshape(rows, cols) + 1
    flat = torch_gemm.to_blocked(scales)
    assert flat.numel() == 256 * 8
    for r in range(rows):
        for c in range(cols):
            tile = (r // 128) * 2 + c // 4
            rr, cc = r % 128, c % 4
            assert flat[tile * 512 + (rr % 32) * 16 + (rr // 32) * 4 + cc] == scales[r, c]
    assert int((flat == 0).sum()) == 256 * 8 - rows * cols  # padding is zero


# --- Triton kernels in the interpreter -------------------------------------------------------------


@pytest.mark.parametrize("m, n, k", ODD[:3])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["NN", "NT", "TN"])
def test_triton_gemm_on_odd_shapes(m, n, k, dtype, layout, kernel_device):
    a32, w32 = operands(m, n, k, device=kernel_device)
    a = a32.to(dtype) if layout[0] == "N" else a32.t().contiguous().to(dtype).t()
    b = w32.t().contiguous().to(dtype) if layout[1] == "N" else w32.to(dtype).t()
    out = torch.randn(m, n, device=kernel_device).to(dtype)  # not zeros: unwritten elements would show
    triton_gemm.matmul(a, b, out, cfg=SMALL)
    assert_close_to_product(out, a.double(), b.double(), dtype)


def test_triton_gemm_default_interpreter_config(kernel_device):
    a, w = operands(70, 66, 130, device=kernel_device)
    out = triton_gemm.matmul(a.bfloat16(), w.bfloat16().t())
    assert_close_to_product(out, a.bfloat16().double(), w.bfloat16().double().t(), torch.bfloat16)


def test_triton_gemm_refuses_bad_operands():
    with pytest.raises(ValueError, match="cannot multiply"):
        triton_gemm.matmul(torch.zeros(3, 4, dtype=torch.bfloat16), torch.zeros(5, 3, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="bf16 or fp16"):
        triton_gemm.matmul(torch.zeros(3, 4), torch.zeros(4, 3))


@pytest.mark.parametrize("m, n, k", ODD[:3])
@pytest.mark.parametrize("dtype", OCP + FNUZ)
@pytest.mark.parametrize("scaling", ["tensor", "row"])
def test_triton_fp8_on_odd_shapes_in_ocp_and_fnuz(m, n, k, dtype, scaling, kernel_device):
    skip_unless_runs_here(kernel_device, fp8=dtype)
    a32, w32 = operands(m, n, k, seed=1)
    qa, sa = (t.to(kernel_device) for t in quant.quantize_fp8(a32, dtype, scaling))
    qw, sw = (t.to(kernel_device) for t in quant.quantize_fp8(w32, dtype, scaling))
    sb = sw.reshape(1, -1) if scaling == "row" else sw
    out = torch.randn(m, n, device=kernel_device).bfloat16()
    triton_fp8.scaled_matmul(qa, qw.t(), sa, sb, out, cfg=SMALL)
    a64 = quant.dequantize_fp8(qa, sa).double()
    b64 = quant.dequantize_fp8(qw, sw).double().t()
    assert_close_to_product(out, a64, b64, torch.bfloat16)


def test_triton_fp8_fnuz_from_ocp_gives_the_ocp_result(kernel_device):
    if kernel_device != "cpu":
        pytest.skip("OCP and FNUZ FP8 run side by side only in the interpreter: a GPU has one of them")
    skip_unless_runs_here(kernel_device, fp8=torch.float8_e4m3fnuz)
    a32, w32 = operands(17, 33, 65, seed=2)
    qa, sa = quant.quantize_fp8(a32, torch.float8_e4m3fn, "row")
    qw, sw = quant.quantize_fp8(w32, torch.float8_e4m3fn, "row")
    ocp = triton_fp8.scaled_matmul(qa, qw.t(), sa, sw.reshape(1, -1), cfg=SMALL)
    za, zsa = quant.ocp_to_fnuz(qa, sa)
    zw, zsw = quant.ocp_to_fnuz(qw, sw)
    fnuz = triton_fp8.scaled_matmul(za, zw.t(), zsa, zsw.reshape(1, -1), cfg=SMALL)
    assert torch.equal(ocp, fnuz)


def test_triton_fp8_refuses_mixed_families_and_bad_scales():
    a = torch.zeros(4, 32).to(torch.float8_e4m3fn)
    b = torch.zeros(32, 4).to(torch.float8_e4m3fnuz)
    with pytest.raises(ValueError, match="mix"):
        triton_fp8.scaled_matmul(a, b, torch.ones(()), torch.ones(()))
    with pytest.raises(ValueError, match="tensor-wise"):
        triton_fp8.scaled_matmul(a, a.t(), torch.ones(3), torch.ones(()))


@pytest.mark.parametrize("m, n, k", ODD + [(20, 24, 256)])
def test_triton_mxfp4_on_odd_shapes(m, n, k, kernel_device):
    skip_unless_runs_here(kernel_device, mxfp4=True)
    a32, w32 = operands(m, n, k, seed=5)
    pa, sa = (t.to(kernel_device) for t in quant.quantize_mxfp4(a32))
    pw, sw = (t.to(kernel_device) for t in quant.quantize_mxfp4(w32))
    out = torch.randn(m, n, device=kernel_device).bfloat16()
    triton_mxfp4.mxfp4_matmul(pa, sa, pw, sw, out, cfg=MX_SMALL)
    a64 = quant.dequantize_mxfp4(pa, sa, k).double()
    b64 = quant.dequantize_mxfp4(pw, sw, k).double().t()
    assert_close_to_product(out, a64, b64, torch.bfloat16)


def test_triton_mxfp4_uses_every_scale(kernel_device):
    """A wrong scale block (e.g. scales read along the wrong axis) changes the product."""
    skip_unless_runs_here(kernel_device, mxfp4=True)
    a32, w32 = operands(16, 16, 128, seed=6)
    pa, sa = (t.to(kernel_device) for t in quant.quantize_mxfp4(a32))
    pw, sw = (t.to(kernel_device) for t in quant.quantize_mxfp4(w32))
    base = triton_mxfp4.mxfp4_matmul(pa, sa, pw, sw, cfg=MX_SMALL).double()
    for blk in range(4):
        bumped = sa.clone()
        bumped[:, blk] += 1  # this block of A counts twice
        out = triton_mxfp4.mxfp4_matmul(pa, bumped, pw, sw, cfg=MX_SMALL).double()
        a64 = quant.dequantize_mxfp4(pa, bumped).double()
        b64 = quant.dequantize_mxfp4(pw, sw).double().t()
        assert_close_to_product(out, a64, b64, torch.bfloat16)
        assert not torch.allclose(out, base)


def test_triton_mxfp4_refuses_mismatched_scales():
    pa, sa = quant.quantize_mxfp4(torch.randn(4, 64))
    with pytest.raises(ValueError, match="scales"):
        triton_mxfp4.mxfp4_matmul(pa, sa[:, :1], pa, sa)


# --- PyTorch paths on the CPU ----------------------------------------------------------------------


def test_torch_matmul_writes_in_place():
    a, w = operands(17, 33, 65)
    out = torch.randn(17, 33).bfloat16()
    ret = torch_gemm.matmul(a.bfloat16(), w.bfloat16().t(), out)
    assert ret.data_ptr() == out.data_ptr()
    assert_close_to_product(out, a.bfloat16().double(), w.bfloat16().double().t(), torch.bfloat16)


@pytest.mark.parametrize("scaling", ["tensor", "row"])
def test_torch_scaled_mm_on_the_cpu(scaling):
    a32, w32 = operands(16, 32, 64, seed=7)
    qa, sa = quant.quantize_fp8(a32, torch.float8_e4m3fn, scaling)
    qw, sw = quant.quantize_fp8(w32, torch.float8_e4m3fn, scaling)
    try:
        out = torch_gemm.scaled_mm(qa, qw.t(), sa, sw.reshape(1, -1) if scaling == "row" else sw)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"torch {torch.__version__} has no CPU _scaled_mm ({exc})")
    assert out.dtype == torch.bfloat16
    assert_close_to_product(out, quant.dequantize_fp8(qa, sa).double(),
                            quant.dequantize_fp8(qw, sw).double().t(), torch.bfloat16)


def test_torch_mx_on_the_cpu_is_refused_so_the_suite_skips_it():
    """torch 2.13's CPU build has the MX API but no CPU kernel; the suite skips the case with a reason."""
    if torch_gemm.mx_available():
        pytest.skip(torch_gemm.mx_available())
    pa, sa = quant.quantize_mxfp4(torch.randn(32, 64))
    a, s = torch_gemm.mx_operands(pa, sa, swizzle=False)
    assert a.dtype == torch.float4_e2m1fn_x2 and s.dtype == torch.float8_e8m0fnu
    with pytest.raises(Exception):
        torch_gemm.mx_scaled_mm(a, s, a, s, swizzled=False)


# --- on a GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("m, n, k", [(17, 33, 65), (1000, 1000, 1000), (4096, 4096, 4096)])
def test_gpu_triton_bf16_autotuned_against_torch(m, n, k):
    a = torch.randn(m, k, device="cuda").bfloat16()
    b = torch.randn(n, k, device="cuda").bfloat16().t()
    out = triton_gemm.matmul(a, b)
    assert_close_to_product(out.cpu(), a.double().cpu(), b.double().cpu(), torch.bfloat16)
    assert triton_gemm.best_config(a) is not None or (m, n, k) == (17, 33, 65)


@pytest.mark.gpu
@pytest.mark.parametrize("scaling", ["tensor", "row"])
def test_gpu_triton_fp8_against_scaled_mm(scaling):
    from parity.harness.core import capability
    from parity.harness.core.device import detect

    e4m3, _ = capability.torch_fp8_dtypes(detect())
    a32, w32 = torch.randn(1024, 2048, device="cuda"), torch.randn(512, 2048, device="cuda")
    qa, sa = quant.quantize_fp8(a32, e4m3, scaling)
    qw, sw = quant.quantize_fp8(w32, e4m3, scaling)
    sb = sw.reshape(1, -1) if scaling == "row" else sw
    mine = triton_fp8.scaled_matmul(qa, qw.t(), sa, sb).float()
    theirs = torch_gemm.scaled_mm(qa, qw.t(), sa, sb).float()
    scale = float(theirs.abs().max())
    assert math.isfinite(scale) and float((mine - theirs).abs().max()) <= 0.02 * scale


# --- compiled for real targets, without a GPU ------------------------------------------------------


def test_mxfp4_kernel_is_native_exactly_where_the_resolver_says(inspect_rows):
    """Compiled ahead of time for sm_90a, sm_100a, gfx942 and gfx950 by the installed Triton's own
    backends (no GPU needed; conftest.inspect_rows, the session's `parity inspect`): block-scaled
    FP4 instructions (tcgen05 kind::mxf4, v_mfma_scale) appear exactly where `capability` says
    MXFP4 is native, and elsewhere the dot still runs on the matrix units after an upcast: the
    silent emulation the records label."""
    from parity.harness.core import capability
    from parity.harness.measurement.inspect_targets import TARGETS

    seen = set()
    for row in inspect_rows:
        if row["op"] != "gemm_mxfp4" or row["status"] == "skipped":
            continue
        target = TARGETS[row["target"]]
        backend = "rocm" if target.name.startswith("gfx") else "cuda"
        arch = target.name.removesuffix("a")  # sm_90a is sm_90 with its arch-specific features
        line = f"{target.name} {row['kernel']} {row['config']}"
        assert row["status"] == "compiled", line
        assert (row["mma_format"] == "fp4") == capability.fp4_hardware(backend, arch), line
        assert row["mma"], line  # on the matrix units, native or not
        seen.add(target.name)
    # every target but one whose Triton cannot compile the scaled dot (triton 3.6 on gfx942)
    expected = {t for t in TARGETS if not capability.dot_scaled_problem(
        "rocm" if t.startswith("gfx") else "cuda", t.removesuffix("a"))}
    assert seen == expected and len(seen) >= 3, seen


def test_cuda_mxfp4_configs_keep_block_m_at_128():
    """BLOCK_M 64 compiles to a BF16 MMA on sm_100 (see the config comment): never tune into it."""
    assert all(cfg.kwargs["BLOCK_M"] >= 128 for cfg in triton_mxfp4.CONFIGS["cuda"])


# --- the narrow lists: operands Triton cannot load in 16-byte vectors ---------------------------------


def test_vector_aligned_follows_tritons_specialization():
    from parity.kernels.launch import vector_aligned

    x = torch.empty(64, 128, dtype=torch.bfloat16)
    assert vector_aligned(x, x.t(), torch.empty(1, 64))  # row-, column-major, one row
    assert not vector_aligned(torch.empty(17, 65))  # K (the unit-stride extent) not a multiple of 16
    assert not vector_aligned(torch.empty(64, 80)[:, :72])  # 72 columns: the K mask is not 16-aligned
    assert not vector_aligned(torch.empty(64, 130)[:, :128])  # outer stride 130
    assert not vector_aligned(x[:, 1:17])  # a view 2 bytes off alignment
    assert not vector_aligned(torch.empty(4, 4, 4)) and not vector_aligned(x[::2, ::2])


def _tile(cfg):
    return {k: v for k, v in cfg.kwargs.items() if k.startswith(("BLOCK", "GROUP"))}


def test_narrow_leads_compute_the_product_on_unaligned_operands(kernel_device):
    """The lead tile of every narrow list, run at the smoke preset's 17x33x65 (what a GPU runs
    there): the half and FP8 GEMMs and FP8 split-K, against the fp64 product."""
    from parity.kernels.gemm import triton_splitk

    a32, w32 = operands(17, 33, 65, seed=3, device=kernel_device)
    a, b = a32.bfloat16(), w32.bfloat16().t()
    for target in ("cuda", "hip"):
        out = triton_gemm.matmul(a, b, cfg=_tile(triton_gemm.NARROW[target][0]))
        assert_close_to_product(out, a.double(), b.double(), torch.bfloat16)
    qa, sa = (t.to(kernel_device) for t in quant.quantize_fp8(a32.cpu(), torch.float8_e4m3fn, "tensor"))
    qw, sw = (t.to(kernel_device) for t in quant.quantize_fp8(w32.cpu(), torch.float8_e4m3fn, "tensor"))
    ref_a, ref_b = quant.dequantize_fp8(qa, sa).double(), quant.dequantize_fp8(qw, sw).double().t()
    for target in ("cuda", "hip"):
        out = triton_fp8.scaled_matmul(qa, qw.t(), sa, sw, cfg=_tile(triton_fp8.NARROW[target][0]))
        assert_close_to_product(out, ref_a, ref_b, torch.bfloat16)
        out = triton_splitk.scaled_matmul(qa, qw.t(), sa, sw, cfg=_tile(triton_splitk.CONFIGS_FP8_NARROW[target][0]))
        assert_close_to_product(out, ref_a, ref_b, torch.bfloat16)
