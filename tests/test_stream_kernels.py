"""The stream kernels (Triton in the interpreter, and PyTorch) against references, the suite's
checks (and proof that they can fail), its inputs, its declared work and its sweep."""
from __future__ import annotations

import math

import pytest
import torch

from parity.harness.core.device import DeviceInfo
from parity.harness.core.model import UsageError
from parity.kernels.stream import torch_stream, triton_stream
from parity.suites import stream
from parity.suites.stream import SCALAR, SUITE

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SIZES = (1, 7, 1000, 4097, 12345)  # none a multiple of any block size
BLOCKS = (128, None)  # 128: many programs even for small n; None: the launcher's default
ELEMENTWISE = ("copy", "scale", "add", "triad", "write")
REDUCTIONS = ("dot", "read")
OPS = ELEMENTWISE + REDUCTIONS

# The test's own statement of each op (BabelStream): arrays read, arrays written.
READS = {"copy": ("a",), "scale": ("c",), "add": ("a", "b"), "triad": ("b", "c"), "dot": ("a", "b"),
         "read": ("a",), "write": ()}
WRITES = {"copy": ("c",), "scale": ("b",), "add": ("c",), "triad": ("a",), "dot": (), "read": (),
          "write": ("a",)}
FLOPS_PER_ELEMENT = {"copy": 0, "scale": 1, "add": 1, "triad": 2, "dot": 2, "write": 0}


def params(dtype: str, n: int, name: str) -> dict:
    arrays = len(READS[name]) + len(WRITES[name])
    return {"dtype": dtype, "n": n, "working_set_bytes": n * arrays * DTYPES[dtype].itemsize}


def make_inputs(name: str, dtype: str, n: int, device):
    p = params(dtype, n, name)
    return SUITE.op(name).inputs(p, device), p


def run_triton(name: str, x: dict, block=None):
    cfg = {} if block is None else {"block": block}
    if name == "copy":
        return triton_stream.copy(x["a"], x["c"], **cfg)
    if name == "scale":
        return triton_stream.scale(x["c"], x["b"], SCALAR, **cfg)
    if name == "add":
        return triton_stream.add(x["a"], x["b"], x["c"], **cfg)
    if name == "triad":
        return triton_stream.triad(x["b"], x["c"], x["a"], SCALAR, **cfg)
    if name == "write":
        return triton_stream.fill(x["a"], SCALAR, **cfg)
    partials, out = triton_stream.reduction_buffers(x["a"], block=block)
    if name == "dot":
        return triton_stream.dot(x["a"], x["b"], partials, out, block=block)
    return triton_stream.total(x["a"], partials, out, block=block)


def run_torch(name: str, x: dict):
    return {
        "copy": lambda: torch_stream.copy(x["a"], x["c"]),
        "scale": lambda: torch_stream.scale(x["c"], x["b"], SCALAR),
        "add": lambda: torch_stream.add(x["a"], x["b"], x["c"]),
        "triad": lambda: torch_stream.triad(x["b"], x["c"], x["a"], SCALAR),
        "write": lambda: torch_stream.fill(x["a"], SCALAR),
        "dot": lambda: torch_stream.dot(x["a"], x["b"]),
        "read": lambda: torch_stream.total(x["a"]),
    }[name]()


def torch_device(device) -> str:
    return "cpu" if device.backend == "cpu" else f"cuda:{device.index}"


def my_reference(name: str, x: dict, n: int):
    """The test's own reference, in fp64 (inputs copied before the kernel runs, since kernels
    write in place)."""
    f = {k: v.double() for k, v in x.items()}
    where = next(iter(x.values())).device
    return {
        "copy": lambda: f["a"],
        "scale": lambda: SCALAR * f["c"],
        "add": lambda: f["a"] + f["b"],
        "triad": lambda: f["b"] + SCALAR * f["c"],
        "write": lambda: torch.full((n,), SCALAR, dtype=torch.float64, device=where),
        "dot": lambda: (f["a"] * f["b"]).sum(),
        "read": lambda: f["a"].sum(),
    }[name]()


def my_abs_terms(name: str, x: dict, n: int) -> torch.Tensor:
    """Sum of |addends| per element (per sum for reductions): the expression on |x| (SCALAR > 0)."""
    assert SCALAR > 0
    return my_reference(name, {k: v.abs() for k, v in x.items()}, n)


def assert_close_explicit(name: str, out: torch.Tensor, x_before: dict, n: int, dtype: str) -> None:
    """Explicit tolerances, independent of the suite's check.

    Elementwise: computed in fp32 (or with one intermediate rounding to bf16 in PyTorch) and
    rounded to the output dtype, so |error| <= 2 eps(out) * sum|addends| (+ a tiny floor).
    Reductions: fp32 accumulation: |error| <= 1e-5 * sum|terms| + eps(out) * |sum|.
    """
    ref = my_reference(name, x_before, n)
    terms = my_abs_terms(name, x_before, n)
    got = out.double()
    eps = torch.finfo(DTYPES[dtype] if name in ELEMENTWISE else out.dtype).eps
    if name in ELEMENTWISE:
        assert got.shape == ref.shape
        bound = 2 * eps * terms + 1e-30
        bad = (got - ref).abs() > bound
        assert not bad.any(), f"{int(bad.sum())} elements off; first at {int(bad.nonzero()[0])}"
        assert torch.isfinite(got).all()
    else:
        assert got.numel() == 1
        bound = 1e-5 * float(terms) + eps * abs(float(ref))
        assert abs(float(got) - float(ref)) <= bound, (float(got), float(ref), bound)


def snapshot(x: dict) -> dict:
    return {k: v.clone() for k, v in x.items()}


# --- Triton kernels in the interpreter ---------------------------------------------------------


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("block", BLOCKS, ids=["block128", "default-block"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", OPS)
def test_triton_kernel(name, n, block, dtype, cpu_device):
    x, p = make_inputs(name, dtype, n, cpu_device)
    before = snapshot(x)
    out = run_triton(name, x, block)
    # Every element written, the tail of the last block included, and no array read was changed.
    for k in READS[name]:
        assert torch.equal(x[k], before[k]), f"{name} changed its input {k}"
    assert_close_explicit(name, out, before, n, dtype)
    op = SUITE.op(name)
    check = op.check(out, op.reference(x, p), x, p)
    assert check.passed, check.error


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", OPS)
def test_torch_implementation(name, n, dtype, cpu_device):
    x, p = make_inputs(name, dtype, n, cpu_device)
    before = snapshot(x)
    out = run_torch(name, x)
    assert_close_explicit(name, out, before, n, dtype)
    op = SUITE.op(name)
    check = op.check(out, op.reference(x, p), x, p)
    assert check.passed, check.error


@pytest.mark.parametrize("name", OPS)
def test_triton_kernels_through_the_suites_impls(name, cpu_device):
    """The suite binds each op to the right kernel with the right argument order."""
    for impl_name in ("triton", "torch"):
        x, p = make_inputs(name, "fp32", 4097, cpu_device)
        before = snapshot(x)
        impl = next(i for i in SUITE.impls if i.op == name and i.name == impl_name)
        thunk = impl.prepare(x, p)
        out = thunk()
        assert_close_explicit(name, out, before, 4097, "fp32")
        out2 = thunk()  # a thunk can run again (it is timed many times)
        assert_close_explicit(name, out2, before, 4097, "fp32")


@pytest.mark.parametrize("block", [128, 1024])
def test_copy_of_a_view_at_a_block_boundary(block, cpu_device):
    # n = k*block + 1: one program has a single live lane.
    n = 3 * block + 1
    a = torch.randn(n, device=torch_device(cpu_device))
    c = torch.full((n,), -7.0, device=torch_device(cpu_device))
    triton_stream.copy(a, c, block=block)
    assert torch.equal(a, c)


def test_triton_does_not_write_past_the_end(cpu_device):
    n = 1000
    backing = torch.full((n + 200,), 123.0, device=torch_device(cpu_device))
    a = torch.randn(n, device=torch_device(cpu_device))
    triton_stream.copy(a, backing[:n], block=128)
    assert torch.equal(backing[:n], a)
    assert torch.all(backing[n:] == 123.0), "the masked tail of the last block was written"


@pytest.mark.parametrize("n", [512 * 3, 512 * 3 + 1, 512 * 3 - 1, 5])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_whole_blocks_and_tail_never_touch_memory_past_the_end(name, n, cpu_device):
    """The unmasked body covers whole blocks only and the masked tail stops at n: outputs and inputs
    are views of longer buffers whose elements past n are sentinels that must stay untouched."""
    where = torch_device(cpu_device)
    pad = 700  # more than a block of 512: an unmasked tail would read and write into it
    x = {k: torch.full((n + pad,), 123.0, device=where) for k in set(READS[name]) | set(WRITES[name])}
    for v in x.values():
        v[:n] = torch.randn(n, device=where)
    views = {k: v[:n] for k, v in x.items()}
    before = snapshot(views)
    out = run_triton(name, views, block=512)
    for v in x.values():
        assert torch.all(v[n:] == 123.0), "a whole-block access ran past the end"
    assert_close_explicit(name, out, before, n, "fp32")


@pytest.mark.parametrize("n", [512 * 4, 512 * 4 + 3, 3])
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_read_nothing_past_the_end(name, n, cpu_device):
    """A sentinel of 1e30 past n: summed by an unmasked tail, it would swamp the result."""
    where = torch_device(cpu_device)
    x = {k: torch.full((n + 700,), 1e30, device=where) for k in READS[name]}
    for v in x.values():
        v[:n] = torch.randn(n, device=where)
    views = {k: v[:n] for k, v in x.items()}
    out = run_triton(name, views, block=512)
    assert_close_explicit(name, out, snapshot(views), n, "fp32")


def test_the_tail_is_summed_exactly_once(cpu_device):
    """Ones: any block added twice or missed shows as an integer error in the count."""
    where = torch_device(cpu_device)
    for n in (512 * 9, 512 * 9 + 1, 512 * 9 + 511, 511):
        a = torch.ones(n, device=where)
        partials, out = triton_stream.reduction_buffers(a, block=512)
        assert float(triton_stream.total(a, partials, out, block=512)) == n


def test_partials_of_another_size_are_refused(cpu_device):
    a = torch.randn(5000, device=torch_device(cpu_device))
    with pytest.raises(ValueError):
        triton_stream.total(a, torch.zeros(3, device=a.device), torch.empty((), device=a.device), block=128)


@pytest.mark.parametrize("sms, n, block", [(132, 64 << 10, 512), (132, 1 << 28, 4096), (304, 1 << 21, 1024),
                                           (132, 1 << 21, 2048), (None, 100, 4096), (None, 1 << 28, 4096)])
def test_block_fills_the_gpu(sms, n, block):
    assert triton_stream.pick_block(n, sms) == block
    impl = next(i for i in SUITE.impls if i.name == "triton" and i.op == "triad")
    device = fake_gpu(backend="cuda", arch="sm_90", name="H200") if sms else None
    if device is not None:
        device = DeviceInfo(**{**device.to_dict(), "visible": (), "multiprocessors": sms})
        assert impl.details(device, {"n": n})["block"] == block
    if sms is not None and block != triton_stream.BLOCKS[-1]:
        assert -(-n // block) >= triton_stream.PROGRAMS_PER_MULTIPROCESSOR * sms


def test_reductions_with_more_blocks_than_programs(cpu_device):
    # 12345 / 128 = 97 blocks over at most 8 interpreter programs: the grid-strided loop runs.
    a = torch.randn(12345, device=torch_device(cpu_device))
    partials, out = triton_stream.reduction_buffers(a, block=128)
    programs = triton_stream.reduction_programs(12345, a.device, block=128)
    assert 1 < programs <= partials.numel()
    if not a.is_cuda:
        assert programs < math.ceil(12345 / 128)
    triton_stream.total(a, partials, out, block=128)
    assert float(out) == pytest.approx(float(a.double().sum()), abs=1e-3)


# --- the checks can fail ----------------------------------------------------------------------------


def correct_output(name, dtype, n, device):
    x, p = make_inputs(name, dtype, n, device)
    out = run_triton(name, x).clone()
    return x, p, out


def suite_check(name, out, x, p):
    op = SUITE.op(name)
    return op.check(out, op.reference(x, p), x, p)


def nudge(value: torch.Tensor, ulps: int) -> torch.Tensor:
    """`value` moved `ulps` representable numbers away from zero, in its own dtype."""
    out = value.clone()
    target = torch.full_like(out, math.inf if float(value) >= 0 else -math.inf)
    for _ in range(ulps):
        out = torch.nextafter(out, target)
    return out


@pytest.mark.parametrize("dtype, ulps", [("fp32", 16), ("bf16", 4)])
@pytest.mark.parametrize("where", ["largest", "last"])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_check_fails_on_one_element_a_few_ulps_off(name, where, dtype, ulps, cpu_device):
    n = 4097
    x, p, out = correct_output(name, dtype, n, cpu_device)
    assert suite_check(name, out, x, p).passed  # control: the untouched output passes
    expected = my_reference(name, x, n) if name != "write" else None
    if where == "last":
        i = n - 1  # in the partial last block
        if name in ("add", "triad"):
            # Pick the last element without cancellation (result ~ sum of |addends|), where a few
            # ulps of the result exceed a tolerance relative to the addends.
            terms = my_abs_terms(name, x, n)
            ok = (expected.abs() > 0.9 * terms).nonzero().flatten()
            i = int(ok[-1])
    else:
        i = 0 if name == "write" else int(expected.abs().argmax())
    out[i] = nudge(out[i : i + 1], ulps)[0]
    check = suite_check(name, out, x, p)
    assert not check.passed
    assert check.error


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", [n for n in ELEMENTWISE])
def test_check_fails_on_an_output_left_untouched(name, dtype, cpu_device):
    # The output array keeps its random prefill: the kernel wrote nothing.
    x, p = make_inputs(name, dtype, 1000, cpu_device)
    out = x[WRITES[name][0]]
    check = suite_check(name, out, x, p)
    assert not check.passed


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_check_fails_on_an_output_with_the_tail_block_unwritten(name, cpu_device):
    # A kernel that forgets the partial last block: everything right except the last 17 elements.
    n = 4097 + 16
    x, p = make_inputs(name, "fp32", n, cpu_device)
    prefill = x[WRITES[name][0]].clone()
    out = run_triton(name, x).clone()
    out[-17:] = prefill[-17:]
    assert not suite_check(name, out, x, p).passed


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("which", ["largest", "last"])
@pytest.mark.parametrize("name", REDUCTIONS)
def test_check_fails_on_a_reduction_off_by_one_element(name, which, dtype, cpu_device):
    n = 1000
    x, p = make_inputs(name, dtype, n, cpu_device)
    terms = (x["a"].double() * x["b"].double()) if name == "dot" else x["a"].double()
    if which == "largest":
        i = int(terms.abs().argmax())
    else:  # the last term that is not negligible, in the partial last block of any block size
        i = int((terms.abs() > 0.1).nonzero().flatten()[-1])
        assert i > n - 20
    assert abs(float(terms[i])) > 0.05, "precondition: the dropped term is not negligible"
    keep = torch.ones(n, dtype=torch.bool)
    keep[i] = False
    out = terms[keep].sum().float()  # the sum of every term but one, computed exactly
    assert suite_check(name, out, x, p).passed is False
    # Control: the full sum passes.
    assert suite_check(name, terms.sum().float(), x, p).passed


@pytest.mark.parametrize("name", REDUCTIONS)
def test_check_fails_on_a_reduction_of_the_wrong_sign_or_nan(name, cpu_device):
    x, p = make_inputs(name, "fp32", 1000, cpu_device)
    right = run_triton(name, x).clone()
    assert suite_check(name, right, x, p).passed
    assert not suite_check(name, -right, x, p).passed
    assert not suite_check(name, torch.tensor(math.nan), x, p).passed


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_check_fails_on_a_nan_in_the_output(name, cpu_device):
    # |nan - expected| > tolerance is False: a check that counts only elements whose error
    # compares greater lets NaNs through (the elementwise check once did).
    x, p, out = correct_output(name, "fp32", 1000, cpu_device)
    out[5] = math.nan
    check = suite_check(name, out, x, p)
    assert not check.passed


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_check_fails_on_an_infinite_output(name, cpu_device):
    x, p, out = correct_output(name, "fp32", 1000, cpu_device)
    out[5] = math.inf
    assert not suite_check(name, out, x, p).passed


# --- inputs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("n", [1, 7, 1000])
@pytest.mark.parametrize("name", OPS)
def test_inputs_are_random_never_zeros(name, n, dtype, cpu_device):
    x, _ = make_inputs(name, dtype, n, cpu_device)
    assert set(x) == set(READS[name]) | set(WRITES[name])
    for key, arr in x.items():
        assert arr.shape == (n,) and arr.dtype == DTYPES[dtype]
        assert bool((arr != 0).any()), f"{key} is all zeros"
        assert torch.isfinite(arr).all()
        if n >= 7:
            assert arr.unique().numel() > 1, f"{key} is constant"
            assert not bool((arr == SCALAR).all())
    keys = sorted(x)
    for i, k in enumerate(keys):  # distinct arrays: an op that mixes them up cannot pass
        for other in keys[i + 1:]:
            assert not torch.equal(x[k], x[other]), (k, other)


def test_suite_inputs_prefill_outputs_with_values_the_kernel_would_not_write(cpu_device):
    x, _ = make_inputs("write", "fp32", 1000, cpu_device)
    assert (x["a"] != SCALAR).all()


# --- declared work (BabelStream bytes) -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", OPS)
def test_work_follows_babelstream(name, dtype):
    n = 1000
    size = DTYPES[dtype].itemsize
    work = SUITE.op(name).work(params(dtype, n, name))
    assert work.bytes_read == len(READS[name]) * n * size
    assert work.bytes_written == len(WRITES[name]) * n * size
    assert work.math_dtype == dtype
    if name in FLOPS_PER_ELEMENT:
        assert work.flops == FLOPS_PER_ELEMENT[name] * n


def test_work_array_counts_by_op():
    n, size = 1000, 4
    arrays = {name: (SUITE.op(name).work(params("fp32", n, name))) for name in OPS}
    total = {k: (w.bytes_read + w.bytes_written) // (n * size) for k, w in arrays.items()}
    assert total == {"copy": 2, "scale": 2, "add": 3, "triad": 3, "dot": 2, "read": 1, "write": 1}
    assert arrays["read"].bytes_written == 0 and arrays["write"].bytes_read == 0


def test_working_set_param_matches_the_declared_bytes(cpu_device):
    for name, p in stream.params_for("quick", cpu_device, ["fp32", "bf16"], None):
        w = SUITE.op(name).work(p)
        assert p["working_set_bytes"] == w.bytes_read + w.bytes_written, (name, p)


# --- the sweep ----------------------------------------------------------------------------------------


def fake_gpu(llc=256 * MiB, memory=192 * GiB, backend="rocm", arch="gfx942", name="AMD Instinct MI300X"):
    return DeviceInfo(backend=backend, name=name, arch=arch, index=0, memory_bytes=memory,
                      multiprocessors=304, l2_bytes=4 * MiB, llc_bytes=llc, driver_version=None,
                      runtime_version="6.2")


@pytest.mark.parametrize("preset", ["quick", "full"])
@pytest.mark.parametrize("llc", [256 * MiB, 50 * MiB, 126 * MiB])
def test_sweep_spans_64kib_to_four_times_the_llc(preset, llc):
    sizes = stream.sweep_bytes(preset, fake_gpu(llc=llc))
    assert sizes[0] == 64 * KiB
    assert sizes[-1] >= 4 * llc
    assert sizes == sorted(set(sizes))
    assert all(b / a <= 4 for a, b in zip(sizes, sizes[1:]))  # no plateau skipped over


def test_quick_sweep_on_an_mi300x_reaches_one_gib():
    sizes = stream.sweep_bytes("quick", fake_gpu(llc=256 * MiB))
    assert sizes[0] == 64 * KiB and sizes[-1] >= 1 * GiB


def test_sweep_with_unknown_llc_still_leaves_the_caches():
    sizes = stream.sweep_bytes("quick", fake_gpu(llc=None))
    assert sizes[0] == 64 * KiB and sizes[-1] >= 512 * MiB


def test_full_sweep_is_finer_than_quick():
    dev = fake_gpu()
    assert len(stream.sweep_bytes("full", dev)) > len(stream.sweep_bytes("quick", dev))


def test_cases_on_a_fake_gpu_cover_every_op_impl_and_dtype():
    cases = SUITE.cases("quick", fake_gpu())
    assert {c.op for c in cases} == set(OPS)
    assert {c.impl for c in cases} == {"triton", "torch"}
    assert {c.params["dtype"] for c in cases} == set(DTYPES)
    assert len({c.key for c in cases}) == len(cases)
    assert max(c.params["working_set_bytes"] for c in cases) >= 4 * 256 * MiB * 0.99


def test_smoke_preset_is_tiny_and_not_block_multiples(cpu_device):
    cases = SUITE.cases("smoke", cpu_device)
    assert cases
    for c in cases:
        assert c.params["n"] % 128 != 0
        assert c.params["working_set_bytes"] <= 1 * MiB


def test_params_for_with_explicit_sizes():
    dev = fake_gpu()
    sizes = [64 * KiB, 1 * MiB + 5]
    out = stream.params_for("quick", dev, ["fp32", "bf16"], sizes)
    assert {name for name, _ in out} == set(OPS)
    assert len(out) == len(OPS) * 2 * len(sizes)
    for name, p in out:
        arrays = len(READS[name]) + len(WRITES[name])
        item = DTYPES[p["dtype"]].itemsize
        assert any(p["n"] == s // (arrays * item) for s in sizes), (name, p)
        assert p["working_set_bytes"] == p["n"] * arrays * item
        assert any(s - arrays * item < p["working_set_bytes"] <= s for s in sizes)


def test_explicit_sizes_through_suite_cases(cpu_device):
    cases = SUITE.cases("quick", cpu_device, dtypes=["fp32"], sizes=[96 * KiB])
    assert len(cases) == len(OPS) * 2
    assert all(c.params["working_set_bytes"] <= 96 * KiB for c in cases)


@pytest.mark.parametrize("size", [1, 11])
def test_explicit_size_too_small_is_refused(size, cpu_device):
    with pytest.raises(UsageError):
        SUITE.cases("quick", cpu_device, sizes=[size])


def test_explicit_size_larger_than_memory_is_refused():
    with pytest.raises(UsageError) as exc:
        SUITE.cases("quick", fake_gpu(memory=80 * GiB), sizes=[100 * GiB])
    assert "\n" not in str(exc.value)


def test_unknown_preset_and_dtype_are_usage_errors(cpu_device):
    with pytest.raises(UsageError):
        SUITE.cases("huge", cpu_device)
    with pytest.raises(UsageError):
        SUITE.cases("smoke", cpu_device, dtypes=["fp64"])


def test_cases_too_big_for_the_device_are_skipped_with_a_reason():
    small = fake_gpu(memory=1 * GiB)
    impl = SUITE.impls[0]
    assert impl.supports(small, {"working_set_bytes": 4 * GiB, "dtype": "fp32", "n": 1})
    assert impl.supports(small, {"working_set_bytes": 64 * KiB, "dtype": "fp32", "n": 1}) is None


# --- on a GPU ------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", OPS)
def test_triton_kernel_on_the_gpu(name, dtype):
    from parity.harness.core.device import detect

    dev = detect()
    n = (1 << 22) + 3
    x, p = make_inputs(name, dtype, n, dev)
    before = snapshot(x)
    out = run_triton(name, x)
    torch.cuda.synchronize()
    assert_close_explicit(name, out.cpu(), {k: v.cpu() for k, v in before.items()}, n, dtype)
    op = SUITE.op(name)
    assert op.check(out, op.reference(x, p), x, p).passed
