"""The persistent GEMMs (TMA and pointer kernels), split-K for small M and the FP8 fast/accurate
pairs: each kernel against an fp64 reference on random odd and prime shapes, in the interpreter
(on a GPU host: on the GPU), with negative tests; the suite's routing and records; the config lists
against each target's limits; and an offline compile of the lead configs for sm_90a, sm_100a,
gfx942 and gfx950 (instruction, TMA, spills, shared memory)."""
from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from parity.harness.core import capability
from parity.kernels.gemm import quant, torch_gemm, triton_fp8, triton_persistent as tp, triton_splitk as sk
from parity.suites import gemm
from parity.suites import _gemm_op as gemm_op
from parity.suites.gemm import SUITE

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEV = "cpu" if INTERPRET else "cuda"
needs_kernels = pytest.mark.skipif(not INTERPRET and not torch.cuda.is_available(),
                                   reason="Triton kernels need the interpreter or a GPU")

# Small tiles so that these shapes span several tiles in M, N and K with ragged edges, and a
# persistent program walks more than one tile (the interpreter runs 4 programs).
TMA_SMALL = dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=16, GROUP_M=2, EPILOGUE_SUBTILE=True, num_warps=4, num_stages=2)
PTR_SMALL = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=32, GROUP_M=2, num_warps=4, num_stages=2)
SPLIT_SMALL = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=32, GROUP_M=1, num_warps=4, num_stages=2)
# TMA needs K and N multiples of 8 (BF16) or 16 (FP8); M is free: 37 and 53 are prime.
TMA_SHAPES = [(37, 48, 80), (53, 16, 32), (1, 32, 48)]
ODD_SHAPES = [(1, 3, 7), (37, 29, 101), (65, 33, 67)]
LAYOUTS = ["NN", "NT", "TN", "TT"]


def operand(rows, cols, transposed, dtype, gen):
    x = torch.randn(rows, cols, generator=gen)
    x = x.t().contiguous().t() if transposed else x
    return x.to(dtype).to(DEV)


def assert_matches(out, exact, a_abs_b, k, out_dtype):
    """|out - exact| within the output's rounding plus fp32 accumulation (worst case, K * u32)."""
    bound = torch.finfo(out_dtype).eps * exact.abs() + (k + 2) * 2.0**-24 * a_abs_b
    err = (out.double().cpu() - exact).abs()
    assert bool((err <= bound).all()), f"max error {float(err.max()):.3g}, worst excess {float((err - bound).max()):.3g}"


def check_half(fn, m, n, k, layout, dtype=torch.bfloat16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = operand(m, k, layout[0] == "T", dtype, gen)
    b = operand(k, n, layout[1] == "T", dtype, gen)
    out = torch.full((m, n), float("nan"), dtype=dtype, device=DEV)  # a tile never stored stays NaN
    fn(a, b, out)
    a64, b64 = a.double().cpu(), b.double().cpu()
    assert_matches(out, a64 @ b64, a64.abs() @ b64.abs(), k, dtype)
    return a, b, out


# --- the persistent TMA kernel ---------------------------------------------------------------------


@needs_kernels
@pytest.mark.parametrize("m, n, k", TMA_SHAPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_tma_kernel_on_every_layout(m, n, k, layout):
    def run(a, b, out):
        if INTERPRET and m > 1:  # a 1-row A is row-major whatever its layout says
            assert (tp.uses_tma(a, b, out) is None) == (layout[0] == "N" or m % 8 == 0)
        tp.matmul(a, b, out, cfg=TMA_SMALL)

    check_half(run, m, n, k, layout)  # A stored transposed with M odd falls back to the pointer kernel


@needs_kernels
@pytest.mark.parametrize("subtile", [True, False])
def test_tma_kernel_fp16_with_and_without_epilogue_subtiling(subtile):
    cfg = {**TMA_SMALL, "EPILOGUE_SUBTILE": subtile}
    check_half(lambda a, b, out: tp.matmul(a, b, out, cfg=cfg), 37, 48, 80, "NT", torch.float16)


@needs_kernels
def test_tma_kernel_default_config_runs():
    a, b, out = check_half(lambda a, b, out: tp.matmul(a, b, out), 70, 64, 72, "NT")
    assert tp.uses_tma(a, b, out) is None or not INTERPRET


@needs_kernels
def test_every_element_of_b_reaches_the_output():
    """Negative test: a changed element of B changes exactly its own column of C."""
    gen = torch.Generator().manual_seed(5)
    a, b = operand(37, 80, False, torch.bfloat16, gen), operand(80, 48, True, torch.bfloat16, gen)
    base = tp.matmul(a, b, cfg=TMA_SMALL).float().cpu()
    b2 = b.clone()
    b2[41, 29] += 8.0
    moved = (tp.matmul(a, b2, cfg=TMA_SMALL).float().cpu() != base)
    assert moved[:, 29].sum() >= 30 and moved.sum() == moved[:, 29].sum()


# --- the persistent pointer kernel ---------------------------------------------------------------------


@needs_kernels
@pytest.mark.parametrize("m, n, k", ODD_SHAPES)
@pytest.mark.parametrize("layout", ["NN", "NT", "TN"])
def test_pointer_kernel_on_odd_shapes(m, n, k, layout):
    check_half(lambda a, b, out: tp.matmul(a, b, out, cfg=PTR_SMALL, tma=False), m, n, k, layout)


def test_unaligned_operands_take_the_pointer_kernel_and_say_why():
    meta = lambda shape, stride: torch.empty_strided(shape, stride, dtype=torch.bfloat16, device="meta")
    a, b, c = meta((127, 509), (509, 1)), meta((509, 251), (1, 509)), meta((127, 251), (251, 1))
    assert "A (127, 509)" in tp.tma_problem(a, b, c, "cuda", 9)
    a, b, c = meta((128, 512), (512, 1)), meta((512, 256), (1, 512)), meta((128, 256), (256, 1))
    assert tp.tma_problem(a, b, c, "cuda", 9) is None and tp.tma_problem(a, b, c, "cuda", 10) is None
    assert "no TMA" in tp.tma_problem(a, b, c, "cuda", 8)
    assert "AMD" in tp.tma_problem(a, b, c, "hip")


def test_persistent_kernels_refuse_bad_operands():
    a = torch.zeros(4, 8, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="cannot multiply"):
        tp.matmul(a, torch.zeros(4, 8, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="one dtype"):
        tp.matmul(a, torch.zeros(8, 4, dtype=torch.float16))
    q = torch.zeros(4, 32).to(torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="accum"):
        tp.scaled_matmul(q, q.t(), torch.ones(()), torch.ones(()), accum="sloppy")
    with pytest.raises(ValueError, match="neither tensor-wise"):
        tp.scaled_matmul(q, q.t(), torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="mix OCP and FNUZ"):
        tp.scaled_matmul(q, torch.zeros(32, 4).to(torch.float8_e4m3fnuz), torch.ones(()), torch.ones(()))


# --- FP8: persistent (TMA and pointer), split-K, the tutorial kernel; fast and accurate --------------


def fp8_operands(m, n, k, dtype, scaling, seed=1):
    gen = torch.Generator().manual_seed(seed)
    qa, sa = quant.quantize_fp8(torch.randn(m, k, generator=gen), dtype, scaling)
    qw, sw = quant.quantize_fp8(torch.randn(n, k, generator=gen), dtype, scaling)
    sb = sw.reshape(1, -1) if scaling == "row" else sw
    ref = quant.dequantize_fp8(qa, sa).double() @ quant.dequantize_fp8(qw, sw).double().t()
    a_abs_b = quant.dequantize_fp8(qa, sa).double().abs() @ quant.dequantize_fp8(qw, sw).double().abs().t()
    return (qa.to(DEV), qw.t().to(DEV), sa.to(DEV), sb.to(DEV)), ref, a_abs_b


FP8_RUNS = {
    "tma": lambda x, accum: tp.scaled_matmul(*x, accum=accum, cfg={**TMA_SMALL, "BLOCK_K": 32}),
    "pointer": lambda x, accum: tp.scaled_matmul(*x, accum=accum, cfg=PTR_SMALL, tma=False),
    "splitk": lambda x, accum: sk.scaled_matmul(*x, accum=accum, split=3, cfg=SPLIT_SMALL),
    "tutorial": lambda x, accum: triton_fp8.scaled_matmul(*x, accum=accum,
                                                          cfg=dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=32, GROUP_M=2)),
}


@needs_kernels
@pytest.mark.parametrize("kernel", list(FP8_RUNS))
@pytest.mark.parametrize("accum", ["fast", "accurate"])
@pytest.mark.parametrize("dtype, scaling", [(torch.float8_e4m3fn, "row"), (torch.float8_e4m3fnuz, "tensor"),
                                            (torch.float8_e5m2, "tensor")])
def test_fp8_kernels_in_both_accumulation_modes(kernel, accum, dtype, scaling):
    m, n, k = (37, 48, 96) if kernel == "tma" else (37, 29, 101)
    if kernel == "splitk":
        m = 13
    if not INTERPRET and torch.version.hip and ("gfx94" in torch.cuda.get_device_properties(0).gcnArchName) \
            != ("fnuz" in str(dtype)):
        pytest.skip(f"{dtype} is not this GPU's FP8")
    if not INTERPRET and not torch.version.hip and "fnuz" in str(dtype):
        pytest.skip(f"{dtype} is AMD gfx942's FP8")
    if INTERPRET and "fnuz" in str(dtype) and capability.interpreter_problem("fnuz"):
        pytest.skip(capability.interpreter_problem("fnuz"))  # probed: this Triton's interpreter lacks it
    x, ref, a_abs_b = fp8_operands(m, n, k, dtype, scaling)
    out = FP8_RUNS[kernel](x, accum)
    assert out.dtype == torch.bfloat16 and out.shape == (m, n)
    slack = 0 if INTERPRET else 2 * (k / 32) * 2.0**-13  # Hopper's fast accumulation, where a GPU runs it
    assert_matches(out, ref, a_abs_b * (1 + slack / 2.0**-24), k, torch.bfloat16)


@needs_kernels
def test_fp8_row_scales_reach_their_rows():
    """Negative test: a doubled row scale doubles that row of C and nothing else."""
    x, _, _ = fp8_operands(37, 48, 96, torch.float8_e4m3fn, "row")
    qa, qb, sa, sb = x
    base = tp.scaled_matmul(qa, qb, sa, sb, cfg={**TMA_SMALL, "BLOCK_K": 32}).float().cpu()
    sa2 = sa.clone()
    sa2[20] *= 2
    moved = tp.scaled_matmul(qa, qb, sa2, sb, cfg={**TMA_SMALL, "BLOCK_K": 32}).float().cpu()
    assert torch.equal(moved[20], 2 * base[20])
    assert torch.equal(torch.cat([moved[:20], moved[21:]]), torch.cat([base[:20], base[21:]]))


# --- split-K for small M -------------------------------------------------------------------------------


@needs_kernels
@pytest.mark.parametrize("m, n, k, split", [(1, 3, 7, None), (1, 40, 700, None), (5, 33, 509, 2), (17, 29, 1031, 5),
                                            (64, 50, 300, None)])
def test_splitk_on_decode_shapes(m, n, k, split):
    def run(a, b, out):
        sk.matmul(a, b, out, split=split, cfg=SPLIT_SMALL)

    check_half(run, m, n, k, "NT")


@needs_kernels
@pytest.mark.parametrize("kernel", ["persistent", "splitk"])
def test_column_slices_of_wider_operands_whose_m_and_n_are_odd(kernel):
    """A (M, K) and B (K, N) as slices of wider tensors: row strides 48 (multiples of 16, so Triton
    may load 16-byte vectors), M = 21 and N = 19 not multiples of any vector width, so the `% M` and
    `% N` wraps restart at 0 mid-vector (see the next test)."""
    gen = torch.Generator().manual_seed(3)
    m, n, k = 21, 19, 40
    a = torch.randn(k, 48, generator=gen).to(torch.bfloat16).to(DEV)[:, 5:5 + m].t()  # column-major A, stride (1, 48)
    b = torch.randn(k, 48, generator=gen).to(torch.bfloat16).to(DEV)[:, 8:8 + n]  # B, stride (48, 1)
    out = torch.full((m, n), float("nan"), dtype=torch.bfloat16, device=DEV)
    if kernel == "persistent":
        tp.matmul(a, b, out, cfg=PTR_SMALL, tma=False)
    else:
        sk.matmul(a, b, out, cfg=SPLIT_SMALL)
    a64, b64 = a.double().cpu(), b.double().cpu()
    assert_matches(out, a64 @ b64, a64.abs() @ b64.abs(), k, torch.bfloat16)


def test_no_kernel_hints_contiguity_on_a_wrapped_index():
    """`tl.max_contiguous(tl.multiple_of(offs % N, BLOCK), BLOCK)` (Triton's tutorial) is false at the
    wrap: with a column slice (row stride a multiple of 16, N not a multiple of 8) Triton compiled
    16-byte loads from the wrapped indices (cp.async 0x10 on sm_90a, global_load_dwordx4 on gfx942:
    off alignment past N). Without the hint Triton's own analysis of `% N` vectorizes exactly where
    N is a multiple of 16 (the same loads as with it for aligned shapes, issue 24)."""
    import re
    from pathlib import Path

    kernels = Path(tp.__file__).resolve().parents[1]
    hinted = [f"{path.name}:{number}" for path in sorted(kernels.rglob("*.py"))
              for number, line in enumerate(path.read_text().splitlines(), 1)
              if re.search(r"tl\.(max_contiguous|multiple_of)\(.*%", line)]
    assert not hinted, hinted


def test_splitk_plan_fills_the_gpu_with_whole_k_granules():
    # M = 1, N = 6144, K = 4096 on 132 SMs: 96 tiles of 64 columns -> 3 splits of 1536.
    assert sk.plan(1, 6144, 4096, 132) == (3, 1536)
    assert sk.plan(1, 3, 7, 132) == (1, 256)  # one granule: nothing to split
    splits, k_split = sk.plan(64, 128, 8192, 304)
    assert k_split % sk.K_GRANULE == 0 and (splits - 1) * k_split < 8192 <= splits * k_split
    assert sk.plan(16, 64, 1031, 132, split=5) == (5, 256)


@needs_kernels
def test_splitk_sums_every_split_and_refuses_a_small_workspace():
    gen = torch.Generator().manual_seed(2)
    a, b = operand(3, 1031, False, torch.bfloat16, gen), operand(1031, 40, True, torch.bfloat16, gen)
    ws = sk.workspace(3, 40, 1031, a, split=5)
    assert ws.shape == (5, 3, 40)
    full = sk.matmul(a, b, workspace=ws, split=5, cfg=SPLIT_SMALL).float().cpu()
    # Negative: each split holds a real part of the sum (dropping the last one changes the result).
    assert not torch.allclose(ws[:4].sum(0).cpu(), ws.sum(0).cpu())
    # C is the sum of the partials, rounded once to bf16 (the interpreter truncates: one ulp, 2^-7)
    assert torch.allclose(full, ws.sum(0).cpu(), rtol=2.0**-7, atol=0)
    with pytest.raises(ValueError, match="workspace"):
        sk.matmul(a, b, workspace=ws[:2], split=5, cfg=SPLIT_SMALL)


# --- the suite: implementations, routing, records -----------------------------------------------------------


def described(backend, arch, sms):
    return SimpleNamespace(backend=backend, arch=arch, name=arch, memory_bytes=80 << 30, index=0, multiprocessors=sms,
                           is_gpu=backend != "cpu", interpreter=backend == "cpu", llc_bytes=None)


H200 = described("cuda", "sm_90", 132)
B200 = described("cuda", "sm_100", 148)
MI300X = described("rocm", "gfx942", 304)


def test_persistent_route_per_device_and_shape():
    p = {"m": 8192, "n": 8192, "k": 8192, "dtype": "bf16", "layout": "NT"}
    assert gemm.persistent_route(H200, p)["kernel"] == "persistent-tma"
    assert gemm.persistent_route(B200, {**p, "dtype": "fp8", "fp8_dtype": "float8_e4m3fn"})["kernel"] == "persistent-tma"
    amd = gemm.persistent_route(MI300X, p)
    assert amd["kernel"] == "persistent-pointer" and "AMD" in amd["why"]
    odd = gemm.persistent_route(H200, {**p, "m": 127, "n": 251, "k": 509})
    assert odd["kernel"] == "persistent-pointer" and "16-byte" in odd["why"]
    decode = gemm.persistent_route(H200, {**p, "m": 1, "n": 6144, "k": 4096})
    assert decode["kernel"] == "splitk" and decode["split_k"] == 3


def test_fp8_cases_come_in_fast_and_accurate_pairs(cpu_device):
    fp8 = [c for c in SUITE.cases("smoke", cpu_device) if c.params["dtype"] == "fp8"]
    for impl in ("triton", "triton-persistent", "torch"):
        got = {(c.params["scaling"], c.params["accum"]) for c in fp8 if c.impl == impl}
        assert got == {(s, a) for s in ("tensor", "row") for a in ("fast", "accurate")}
    mamf = [c for c in SUITE.cases("mamf", cpu_device) if c.params["dtype"] == "fp8"]
    assert {c.params["accum"] for c in mamf} == {"accurate"}  # mamf-finder's _scaled_mm default


def test_torch_fp8_records_name_use_fast_accum(monkeypatch):
    impl = next(i for i in SUITE.impls if i.op == "gemm_fp8" and i.name == "torch")
    assert impl.details(H200, {"accum": "fast"}) == {"accum": "fast", "use_fast_accum": True}
    assert impl.details(H200, {"accum": "accurate"})["use_fast_accum"] is False
    seen = {}
    monkeypatch.setattr(torch, "_scaled_mm", lambda *a, **kw: seen.update(kw))
    torch_gemm.scaled_mm(None, None, None, None, fast_accum=True)
    assert seen["use_fast_accum"] is True


@needs_kernels
@pytest.mark.parametrize("p", [
    {"m": 37, "n": 29, "k": 67, "dtype": "bf16", "layout": "TN"},
    {"m": 3, "n": 29, "k": 67, "dtype": "bf16", "layout": "NT"},
    {"m": 70, "n": 32, "k": 64, "dtype": "bf16", "layout": "NT"},
    {"m": 37, "n": 29, "k": 67, "dtype": "fp8", "layout": "NT", "scaling": "row", "accum": "fast",
     "fp8_dtype": "float8_e4m3fn"},
    {"m": 2, "n": 29, "k": 67, "dtype": "fp8", "layout": "NT", "scaling": "tensor", "accum": "accurate",
     "fp8_dtype": "float8_e4m3fn"},
], ids=lambda p: "-".join(str(v) for v in p.values()))
def test_persistent_impl_passes_the_suite_check_and_a_perturbed_output_fails(p, cpu_device):
    if not INTERPRET:
        pytest.skip("the suite's interpreter cases; GPU runs go through `parity run`")
    op = SUITE.op(gemm_op.OP_OF[p["dtype"]])
    impl = next(i for i in SUITE.impls if i.op == op.name and i.name == "triton-persistent")
    assert impl.supports(cpu_device, p) is None
    inputs = op.inputs(p, cpu_device)
    out = impl.prepare(inputs, p)()
    expected = op.reference(inputs, p)
    good = op.check(out, expected, inputs, p)
    assert good.passed, good.error
    bad = out.clone()
    bad[p["m"] // 2, p["n"] // 3] += 0.25 + 0.05 * float(expected.c[p["m"] // 2, p["n"] // 3].abs())
    result = op.check(bad, expected, inputs, p)
    assert not result.passed and "1 of" in result.error
    details = impl.details(cpu_device, p)
    assert details["kernel"] == ("splitk" if p["m"] <= sk.MAX_M else
                                 "persistent-tma" if p["m"] == 70 else "persistent-pointer")


# --- config lists against the targets' limits ------------------------------------------------------------

SHARED_LIMIT = {"cuda": 232448}  # 227 KiB a block on sm_90 and sm_100 (CUDA programming guide)
LDS_LIMIT = {"hip:gfx942": 65536, "hip": 65536}  # "hip" serves gfx942 too unless it has its own list


def test_tma_configs_fit_shared_memory():
    for configs, itemsize in ((tp.TMA_CONFIGS_HALF, 2), (tp.TMA_CONFIGS_FP8_FAST, 1), (tp.TMA_CONFIGS_FP8_ACCURATE, 1)):
        for cfg in configs["cuda"]:
            kw = cfg.kwargs
            stages = cfg.num_stages * (kw["BLOCK_M"] + kw["BLOCK_N"]) * kw["BLOCK_K"] * itemsize
            epilogue = kw["BLOCK_M"] * kw["BLOCK_N"] * 2 // (2 if kw["EPILOGUE_SUBTILE"] else 1)
            assert stages + epilogue <= SHARED_LIMIT["cuda"] - 1024, cfg  # room for the barriers (~100 B)


def test_amd_configs_fit_lds_and_use_the_guides_options():
    lists = [tp.PTR_CONFIGS_HALF, tp.PTR_CONFIGS_FP8, sk.CONFIGS_HALF, sk.CONFIGS_FP8]
    for configs, itemsize in zip(lists, (2, 1, 2, 1)):
        for key in ("hip:gfx942", "hip"):
            if key not in configs:
                continue
            if key == "hip" and "hip:gfx942" in configs:
                limit = 160 * 1024  # gfx950
            else:
                limit = LDS_LIMIT[key]
            for cfg in configs[key]:
                kw = cfg.kwargs
                assert (kw["BLOCK_M"] + kw["BLOCK_N"]) * kw["BLOCK_K"] * itemsize <= limit * 3 // 4, cfg
                assert kw["matrix_instr_nonkdim"] == 16 and cfg.num_stages == 2, cfg
    assert all(cfg.kwargs.get("kpack") == 2 for cfg in tp.PTR_CONFIGS_HALF["hip:gfx942"])
    assert all("kpack" not in cfg.kwargs for cfg in tp.PTR_CONFIGS_HALF["hip"])  # deprecated on gfx950


def test_splitk_configs_are_small_m_tiles():
    for configs, key, rows in ((sk.CONFIGS_HALF, "cuda", {16, 32, 64}), (sk.CONFIGS_HALF, "hip", {16, 32, 64}),
                               (sk.CONFIGS_FP8, "hip", {16, 32, 64}),
                               (sk.CONFIGS_FP8, "cuda", {64})):  # NVIDIA's FP8 MMAs start at 64 rows
        assert {cfg.kwargs["BLOCK_M"] for cfg in configs[key]} == rows
        assert all(sk.K_GRANULE % cfg.kwargs["BLOCK_K"] == 0 for cfg in configs[key])


def test_accurate_fp8_lists_leave_out_the_spilling_tiles():
    spilling = {(128, 256, 128, 8), (64, 256, 128, 4), (256, 64, 128, 4)}
    for cfg in triton_fp8.CONFIGS_ACCURATE["cuda"] + tp.TMA_CONFIGS_FP8_ACCURATE["cuda"]:
        kw = cfg.kwargs
        assert (kw["BLOCK_M"], kw["BLOCK_N"], kw["BLOCK_K"], cfg.num_warps) not in spilling
        assert kw["BLOCK_M"] * kw["BLOCK_N"] <= 128 * 128 or cfg.num_warps == 8


# --- on a GPU: the autotuned lists, the real SM count, against torch -----------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("m, n, k", [(1, 6144, 4096), (48, 4096, 4096), (1000, 1024, 1000), (2048, 2048, 2048)])
def test_gpu_persistent_bf16_autotuned_against_torch(m, n, k):
    a = torch.randn(m, k, device="cuda").bfloat16()
    b = torch.randn(n, k, device="cuda").bfloat16().t()
    mine = (sk.matmul(a, b) if m <= sk.MAX_M else tp.matmul(a, b)).float()
    theirs = (a.float() @ b.float())
    assert float((mine - theirs).abs().max()) <= 0.02 * float(theirs.abs().max())


@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 2048])
@pytest.mark.parametrize("accum", ["fast", "accurate"])
def test_gpu_persistent_fp8_against_scaled_mm_in_the_same_mode(m, accum):
    from parity.harness.core import capability
    from parity.harness.core.device import detect

    e4m3, _ = capability.torch_fp8_dtypes(detect())
    a32, w32 = torch.randn(m, 4096, device="cuda"), torch.randn(2048, 4096, device="cuda")
    qa, sa = quant.quantize_fp8(a32, e4m3, "row")
    qw, sw = quant.quantize_fp8(w32, e4m3, "row")
    run = sk.scaled_matmul if m <= sk.MAX_M else tp.scaled_matmul
    mine = run(qa, qw.t(), sa, sw.reshape(1, -1), accum=accum).float()
    theirs = torch_gemm.scaled_mm(qa, qw.t(), sa, sw.reshape(1, -1), fast_accum=accum == "fast").float()
    assert float((mine - theirs).abs().max()) <= 0.02 * float(theirs.abs().max())


# --- offline compile of the lead configs ------------------------------------------------------------------

AOT = r"""
import os, re, subprocess, sys, tempfile
os.environ.pop("TRITON_INTERPRET", None)
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import mangle_type
from triton.tools.tensor_descriptor import TensorDescriptor
from parity.kernels.gemm import triton_persistent as tp, triton_splitk as sk

TARGETS = {"sm_90a": GPUTarget("cuda", 90, 32), "sm_100a": GPUTarget("cuda", 100, 32),
           "gfx942": GPUTarget("hip", "gfx942", 64), "gfx950": GPUTarget("hip", "gfx950", 64)}
BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")

def compile_(fn, args, const, cfg, target):
    const = {**const, **{k: v for k, v in cfg.kwargs.items() if k.isupper()}}
    opts = {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
    if target.startswith("gfx"):
        opts.update({k: v for k, v in cfg.kwargs.items() if not k.isupper()})
    sig, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):  # as the JIT specializes: aligned pointers, 1 as a constant
        if name in const:
            sig[name] = "constexpr"
        elif isinstance(args[name], int) and args[name] == 1:
            sig[name], const[name] = "constexpr", 1
        else:
            sig[name] = mangle_type(args[name])
            if not isinstance(args[name], TensorDescriptor):
                attrs[(i,)] = [["tt.divisibility", 16]]
    k = triton.compile(ASTSource(fn, sig, constexprs=const, attrs=attrs), target=TARGETS[target], options=opts)
    if target.startswith("sm"):
        asm = k.asm["ptx"]
        with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
            f.write(asm)
        for exe in ("ptxas", "ptxas-blackwell"):
            r = subprocess.run([os.path.join(BIN, exe), "-v", f"-arch={target}", f.name, "-o", os.devnull],
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
        assert r.returncode == 0, r.stderr[-500:]
        spill = sum(int(x) for x in re.findall(r"(\d+) bytes spill stores", r.stderr + r.stdout))
    else:
        asm = k.asm["amdgcn"]
        counts = [int(x) for x in re.findall(r"\.[sv]gpr_spill_count:\s*(\d+)", asm)]
        spill = 4 * sum(counts)
    mma = next((n for p, n in (("tcgen05.mma", "tcgen05"), ("wgmma.mma_async", "wgmma"), ("v_mfma", "mfma"),
                               ("mma.sync", "mma")) if p in asm), None)
    tma = "cp.async.bulk.tensor" in asm
    print(fn.__name__, target, mma, tma, spill, k.metadata.shared)

S = 8192
def tma(target, dtype, configs, promote, scales):
    cfg = configs["cuda"][0]
    kw = cfg.kwargs
    t, c = torch.empty(16, 16, dtype=dtype), torch.empty(16, 16, dtype=torch.bfloat16)
    args = dict(a_desc=TensorDescriptor(t, [S, S], [S, 1], [kw["BLOCK_M"], kw["BLOCK_K"]]),
                b_desc=TensorDescriptor(t, [S, S], [S, 1], [kw["BLOCK_N"], kw["BLOCK_K"]]),
                c_desc=TensorDescriptor(c, [S, S], [S, 1], [kw["BLOCK_M"], kw["BLOCK_N"] // 2]),
                sa_ptr=torch.empty(1), sb_ptr=torch.empty(1), M=S, N=S, K=S)
    const = dict(A_KM=False, B_NK=True, SCALES=scales, UPCAST=False, PROMOTE=promote, NUM_SMS=132,
                 WARP_SPECIALIZE=target == "sm_100a")
    compile_(tp.persistent_tma_kernel, args, const, cfg, target)

def ptr(target, dtype, configs, scales):
    cfg = configs.get("hip:" + target, configs["hip"])[0]
    t, c = torch.empty(16, 16, dtype=dtype), torch.empty(16, 16, dtype=torch.bfloat16)
    args = dict(a_ptr=t, b_ptr=t, c_ptr=c, sa_ptr=torch.empty(1), sb_ptr=torch.empty(1), M=S, N=S, K=S,
                stride_am=S, stride_ak=1, stride_bk=1, stride_bn=S, stride_cm=S, stride_cn=1)
    compile_(tp.persistent_kernel, args, dict(SCALES=scales, UPCAST=False, PROMOTE=False, NUM_SMS=304), cfg, target)

def splitk(target, dtype):
    cfg = sk.CONFIGS_HALF["hip" if target.startswith("gfx") else "cuda"][0]
    t = torch.empty(16, 16, dtype=dtype)
    args = dict(a_ptr=t, b_ptr=t, ws_ptr=torch.empty(4), M=16, N=S, K=S, k_split=2048, stride_am=S, stride_ak=1,
                stride_bk=1, stride_bn=S)
    compile_(sk.splitk_kernel, args, dict(UPCAST=False, PROMOTE=False), cfg, target)

fp8 = torch.float8_e4m3fn
tma("sm_90a", torch.bfloat16, tp.TMA_CONFIGS_HALF, False, 0)
tma("sm_90a", fp8, tp.TMA_CONFIGS_FP8_FAST, False, 2)
tma("sm_100a", torch.bfloat16, tp.TMA_CONFIGS_HALF, False, 0)
ptr("gfx942", torch.bfloat16, tp.PTR_CONFIGS_HALF, 0)
ptr("gfx950", fp8, tp.PTR_CONFIGS_FP8, 2)
splitk("sm_90a", torch.bfloat16)
splitk("gfx942", torch.bfloat16)
"""

EXPECTED_MMA = {"sm_90a": "wgmma", "sm_100a": "tcgen05", "gfx942": "mfma", "gfx950": "mfma"}
SHARED_MAX = {"sm_90a": 232448, "sm_100a": 232448, "gfx942": 65536, "gfx950": 163840}


def test_lead_configs_compile_to_the_targets_tensor_cores_without_spills(tmp_path):
    """Offline, no GPU: the lead config of each new kernel compiles for its targets to the
    target's tensor-core instruction (the TMA kernel also to TMA copies), spills nothing and fits
    the target's shared memory."""
    from triton.backends import backends

    missing = {"nvidia", "amd"} - set(backends)
    if missing:
        pytest.skip(f"this Triton has no {' or '.join(sorted(missing))} backend to compile for")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", AOT], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.split() for line in proc.stdout.strip().splitlines()]
    assert len(lines) == 7, lines
    for kernel, target, mma, tma, spill, shared in lines:
        line = f"{kernel} {target}"
        # split-K's 16-row tiles are below wgmma's 64 rows: Hopper runs them on mma.sync
        expected = "mma" if kernel == "splitk_kernel" and target == "sm_90a" else EXPECTED_MMA[target]
        assert mma == expected, line
        assert tma == str(kernel == "persistent_tma_kernel"), line
        assert spill == "0", line
        assert int(shared) <= SHARED_MAX[target], line
