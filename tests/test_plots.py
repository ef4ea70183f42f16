"""The report's figures on synthetic runs: which are drawn, which are skipped and why."""
from __future__ import annotations

import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib (the report extra; the test extra pulls it in)")

from parity.harness.reporting import plots, report  # noqa: E402
from synthetic import (CPU, MI300X, STREAM_ARRAYS, attention_record, gemm_record, record, run,  # noqa: E402
                       stream_record)

PNG = b"\x89PNG\r\n\x1a\n"


def full_h200_run():
    recs = []
    for op in ("copy", "triad", "read"):
        for impl in ("torch", "triton"):
            for size in (64 << 10, 4 << 20, 64 << 20, 1 << 30):
                n = size // (sum(STREAM_ARRAYS[op]) * 4)
                recs.append(stream_record(op=op, n=n, impl=impl, gbps=9000.0 if size < (50 << 20) else 4300.0))
    for dtype in ("bf16", "fp8"):
        for m in (1024, 4096, 8192):
            recs.append(gemm_record(m=m, dtype=dtype, tflops=300.0 * m / 4096))
    for seq in (1024, 4096, 16384):
        recs.append(attention_record(seq=seq, rate=200.0 + seq / 100))
        recs.append(attention_record(seq=seq, direction="bwd", causal=True, rate=150.0))
        recs.append(attention_record(seq=seq, op="decode", rate=3000.0))
    return run(recs, run_id="h200-run")


def by_kind(figures):
    return {p.name.rsplit("-", 1)[1]: p for p in figures}


def test_every_plot_is_drawn_for_a_run_with_all_three_suites():
    r = full_h200_run()
    figures = by_kind(plots.make_plots([r], report.frame([r])))
    assert set(figures) == {"roofline", "stream", "gemm", "attention"}
    for plot in figures.values():
        assert plot.png is not None and plot.png.startswith(PNG), plot
    assert "no FLOPs" in figures["roofline"].note  # copy has no place on a roofline


def test_absent_suites_are_skipped_with_a_note():
    r = run([stream_record(op="triad", n=1 << 20)], run_id="s")
    figures = by_kind(plots.make_plots([r], report.frame([r])))
    assert figures["stream"].png is not None and figures["roofline"].png is not None
    assert figures["gemm"].png is None and "no timed gemm records" in figures["gemm"].note
    assert figures["attention"].png is None and "no timed attention records" in figures["attention"].note


def test_interpreter_runs_get_no_plots_and_say_why():
    recs = [record(op="copy", impl="triton", timing="wall-interpret", device="Some CPU", bytes_read=10**6)]
    r = run(recs, device=CPU, run_id="cpu")
    (plot,) = plots.make_plots([r], report.frame([r]))
    assert plot.png is None and "interpreter" in plot.note


def test_series_are_named_by_what_varies():
    rows = report.frame([run([gemm_record(m=1024, layout="tn"), gemm_record(m=2048, layout="tn"),
                              gemm_record(m=1024, layout="nt"), gemm_record(m=1024, dtype="fp8")])])
    varying, keys = plots._series(rows, {"m", "n", "k"})
    assert varying == ["impl", "dtype", "layout"]
    labels = {plots._label(varying, k) for k in keys}
    assert labels == {"torch bf16 layout=tn", "torch bf16 layout=nt", "torch fp8 layout=tn"}


def test_a_point_above_the_peak_is_not_drawn_and_the_plot_says_so():
    r = run([gemm_record(m=4096, tflops=2000.0), gemm_record(m=8192, tflops=500.0)], run_id="x")  # bf16 peak 989
    figures = by_kind(plots.make_plots([r], report.frame([r])))
    assert figures["gemm"].png is not None and "1 point(s) above" in figures["gemm"].note


def test_only_drawn_plots_are_written_and_a_run_without_spec_gets_points_only(tmp_path):
    mi = run([stream_record(op="copy", n=n, device="AMD Instinct MI300X") for n in (1 << 12, 1 << 26)],
             device=MI300X, run_id="mi")
    figures = plots.make_plots([mi], report.frame([mi]))
    paths = plots.write_pngs(figures, tmp_path / "png")
    assert sorted(p.name for p in paths) == ["amd-instinct-mi300x-events-stream.png"]
    cpu = run([record(op="gemm", suite="gemm", metric="TFLOPS", timing="wall", device="Some CPU", flops=2 * 512**3,
                      bytes_read=3 * 4 * 512**2, params={"dtype": "fp32", "m": 512, "n": 512, "k": 512})],
              device=CPU, run_id="cpu")
    figures = by_kind(plots.make_plots([cpu], report.frame([cpu])))
    assert figures["roofline"].png is not None and figures["gemm"].png is not None  # no spec: points only


def test_no_legend_covers_any_plot_area(monkeypatch):
    # the layout itself: every legend's box, as drawn, lies outside every axes' box of its figure
    # (a legend inside, or beside one panel but over the next, covers the data it names)
    figures = []
    real_png = plots._png
    monkeypatch.setattr(plots, "_png", lambda fig: figures.append(fig) or real_png(fig))
    r = full_h200_run()
    drawn = [p for p in plots.make_plots([r], report.frame([r])) if p.png is not None]
    assert len(figures) == len(drawn) >= 4
    checked = 0
    for fig in figures:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        boxes = [ax.get_window_extent(renderer) for ax in fig.axes]
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is None:
                continue
            box = legend.get_window_extent(renderer)
            checked += 1
            for other in boxes:
                assert not box.overlaps(other), (fig._suptitle.get_text() if fig._suptitle else "", box, other)
    assert checked >= 5  # roofline, stream, gemm and both attention panels: every legend was looked at
