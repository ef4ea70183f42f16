"""The spec database: every file parses and follows the rules the normalization relies on."""
from __future__ import annotations

import itertools
import re

import pytest

from parity.harness.core import identity, specs
from parity.harness.core.model import UsageError

EXPECTED = {"mi300x", "mi325x", "mi350x", "mi355x", "mi455x", "h100-sxm", "h100-pcie", "h200", "b200",
            "gb200", "b300", "rubin"}
# What torch reports for real products, and the spec each must match (None: no spec).
PRODUCT_NAMES = [
    ("cuda", "sm_90", "NVIDIA H100 80GB HBM3", "h100-sxm"),
    ("cuda", "sm_90", "NVIDIA H100 PCIe", "h100-pcie"),
    ("cuda", "sm_90", "NVIDIA H100 NVL", None),
    ("cuda", "sm_90", "NVIDIA H200", "h200"),
    ("cuda", "sm_90", "NVIDIA H200 NVL", None),
    ("cuda", "sm_90", "NVIDIA GH200 480GB", None),
    ("cuda", "sm_100", "NVIDIA B200", "b200"),
    ("cuda", "sm_100", "NVIDIA GB200", "gb200"),
    ("cuda", "sm_103", "NVIDIA B300 SXM6 AC", "b300"),
    ("rocm", "gfx942", "AMD Instinct MI300X", "mi300x"),
    ("rocm", "gfx942", "AMD Instinct MI300X VF", "mi300x"),
    ("rocm", "gfx942", "AMD Instinct MI300A", None),
    ("rocm", "gfx942", "AMD Instinct MI325X", "mi325x"),
    ("rocm", "gfx950", "AMD Instinct MI350X", "mi350x"),
    ("rocm", "gfx950", "AMD Instinct MI355X", "mi355x"),
    ("rocm", "gfx1250", "AMD Instinct MI455X", "mi455x"),
    ("cpu", "x86_64", "AMD EPYC 9654", None),
]


@pytest.fixture(scope="module")
def all_specs():
    return specs.load_all()


def test_every_device_of_the_database_is_there(all_specs):
    assert set(all_specs) == EXPECTED


@pytest.mark.parametrize("backend,arch,name,expected", PRODUCT_NAMES)
def test_each_product_matches_exactly_its_spec(backend, arch, name, expected):
    found = identity.match(backend, arch, name)
    assert (found.id if found else None) == expected


def test_no_two_match_rules_overlap(all_specs):
    names = [name for _, _, name, _ in PRODUCT_NAMES] + [s.name for s in all_specs.values()]
    for a, b in itertools.combinations(all_specs.values(), 2):
        if (a.match_backend, a.match_arch) != (b.match_backend, b.match_arch):
            continue
        for name in names:
            both = re.search(a.name_regex, name, re.I) and re.search(b.name_regex, name, re.I)
            assert not both, f"{name!r} matches both {a.id} and {b.id}"


def test_each_spec_matches_its_own_name_and_arch(all_specs):
    for spec in all_specs.values():
        assert spec.match_arch == spec.arch
        assert spec.matches(spec.match_backend, spec.arch, spec.name), spec.id


def _all_figures(spec):
    for group in (spec.figures, spec.peaks):
        for name, fig in group.items():
            yield name, fig


def test_every_figure_and_variant_has_a_known_source_and_confidence(all_specs):
    for spec in all_specs.values():
        assert spec.identity_source and set(spec.identity_source) <= set(spec.sources), spec.id
        for name, fig in _all_figures(spec):
            assert fig.source and set(fig.source) <= set(spec.sources), (spec.id, name)
            assert fig.confidence in specs.CONFIDENCES
            for var in fig.variants:
                assert var.get("source") and set(var["source"]) <= set(spec.sources), (spec.id, name, var)
                assert var.get("confidence") in specs.CONFIDENCES
                assert "value" in var or "range" in var


def test_peaks_with_clock_and_units_agree_within_two_percent(all_specs):
    checked = 0
    for spec in all_specs.values():
        units = spec.value("compute_units")
        for dtype, fig in spec.peaks.items():
            per_clock, clock = fig.extra.get("flops_per_clock_per_unit"), fig.extra.get("clock_mhz")
            if fig.value is None or per_clock is None or clock is None or units is None:
                continue
            derived = clock * 1e6 * units * per_clock / 1e12
            assert derived == pytest.approx(fig.value, rel=0.02), (spec.id, dtype, derived, fig.value)
            checked += 1
    assert checked >= 20  # the check must actually cover the shipping parts


def test_dense_peak_is_never_above_sparse(all_specs):
    for spec in all_specs.values():
        for dtype, fig in spec.peaks.items():
            if fig.value is not None and "sparse" in fig.extra:
                assert fig.value <= fig.extra["sparse"], (spec.id, dtype)


def test_ranges_contain_the_primary_value(all_specs):
    for spec in all_specs.values():
        for name, fig in _all_figures(spec):
            if fig.range and fig.value is not None:
                assert fig.range[0] <= fig.value <= fig.range[1], (spec.id, name)


def test_formats_follow_the_architecture(all_specs):
    for spec in all_specs.values():
        assert spec.fp8_format == ("fnuz" if spec.arch == "gfx942" else "ocp"), spec.id
        number = int(re.sub(r"\D", "", spec.arch))
        native_fp4 = number >= 100 if spec.vendor == "nvidia" else number >= 950
        assert spec.fp4_hardware == native_fp4, spec.id
        assert (spec.peak("fp4") is not None) == spec.fp4_hardware, spec.id


def test_figures_people_quote():
    assert specs.get("h100-sxm").peak("bf16").value == 989.4
    assert specs.get("h100-sxm").peak("fp16").value == 989.4  # fp16 shares the bf16 peak
    assert specs.get("h200").memory_gbps == 4800
    assert specs.get("mi300x").peak("bf16").value == 1307.4
    assert specs.get("mi300x").llc_bytes == 256 << 20
    assert specs.get("mi355x").peak("fp8").value == pytest.approx(5033.2)
    assert specs.get("b200").peak("fp4").value == 9000
    assert specs.get("h100-sxm").peak("fp4") is None  # not in hardware


def test_mi455x_keeps_every_published_variant():
    spec = specs.get("mi455x")
    assert spec.status == "announced"
    bandwidth = spec.figure("memory_bandwidth_tbps")
    values = {v.get("value") for v in bandwidth.variants}
    assert {19.6, 23.3} <= values
    assert any(tuple(v.get("range", ())) == (10.0, 12.0) for v in bandwidth.variants)
    fp8 = spec.peaks["fp8"]
    assert fp8.value == 10000  # the dense reading of the 20 PF headline
    assert any(v.get("value") == 20000 for v in fp8.variants)
    assert spec.figure("memory_gb").value == 432
    assert spec.figure("tdp_w").bounds == (900, 1100)
    assert spec.disagreements


def test_unknown_spec_is_one_clear_line():
    with pytest.raises(UsageError, match=r"unknown spec 'nope' \(known: .*h200.*\)"):
        specs.get("nope")


def test_a_broken_file_is_refused_naming_it(tmp_path):
    good = (specs.SPEC_DIR / "h200.toml").read_text()
    (tmp_path / "h200.toml").write_text(good.replace('confidence = "datasheet"', 'confidence = "rumour"', 1))
    with pytest.raises(specs.SpecError, match="h200.toml"):
        specs.parse(tmp_path / "h200.toml")
    (tmp_path / "x.toml").write_text(good)
    with pytest.raises(specs.SpecError, match="differs from the file name"):
        specs.parse(tmp_path / "x.toml")
    (tmp_path / "h200.toml").write_text("this is = not [toml")
    with pytest.raises(specs.SpecError, match="not valid TOML"):
        specs.parse(tmp_path / "h200.toml")


def test_a_device_with_two_matching_specs_is_an_error(tmp_path, monkeypatch):
    spec = specs.get("h200")
    twin = specs.DeviceSpec(**{**spec.__dict__, "id": "twin"})
    monkeypatch.setattr(specs, "load_all", lambda directory=None: {"h200": spec, "twin": twin})
    with pytest.raises(specs.SpecError, match="several specs"):
        identity.match("cuda", "sm_90", "NVIDIA H200")
