"""Shared set-up: the Triton interpreter on a machine without a GPU, and the `gpu` marker.

`TRITON_INTERPRET` must be set before any module under `parity.kernels` or `parity.suites` is
imported (`triton.jit` reads it when a kernel is decorated), so it is set here, at import time,
before pytest imports any test module.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

import background

HAS_GPU = torch.cuda.is_available()  # true on CUDA and on ROCm builds of torch alike

if not HAS_GPU:
    os.environ["TRITON_INTERPRET"] = "1"


def pytest_configure(config):
    """The session's first process (not an xdist worker) starts the background groups its paths
    include (tests/background.py); the workers inherit where their results go."""
    # `-n auto` hands out tests in fixed chunks (xdist's "load"); a few end-to-end tests of 10-25 s
    # then leave one worker idle at the end. Work stealing rebalances them: 288-312 s against
    # 341-343 s for the whole suite on the 2-core VM (session 11). A --dist the user gives is kept.
    if getattr(config.option, "dist", None) == "load" and "--dist" not in " ".join(config.invocation_params.args):
        config.option.dist = "worksteal"
    if hasattr(config, "workerinput") or os.environ.get(background.ENV):
        return
    groups = background.wanted(list(config.args), Path(config.invocation_params.dir))
    if not groups:
        return
    base = Path(tempfile.mkdtemp(prefix="parity-tests-background-"))
    os.environ[background.ENV] = str(base)
    config._parity_background = (base, background.start(groups, base))


def pytest_unconfigure(config):
    started = getattr(config, "_parity_background", None)
    if started:
        base, procs = started
        background.stop(procs)
        os.environ.pop(background.ENV, None)
        shutil.rmtree(base, ignore_errors=True)


READS_BACKGROUND = {"inspect_rows", "gloo_runs"}  # fixtures that wait for a background group


def pytest_collection_modifyitems(config, items):
    # Tests that read a background group go last (in a stable order, the same on every xdist worker),
    # so the group has the rest of the session to finish while the other tests run.
    items.sort(key=lambda item: bool(READS_BACKGROUND & set(getattr(item, "fixturenames", ()))))
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs a CUDA or ROCm GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Where a test runs a Triton kernel: the GPU on a GPU host (the interpreter is off there, and Triton
# rejects host pointers), the CPU under the interpreter elsewhere.
KERNEL_DEVICE = "cuda" if HAS_GPU else "cpu"


@pytest.fixture(scope="session")
def kernel_device() -> str:
    """The torch device of a test's Triton kernel inputs: "cuda" on a GPU host, else "cpu"."""
    return KERNEL_DEVICE


@pytest.fixture(scope="session")
def host_cpu():
    """The CPU as a device, on a GPU host too: for tests of CPU presets and PyTorch's CPU paths
    (never a Triton kernel: on a GPU host the interpreter is off)."""
    from parity.harness.core.device import cpu_info

    return cpu_info()


@pytest.fixture(scope="session")
def cpu_device():
    """The device this process runs on (on a machine without a GPU: the CPU and the interpreter)."""
    from parity.harness.core.device import detect

    return detect()


@pytest.fixture(scope="session")
def inspect_rows(tmp_path_factory) -> list[dict]:
    """The rows of tests/test_inspect.py's CI check (tests/background.py: the kernels of `quick`,
    lead configs; every config of the stream kernels), compiled once per session."""
    import json

    _, procs = background.results("inspect", tmp_path_factory.mktemp("inspect"))
    rows = []
    for name in ("kernels", "stream"):
        assert procs[name].returncode == 0, procs[name].stderr[-3000:]
        rows += json.loads(procs[name].stdout)
    return rows


@pytest.fixture(scope="session")
def gloo_runs(tmp_path_factory):
    """The collectives runs over gloo ranks (tests/background.py): their folder and each CompletedProcess."""
    return background.results("collectives", tmp_path_factory.mktemp("gloo"))
