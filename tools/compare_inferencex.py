"""Out-of-sample check of parity's serving estimate against InferenceX's published DeepSeek-R1 points.

Source: SemiAnalysis InferenceX, the app's API fixture
github.com/SemiAnalysisAI/InferenceX-app packages/app/cypress/fixtures/api/benchmarks.json @ 3a600f1d
(single-node, no speculative decoding; extracted to tools/inferencex_points.json, which says which
statistic each metric is and how much of the fixture was read). Each point runs
`core.serving.scenario.solve` in-process; error = estimate / published - 1.

    python tools/compare_inferencex.py [--json] [--points FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from parity.harness.core import specs
from parity.harness.core.model import UsageError
from parity.harness.core.serving.scenario import Scenario, solve

HERE = Path(__file__).resolve().parent
NVIDIA = {"b200", "h200"}


def output_tps(p: dict) -> float | None:
    """Published output tok/s/GPU; older rows give only input + output (tput_per_gpu) -> its osl share."""
    if p.get("output_tps_per_gpu") is not None:
        return p["output_tps_per_gpu"]
    total = (p.get("published") or {}).get("tput_per_gpu")
    return total * p["osl"] / (p["isl"] + p["osl"]) if total else None


def run_point(p: dict) -> dict:
    scn = Scenario(model="deepseek-r1", dtype=p["dtype"], gpus=p["gpus"], tp=p["tp"], isl=p["isl"],
                   osl=p["osl"], engine=p["engine"], concurrency=p["concurrency"], ep=p["ep"],
                   attention_dp=p["attention_dp"])
    try:
        _, res = solve(scn, specs.get(p["gpu"]))
    except UsageError as e:
        return {"skipped": str(e)}
    if res is None:
        return {"skipped": "does not fit"}
    out = output_tps(p)
    return {"tpot": res.tpot_s * 1e3 / p["tpot_ms"] - 1,
            "ttft": res.ttft_s * 1e3 / p["ttft_ms"] - 1,
            "tps": res.output_tps_per_gpu / out - 1 if out else None}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarise(rows: list[dict]) -> dict:
    return {"points": len(rows),
            "median_tpot_err": med([r["tpot"] for r in rows]),
            "median_abs_tpot_err": med([abs(r["tpot"]) for r in rows]),
            "median_output_tps_err": med([r["tps"] for r in rows]),
            "median_ttft_err": med([r["ttft"] for r in rows])}


def compare(points: list[dict]) -> dict:
    done, skipped, groups = [], [], {}
    for p in points:
        r = run_point(p)
        if "skipped" in r:
            skipped.append({"gpu": p["gpu"], "engine": p["engine"], "dtype": p["dtype"], "tp": p["tp"],
                            "isl": p["isl"], "osl": p["osl"], "concurrency": p["concurrency"],
                            "why": r["skipped"]})
            continue
        r.update(gpu=p["gpu"], engine=p["engine"])
        done.append(r)
        groups.setdefault(p["gpu"], []).append(r)
        if p["gpu"] == "mi355x" and p.get("date"):
            groups.setdefault(f"mi355x {p['date'][:4]}", []).append(r)
    nv = [r for r in done if r["gpu"] in NVIDIA]
    return {"groups": {k: summarise(v) for k, v in sorted(groups.items())},
            "all": summarise(done),
            "nvidia_median_abs_tpot_err": med([abs(r["tpot"]) for r in nv]),
            "skipped": skipped}


def pct(x, signed: bool = True) -> str:
    return "-" if x is None else (f"{x:+.1%}" if signed else f"{x:.1%}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--points", default=str(HERE / "inferencex_points.json"))
    a = ap.parse_args(argv)
    doc = json.loads(Path(a.points).read_text())
    out = compare(doc["points"])
    out["source"] = doc["source"]
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"InferenceX DeepSeek-R1 ({doc['source']})")
    print("error = estimate / published - 1; medians over points\n")
    head = f"{'group':<12} {'points':>6} {'TPOT':>8} {'|TPOT|':>8} {'out tok/s/GPU':>14} {'TTFT':>8}"
    print(head + "\n" + "-" * len(head))
    for name, s in list(out["groups"].items()) + [("all", out["all"])]:
        print(f"{name:<12} {s['points']:>6} {pct(s['median_tpot_err']):>8} {pct(s['median_abs_tpot_err'], False):>8} "
              f"{pct(s['median_output_tps_err']):>14} {pct(s['median_ttft_err']):>8}")
    print(f"\nNVIDIA (b200, h200) median |TPOT error|: {pct(out['nvidia_median_abs_tpot_err'], False)}")
    print(f"skipped: {len(out['skipped'])}")
    for s in out["skipped"]:
        print(f"  {s['gpu']} {s['engine']} {s['dtype']} tp{s['tp']} {s['isl']}/{s['osl']} "
              f"c{s['concurrency']}: {s['why']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
