"""The HTML report: one self-contained file that needs no network when it is opened.

CSS and the table-sorting script are inline and the plots are PNG data URIs, so the file can be
mailed, attached to an issue or committed and still shows everything. Content: a summary per
device, the plots, the side-by-side and per-device tables (sortable: click a header), and at the
foot each run's device, versions and the sources of the specs it was normalized against.
Everything that comes from a run is escaped.
"""
from __future__ import annotations

import base64
import re
from html import escape
from typing import Any

import pandas as pd

from parity.harness.core import specs
from parity.harness.core.results import Run
from parity.harness.reporting import crosstab, report
from parity.harness.reporting.plots import Plot
from parity.harness.reporting.spread import extra_tables
from parity.harness.reporting.summary import summarize

NUMERIC = re.compile(r"^[-+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?(\s|x|$|%|\s\[)", re.IGNORECASE)

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1400px;
  padding:0 1em;color:#1d1d1f}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.8em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:1.4em 0 .4em}
.lede{color:#555;margin-top:0}
.cards{display:flex;flex-wrap:wrap;gap:1em}
.card{border:1px solid #ddd;border-radius:6px;padding:.7em 1em;min-width:280px;flex:1}
.card h3{margin:.1em 0 .4em} .card ul{margin:.3em 0;padding-left:1.2em}
.muted{color:#666;font-size:.92em}
.plots{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}
figure{margin:0;max-width:100%} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;margin:.3em 0 1em}
th,td{border:1px solid #ddd;padding:3px 7px;vertical-align:top}
th{background:#f4f4f6;cursor:pointer;user-select:none;white-space:nowrap;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;white-space:nowrap}
tbody tr:nth-child(even){background:#fafafb}
footer{margin-top:3em;border-top:1px solid #ddd;color:#444;font-size:.9em}
footer table{font-size:12px} code{font-size:.95em}
"""

# Click a header to sort by it (again to reverse). Numbers (a leading number, thousands commas
# allowed) sort as numbers before text; text sorts naturally ("n=1000" after "n=999"); empty
# cells and "-" stay last either way.
SCRIPT = """
(function () {
  function key(text) {
    var t = text.trim();
    if (t === "" || t === "-") return null;
    var m = t.replace(/,/g, "").match(/^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?/i);
    return m ? parseFloat(m[0]) : t;
  }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") return a - b;
    if (typeof a === "number") return -1;
    if (typeof b === "number") return 1;
    return String(a).localeCompare(String(b), undefined, {numeric: true});
  }
  function sortBy(table, index, th) {
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = key(r1.cells[index].textContent), b = key(r2.cells[index].textContent);
      if (a === null || b === null) return (a === null) - (b === null);
      var c = compare(a, b);
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, index) {
      th.tabIndex = 0;
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(table, index, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, index, th); });
    });
  });
})();
"""


def table(title: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    headers = list(rows[0])
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for h in headers:
            text = str(row.get(h, ""))
            cls = ' class="num"' if NUMERIC.match(text) else ""
            cells.append(f"<td{cls}>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<h3>{escape(title)}</h3>\n<div class=\"scroll\"><table class=\"sortable\"><thead><tr>{head}</tr></thead>"
            f"<tbody>\n" + "\n".join(body) + "\n</tbody></table></div>\n")


def figure(plot: Plot) -> str:
    if plot.png is None:
        return f"<p class=\"muted\">{escape(plot.title)}: {escape(plot.note or 'skipped')}</p>\n"
    data = base64.b64encode(plot.png).decode("ascii")
    note = f"<br>{escape(plot.note)}" if plot.note else ""
    return (f"<figure id=\"plot-{escape(plot.name)}\"><img alt=\"{escape(plot.title)}\" "
            f"src=\"data:image/png;base64,{data}\"><figcaption>{escape(plot.title)}{note}</figcaption></figure>\n")


def _summary(runs: list[Run], df: pd.DataFrame) -> str:
    cards = []
    for s in summarize(runs, df):
        d = s.device
        counts = ", ".join(f"{n} {status}" for status, n in s.counts.items()) or "no records"
        spec = f"normalized against spec <code>{escape(s.spec_id)}</code>" if s.spec_id else "no spec: % of best only"
        heads = "".join(f"<li>{escape(h)}</li>" for h in s.headlines) or "<li>no timed records</li>"
        cards.append(f"<div class=\"card\"><h3>{escape(str(d.get('name')))}</h3>"
                     f"<div class=\"muted\">{escape(str(d.get('backend')))} {escape(str(d.get('arch')))}, run "
                     f"<code>{escape(str(s.run.meta.get('run_id')))}</code> {escape(s.date)}; {spec}</div>"
                     f"<ul>{heads}</ul><div class=\"muted\">{escape(counts)}</div></div>")
    return "<div class=\"cards\">" + "".join(cards) + "</div>\n"


def _provenance(run: Run) -> str:
    meta = run.meta
    d = meta.get("device") or {}
    mib = lambda b: f"{b / 2**20:g} MiB" if b else "unknown"  # noqa: E731
    git = meta.get("git") or {}
    rows = [
        ("run", f"{meta.get('run_id')} ({meta.get('status')}), {meta.get('started_at')} to {meta.get('ended_at')}"),
        ("device", f"{d.get('name')}: {d.get('backend')} {d.get('arch')}, "
                   f"{(d.get('memory_bytes') or 0) / 2**30:.1f} GiB, {d.get('multiprocessors')} SMs/CUs/cores, "
                   f"L2 {mib(d.get('l2_bytes'))}, last level {mib(d.get('llc_bytes'))}"),
        ("driver / runtime", f"{d.get('driver_version') or 'n/a'} / {d.get('runtime_version') or 'n/a'}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items() if v)),
        ("git", f"{git.get('revision')}{' (dirty tree)' if git.get('dirty') else ''}" if git else "n/a"),
        ("host", ", ".join(str(v) for k, v in (meta.get("host") or {}).items() if k in ("hostname", "platform"))),
        ("command", " ".join(meta.get("command") or [])),
    ]
    body = "".join(f"<tr><th scope=\"row\">{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f"<h3>{escape(str(d.get('name')))}, run {escape(str(meta.get('run_id')))}</h3><table>{body}</table>\n"


def _sources(spec_ids: list[str]) -> str:
    out = []
    for spec_id in spec_ids:
        try:
            spec = specs.get(spec_id)
        except Exception:  # noqa: BLE001 - an unknown id has no sources to list
            continue
        items = "".join(f"<li><code>{escape(k)}</code> {escape(v.get('title', ''))}"
                        f"{' (' + escape(v['ref']) + ')' if v.get('ref') else ''}</li>" for k, v in spec.sources.items())
        out.append(f"<h3>Spec {escape(spec.id)}: {escape(spec.name)} ({escape(spec.status)}, "
                   f"<code>{escape(spec.path.name)}</code>)</h3><ul>{items}</ul>")
    return "".join(out)


def page(runs: list[Run], df: pd.DataFrame, plots: list[Plot], title: str | None = None) -> str:
    devices = list(dict.fromkeys(str((r.meta.get("device") or {}).get("name")) for r in runs))
    title = title or f"parity report: {', '.join(devices)}"
    sections = [(t, report.display_rows(g)) for t, g in report.sections(df)] if not df.empty else []
    side = crosstab.side_by_side(df) + extra_tables(runs)  # + spread between GPUs, collectives
    spec_ids = sorted(df["spec_id"].dropna().unique()) if not df.empty else []
    parts = [
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n",
        f"<h1>{escape(title)}</h1><p class=\"lede\">{len(runs)} run(s); rates are decimal (GB/s = 1e9 B/s, "
        "TFLOPS = 1e12 FLOP/s) from the median time; click a column header to sort.</p>\n",
        "<section id=\"summary\"><h2>Summary</h2>", _summary(runs, df), "</section>\n",
        "<section id=\"plots\"><h2>Plots</h2><div class=\"plots\">",
        "".join(figure(p) for p in plots if p.png is not None) or "<p>no plots</p>", "</div>",
        "".join(figure(p) for p in plots if p.png is None), "</section>\n",
        "<section id=\"tables\"><h2>Tables</h2>",
        "".join(table(t, rows) for t, rows in side), "".join(table(t, rows) for t, rows in sections),
        "</section>\n",
        "<footer id=\"provenance\"><h2>Runs, versions and spec sources</h2>",
        "".join(_provenance(r) for r in runs), _sources(spec_ids) or "<p>no spec matched</p>", "</footer>\n",
        f"<script>{SCRIPT}</script>\n</body></html>\n",
    ]
    return "".join(parts)
