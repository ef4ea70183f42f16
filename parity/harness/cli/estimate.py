"""parity project and estimate: a run on another device, a model's step on every device."""
from __future__ import annotations

import json
import sys

from parity.harness.cli.common import emit, make_console, refuse_run_file
from parity.harness.core.model import UsageError
from parity.harness.reporting.tables import render  # report's, without its pandas


def cmd_project(args, argv) -> int:
    from parity.harness.core import specs
    from parity.harness.core.results import read_run

    if args.validate:
        if args.run is not None or args.to or args.against:
            raise UsageError("--validate takes no run, --to or --against: it projects the published figures")
        return _project_validation(args)
    if args.run is None or not args.to:
        raise UsageError("project needs a RUN and --to SPEC (or --validate)")
    target = specs.get(args.to)
    run = read_run(args.run)
    against = read_run(args.against) if args.against is not None else None
    from parity.harness.reporting import project  # pandas: after every refusal of a path

    df = project.project(run, target, stack=args.stack)
    if against is not None:
        df = project.check_against(df, against)
    if df.empty:
        print("parity: the run holds no timed GPU records to project", file=sys.stderr)
        return 0
    if args.format == "csv":
        sys.stdout.write(df.to_csv(index=False))
        return 0
    if args.format == "json":
        sys.stdout.write(json.dumps(project.records(df), indent=1) + "\n")
        return 0
    how = ("kernel efficiency kept, the stack's achieved efficiency carried across, target roofline applied"
           if args.stack == "carry" else "measured efficiency kept, target roofline applied")
    title = (f"{run.meta.get('device', {}).get('name')} ({df['source_spec'].iloc[0]}) projected onto "
             f"{target.name} ({target.id}, {target.status}): {how}")
    text = render([(title, project.display_rows(df))], args.format, make_console())
    if text:
        sys.stdout.write(text)
    return 0


def _project_validation(args) -> int:
    from parity.harness.reporting import project

    rows = project.validate()
    summary = project.validation_summary(rows)
    if args.format == "json":
        sys.stdout.write(json.dumps({"projections": rows, "summary": summary}, indent=1) + "\n")
        return 0
    if args.format == "csv":
        import pandas as pd

        sys.stdout.write(pd.DataFrame(rows).to_csv(index=False))
        return 0
    shown = [{"op class": r["op_class"], "source": r["source"], "target": r["target"],
              "source figure": f"{r['source_figure']:,.2f} ({r['source_stack']})",
              "projected": f"{r['projected']:,.2f} ({r['low']:,.2f}-{r['high']:,.2f})",
              "published": f"{r['published']:,.2f} ({r['published_min']:,.2f}-{r['published_max']:,.2f})",
              "error": f"{r['error_pct']:+.1f} %", "in range": "yes" if r["in_range"] else "no",
              "target prior (target left out)": r["target_prior"]} for r in rows]
    totals = [{"op class": s["op_class"], "pairs": s["pairs"], "projections": str(s["projections"]),
               "median |error|": f"{s['median_abs_error_pct']:.1f} %", "worst |error|": f"{s['worst_abs_error_pct']:.1f} %",
               "in range": f"{s['in_range_pct']:.0f} %",
               "--stack keep: median": f"{s['kept_median_abs_error_pct']:.1f} %",
               "worst": f"{s['kept_worst_abs_error_pct']:.1f} %"} for s in summary]
    text = render([("leave-one-out: every published figure projected onto every other device, the target's "
                           "figures hidden from the priors", shown), ("errors", totals)], args.format, make_console())
    if text:
        sys.stdout.write(text)
    return 0


def cmd_estimate(args, argv) -> int:
    from parity.harness.core import llm, specs
    from parity.harness.core.results import read_run
    from parity.harness.reporting import estimate

    if args.list_models:
        rows = [{"model": m.id, "name": m.name, "layers": str(m.layers), "hidden": str(m.hidden),
                 "heads/kv": f"{m.heads}/{m.kv_heads}", "params total": f"{m.params_total_b:g}B",
                 "active": f"{m.params_active_b:g}B",
                 "kind": ", ".join(k for k, v in (("MLA", m.mla), ("MoE", m.moe)) if v) or "dense, GQA",
                 "source": "; ".join(m.source)} for m in llm.load_all().values()]
        if args.format == "json":
            sys.stdout.write(json.dumps(rows, indent=1) + "\n")
            return 0
        text = render([("models", rows)], "md" if args.format == "md" else "text", make_console())
        if text:
            sys.stdout.write(text)
        return 0
    if args.validate:
        return _serving_validation(args)
    # Serving-only flags (--price, --ep, --attention-dp, --limits) would be silently ignored by the single step.
    serving_only = (args.price or args.ep != 1 or args.attention_dp or args.request_rate is not None
                    or args.requests is not None or args.limits != "engine")
    if serving_only or any(v is not None for v in (args.isl, args.osl, args.concurrency, args.engine, args.gpus,
                                                   args.slo_tpot_ms)):
        return _serving(args)
    if not args.model:
        raise UsageError("estimate needs --model (see --list-models)")
    if args.format == "html" and args.out is None:
        raise UsageError("--format html needs --out FILE")
    if args.out is not None and args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder: give a file name")
    refuse_run_file(args.out)
    targets = ([specs.get(t.strip()) for t in args.to.split(",") if t.strip()] if args.to
               else list(specs.load_all().values()))
    if not targets:
        raise UsageError("--to names no spec")
    req = estimate.Request(model=args.model, phase=args.phase, batch=args.batch, context=args.context,
                           dtype=args.dtype, output_tokens=args.output_tokens, tp=args.tp, reserve=args.reserve)
    run = read_run(args.run) if args.run is not None else None
    rows = estimate.estimate(req, targets, run)
    title = (f"{llm.get(args.model).name}, {args.phase}, batch {args.batch}, context {args.context}"
             + (f" + {args.output_tokens} output tokens" if args.output_tokens else "") + f", {args.dtype}"
             + (f", TP {args.tp}" if args.tp else "") + (f", kernels from {args.run}" if run else ""))
    if args.format == "json":
        text = json.dumps(rows, indent=1) + "\n"
    elif args.format == "html":
        text = estimate.html_page(rows, title)
    else:  # text goes to the console, or as markdown to --out
        tables = [(title, estimate.display_rows(rows))]
        tables += [(f"{r['device']}: one step on {r['gpus']} GPU(s)", estimate.kernel_rows(r)) for r in rows if r.get("kernels")]
        text = render(tables, "md" if args.out is not None else args.format, make_console())
    if args.out is not None or text:
        emit(text or "", args.out)
    if not any(r["fits"] for r in rows):
        print("parity: estimate: fits on none of the devices asked for (see each row's note)", file=sys.stderr)
    return 0


def _concurrency(text: str | None) -> list[int] | None:
    if text is None or text.strip() == "max":
        return None
    try:
        # "max" inside a list is 0 here: the curve puts the maximum concurrency in its place
        items = [v.strip() for v in text.split(",") if v.strip()]
        numbers = [int(v) for v in items if v != "max"]
    except ValueError:
        raise UsageError(f"--concurrency must be an integer, max, or a comma-separated list (got {text!r})") from None
    values = numbers + [0] * min(1, items.count("max"))
    if not values or any(not 1 <= v <= 1_000_000 for v in numbers):
        raise UsageError("--concurrency values must be from 1 to 1,000,000")
    return values


def _prices(items: list[str]) -> dict[str, float]:
    import math

    from parity.harness.core import specs

    out = {}
    for item in items:
        spec_id, _, usd = item.partition("=")
        try:
            value = float(usd)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and 0 < value <= 1000):
            raise UsageError(f"--price {item!r}: want SPEC=USD per GPU-hour, above 0 and at most 1000")
        out[specs.get(spec_id.strip()).id] = value
    return out


def _serving(args) -> int:
    from parity.harness.core import specs
    from parity.harness.core.serving.scenario import Scenario
    from parity.harness.reporting import serving

    if not args.model or args.isl is None or args.osl is None or not args.engine:
        raise UsageError("a serving estimate needs --model, --isl, --osl and --engine")
    if args.slo_tpot_ms is not None and not 0 < args.slo_tpot_ms <= 1e6:
        raise UsageError("--slo-tpot-ms must be above 0 and at most 1e6")
    loads = [f for f, v in (("--concurrency", args.concurrency), ("--request-rate", args.request_rate),
                            ("--requests", args.requests), ("--slo-tpot-ms", args.slo_tpot_ms)) if v is not None]
    if len(loads) > 1 and loads != ["--concurrency", "--slo-tpot-ms"]:
        raise UsageError(f"{' and '.join(loads)} each set the load: give one of them")
    if args.format == "html" and args.out is None:
        raise UsageError("--format html needs --out FILE")
    if args.out is not None and args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder: give a file name")
    refuse_run_file(args.out)
    tp = 1 if args.tp is None else args.tp
    gpus = tp if args.gpus is None else args.gpus
    scn = Scenario(model=args.model, dtype=args.dtype, gpus=gpus, tp=tp, isl=args.isl, osl=args.osl,
                   engine=args.engine, ep=args.ep, attention_dp=args.attention_dp, request_rate=args.request_rate,
                   requests=args.requests, limits=args.limits)
    scn.check()
    targets = ([specs.get(t.strip()) for t in args.to.split(",") if t.strip()] if args.to
               else list(specs.load_all().values()))
    from parity.harness.core.results import read_run

    run = read_run(args.run) if args.run is not None else None
    rows = serving.estimate(scn, targets, _concurrency(args.concurrency), _prices(args.price), args.slo_tpot_ms, run)
    title = (f"{args.model} {args.dtype}, {scn.gpus} GPU(s), TP {tp}" + (f" EP {args.ep}" if args.ep > 1 else "")
             + f", ISL {args.isl} / OSL {args.osl}, {args.engine}"
             + (" (trtllm-bench limits)" if args.limits != "engine" else "")
             + (f", {args.request_rate:g} requests/s" if args.request_rate is not None else "")
             + (f", a burst of {args.requests} requests" if args.requests is not None else "")
             + (f", kernels from {args.run}" if run else ""))
    if args.format == "json":
        text = json.dumps(rows, indent=1) + "\n"
    elif args.format == "html":
        from parity.harness.reporting import serving_html

        text = serving_html.page(rows, serving.display_rows(rows), title)
    else:
        text = render([(title, serving.display_rows(rows))], "md" if args.out is not None else args.format,
                             make_console())
    if args.out is not None or text:
        emit(text or "", args.out)
    return 0


def _serving_validation(args) -> int:
    from parity.harness.reporting import serving

    rep = serving.validation_report()
    if args.format == "json":
        text = json.dumps(rep, indent=1) + "\n"
    else:
        text = render(serving.validation_display(rep), "md" if args.format == "md" else "text", make_console())
    if args.out is not None or text:
        emit(text or "", args.out)
    return 0
