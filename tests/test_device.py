"""Detection on a described GPU (torch's CUDA calls replaced): what is read, and when the GPU is
made current (a launcher must not hold a context on GPU 0 while its workers run)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from parity.harness.core import device
from parity.harness.core.model import UsageError


@pytest.fixture
def two_h200(monkeypatch):
    current = []
    props = SimpleNamespace(name="NVIDIA H200", major=9, minor=0, total_memory=141 << 30,
                            multi_processor_count=132, L2_cache_size=50 << 20)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: props.name)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(device, "_driver_version", lambda rocm: "580.0")
    return current


def test_a_described_gpu_is_read_and_matched(two_h200):
    info = device.detect(1)
    assert (info.backend, info.arch, info.index, info.spec_id) == ("cuda", "sm_90", 1, "h200")
    assert info.llc_bytes == 50 << 20 and info.visible == ("NVIDIA H200", "NVIDIA H200")
    assert two_h200 == [1]  # made current: this process runs the cases


def test_a_launcher_describes_the_gpu_without_making_it_current(two_h200):
    info = device.detect(0, select=False)
    assert info.is_gpu and two_h200 == []
    device.use(info)  # the runner does this where the cases run
    assert two_h200 == [0]


def test_an_index_out_of_range_is_one_line(two_h200):
    with pytest.raises(UsageError, match="device index 2 is out of range: 2 GPU"):
        device.detect(2)
