"""Out-of-sample check of parity's serving estimate against TensorRT-LLM v0.17's throughput table.

Source: github NVIDIA/TensorRT-LLM docs/source/performance/perf-overview.md @ 258c7540 ("Throughput
Measurements", FP8, H200 and H100 columns; the five ISL/OSL pairs below of each model and TP). The
page ran `trtllm-bench build --dataset` (TensorRT engines, the build's tuning heuristic) and
`trtllm-bench throughput` on a synthetic fixed-length dataset of the page's `num_requests` per
length pair, all queued at once; the figure is total output tokens/s. Not in the shared set, never
fitted. error = estimate / published - 1.

    python tools/compare_trtllm_v017.py [--engine trtllm-cpp|trtllm] [--limits trtllm-bench|engine]
                                        [--steady] [--json] [-v]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

from parity.harness.core import specs
from parity.harness.core.serving import burst
from parity.harness.core.serving.scenario import Scenario

# (model, TP): {"ISL/OSL": (H200, H100) output tokens/s of the whole TP group; None: not on the page}
ROWS = {
    ("llama3-8b", 1): {"128/2048": (25398.86, 21109.38), "1000/1000": (17537.96, 15244.78),
                       "2048/128": (3794.14, 3556.73), "5000/500": (3987.79, 3559.36),
                       "2048/2048": (11968.5, 9488.42)},
    ("llama3-70b", 1): {"128/2048": (4165.68, 911.62), "1000/1000": (2823.45, 839.97),
                        "2048/128": (465.99, 343.29), "5000/500": (560.16, 245.34), "2048/2048": (1913.8, None)},
    ("llama3-70b", 2): {"128/2048": (8290.35, 6169.58), "1000/1000": (5164.76, 4390.53),
                        "2048/128": (809, 772.66), "5000/500": (1025.38, 919.73), "2048/2048": (4183.88, 2898.16)},
    ("llama3-70b", 4): {"128/2048": (14156, 11511.93), "1000/1000": (8911.29, 7430.99),
                        "2048/128": (1358.06, 1302.6), "5000/500": (1811.55, 1602.78),
                        "2048/2048": (7130.44, 5480.03)},
    ("llama3-70b", 8): {"128/2048": (21195.88, 17061.82), "1000/1000": (13181.24, 11451.16),
                        "2048/128": (1983.03, 1923.41), "5000/500": (2717.83, 2457.42),
                        "2048/2048": (11142.47, 8801.95)},
    ("llama3-405b", 8): {"128/2048": (5938.09, None), "1000/1000": (3399.69, None), "2048/128": (463.42, None),
                         "5000/500": (669.13, None), "2048/2048": (2940.62, None)},
    ("mixtral-8x7b", 1): {"128/2048": (15095.21, 8290.13), "1000/1000": (10371.36, 6868.52),
                          "2048/128": (2009.67, 1892.81), "5000/500": (2309.1, 1764.7),
                          "2048/2048": (6940.32, 3983.1)},
    ("mixtral-8x7b", 2): {"128/2048": (29584.05, 22830.08), "1000/1000": (19151.19, 15770.89),
                          "2048/128": (3383.16, 3333.68), "5000/500": (4223.68, 3646.09),
                          "2048/2048": (14007.29, 10685.85)},
    ("mixtral-8x7b", 4): {"128/2048": (52291.78, 41164.73), "1000/1000": (33580.9, 27784.74),
                          "2048/128": (5467.62, 5234.98), "5000/500": (7084.94, 6401.56),
                          "2048/2048": (24980.93, 19432.08)},
    ("mixtral-8x7b", 8): {"128/2048": (68608.45, 61607.7), "1000/1000": (44705.48, 40631.71),
                          "2048/128": (7554.38, 6988.18), "5000/500": (10271.8, 9210.11),
                          "2048/2048": (36193.64, 30983.35)},
    ("mixtral-8x22b", 8): {"128/2048": (32415.81, 25150.03), "1000/1000": (19712.35, 16573.24),
                           "2048/128": (2899.84, 2794.97), "5000/500": (4031.79, 3645.27),
                           "2048/2048": (15798.59, 12244.93)},
}
GPUS = ("h200", "h100-sxm")
# the page's num_requests for each ISL/OSL pair (the same table as the v1.0 page's)
REQUESTS = {"128/2048": 3000, "1000/1000": 3000, "2048/128": 3000, "5000/500": 1500, "2048/2048": 1500}


def points(engine: str, limits: str, steady: bool) -> list[dict]:
    out = []
    for (model, tp), cells in ROWS.items():
        for lengths, pair in cells.items():
            isl, osl = map(int, lengths.split("/"))
            for gpu, published in zip(GPUS, pair):
                if published is None:
                    continue
                scn = Scenario(model=model, dtype="fp8", gpus=tp, tp=tp, isl=isl, osl=osl, engine=engine,
                               limits=limits, requests=None if steady else REQUESTS[lengths])
                _, res = burst.solve(scn, specs.get(gpu))
                estimate = 0.0 if res is None else res.output_tps_per_gpu * tp
                out.append({"model": model, "tp": tp, "lengths": lengths, "gpu": gpu, "published": published,
                            "estimate": estimate, "error": estimate / published - 1,
                            "in_flight": 0 if res is None else res.concurrency})
    return out


def summary(rows: list[dict]) -> dict:
    groups = {}
    for r in rows:
        groups.setdefault(f"{r['model']} {r['gpu']}", []).append(r["error"])
    groups["all"] = [r["error"] for r in rows]
    return {k: {"points": len(v), "median_error": statistics.median(v),
                "median_abs_error": statistics.median(abs(x) for x in v), "worst": max(v, key=abs)}
            for k, v in groups.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("trtllm-cpp", "trtllm"), default="trtllm-cpp")
    ap.add_argument("--limits", choices=("trtllm-bench", "engine"), default="trtllm-bench")
    ap.add_argument("--steady", action="store_true", help="the steady state at the maximum concurrency, not bursts")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-v", action="store_true", help="every point")
    args = ap.parse_args(argv)
    rows = points(args.engine, args.limits, args.steady)
    result = summary(rows)
    if args.json:
        sys.stdout.write(json.dumps({"groups": result, "points": rows}, indent=1) + "\n")
        return 0
    if args.v:
        for r in rows:
            print(f"{r['model']:14s} tp{r['tp']} {r['lengths']:9s} {r['gpu']:8s} published {r['published']:9.0f} "
                  f"estimate {r['estimate']:9.0f} {r['error']:+.2f} (in flight {r['in_flight']:.0f})")
    print(f"{'group':26s} points  median  median|e|   worst")
    for name, g in result.items():
        print(f"{name:26s} {g['points']:6d} {g['median_error']:+7.1%} {g['median_abs_error']:9.1%} {g['worst']:+7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
