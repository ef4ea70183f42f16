"""The GEMM suite without a GPU: presets and shapes (Llama-3 from its configs), work, the check and
its tolerance (and proof that it fails), every op end to end in the interpreter incl. FNUZ, the
capability answers on described MI300X/MI355X/H100/B200, emulated FP4's math dtype, the mamf
follow-up, and the runner's new hooks (shapes in the plan, per-case policy, follow-up cases)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from parity.harness.core import capability
from parity.harness.measurement import registry
from parity.harness.reporting import report
from parity.harness.core.model import TIMING_INTERPRET, UsageError
from parity.harness.core.results import MEASUREMENTS_FILE, read_records, read_run
from parity.harness.measurement.runner import RunPlan, execute, plan_cases, run_case
from parity.kernels.gemm import torch_gemm
from parity.suites import gemm
from parity.suites import _gemm_op as gemm_op
from parity.suites.gemm import SUITE
from synthetic import H100 as H100_META, run as synthetic_run

GiB = 1 << 30


def described(backend, arch, name, memory=80 * GiB):
    return SimpleNamespace(backend=backend, arch=arch, name=name, memory_bytes=memory, index=0,
                           is_gpu=backend != "cpu", interpreter=backend == "cpu", llc_bytes=None)


MI300X = described("rocm", "gfx942", "AMD Instinct MI300X", 192 * GiB)
MI355X = described("rocm", "gfx950", "AMD Instinct MI355X", 288 * GiB)
H100 = described("cuda", "sm_90", "NVIDIA H100 80GB HBM3")
B200 = described("cuda", "sm_100", "NVIDIA B200", 180 * GiB)


def cases(device, preset="quick", **kw):
    return SUITE.cases(preset, device, **kw)


def shapes_of(case_list):
    return {(c.params["m"], c.params["n"], c.params["k"]) for c in case_list}


# --- presets and shapes ------------------------------------------------------------------------------


def test_every_case_names_m_n_k_dtype_and_layout():
    for preset in SUITE.presets:
        for case in cases(H100, preset):
            assert {"m", "n", "k", "dtype", "layout"} <= set(case.params), case.params
            json.dumps(case.params)  # a case key must serialize


def test_quick_on_a_gpu_is_the_three_squares_with_every_bf16_layout():
    quick = cases(H100)
    assert shapes_of(quick) == {(s, s, s) for s in (1024, 4096, 8192)}
    torch_bf16 = [c for c in quick if c.impl == "torch" and c.params["dtype"] == "bf16"]
    assert {c.params["layout"] for c in torch_bf16} == {"NN", "NT", "TN"}
    fp8 = [c for c in quick if c.params["dtype"] == "fp8"]
    assert {c.params["scaling"] for c in fp8} == {"tensor", "row"}
    assert {c.params["layout"] for c in fp8} == {"NT"}  # _scaled_mm wants B column-major
    assert {c.impl for c in quick} == {"triton", "triton-persistent", "torch"}


def test_full_sweeps_squares_from_256_to_16384_and_llama():
    full = cases(H100, "full")
    squares = {m for (m, n, k) in shapes_of(full) if m == n == k}
    assert min(squares) == 256 and max(squares) == 16384
    assert {c.params.get("model") for c in full} >= {"llama3-8b", "llama3-70b", "llama3-405b"}
    assert {c.params["layout"] for c in full if "model" in c.params} == {"NT"}  # x @ W.t(), as nn.Linear
    assert {c.params["layout"] for c in full if c.params["dtype"] == "fp16"} == {"NN", "NT", "TN"}


def test_cpu_presets_are_capped_and_say_so(host_cpu):
    assert shapes_of(cases(host_cpu)) == {(128, 128, 128), (256, 256, 256)}
    assert max(m for m, n, k in shapes_of(cases(host_cpu, "full")) if m == n == k) == 512
    assert {c.params["model"] for c in cases(host_cpu, "llama")} == {"llama3-8b"}
    assert {m for m, _, _ in shapes_of(cases(host_cpu, "llama"))} == {1, 16}


def test_smoke_shapes_are_odd_and_include_one_row():
    smoke = shapes_of(cases(H100, "smoke"))
    assert (17, 33, 65) in smoke and any(m == 1 for m, _, _ in smoke)


@pytest.mark.parametrize("model, hidden, ffn, heads, kv", [
    # The Llama 3 Herd of Models, Table 3 (and each model's config.json)
    ("llama3-8b", 4096, 14336, 32, 8), ("llama3-70b", 8192, 28672, 64, 8), ("llama3-405b", 16384, 53248, 128, 8),
])
def test_llama_projection_shapes_from_the_published_configs(model, hidden, ffn, heads, kv):
    head_dim = 128
    want = {"qkv": (heads * head_dim + 2 * kv * head_dim, hidden), "attn_out": (hidden, hidden),
            "mlp_up_gate": (2 * ffn, hidden), "mlp_down": (hidden, ffn)}
    assert {p: (n, k) for p, n, k in gemm_op.llama_projections(model)} == want
    llama = [c for c in cases(H100, "llama") if c.params["model"] == model]
    for case in llama:
        assert (case.params["n"], case.params["k"]) == want[case.params["proj"]]
    tokens = {c.params["m"] for c in llama}
    assert min(tokens) == 1 and max(tokens) == 16384


def test_fp8_dtype_follows_the_architecture():
    for device, name in ((MI300X, "float8_e4m3fnuz"), (MI355X, "float8_e4m3fn"), (H100, "float8_e4m3fn"),
                         (B200, "float8_e4m3fn")):
        fp8 = [c for c in cases(device) if c.params["dtype"] == "fp8"]
        assert fp8 and {c.params["fp8_dtype"] for c in fp8} == {name}, device.arch


def test_mamf_searches_a_grid_and_skips_emulated_fp4():
    h100 = cases(H100, "mamf")
    assert len(shapes_of(h100)) == len(gemm_op.MAMF_M) * len(gemm_op.MAMF_N) * len(gemm_op.MAMF_K)
    assert all(c.params["mamf"] == "search" for c in h100)
    assert "mxfp4" not in {c.params["dtype"] for c in h100}  # emulated on Hopper: no maximum to find
    assert "mxfp4" in {c.params["dtype"] for c in cases(B200, "mamf")}
    assert {c.params.get("scaling") for c in h100 if c.params["dtype"] == "fp8"} == {"tensor"}


def test_user_shapes_replace_the_preset():
    got = cases(H100, "quick", shapes=[(17, 33, 65), (4096, 1024, 512)], dtypes=["bf16"])
    assert shapes_of(got) == {(17, 33, 65), (4096, 1024, 512)}


@pytest.mark.parametrize("shape, needle", [((8, 8), "three dimensions"), ((8, 8, 8, 8), "three dimensions"),
                                           ((300000, 300000, 300000), "GiB")])
def test_bad_user_shapes_are_one_line_usage_errors(shape, needle):
    with pytest.raises(UsageError, match=needle) as info:
        cases(H100, "quick", shapes=[shape])
    assert "\n" not in str(info.value)


def test_a_suite_without_shapes_refuses_them(cpu_device):
    with pytest.raises(UsageError, match="does not take --shape"):
        registry.load("stream").cases("smoke", cpu_device, shapes=[(8, 8, 8)])


def test_multi_suite_runs_give_shapes_and_sizes_to_the_suites_that_take_them(cpu_device):
    both = ("gemm", "stream")
    with_shapes = plan_cases(RunPlan(suites=both, preset="smoke", shapes=((17, 33, 65),)), cpu_device)
    assert {s.name for s, _ in with_shapes} == {"gemm"}
    with_sizes = plan_cases(RunPlan(suites=both, preset="smoke", sizes_bytes=(1 << 20,)), cpu_device)
    assert {s.name for s, _ in with_sizes} == {"stream"}
    with pytest.raises(UsageError, match="does not take --size"):
        plan_cases(RunPlan(suites=("gemm",), preset="smoke", sizes_bytes=(1 << 20,)), cpu_device)
    # both at once: each suite gets its own, none is dropped for the other's option
    both_given = plan_cases(RunPlan(suites=both, preset="smoke", impls=("torch",), sizes_bytes=(1 << 20,),
                                    shapes=((16, 16, 16),)), cpu_device)
    assert {s.name for s, _ in both_given} == {"gemm", "stream"}
    assert {(c.params["m"], c.params["n"], c.params["k"]) for s, c in both_given if s.name == "gemm"} == {(16, 16, 16)}
    stream_sets = {c.params["working_set_bytes"] for s, c in both_given if s.name == "stream"}
    assert stream_sets and all((1 << 20) - 16 <= b <= 1 << 20 for b in stream_sets)  # whole elements


def test_run_plan_keeps_shapes_through_json():
    plan = RunPlan(suites=("gemm",), shapes=((17, 33, 65), (1, 2, 3)))
    assert RunPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


# --- work ---------------------------------------------------------------------------------------------


def test_work_counts_2mnk_and_every_operand_and_scale():
    m, n, k = 100, 60, 70
    half = gemm.work({"m": m, "n": n, "k": k, "dtype": "bf16", "layout": "NN"})
    assert (half.flops, half.bytes_read, half.bytes_written, half.math_dtype) == \
        (2 * m * n * k, 2 * (m * k + k * n), 2 * m * n, "bf16")
    tensor = gemm.work({"m": m, "n": n, "k": k, "dtype": "fp8", "scaling": "tensor"})
    row = gemm.work({"m": m, "n": n, "k": k, "dtype": "fp8", "scaling": "row"})
    assert tensor.bytes_read == m * k + k * n + 8 and row.bytes_read == m * k + k * n + 4 * (m + n)
    assert tensor.bytes_written == 2 * m * n and tensor.math_dtype == "fp8"
    mx = gemm.work({"m": m, "n": n, "k": k, "dtype": "mxfp4"})
    assert mx.flops == 2 * m * n * k and mx.math_dtype == "mxfp4"
    assert mx.bytes_read == (m + n) * 96 // 2 + (m + n) * 3  # K padded to 96: 48 bytes and 3 scales a row


# --- every op end to end, and the check ------------------------------------------------------------


def params(dtype, m=17, n=33, k=65, **extra):
    p = {"m": m, "n": n, "k": k, "dtype": dtype, "layout": "NT"}
    if dtype == "fp8":
        p.update(scaling="row", fp8_dtype="float8_e4m3fn")
    if dtype == "mxfp4":
        p.update(scaling="block32")
    p.update(extra)
    return p


CASES = [params("bf16", layout="NN"), params("bf16", layout="TN"), params("fp16"),
         params("fp8", scaling="tensor"), params("fp8"),
         params("fp8", fp8_dtype="float8_e4m3fnuz"), params("fp8", scaling="tensor", fp8_dtype="float8_e4m3fnuz"),
         params("mxfp4"), params("bf16", m=1, n=40, k=7), params("mxfp4", m=1, n=40, k=7)]


def skip_unless_runs_here(p, device):
    """What the suite skips on this device (its own `supports`), a direct call of the kernel skips
    too, with the same reason; in the interpreter, also what an older Triton's interpreter lacks."""
    impl_ = next(i for i in SUITE.impls if i.op == gemm_op.OP_OF[p["dtype"]] and i.name == "triton")
    reason = impl_.supports(device, p)
    if not reason and not device.is_gpu and "fnuz" in p.get("fp8_dtype", ""):
        reason = capability.interpreter_problem("fnuz")
    if reason:
        pytest.skip(reason)


def run_op(p, impl, device):
    op = SUITE.op(gemm_op.OP_OF[p["dtype"]])
    inputs = op.inputs(p, device)
    impl_ = next(i for i in SUITE.impls if i.op == op.name and i.name == impl)
    out = impl_.prepare(inputs, p)()
    return op, inputs, out


@pytest.mark.parametrize("p", CASES, ids=lambda p: "-".join(str(v) for v in p.values()))
def test_triton_ops_pass_their_check_and_a_perturbed_output_fails(p, cpu_device):
    skip_unless_runs_here(p, cpu_device)
    op, inputs, out = run_op(p, "triton", cpu_device)
    expected = op.reference(inputs, p)
    good = op.check(out, expected, inputs, p)
    assert good.passed, good.error
    assert good.max_abs_error > 0 or p["k"] < 10  # the kernel really rounds: the check is not vacuous
    bad = out.clone()
    bad[p["m"] // 2, p["n"] // 3] += 0.25 + 0.05 * float(expected.c[p["m"] // 2, p["n"] // 3].abs())
    result = op.check(bad, expected, inputs, p)
    assert not result.passed and "1 of" in result.error


def test_fnuz_inputs_are_really_fnuz_with_doubled_scales(host_cpu):
    ocp = SUITE.op("gemm_fp8").inputs(params("fp8"), host_cpu)
    fnuz = SUITE.op("gemm_fp8").inputs(params("fp8", fp8_dtype="float8_e4m3fnuz"), host_cpu)
    assert ocp["a"].dtype == torch.float8_e4m3fn and fnuz["a"].dtype == torch.float8_e4m3fnuz
    # FNUZ's largest e4m3 is 240, OCP's 448: the scale for the same data is 448/240 times larger
    assert torch.allclose(fnuz["scale_a"] / ocp["scale_a"], torch.tensor(448 / 240))


@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
def test_torch_ops_pass_their_check_on_the_cpu(dtype, host_cpu):
    p = params(dtype, m=16, n=32, k=64)
    impl = next(i for i in SUITE.impls if i.op == gemm_op.OP_OF[dtype] and i.name == "torch")
    reason = impl.supports(host_cpu, p)
    if reason:
        pytest.skip(reason)
    op, inputs, out = run_op(p, "torch", host_cpu)
    check = op.check(out, op.reference(inputs, p), inputs, p)
    assert check.passed, check.error


def test_a_wrong_product_nan_and_a_wrong_shape_fail_the_check(cpu_device):
    p = params("bf16", m=20, n=24, k=96)
    op, inputs, out = run_op(p, "triton", cpu_device)
    expected = op.reference(inputs, p)
    transposed_a = (inputs["a"].float().flip(0) @ inputs["b"].float()).bfloat16()  # rows mixed up
    assert not op.check(transposed_a, expected, inputs, p).passed
    nan = out.clone()
    nan[0, 0] = float("nan")
    assert not op.check(nan, expected, inputs, p).passed
    assert not op.check(out[:, :-1], expected, inputs, p).passed
    unwritten = op.inputs(p, cpu_device)["out"]  # what a kernel that writes nothing leaves: random values
    assert not op.check(unwritten, expected, inputs, p).passed


def test_tolerance_from_the_bound(monkeypatch):
    out = torch.zeros(1, dtype=torch.bfloat16)
    tol = gemm_op._tolerance(params("bf16", k=4096), out)
    assert tol["acc_rtol_of_norms"] == pytest.approx(2 * 10 * 64 * 2.0**-24)
    assert tol["out_rtol"] == torch.finfo(torch.bfloat16).eps
    fp8 = gemm_op._tolerance(params("fp8", k=4096), out)
    assert fp8["acc_rtol_of_norms"] == pytest.approx(tol["acc_rtol_of_norms"])  # fp32 sums on the CPU
    monkeypatch.setattr(gemm_op, "_reduced_precision_fp8", lambda output: True)  # as on Hopper
    hopper = gemm_op._tolerance(params("fp8", k=4096), out)
    assert hopper["acc_rtol_of_norms"] == pytest.approx(tol["acc_rtol_of_norms"] + 2 * 4 * 2.0**-13)
    assert gemm_op._tolerance(params("bf16", k=4096), out) == tol  # only FP8 sums with 14 bits


# --- capability on described devices ------------------------------------------------------------------


def impl(op, name):
    return next(i for i in SUITE.impls if i.op == op and i.name == name)


@pytest.mark.parametrize("device, triton_fp4, torch_fp4, fp8", [
    (MI300X, "emulated", "unsupported", "native"), (MI355X, "native", "native", "native"),
    (H100, "emulated", "unsupported", "native"), (B200, "native", "native", "native"),
])
def test_paths_on_described_devices(device, triton_fp4, torch_fp4, fp8):
    mx, f8 = params("mxfp4", m=1024, n=1024, k=1024), params("fp8", m=1024, n=1024, k=1024)
    if capability.dot_scaled_problem(device.backend, device.arch):  # an older Triton cannot compile it there
        triton_fp4 = "unsupported"
    assert impl("gemm_mxfp4", "triton").path(device, mx) == triton_fp4
    assert impl("gemm_mxfp4", "torch").path(device, mx) == torch_fp4
    for name in ("triton", "torch"):
        assert impl("gemm_fp8", name).path(device, f8) == fp8
        assert impl("gemm", name).path(device, params("bf16")) == "native"
    reason = impl("gemm_mxfp4", "torch").supports(device, mx)
    if torch_fp4 == "unsupported":
        assert reason and device.arch in reason
    elif device is MI355X:
        assert "ROCm 7.0" in reason  # this CPU torch has no HIP version: not an MX-capable ROCm
    else:
        assert reason == torch_gemm.mx_available()  # B200: whatever this torch's MX API says


def test_fp8_of_another_architecture_is_refused_on_a_gpu():
    fnuz = params("fp8", m=1024, n=1024, k=1024, fp8_dtype="float8_e4m3fnuz")
    assert "not the FP8 of sm_90" in impl("gemm_fp8", "triton").supports(H100, fnuz)
    assert impl("gemm_fp8", "triton").supports(MI300X, fnuz) is None


def test_scaled_mm_software_rules():
    rule = capability.torch_scaled_mm_problem
    assert "torch 2.7" in rule(MI300X, "fp8", "row", (2, 6))
    assert rule(MI300X, "fp8", "tensor", (2, 6)) is None
    assert rule(MI300X, "fp8", "row", (2, 7)) is None
    assert rule(H100, "fp8", "row", (2, 5)) is None
    assert "ROCm 7.0" in rule(MI355X, "mxfp4", "block32", (2, 9), "6.4.1")
    assert rule(MI355X, "mxfp4", "block32", (2, 9), "7.0.2") is None
    assert "sm_100" in rule(H100, "mxfp4", "block32", (2, 9))
    assert rule(B200, "mxfp4", "block32", (2, 9)) is None
    assert "no FP8" in rule(described("cuda", "sm_80", "A100"), "fp8", "tensor", (2, 9))


def test_scaled_mm_alignment_and_memory_are_skips_with_reasons():
    odd = params("fp8", m=17, n=33, k=65, fp8_dtype="float8_e4m3fn")
    assert "multiples of 16" in impl("gemm_fp8", "torch").supports(H100, odd)
    huge = params("bf16", m=100000, n=100000, k=100000)
    assert "GiB" in impl("gemm", "torch").supports(H100, huge)
    assert "32-bit" in impl("gemm", "triton").supports(described("cuda", "sm_90", "big", 10**15), huge)


def test_emulated_fp4_is_held_to_the_bf16_peak(cpu_device):
    """On Hopper the Triton MXFP4 path is emulated: its record declares bf16 as its math dtype."""
    tiny_h100 = described("cuda", "sm_90", H100.name, memory=1)
    case = next(c for c in SUITE.cases("quick", H100, dtypes=["mxfp4"]) if c.impl == "triton")
    rec = run_case(SUITE, case, tiny_h100, RunPlan(suites=("gemm",)), None).to_dict()
    assert rec["status"] == "skipped" and "GiB" in rec["reason"]  # no memory: skipped before any input
    assert rec["path"] == "emulated" and rec["work"]["math_dtype"] == "bf16"
    rec.update(status="ok", time_ms={"median": 1.0, "p10": 1.0, "p90": 1.0, "n": 3, "noise_rel": 0.0})
    row = report.frame([synthetic_run([rec], device=H100_META)]).iloc[0]
    assert row["pct_of_spec"] == pytest.approx(case.params["m"] ** 3 * 2 / 1e-3 / 1e12 / 989.4)
    assert "emulated" in report.display_rows(report.frame([synthetic_run([rec], device=H100_META)]))[0]["dtype"]
    native = run_case(SUITE, case, described("cuda", "sm_100", "NVIDIA B200", memory=1),
                      RunPlan(suites=("gemm",)), None).to_dict()
    assert native["path"] == "native" and native["work"]["math_dtype"] == "mxfp4"


# --- the mamf follow-up ---------------------------------------------------------------------------------


def search_record(impl, m, median_ms, dtype="bf16", timing="events", status="ok", tag="search"):
    p = {"m": m, "n": 4096, "k": 4096, "dtype": dtype, "layout": "NT", "mamf": tag}
    return {"suite": "gemm", "op": gemm_op.OP_OF[dtype], "impl": impl, "params": p, "status": status,
            "timing": timing, "work": gemm.work(p).to_dict(), "time_ms": {"median": median_ms}}


def test_mamf_followup_retimes_the_best_shape_per_impl_and_dtype():
    records = [search_record("torch", 1024, 1.0), search_record("torch", 2048, 1.5),  # 2048: more TFLOPS
               search_record("triton", 1024, 0.4), search_record("triton", 2048, 2.0),
               search_record("torch", 8192, 0.001, status="invalid"),  # never a best
               search_record("torch", 4096, 0.001, tag="retime"),  # not a search record
               search_record("triton", 4096, 0.001, timing=TIMING_INTERPRET)]  # the interpreter's time
    again = gemm.mamf_followup(records, H100)
    got = {(c.impl, c.params["m"]) for c in again}
    assert got == {("torch", 2048), ("triton", 1024)}
    for case in again:
        assert case.params["mamf"] == "retime" and case.policy == gemm.MAMF_RETIME_POLICY
        assert case.policy["min_samples"] >= 100
    assert gemm.mamf_followup([r for r in records if r["params"]["mamf"] != "search"], H100) == []


def test_mamf_run_on_the_cpu_retimes_its_best_shape_once(tmp_path, host_cpu):
    plan = RunPlan(suites=("gemm",), preset="mamf", impls=("torch",), dtypes=("bf16",), time_cap_s=0.05)
    out = tmp_path / "mamf"
    outcome = execute(plan, host_cpu, out, ["test"])
    records, _ = read_records(out / MEASUREMENTS_FILE)
    search = [r for r in records if r["params"]["mamf"] == "search"]
    retime = [r for r in records if r["params"]["mamf"] == "retime"]
    assert len(search) == 8 and len(retime) == 1 and outcome.counts == {"ok": 9}
    best = max(search, key=lambda r: r["work"]["flops"] / r["time_ms"]["median"])
    assert {k: v for k, v in retime[0]["params"].items() if k != "mamf"} == \
        {k: v for k, v in best["params"].items() if k != "mamf"}
    assert retime[0]["time_ms"]["n"] >= 100  # the re-time's own policy, not the plan's 0.05 s cap
    again = execute(plan, host_cpu, out, ["test"], resume=True)
    assert again.counts == {} and len(read_run(out).records) == 9  # nothing runs twice


def test_torch_mx_on_an_odd_shape_is_a_skip_with_its_reason(monkeypatch):
    monkeypatch.setattr(torch_gemm, "mx_available", lambda: None)  # as on a B200 with an MX-capable torch
    odd, whole = params("mxfp4", m=17, n=33, k=65), params("mxfp4", m=256, n=256, k=256)
    reason = impl("gemm_mxfp4", "torch").supports(B200, odd)
    assert reason and "K % 32" in reason and "K=65" in reason
    assert impl("gemm_mxfp4", "torch").supports(B200, whole) is None
