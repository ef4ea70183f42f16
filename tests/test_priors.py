"""Achieved-efficiency priors: the sourced data files, their strict loader, measured and trend priors."""
from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from parity.harness.core import priors, specs

GOOD = '''schema = 1
vendor = "nvidia"
generations = [["h100-sxm", "h200"], ["b200"]]

[[figure]]
device = "h100-sxm"
op_class = "gemm_bf16_best"
value = 794.5
stack = "torch + cuBLAS"
stack_version = "2.7"
conditions = "best"
source = ["X1"]

[sources.X1]
title = "a table"
ref = "somewhere"
'''


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nvidia.toml"
    path.write_text(text)
    return path


def test_the_shipped_priors_load_and_every_figure_is_sourced_and_under_its_peak():
    db = priors.load_all()
    assert {"nvidia", "amd"} <= set(db.generations)
    assert len(db.figures) >= 40
    for fig in db.figures:
        assert fig.sources and 0 < fig.efficiency <= 1
        assert fig.use or fig.why
    classes = {f.op_class for f in db.figures if f.use}
    assert classes >= {"gemm_bf16_best", "gemm_bf16_8192", "gemm_fp8_best", "gemm_fp8_8192", "gemm_fp4_8192",
                       "hbm_copy", "hbm_triad", "attention_fwd_d128"}
    assert any(f.clock_mhz == 1207 for f in db.figures)  # MI300X's sustained clock under GEMM, where published


def test_a_good_file_parses(tmp_path):
    vendor, gens, figs = priors.parse(write(tmp_path, GOOD))
    assert vendor == "nvidia" and gens == (("h100-sxm", "h200"), ("b200",))
    assert figs[0].efficiency == pytest.approx(794.5 / 989.4)
    assert figs[0].sources == ("a table (somewhere)",)


@pytest.mark.parametrize("change, message", [
    (("value = 794.5", "value = 1200"), "above h100-sxm's peak"),
    (("value = 794.5", "value = -1"), "positive number"),
    (('source = ["X1"]', 'source = ["X2"]'), "ids of this file's"),
    (('op_class = "gemm_bf16_best"', 'op_class = "gemm_int8"'), "op_class 'gemm_int8'"),
    (('device = "h100-sxm"', 'device = "a100"'), "not a spec id"),
    (('stack = "torch + cuBLAS"', 'stack = "x"\nuse = false'), "says why"),
    (('stack = "torch + cuBLAS"', 'stack = "x"\nflops = 3'), "unknown keys"),
    (('["b200"]]', '["mi300x"]]'), "mi300x is a amd part"),
    (("schema = 1", "schema = 2"), "schema must be 1"),
    (('generations = [["h100-sxm", "h200"], ["b200"]]', 'generations = [["h200"], ["b200"]]'), "in no generation"),
])
def test_a_broken_file_is_refused_with_its_name(tmp_path, change, message):
    with pytest.raises(priors.PriorError, match="nvidia.toml") as err:
        priors.parse(write(tmp_path, GOOD.replace(*change)))
    assert message in str(err.value)


def test_a_measured_prior_is_the_median_of_the_used_figures_with_their_spread():
    p = priors.prior("mi300x", "gemm_bf16_best")
    peak = specs.get("mi300x").peak("bf16").value
    assert p.basis == "measured"
    assert (p.efficiency, p.low, p.high) == pytest.approx((statistics.median([668 / peak, 708 / peak]), 668 / peak, 708 / peak))
    # context figures (another stack: Triton, HipKittens) do not count
    p = priors.prior("mi355x", "gemm_bf16_8192")
    assert p.high == pytest.approx(1591 / specs.get("mi355x").peak("bf16").value)


def test_an_unreleased_part_gets_its_vendors_trend_labelled_as_such():
    p = priors.prior("mi455x", "gemm_bf16_best")
    assert p.basis == "trend" and "mi300x" in p.label and "mi355x" in p.label
    mi355x = priors.prior("mi355x", "gemm_bf16_best").efficiency
    assert p.efficiency == pytest.approx(mi355x)  # the newest measured generation
    rubin = priors.prior("rubin", "gemm_bf16_best")
    assert rubin.basis == "trend" and rubin.low < rubin.efficiency <= rubin.high


def test_leaving_a_device_out_hides_its_figures():
    assert priors.prior("h200", "hbm_copy").basis == "measured"
    hidden = priors.prior("h200", "hbm_copy", exclude=frozenset({"h200"}))
    assert hidden.basis == "trend" and "same generation" in hidden.label
    assert hidden.efficiency == pytest.approx(2.90 / 3.35)  # H100 SXM's BabelStream copy
