"""Shared set-up: the Triton interpreter on a machine without a GPU, and the `gpu` marker.

`TRITON_INTERPRET` must be set before any module under `parity.kernels` or `parity.suites` is
imported (`triton.jit` reads it when a kernel is decorated), so it is set here, at import time,
before pytest imports any test module.
"""
from __future__ import annotations

import os

import pytest
import torch

HAS_GPU = torch.cuda.is_available()  # true on CUDA and on ROCm builds of torch alike

if not HAS_GPU:
    os.environ["TRITON_INTERPRET"] = "1"


def pytest_collection_modifyitems(config, items):
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
