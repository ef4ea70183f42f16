"""Each built-in suite's light metadata (parity/suites/_meta) is what its Suite accepts, is read
without torch, and refuses bad input before the device is detected with the very lines the late
check (runner.plan_cases) gives; where it cannot know (plugins, a fit on a GPU) it refuses nothing."""
from __future__ import annotations

import subprocess
import sys

import pytest

from background import clean_env
from parity.harness.core import device as device_mod
from parity.harness.core.model import Impl, SuiteMeta, UsageError
from parity.harness.measurement import plan as plan_mod
from parity.harness.measurement import registry, runner
from parity.harness.measurement.plan import RunPlan


@pytest.mark.parametrize("name", registry.builtin_names())
def test_the_suite_takes_its_names_and_checks_from_its_light_metadata(name):
    meta, suite = registry.light(name), registry.load(name)
    assert meta is not None and meta.name == suite.name
    assert (suite.presets, suite.dtypes) == (meta.presets, meta.dtypes)
    assert set(suite.impl_names()) == set(meta.impls)
    assert (suite.check_sizes, suite.check_shapes) == (meta.check_sizes, meta.check_shapes)


def test_a_suite_whose_implementations_are_not_the_declared_ones_is_not_built():
    meta = SuiteMeta(name="x", presets=("quick",), dtypes=("fp32",), impls=("triton",))
    with pytest.raises(ValueError, match="not the declared"):
        meta.suite(impls=(Impl("torch", "op", "torch", lambda x, p: None),), description="", ops=(),
                   params_for=lambda *a: [])


def test_the_light_metadata_imports_no_torch_and_leaves_the_interpreter_switch_free():
    code = ("import sys\nfrom parity.harness.measurement import registry\n"
            "metas = [registry.light(n) for n in registry.builtin_names()]\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'triton') or m.startswith('parity.kernels')]\n"
            "assert None not in metas and not heavy, heavy\n"
            "from parity.harness.core import device\ndevice.enable_interpreter()\n")
    proc = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_stream_and_collectives_declare_torch_itemsizes():
    import torch

    from parity.suites._meta import collectives, stream

    for dtypes in (stream.DTYPES, collectives.DTYPES):
        assert all(getattr(torch, attr).itemsize == size for attr, size in dtypes.values())


BAD = [
    dict(preset="nope"),
    dict(impls=("nope",)),
    dict(dtypes=("nope",)),
    dict(suites=("gemm",), dtypes=("fp32",)),
    dict(suites=("stream",), sizes_bytes=(1,)),
    dict(sizes_bytes=(100 << 40,)),
    dict(suites=("stream",), sizes_bytes=(100 << 40,)),
    dict(suites=("attention",), sizes_bytes=(1024,)),
    dict(suites=("gemm",), shapes=((1, 2),)),
    dict(suites=("gemm",), shapes=((100000, 100000, 100000),)),
    dict(suites=("stream",), shapes=((4, 4, 4),)),
    dict(suites=("attention", "stream"), shapes=((4, 4, 4),)),
    dict(suites=("attention", "gemm"), dtypes=("fp32",)),
]


def _early(**request):
    suites = request.pop("suites", ())
    plan_mod.check_early(suites, request.get("preset"), request.get("impls", ()), request.get("dtypes", ()),
                         request.get("sizes_bytes", ()), request.get("shapes", ()))


@pytest.mark.parametrize("request_", BAD, ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()))
def test_the_early_refusal_is_the_late_one_line_for_line(request_, monkeypatch):
    monkeypatch.setattr(device_mod, "gpu_may_be_here", lambda: False)  # the CPU is the device, as detect() says
    plan = RunPlan(suites=request_.get("suites") or tuple(registry.suite_names()),
                   **{k: v for k, v in request_.items() if k != "suites"})
    with pytest.raises(UsageError) as late:
        runner.plan_cases(plan, device_mod.cpu_info())
    with pytest.raises(UsageError) as early:
        _early(**request_)
    assert str(early.value) == str(late.value)


def test_a_good_request_is_not_refused_early(monkeypatch):
    monkeypatch.setattr(device_mod, "gpu_may_be_here", lambda: False)
    _early(suites=("stream", "gemm"), preset="smoke", impls=("torch",), dtypes=("fp32", "bf16"),
           sizes_bytes=(1 << 20,), shapes=((64, 64, 64),))


def test_where_a_gpu_may_be_here_a_fit_waits_for_the_device(monkeypatch):
    monkeypatch.setattr(device_mod, "gpu_may_be_here", lambda: True)
    _early(sizes_bytes=(100 << 40,))  # the GPU's memory decides, after detection
    _early(suites=("gemm",), shapes=((100000, 100000, 100000),))
    _early(suites=("stream",), sizes_bytes=(1 << 20, 1))  # the first size's fit is unknown: no further
    for request, line in ((dict(suites=("stream",), sizes_bytes=(1,)), "too small"),
                          (dict(suites=("gemm",), shapes=((1, 2),)), "three dimensions"),
                          (dict(preset="nope"), "no preset")):
        with pytest.raises(UsageError, match=line):
            _early(**request)


def test_a_plugin_suite_in_the_run_leaves_every_check_to_the_late_one(monkeypatch):
    fake = registry.Plugin(registry.SUITES_GROUP, "mine", "my_package.suite", "mine", "1.0")
    monkeypatch.setattr(registry, "plugin_suites", lambda: {"mine": fake})
    assert registry.light("mine") is None
    _early(preset="nope")  # every suite: "mine" among them, whose presets only its Suite knows
    _early(suites=("mine",), dtypes=("nope",))
    with pytest.raises(UsageError, match="no preset"):
        _early(suites=("stream",), preset="nope")  # a run of built-in suites alone is still checked


def test_an_implementation_a_plugin_may_add_is_left_to_the_late_check(monkeypatch):
    fake = registry.Plugin(registry.IMPLS_GROUP, "extra", "my_package.impls:IMPLS", "mine", "1.0")
    real = registry.plugins
    monkeypatch.setattr(registry, "plugins", lambda group: [fake] if group == registry.IMPLS_GROUP else real(group))
    _early(suites=("stream",), impls=("nope",))
    with pytest.raises(UsageError, match="no preset"):
        _early(suites=("stream",), impls=("torch",), preset="nope")
