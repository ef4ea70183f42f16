"""The HTML report: self-contained, escaped, and rendered by a real headless browser (chromium)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

pytest.importorskip("matplotlib", reason="the HTML report embeds plots: matplotlib (the test extra pulls it in)")

from parity.harness.reporting import crosstab, html, plots, report  # noqa: E402
from synthetic import MI300X, gemm_record, record, run, stream_record  # noqa: E402
from test_plots import full_h200_run  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def two_runs():
    mi = run([gemm_record(m=m, dtype="fp8", tflops=400.0 * m / 4096, device="AMD Instinct MI300X") for m in (1024, 4096, 8192)]
             + [stream_record(op="triad", n=1 << 28, gbps=4200.0, device="AMD Instinct MI300X")],
             device=MI300X, run_id="mi-run")
    mi.meta.update(versions={"torch": "2.9.0+rocm6.4", "hip_runtime": "6.4"}, started_at="2026-11-20T10:00:00+00:00")
    h200 = full_h200_run()
    h200.meta.update(versions={"torch": "2.9.0+cu128", "cuda_runtime": "12.8", "driver": "575.51"},
                     git={"revision": "abc123", "dirty": False}, command=["parity", "run", "--preset", "quick"])
    return [h200, mi]


def make_page(runs):
    df = report.frame(runs)
    return html.page(runs, df, plots.make_plots(runs, df)), df


@pytest.fixture(scope="module")
def page_and_frame():
    return make_page(two_runs())


def test_page_is_self_contained_and_complete(page_and_frame):
    page, df = page_and_frame
    assert page.startswith("<!doctype html>")
    # nothing is fetched when the page is opened: no external script, style, image or font
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    # H200: roofline, stream, GEMM, attention; MI300X: roofline, stream, GEMM (no attention records)
    assert page.count("<img ") == 7 and page.count("data:image/png;base64,") == 7
    assert page.count('<table class="sortable">') == 1 + len(report.sections(df))  # side by side + per device
    for text in ("Summary", "NVIDIA H200", "AMD Instinct MI300X", "stream HBM 4,300.0 GB/s (89.6 % of h200)",
                 "2.9.0+cu128", "575.51", "abc123", "parity run --preset quick", "Spec h200", "Spec mi300x",
                 "S30", "attention plot skipped: no timed attention records"):
        assert text in page, text


def test_everything_from_a_run_is_escaped():
    r = run([record(op="copy", bytes_read=10**9, status="failed")], run_id="<script>alert(1)</script>")
    r.records[0]["reason"] = "<b>boom</b> & more"
    page, _ = make_page([r])
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>boom</b>" not in page and "&lt;b&gt;boom&lt;/b&gt; &amp; more" in page


def browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


# Injected only into the tested copy: reports what the browser rendered, then sorts one column.
PROBE = """
<script>
window.addEventListener("load", function () {
  var out = {};
  var imgs = Array.prototype.slice.call(document.images);
  out.images = imgs.length;
  out.decoded = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; }).length;
  var tables = document.querySelectorAll("table.sortable");
  out.rows = Array.prototype.map.call(tables, function (t) { return t.tBodies[0].rows.length; });
  var table = tables[tables.length - 1];
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var col = heads.findIndex(function (th) { return th.textContent.indexOf("rate") === 0; });
  function column() { return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[col].textContent; }); }
  out.before = column();
  heads[col].click(); out.ascending = column(); out.sort_state = heads[col].getAttribute("aria-sort");
  heads[col].click(); out.descending = column();
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def rate(text: str) -> float | None:
    match = re.match(r"^([\d,]+\.?\d*)", text.strip())
    return float(match.group(1).replace(",", "")) if match else None


@pytest.mark.skipif(browser() is None, reason="no headless chromium here (apt-get install chromium)")
def test_a_real_browser_renders_the_tables_and_plots_and_sorts(tmp_path, page_and_frame):
    page, df = page_and_frame
    path = tmp_path / "report.html"
    path.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    proc = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, (proc.returncode, proc.stderr[-2000:])
    probe = json.loads(match.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert probe["images"] == 7 and probe["decoded"] == 7  # every plot decoded to a real image
    sections = report.sections(df)
    (_, side), = crosstab.side_by_side(df)
    assert probe["rows"] == [len(side)] + [len(group) for _, group in sections]  # side by side, then per device
    values = [rate(t) for t in probe["ascending"]]
    numbers = [v for v in values if v is not None]
    assert numbers == sorted(numbers) and len(numbers) >= 3
    assert values[:len(numbers)] == numbers  # the unrated rows ("-", "above spec") after the numbers
    assert probe["sort_state"] == "ascending"
    down = [rate(t) for t in probe["descending"] if rate(t) is not None]
    assert down == sorted(numbers, reverse=True)
    assert sorted(probe["before"]) == sorted(probe["ascending"])  # sorting moves rows, it loses none


# --- a run over CPU workers, as `parity run --cpu-workers 2` lays it out --------------------------

LAYOUT_PROBE = """
<script>
window.addEventListener("load", function () {
  function box(e) { var r = e.getBoundingClientRect(); return [r.left, r.top + window.scrollY, r.right, r.bottom + window.scrollY]; }
  var out = {width: document.documentElement.clientWidth, text: document.body.innerText};
  out.images = Array.prototype.map.call(document.images, function (i) {
    return {box: box(i), natural: i.naturalWidth, shown: i.getBoundingClientRect().width, alt: i.alt}; });
  out.tables = Array.prototype.map.call(document.querySelectorAll("table"), function (t) {
    var rows = Array.prototype.slice.call(t.tBodies.length ? t.tBodies[0].rows : t.rows);
    var heads = t.tHead ? Array.prototype.map.call(t.tHead.rows[0].cells, function (c) { return c.textContent; }) : [];
    var cols = heads.map(function (_, k) { return rows.map(function (r) { return r.cells[k] ? r.cells[k].textContent.trim() : ""; }); });
    return {box: box(t), heads: heads, cols: cols, rows: rows.length}; });
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def cpu_worker_run(tmp_path):
    """Two CPU workers' parts merged by the multi-GPU runner itself, so the layout (gpus/gpu-N,
    gpu_index and device_part on each record, multi_gpu in run.json) is a real run's."""
    from parity.harness.scaleout import multigpu
    from synthetic import CPU, STREAM_ARRAYS, write_run

    parts = []
    for worker, scale in ((0, 1.0), (1, 0.9)):
        recs = []
        for op in ("copy", "triad"):
            for size in (64 << 10, 4 << 20, 64 << 20):
                n = size // (sum(STREAM_ARRAYS[op]) * 4)
                recs.append(stream_record(op=op, n=n, gbps=scale * (40.0 if size < (8 << 20) else 12.0),
                                          device="Some CPU", timing="wall"))
        parts.append((write_run(tmp_path / "run" / "gpus" / f"gpu-{worker}", recs, device=dict(CPU, index=worker),
                                run_id=f"part-{worker}"), worker))
    meta = {"multi_gpu": {"workers": 2, "cpu_workers": 2, "concurrent": True, "parts": ["gpus/gpu-0", "gpus/gpu-1"]}}
    return multigpu.merge(parts, tmp_path / "run", ["parity", "run", "--all-gpus"], meta)


@pytest.mark.skipif(browser() is None, reason="no headless chromium here (apt-get install chromium)")
def test_a_run_over_cpu_workers_is_one_device_with_workers_and_lays_out(tmp_path):
    run_ = cpu_worker_run(tmp_path)
    page, df = make_page([run_])
    path = tmp_path / "workers.html"
    path.write_text(page.replace("</body>", LAYOUT_PROBE + "</body>"), encoding="utf-8")
    proc = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                           path.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, (proc.returncode, proc.stderr[-2000:])
    probe = json.loads(match.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    text = probe["text"]
    # workers are workers of one device: never "GPU N", no side-by-side of a device with itself
    assert re.search(r"GPU \d", text) is None and "worker 1" in text and "Spread between workers" in text
    assert "Side by side" not in text and set(df["device_name"]) == {"Some CPU"}
    # one device with its workers: one table for it (not one per worker), a worker column, and each
    # case's rows side by side in worker order; one plot per kind for the device, a line per worker
    (device,) = [t for t in probe["tables"] if "worker" in t["heads"]]
    assert "Some CPU [worker" not in text and text.count("Some CPU, over 2 workers") == 1
    workers = device["cols"][device["heads"].index("worker")]
    assert device["rows"] == 12 and workers == ["worker 0", "worker 1"] * 6
    cases = device["cols"][device["heads"].index("case")]
    assert cases[0::2] == cases[1::2] and len(set(cases)) == 6
    titles = [i["alt"] for i in probe["images"]]
    assert all(t.startswith("Some CPU: ") for t in titles) and len([t for t in titles if "stream" in t]) == 1, titles
    # every table shows values: no column that is '-' in every row, no empty table without a reason
    for table in probe["tables"]:
        assert table["rows"] > 0, table["heads"]
        for head, col in zip(table["heads"], table["cols"]):
            assert col and not all(c in ("-", "") for c in col) or head in ("note", "behind > 3 %", "reason"), (head, col)
    # the layout: each plot is shown whole (not clipped by the page, not scaled past its pixels),
    # and no plot overlaps another or a table
    assert len(probe["images"]) >= 2
    boxes = [i["box"] for i in probe["images"]] + [t["box"] for t in probe["tables"]]
    for img in probe["images"]:
        left, top, right, bottom = img["box"]
        assert left >= 0 and right <= probe["width"] + 1 and bottom > top, img
    for a_i, a in enumerate(boxes):
        for b in boxes[a_i + 1:]:
            overlap = min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1
            assert not overlap, (a, b)
