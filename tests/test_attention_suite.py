"""The attention suite: FLOP and byte counts on hand-computed cases, presets, supports() reasons,
the report's FA-convention column, and a smoke run through the command line."""
from __future__ import annotations

import json

import pytest
import torch

from parity.harness.reporting import report
from parity.harness.core.device import DeviceInfo
from parity.harness.core.model import Work
from parity.harness.core.results import MEASUREMENTS_FILE, read_records
from parity.kernels.attention import reference
from parity.suites import attention
from parity.suites import _attention_op as attention_op

import synthetic
from test_cli import parity

PARAM_NAMES = ["batch", "heads", "kv_heads", "seq_q", "seq_k", "head_dim", "causal", "dtype", "direction"]


def gpu(backend="cuda", arch="sm_90", name="NVIDIA H100 80GB HBM3"):
    return DeviceInfo(backend=backend, name=name, arch=arch, index=0, memory_bytes=80 << 30, multiprocessors=132,
                      l2_bytes=50 << 20, llc_bytes=50 << 20, driver_version=None, runtime_version=None)


def p(batch=1, heads=1, kv_heads=1, seq_q=4, seq_k=4, head_dim=8, causal=False, dtype="bf16", direction="fwd"):
    return attention_op.params(batch, heads, kv_heads, seq_q, seq_k, head_dim, causal, dtype, direction)


# --- FLOPs and bytes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seq_q,seq_k,causal,pairs", [
    (4, 4, True, 10),  # 1 + 2 + 3 + 4: the lower triangle with its diagonal
    (2, 5, True, 9),  # bottom-right: row 0 sees keys 0..3, row 1 all five
    (5, 2, True, 3),  # rows 0-2 see nothing, row 3 one key, row 4 two
    (3, 7, False, 21),
    (1, 1000, True, 1000),  # decoding: one query sees the whole cache
])
def test_visible_pairs_by_hand(seq_q, seq_k, causal, pairs):
    assert attention_op.visible_pairs(seq_q, seq_k, causal) == pairs


def test_visible_pairs_match_the_reference_mask():
    for seq_q in (1, 2, 7, 16, 33):
        for seq_k in (1, 3, 16, 40):
            mask = reference.visible(seq_q, seq_k, slice(None), "cpu")
            assert attention_op.visible_pairs(seq_q, seq_k, True) == int(mask.sum()), (seq_q, seq_k)


def test_flops_by_hand():
    # B=2, H=3, Sq=Sk=4, D=8, causal: 10 visible pairs per head, 2 matmuls x 2·D FLOPs per pair.
    fwd = p(batch=2, heads=3, causal=True)
    assert attention_op.exact_flops(fwd) == 2 * 2 * 8 * 2 * 3 * 10 == 1920
    assert attention_op.fa_flops(fwd) == 4 * 2 * 3 * 4 * 4 * 8 // 2 == 1536  # the FA convention: S²/2, not S(S+1)/2
    bwd = dict(fwd, direction="bwd")
    assert attention_op.exact_flops(bwd) == 5 * 2 * 8 * 2 * 3 * 10 == 4800  # 2.5x: five matmuls
    assert attention_op.fa_flops(bwd) == 3840
    # Non-causal: both conventions agree; Sq != Sk counts Sq·Sk pairs.
    full = p(batch=2, heads=3, seq_q=5, seq_k=9)
    assert attention_op.exact_flops(full) == attention_op.fa_flops(full) == 4 * 2 * 3 * 5 * 9 * 8
    # GQA: FLOPs follow the query heads, not the KV heads.
    assert attention_op.exact_flops(dict(full, kv_heads=1)) == attention_op.exact_flops(full)
    # Causal with Sq < Sk: exact counts bottom-right pairs (9 of 10 for 2x5), FA halves Sq·Sk.
    short = p(seq_q=2, seq_k=5, causal=True)
    assert attention_op.exact_flops(short) == 4 * 8 * 9
    assert attention_op.fa_flops(short) == 4 * 2 * 5 * 8 // 2


def test_decode_bytes_by_hand():
    d = p(batch=4, heads=32, kv_heads=8, seq_q=1, seq_k=1000, head_dim=128)
    read, written = attention_op.traffic_bytes(d)
    assert read == (4 * 32 * 1 * 128 + 2 * 4 * 8 * 1000 * 128) * 2 == 16_416_768  # Q, then K and V caches
    assert written == 4 * 32 * 128 * 2 == 32_768  # O
    w = attention.work(d)
    assert (w.bytes_read, w.bytes_written, w.flops, w.math_dtype) == (read, written, 4 * 128 * 4 * 32 * 1000, "bf16")


def test_backward_and_fp8_bytes():
    b = p(batch=1, heads=4, kv_heads=2, seq_q=10, seq_k=10, head_dim=16, direction="bwd")
    q, kv = 4 * 10 * 16, 2 * 10 * 16
    assert attention_op.traffic_bytes(b) == ((3 * q + 2 * kv) * 2, (q + 2 * kv) * 2)  # read Q K V O dO; write dQ dK dV
    f8 = dict(b, direction="fwd", dtype="fp8")
    assert attention_op.traffic_bytes(f8) == (q + 2 * kv, q * 2)  # one byte in, BF16 out
    assert attention.work(f8).math_dtype == "fp8"


def test_work_records_the_fa_count_only_where_given():
    w = attention.work(p(causal=True))
    assert w.to_dict()["flops_fa"] == attention_op.fa_flops(p(causal=True))
    assert "flops_fa" not in Work(flops=1, bytes_read=2, bytes_written=3, math_dtype="fp32").to_dict()


# --- presets -----------------------------------------------------------------------------------------


def test_presets_use_the_shared_parameter_names(cpu_device):
    for preset in attention.SUITE.presets:
        for device in (cpu_device, gpu()):
            cases = attention.SUITE.cases(preset, device)
            assert cases
            for case in cases:
                assert list(case.params) == PARAM_NAMES
                assert case.params["direction"] in ("fwd", "bwd")
                assert not (case.params["dtype"] == "fp8" and case.params["direction"] == "bwd")


def test_gpu_quick_covers_the_targets_and_full_everything():
    quick = [c.params for c in attention.SUITE.cases("quick", gpu()) if c.impl == "triton"]
    prefill = [q for q in quick if q["seq_q"] > 1]
    assert {q["batch"] * q["seq_q"] for q in prefill} == {16384}  # constant token count
    assert {q["heads"] * q["head_dim"] for q in prefill} == {2048}
    target = {q["seq_q"] for q in prefill if q["head_dim"] == 128 and q["dtype"] == "bf16" and q["direction"] == "fwd"}
    assert {4096, 8192, 16384} <= target
    assert {q["heads"] // q["kv_heads"] for q in prefill} == {1, 4, 8}
    assert {q["causal"] for q in prefill} == {False, True} and {"fp8", "bf16"} <= {q["dtype"] for q in prefill}
    decode = [q for q in quick if q["seq_q"] == 1]
    assert decode and all(not q["causal"] and q["seq_k"] >= 4096 for q in decode)
    full = [c.params for c in attention.SUITE.cases("full", gpu()) if c.impl == "triton"]
    assert {q["head_dim"] for q in full} == {64, 128, 256}
    assert {q["seq_q"] for q in full} >= {512, 1024, 2048, 4096, 8192, 16384}
    assert "fp16" in {q["dtype"] for q in full}
    assert [q for q in attention.SUITE.cases("quick", gpu(), dtypes=["fp16"])]  # asked for, it runs


def test_cpu_presets_are_capped(host_cpu):
    for preset in ("smoke", "quick"):
        for case in attention.SUITE.cases(preset, host_cpu):
            assert case.params["seq_q"] * case.params["seq_k"] <= 256 * 1000


# --- supports and paths ------------------------------------------------------------------------------


def impl(name, op="prefill"):
    return next(i for i in attention.SUITE.impls if i.name == name and i.op == op)


def test_fp8_follows_the_architecture():
    case = p(dtype="fp8")
    triton = impl("triton")
    assert triton.supports(gpu(arch="sm_80", name="NVIDIA A100"), case) == "sm_80 has no FP8 hardware"
    mi300 = gpu("rocm", "gfx942", "AMD Instinct MI300X")
    assert triton.supports(mi300, case) is None and triton.path(mi300, case) == "native"
    from parity.harness.core import capability
    assert capability.torch_fp8_dtypes(mi300)[0] == torch.float8_e4m3fnuz
    assert capability.torch_fp8_dtypes(gpu())[0] == torch.float8_e4m3fn
    for name in ("sdpa-flash", "sdpa-math", "flex"):
        assert "FP8" in impl(name).supports(gpu(), case)


def test_torch_reasons(host_cpu):
    assert "CPU build has no efficient" in impl("sdpa-efficient").supports(host_cpu, p())
    assert "CPU build has no cudnn" in impl("sdpa-cudnn").supports(host_cpu, p())
    assert impl("sdpa-flash").supports(host_cpu, p(causal=True)) is None
    assert "top-left" in impl("sdpa-flash").supports(host_cpu, p(seq_q=2, seq_k=5, causal=True))
    big = p(batch=1, heads=16, seq_q=16384, seq_k=16384)
    assert "materializes" in impl("sdpa-math").supports(gpu(), big)
    assert "no backward on the CPU" in impl("flex").supports(host_cpu, p(direction="bwd"))
    assert impl("triton").supports(host_cpu, p(direction="bwd")) is None


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_binding_runs_eagerly(host_cpu, monkeypatch):
    """The suite's flex implementation end to end, with PyTorch's eager FlexAttention standing in
    for the compiled one (inductor's CPU compile takes seconds per shape)."""
    from parity.kernels.attention import torch_attention
    if not torch_attention.has_flex():
        pytest.skip("no FlexAttention")
    from torch.nn.attention.flex_attention import flex_attention
    monkeypatch.setattr(torch_attention, "_compiled_flex", lambda: flex_attention)
    case = p(heads=4, kv_heads=2, seq_q=40, seq_k=40, head_dim=32, causal=True)
    x = attention.inputs(case, host_cpu)
    out = impl("flex").prepare(x, case)()
    assert attention._check(out, attention._reference(x, case), x, case).passed


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compiled_flex_is_never_silently_eager():
    """Past dynamo's recompile limit (8 shapes) torch.compile runs the unfused eager path; the
    sweep has more shapes than that, so the limit is raised when the compiled function is made."""
    from parity.kernels.attention import torch_attention
    if not torch_attention.has_flex():
        pytest.skip("no FlexAttention")
    import torch._dynamo.config as dynamo
    torch_attention._compiled_flex()
    assert dynamo.recompile_limit >= torch_attention.FLEX_RECOMPILE_LIMIT


# --- report ------------------------------------------------------------------------------------------


def test_report_shows_the_fa_convention_beside_the_exact_rate():
    params = p(batch=1, heads=16, seq_q=4096, seq_k=4096, head_dim=128, causal=True)
    w = attention.work(params)
    rec = synthetic.record(op="prefill", impl="triton", suite="attention", metric="TFLOPS", time_ms=1.0,
                           flops=w.flops, bytes_read=w.bytes_read, bytes_written=w.bytes_written, params=params,
                           dtype="bf16")
    rec["work"]["flops_fa"] = w.flops_fa
    df = report.frame([synthetic.run([rec])])
    assert df["tflops"].iloc[0] == pytest.approx(w.flops / 1e-3 / 1e12)
    assert df["tflops_fa"].iloc[0] == pytest.approx(w.flops_fa / 1e-3 / 1e12)
    row = report.display_rows(df)[0]
    assert row["TFLOPS (FA convention)"] == f"{w.flops_fa / 1e9:,.1f}"  # above 10: one decimal
    stream = report.display_rows(report.frame([synthetic.run([synthetic.record(bytes_read=4000)])]))[0]
    assert "TFLOPS (FA convention)" not in stream


# --- through the command line ------------------------------------------------------------------------


def test_smoke_run_through_the_cli(tmp_path):
    """The smoke preset without FlexAttention (inductor compiles every shape for seconds on a CPU;
    the eager binding is tested above). A time cap of 0.02 s: each interpreted case (30-100 ms a
    call here) takes one to three samples; what is checked is which cases ran, validated and were
    recorded, not how many samples a time rests on."""
    out = tmp_path / "run"
    impls = "triton,triton-tma,sdpa-flash,sdpa-efficient,sdpa-cudnn,sdpa-math"
    proc = parity("run", "attention", "--preset", "smoke", "--impl", impls, "--time-cap-s", "0.02", "--out", out,
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records, _ = read_records(out / MEASUREMENTS_FILE)
    by_status = {}
    for rec in records:
        by_status.setdefault(rec["status"], []).append(rec)
        assert list(rec["params"]) == PARAM_NAMES
    assert set(by_status) <= {"ok", "skipped"}
    assert all(r["reason"] for r in by_status.get("skipped", []))
    ran = {(r["impl"], r["op"], r["params"]["direction"], r["params"]["dtype"]) for r in by_status["ok"]}
    assert {("triton", "prefill", "fwd", "bf16"), ("triton", "prefill", "bwd", "bf16"), ("triton", "prefill", "fwd", "fp8"),
            ("triton", "decode", "fwd", "bf16"), ("triton-tma", "prefill", "fwd", "bf16")} <= ran
    for rec in by_status["ok"]:
        assert rec["validation"]["passed"] and rec["work"]["flops_fa"] > 0
        if rec["impl"].startswith("sdpa-"):
            assert rec["extra"]["sdpa_backend"] and rec["extra"]["aten_op"].startswith("aten::")
        if rec["impl"] in ("triton", "triton-tma"):
            assert rec["timing"] == ("events" if torch.cuda.is_available() else "wall-interpret")
            assert "config" in json.dumps(rec["extra"])
        if rec["params"]["dtype"] == "fp8":
            assert rec["path"] == ("emulated" if not torch.cuda.is_available() else "native")
    md = parity("report", out, "--format", "md", cwd=tmp_path)
    assert md.returncode == 0 and "TFLOPS (FA convention)" in md.stdout


def test_a_torch_path_with_no_kernel_here_says_unsupported(host_cpu):
    from parity.suites.attention import SUITE

    def path(name, **p):
        params = dict(batch=1, heads=2, kv_heads=2, seq_q=64, seq_k=64, head_dim=64, causal=False,
                      dtype="bf16", direction="fwd")
        params.update(p)
        impl = next(i for i in SUITE.impls if i.op == "prefill" and i.name == name)
        return impl.path(host_cpu, params)

    assert path("sdpa-cudnn") == "unsupported" and path("sdpa-efficient") == "unsupported"
    assert path("sdpa-math") == "native" and path("sdpa-flash") == "native"
    assert path("sdpa-math", dtype="fp8") == "unsupported"
    assert path("flex", direction="bwd") == "unsupported"


def test_flex_on_a_cpu_without_a_compiler_is_a_skip_with_its_reason(host_cpu, monkeypatch):
    import shutil

    from parity.suites.attention import SUITE

    params = dict(batch=1, heads=2, kv_heads=2, seq_q=64, seq_k=64, head_dim=64, causal=False,
                  dtype="bf16", direction="fwd")
    flex = next(i for i in SUITE.impls if i.op == "prefill" and i.name == "flex")
    from parity.kernels.attention import torch_attention

    if not torch_attention.has_flex():
        pytest.skip(f"torch {torch.__version__} has no FlexAttention")
    assert flex.supports(host_cpu, params) is None  # this machine has a compiler
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "C++ compiler" in flex.supports(host_cpu, params)
