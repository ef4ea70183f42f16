"""The serving estimate as one HTML page: the table and, per device, the curve of output tokens/s
per GPU against tokens/s per user (the axes of the serving dashboards: InferenceX, vLLM's
benchmark plots), each point with its range as an error bar."""
from __future__ import annotations

import math
from html import escape

W, H, PAD = 720, 420, 60
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _scale(values, size, log=True):
    lo, hi = min(values), max(values)
    f = (lambda v: math.log10(v)) if log else (lambda v: v)
    a, b = f(lo), f(hi)
    span = (b - a) or 1.0
    return lambda v: PAD + (f(v) - a) / span * (size - 2 * PAD)


def plot(rows: list[dict]) -> str:
    pts = [r for r in rows if r.get("fits") and r.get("tokens_per_s_per_user")]
    if not pts:
        return "<p>no device fits: no curve</p>"
    xs = [r["tokens_per_s_per_user"] for r in pts]
    ys = [v for r in pts for v in (r["output_tokens_per_s_per_gpu_low"], r["output_tokens_per_s_per_gpu_high"])]
    sx, sy = _scale(xs, W), _scale(ys, H)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img">',
           f'<text x="{W / 2}" y="{H - 15}" text-anchor="middle">tokens/s per user (log)</text>',
           f'<text x="15" y="{H / 2}" transform="rotate(-90 15 {H / 2})" text-anchor="middle">'
           'output tokens/s per GPU (log)</text>']
    devices = list(dict.fromkeys(r["device"] for r in pts))
    for i, dev in enumerate(devices):
        colour = COLOURS[i % len(COLOURS)]
        mine = sorted((r for r in pts if r["device"] == dev), key=lambda r: r["tokens_per_s_per_user"])
        line = " ".join(f"{sx(r['tokens_per_s_per_user']):.1f},{H - sy(r['output_tokens_per_s_per_gpu']):.1f}" for r in mine)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{line}"/>')
        for r in mine:
            x = sx(r["tokens_per_s_per_user"])
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{H - sy(r["output_tokens_per_s_per_gpu_low"]):.1f}" '
                       f'y2="{H - sy(r["output_tokens_per_s_per_gpu_high"]):.1f}" stroke="{colour}"/>')
            out.append(f'<circle cx="{x:.1f}" cy="{H - sy(r["output_tokens_per_s_per_gpu"]):.1f}" r="3" fill="{colour}">'
                       f'<title>{escape(dev)} C={r["concurrency"]:,.0f}</title></circle>')
        out.append(f'<text x="{W - PAD}" y="{PAD + 16 * i}" fill="{colour}" text-anchor="end">{escape(dev)}</text>')
    return "\n".join(out + ["</svg>"])


def page(rows: list[dict], table: list[dict[str, str]], title: str) -> str:
    head = "".join(f"<th>{escape(k)}</th>" for k in (table[0] if table else {}))
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in t.values()) + "</tr>" for t in table)
    sources = sorted({r["price_source"] for r in rows if r.get("price_source")})
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + escape(title) + "</title></head><body>"
            f"<h1>{escape(title)}</h1>{plot(rows)}<table border='1'><tr>{head}</tr>{body}</table>"
            "<h3>prices</h3><ul>" + "".join(f"<li>{escape(s)}</li>" for s in sources) + "</ul></body></html>\n")
