"""parity devices, list, specs, selfcheck and inspect: what is here and what it promises."""
from __future__ import annotations

import json
import sys

from parity.harness.cli.common import (
    EXIT_CASES_FAILED,
    detect_device,
    make_console,
    names,
    refuse_run_file,
    require_triton,
    warn,
    write_file,
)
from parity.harness.core import limits
from parity.harness.core.model import UsageError


def cmd_devices(args, argv) -> int:
    from parity.harness.measurement.registry import triton_problem

    limits.check_device_index(args.device)
    device = detect_device(args.device)
    info = device.to_dict()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    mode = "GPU" if device.is_gpu else "no GPU: Triton kernels run in the CPU interpreter (TRITON_INTERPRET=1)"
    print(f"backend        {device.backend} ({mode})")
    print(f"name           {device.name}")
    print(f"architecture   {device.arch}")
    print(f"memory         {device.memory_bytes / 2**30:.1f} GiB")
    print(f"{'CUs' if device.backend == 'rocm' else 'SMs' if device.is_gpu else 'cores':<15}{device.multiprocessors}")
    _size = lambda b: "unknown" if not b else f"{b / 2**20:g} MiB"  # noqa: E731
    print(f"L2             {_size(device.l2_bytes)}")
    print(f"last level     {_size(device.llc_bytes)}")
    print(f"driver         {device.driver_version or 'n/a'}")
    print(f"runtime        {device.runtime_version or 'n/a'}")
    print(f"spec           {device.spec_id or 'none (normalized against its own measured ceilings only)'}")
    if device.spec_note and device.is_gpu:
        print(f"spec match     {device.spec_note}")
    if device.is_gpu:
        for i, name in enumerate(device.visible):
            print(f"visible [{i}]    {name}{'  <- selected' if i == device.index else ''}")
    for key, value in device.visibility_env.items():
        print(f"{key:<15}{value}")
    problem = triton_problem()
    if problem:
        print(f"triton         {problem}")
    return 0


def cmd_list(args, argv) -> int:
    device = detect_device(0)
    require_triton()
    from parity.harness.measurement import registry
    from parity.harness.reporting import machine

    suites = registry.load_all()
    for line in registry.problems():
        warn(line)
    if args.json:
        print(json.dumps(machine.suites_json(suites, device, registry.origin, registry.problems()), indent=2))
        return 0
    name_w = max((len(op.name) for suite in suites for op in suite.ops), default=8)
    text_w = max((len(op.description) for suite in suites for op in suite.ops), default=34)
    for suite in suites:
        print(f"{suite.name}: {suite.description}")
        print(f"  from:    {registry.origin(suite.name)}")
        for op in suite.ops:
            impls = [i.name for i in suite.impls if i.op == op.name]
            print(f"  {op.name:<{name_w}} {op.description:<{text_w}} impls: {', '.join(impls)}")
            for impl in impls:
                where = registry.origin(suite.name, impl)
                if where != registry.origin(suite.name):  # an implementation another package adds
                    print(f"  {'':<{name_w}} {'':<{text_w}}   {impl} from {where}")
        counts = ", ".join(f"{p} ({len(suite.cases(p, device))} cases here)" for p in suite.presets)
        print(f"  presets: {counts}")
        print(f"  dtypes:  {', '.join(suite.dtypes)}")
        if suite.size_help:
            print(f"  sizes:   {suite.size_help}")
        if suite.shape_help:
            print(f"  shapes:  {suite.shape_help}")
    return 0


def _figure_text(fig) -> str:
    if fig is None:
        return "-"
    if not fig.supported:
        return "not in hardware"
    if fig.value is None:
        return f"unpublished{f' ({fig.range[0]:g}-{fig.range[1]:g})' if fig.range else ''}"
    text = f"{fig.value:g}"
    if fig.range and fig.range != (fig.value, fig.value):
        text += f" ({fig.range[0]:g}-{fig.range[1]:g})"
    return text


def cmd_specs(args, argv) -> int:
    from parity.harness.core import specs
    from parity.harness.reporting.tables import render  # report's tables, without its pandas

    if args.check is not None:
        if args.spec is not None or args.json:
            raise UsageError("--check checks one file: give no spec id and no --json")
        spec = specs.parse(args.check)
        clash = specs.conflicts(spec)  # a second file for one device: every report would refuse that device
        if clash:
            raise specs.SpecError(clash[0])
        print(f"parity: {args.check}: a valid spec ({spec.id}, {spec.name}: {len(spec.figures)} figures, "
              f"{len(spec.peaks)} peaks)", file=sys.stderr)
        return 0
    if args.json:
        from parity.harness.reporting import machine

        chosen = [specs.get(args.spec)] if args.spec else list(specs.load_all().values())
        sys.stdout.write(machine.dumps(machine.specs_json(chosen)))
        return 0
    if args.spec is None:
        for line in specs.conflicts():
            warn(line)
        rows = [{"id": s.id, "name": s.name, "status": s.status, "arch": s.arch,
                 "bf16 TFLOPS": _figure_text(s.peaks.get("bf16")), "fp8 TFLOPS": _figure_text(s.peaks.get("fp8")),
                 "fp4 TFLOPS": _figure_text(s.peaks.get("fp4")),
                 "memory GB": _figure_text(s.figure("memory_gb")),
                 "TB/s": _figure_text(s.figure("memory_bandwidth_tbps")),
                 "fp8": s.fp8_format, "confidence": s.identity_confidence}
                for s in specs.load_all().values()]
        render([("Dense peaks per GPU (parity specs ID for every figure and its source)", rows)],
                      "text", make_console())
        return 0
    spec = specs.get(args.spec)
    console = make_console()
    console.print(f"{spec.name} ({spec.id}): {spec.status}, {spec.architecture} {spec.arch}, {spec.memory_type}, "
                  f"FP8 {spec.fp8_format}, FP4 in hardware: {'yes' if spec.fp4_hardware else 'no'}", markup=False)
    console.print(f"matches backend {spec.match_backend}, arch {spec.match_arch}, name /{spec.name_regex}/; "
                  f"identity from {', '.join(spec.identity_source)} ({spec.identity_confidence})", markup=False)
    rows = []
    for group, figures in (("figure", spec.figures), ("dense peak, TFLOPS (int8: TOPS)", spec.peaks)):
        for name, fig in figures.items():
            extra = ", ".join(f"{k} {v}" for k, v in fig.extra.items())
            rows.append({"kind": group, "name": name, "value": _figure_text(fig), "other": extra,
                         "confidence": fig.confidence, "source": ", ".join(fig.source), "note": fig.note or ""})
            for var in fig.variants:
                value = var.get("value", "") if "value" in var else "{}-{}".format(*var.get("range", ("", "")))
                rows.append({"kind": "  variant", "name": var.get("label", ""), "value": str(value), "other": "",
                             "confidence": var.get("confidence", ""), "source": ", ".join(var.get("source", ())),
                             "note": var.get("note", "")})
    render([(f"{spec.id}: every figure", rows),
                   ("sources", [{"id": k, "title": v.get("title", ""), "ref": v.get("ref", ""), "how": v.get("how", "")}
                                for k, v in spec.sources.items()])], "text", console)
    if spec.disagreements:
        console.print("Where sources disagree:", markup=False)
        for text in spec.disagreements:
            console.print(f"- {text}", markup=False)
    return 0


def machine_json(data) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def cmd_selfcheck(args, argv) -> int:
    from parity.harness.core import provenance
    from parity.harness.measurement import selfcheck

    limits.check_device_index(args.device)
    if args.repeats < 2:
        raise UsageError("--repeats must be at least 2")
    limits.check_seconds("--settle-s", "settle_s", args.settle_s)
    if args.repeats > 1000:
        raise UsageError(f"--repeats {args.repeats}: at most 1000")
    refuse_run_file(args.json, "--json")  # a folder, a device, a run's records: refused before any work
    device = detect_device(args.device)
    results = selfcheck.run(device, repeats=args.repeats, settle_s=args.settle_s,
                            progress=lambda text: print(f"parity: selfcheck: {text}", file=sys.stderr, flush=True))
    from parity.harness.reporting.tables import render

    title = f"parity selfcheck on {device.name} ({device.backend})"
    text = render([(title, selfcheck.rows(results))], args.format, make_console())
    if text:
        sys.stdout.write(text)
    if args.json is not None:
        write_file(args.json, machine_json({"schema": "parity.selfcheck/1", "command": ["parity", *argv],
                                      "device": device.to_dict(), "versions": provenance.versions(device),
                                      "git": provenance.git_revision(), "host": provenance.host(),
                                      "passed": not selfcheck.failed(results),
                                      "checks": [r.to_dict() for r in results]}), "--json")
    return EXIT_CASES_FAILED if selfcheck.failed(results) else 0


def cmd_inspect(args, argv) -> int:
    from parity.harness.measurement import inspect_targets, inspection, registry

    targets = inspect_targets.parse_targets(args.target)
    suites = list(names(args.suite)) or None
    presets = list(names(args.preset)) or None
    registry.check_names(suites or ())  # before triton and the suites (torch) are imported
    metas = [registry.light(s) for s in (suites or registry.suite_names())]
    if presets and None not in metas:  # built-in suites only: their presets are known without torch
        _check_presets(presets, metas)
    require_triton()
    for name in suites or ():
        registry.load(name)  # an unknown suite is a usage error here, not in the child
    if presets:
        _check_presets(presets, [registry.load(s) for s in (suites or registry.suite_names())])
    progress = None if args.json else (lambda line: print(f"parity inspect: {line}", file=sys.stderr, flush=True))
    try:
        rows = inspection.run_inspection([t.name for t in targets], suites, presets, args.lead_only, args.one_case,
                                         progress=progress)
    except RuntimeError as exc:
        print(f"parity: error: {exc}", file=sys.stderr)
        return EXIT_CASES_FAILED
    print(json.dumps(rows, indent=1) if args.json else inspection.format_table(rows))
    if rows and all(r["status"] == "skipped" for r in rows):
        # nothing compiled for any target: a CI gate on `parity inspect` must not pass on that
        print(f"parity: error: nothing was compiled: every row was skipped ({rows[0].get('error') or 'no reason'})",
              file=sys.stderr)
        return EXIT_CASES_FAILED
    return 0


def _check_presets(presets, suites) -> None:
    """--preset of inspect: each one some suite's (Suites, or their light SuiteMetas)."""
    known = {p for suite in suites for p in suite.presets}
    unknown = [p for p in presets if p not in known]
    if unknown:
        raise UsageError(f"unknown preset {', '.join(unknown)} (presets: {', '.join(sorted(known))})")
