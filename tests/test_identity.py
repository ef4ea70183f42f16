"""GPUs told apart by what their hardware reports (arch, compute units, memory, amdsmi's market
name), not only by a marketing string a container may hide ("AMD Radeon Graphics")."""
from __future__ import annotations

import sys
from types import ModuleType, SimpleNamespace

import pytest
import torch
from synthetic import gemm_record, stream_record, write_run

from parity.harness.core import device, identity, specs
from parity.harness.measurement import runner
from parity.harness.measurement.flush import FLUSH_UNKNOWN_LLC_BYTES, flush_bytes

GIB = 2**30
MI300X_BYTES = 205_822_885_888  # what torch reports for an MI300X (191.7 GiB of its 192)


def reading(backend, arch, name, units=None, gib=None, market=None, memory_bytes=None):
    return {"backend": backend, "arch": arch, "name": name, "multiprocessors": units,
            "memory_bytes": memory_bytes or (int(gib * GIB) if gib else None), "market_name": market}


GENERIC = "AMD Radeon Graphics"  # a ROCm container without libdrm's amdgpu.ids (pytorch#144203)
READINGS = [
    (reading("rocm", "gfx942", GENERIC, 304, memory_bytes=MI300X_BYTES), "mi300x", "hardware"),
    (reading("rocm", "gfx942", GENERIC, 304, 192), "mi300x", "hardware"),
    (reading("rocm", "gfx942", GENERIC, 304, 256), "mi325x", "hardware"),
    (reading("rocm", "gfx942", "AMD Instinct MI325X", 304, 255.98), "mi325x", "name"),
    (reading("rocm", "gfx942", GENERIC, 228, 128), None, None),  # MI300A: 228 CUs
    (reading("rocm", "gfx942", "AMD Instinct MI300A", 228, 128), None, None),
    # MI308X: a cut-down gfx942 part (fewer CUs; the exact count is not in our sources)
    (reading("rocm", "gfx942", "AMD Instinct MI308X", 80, 192), None, None),
    (reading("rocm", "gfx942", GENERIC, 80, 192), None, None),
    # An MI300X in CPX mode: its name, an eighth of its CUs and memory. Not an MI300X's peaks.
    (reading("rocm", "gfx942", "AMD Instinct MI300X", 38, 24), None, None),
    (reading("rocm", "gfx950", GENERIC, 256, 288, market="AMD Instinct MI350X"), "mi350x", "market name"),
    (reading("rocm", "gfx950", GENERIC, 256, 288, market="AMD Instinct MI355X"), "mi355x", "market name"),
    (reading("rocm", "gfx950", GENERIC, 256, 288), None, None),  # MI350X and MI355X read alike
    (reading("rocm", "gfx950", "AMD Instinct MI355X", 256, 287.98), "mi355x", "name"),
    (reading("cuda", "sm_90", "NVIDIA H100 80GB HBM3", 132, 79.2), "h100-sxm", "name"),
    (reading("cuda", "sm_90", "NVIDIA H100 PCIe", 114, 79.2), "h100-pcie", "name"),
    (reading("cuda", "sm_90", "NVIDIA H100 NVL", 132, 93.1), None, None),
    (reading("cuda", "sm_90", "NVIDIA H200", 132, 139.8), "h200", "name"),
    (reading("cuda", "sm_90", "NVIDIA H200", 132, 141), "h200", "name"),
    (reading("cuda", "sm_90", "NVIDIA Graphics Device", 132, 139.8), "h200", "hardware"),
    (reading("cuda", "sm_90", "NVIDIA Graphics Device", 132, 79.2), "h100-sxm", "hardware"),
    (reading("cuda", "sm_100", "NVIDIA B200", 148, 178.35), "b200", "name"),
    (reading("cuda", "sm_100", "NVIDIA GB200", None, 184.0), "gb200", "name"),
    (reading("cuda", "sm_90", "NVIDIA H200"), "h200", "name"),  # an old run.json: no readings, the name decides
    (reading("rocm", "gfx942", GENERIC), None, None),  # no readings and no name: nothing to go by
]


@pytest.mark.parametrize("dev,expected,how", READINGS)
def test_each_reading_is_its_spec_or_none(dev, expected, how):
    found = identity.identify(dev)
    assert (found.spec_id, found.how) == (expected, how), found.note
    assert found.note and "\n" not in found.note
    assert (identity.match_device(dev).id if identity.match_device(dev) else None) == expected


def test_every_match_table_is_well_formed_and_no_two_specs_read_alike_without_a_name():
    all_specs = specs.load_all()
    for spec in all_specs.values():
        rule = identity.rules(spec.id)
        if rule.get("compute_units") and "memory_gib_min" in rule:
            # a reading in the middle of the spec's bounds is that spec, by hardware alone, unless
            # another spec reads the same (MI350X / MI355X), which then needs a name
            mid = (rule["memory_gib_min"] + rule["memory_gib_max"]) / 2
            found = identity.identify(reading(spec.match_backend, spec.arch, "x", rule["compute_units"][0], mid))
            twins = [s.id for s in all_specs.values() if s.id != spec.id and s.arch == spec.arch
                     and identity.rules(s.id).get("compute_units") == rule["compute_units"]
                     and identity.rules(s.id).get("memory_gib_min") == rule["memory_gib_min"]]
            assert found.spec_id == (None if twins else spec.id), (spec.id, found.note)


def test_a_bad_match_table_names_its_file(tmp_path, monkeypatch):
    text = (specs.SPEC_DIR / "h200.toml").read_text().replace("compute_units = 132", "compute_units = \"many\"")
    (tmp_path / "h200.toml").write_text(text)
    monkeypatch.setattr(specs, "load_all", lambda directory=tmp_path: {"h200": specs.parse(tmp_path / "h200.toml")})
    monkeypatch.setattr(specs, "get", lambda spec_id: specs.load_all()[spec_id])
    identity.rules.cache_clear()
    try:
        with pytest.raises(specs.SpecError, match=r"h200.toml.*compute_units"):  # the schema or identity says so
            identity.rules("h200")
    finally:
        identity.rules.cache_clear()


def test_an_unmatched_gpu_is_flushed_with_at_least_512_mib_and_says_so():
    assert flush_bytes(4 << 20, spec_known=False) == FLUSH_UNKNOWN_LLC_BYTES == 512 << 20
    assert flush_bytes(4 << 20) == 8 << 20  # a known spec: twice its last level
    assert flush_bytes(1 << 30, spec_known=False) == 2 << 30
    gpu = device.DeviceInfo(backend="rocm", name=GENERIC, arch="gfx942", index=0, memory_bytes=24 * GIB,
                            multiprocessors=38, l2_bytes=4 << 20, llc_bytes=4 << 20, driver_version=None,
                            runtime_version="6.4", spec_note="no spec matches AMD Radeon Graphics (gfx942, 38 CUs)")
    flush = runner.Flush(gpu)
    assert flush.bytes == 512 << 20
    meta = runner.run_meta(runner.RunPlan(suites=("stream",)), gpu, ["parity"], flush)
    assert meta["flush_bytes"] == 512 << 20
    assert "no spec matches" in meta["spec_note"] and "512 MiB" in meta["spec_note"]
    matched = device.DeviceInfo(**{**gpu.to_dict(), "visible": (), "spec_id": "mi300x"})
    assert runner.Flush(matched).bytes == 8 << 20 and runner.unmatched_note(matched, None) is None


@pytest.fixture
def radeon(monkeypatch):
    """torch describing one gfx942 GPU named "AMD Radeon Graphics", and an amdsmi that says MI300X."""
    props = SimpleNamespace(name=GENERIC, major=9, minor=4, gcnArchName="gfx942:sramecc+:xnack-",
                            total_memory=MI300X_BYTES, multi_processor_count=304, L2_cache_size=4 << 20,
                            pci_domain_id=0, pci_bus_id=0x0C, pci_device_id=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: props.name)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: None)
    monkeypatch.setattr(torch.version, "hip", "6.4.0")
    monkeypatch.setattr(device, "_driver_version", lambda rocm: None)
    return props


def fake_amdsmi(market: str) -> ModuleType:
    mod = ModuleType("amdsmi")
    mod.amdsmi_init = lambda *a: None
    mod.amdsmi_shut_down = lambda: None
    mod.amdsmi_get_processor_handle_from_bdf = lambda bdf: {"0000:0c:00.0": "h0"}[bdf]
    mod.amdsmi_get_processor_handles = lambda: ["h0"]
    mod.amdsmi_get_gpu_asic_info = lambda h: {"market_name": market, "device_id": "0x74a1"}
    return mod


def test_detection_reads_the_hardware_and_the_market_name(radeon, monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # no amdsmi: told by the hardware
    info = device.detect(0)
    assert (info.spec_id, info.market_name) == ("mi300x", None)
    assert "by its arch, compute units and memory" in info.spec_note
    assert info.llc_bytes == 256 << 20  # the Infinity Cache comes from the spec, not torch's 4 MiB L2
    radeon.total_memory = 256 * GIB
    assert device.detect(0).spec_id == "mi325x"
    radeon.total_memory = 24 * GIB  # a partition: no spec, and the run says so
    info = device.detect(0)
    assert info.spec_id is None and "no spec" in info.spec_note and runner.Flush(info).bytes == 512 << 20
    radeon.total_memory, radeon.multi_processor_count = 288 * GIB, 256
    radeon.gcnArchName = "gfx950"
    assert device.detect(0).spec_id is None  # MI350X and MI355X read alike...
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi("AMD Instinct MI355X"))
    info = device.detect(0)  # ...and amdsmi's market name tells them apart
    assert (info.spec_id, info.market_name) == ("mi355x", "AMD Instinct MI355X")
    assert info.to_dict()["market_name"] == "AMD Instinct MI355X"


def _parity(*args, cwd):
    from test_cli import parity_main

    return parity_main(*args, cwd=cwd)


@pytest.mark.parametrize("memory_bytes,spec_id", [(MI300X_BYTES, "mi300x"), (256 * GIB, "mi325x")])
def test_a_generic_name_is_normalized_and_projected_by_its_hardware(tmp_path, memory_bytes, spec_id):
    dev = {"backend": "rocm", "name": GENERIC, "arch": "gfx942", "index": 0, "multiprocessors": 304,
           "memory_bytes": memory_bytes, "l2_bytes": 4 << 20, "llc_bytes": 256 << 20}
    records = [stream_record(op="copy", n=1 << 28, gbps=4000.0, device=GENERIC),
               gemm_record(m=8192, tflops=700.0, device=GENERIC)]
    folder = write_run(tmp_path / "run", records, device=dev)
    rep = _parity("report", folder, "--format", "md", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert f"normalized against spec {spec_id}" in rep.stdout
    peak = specs.get(spec_id).peak("bf16").value
    assert f"{700 / peak * 100:.1f}" in rep.stdout  # % of that spec's BF16 peak
    proj = _parity("project", folder, "--to", "h200", "--format", "csv", cwd=tmp_path)
    assert proj.returncode == 0, proj.stderr
    assert f",{spec_id},h200," in proj.stdout
    csv = _parity("report", folder, "--format", "csv", cwd=tmp_path)
    assert csv.stdout.count(f",{spec_id},") >= 2, csv.stdout[:2000]


def test_a_run_on_an_unmatched_gpu_says_so_in_one_line(monkeypatch, capsys, tmp_path):
    from parity.harness import cli

    gpu = device.DeviceInfo(backend="rocm", name=GENERIC, arch="gfx942", index=0, memory_bytes=24 * GIB,
                            multiprocessors=38, l2_bytes=4 << 20, llc_bytes=4 << 20, driver_version=None,
                            runtime_version="6.4",
                            spec_note=identity.identify(reading("rocm", "gfx942", GENERIC, 38, 24)).note)

    class Stop(Exception):
        pass

    from parity.harness import api

    monkeypatch.setattr(api, "run_device", lambda index=0: gpu)
    monkeypatch.setattr(runner, "execute", lambda *a, **k: (_ for _ in ()).throw(Stop()))
    with pytest.raises(Stop):
        cli.main(["run", "stream", "--preset", "smoke", "--out", str(tmp_path / "r")])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "no spec" in ln]
    assert len(lines) == 1 and lines[0].startswith("parity: warning: no spec matches AMD Radeon Graphics")
    assert "512 MiB" in lines[0]
