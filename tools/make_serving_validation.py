"""Builds core/serving/validation.json from the shared serving-published.jsonl, ONCE.
The mapping of each figure onto a scenario is written out here line by line; the split is
deterministic and stratified by source family, and stored in the file.

It ran once. The readings were corrected in validation.json afterwards, entry by entry, and each
correction is in docs/estimate.md: the QPS=INF bursts, gpt-oss's format, NVIDIA's MLPerf configs,
the datasets' mean input lengths, the trtllm-cpp engine. This file keeps the first reading only.
Running it again would undo those corrections, so it is not run again; the split it made stays."""
import hashlib, json, sys

SRC = "/work/shared/reference/serving-published.jsonl"
rows = [json.loads(l) for l in open(SRC)]

def fam(r):
    s, e = r["source"], r["engine"]
    if "InferenceX" in s: return "inferencex"
    if "mlperf" in s.lower() or "mlcommons" in s.lower(): return "mlperf"
    if "ROCm/vllm" in s: return "rocm-vllm"
    if "Best_perf_practice_on_DeepSeek" in s: return "trtllm-deepseek-blog"
    if "developer-guide" in s: return "trtllm-dev-guide"
    if "258c7540" in s: return "trtllm-0.x"
    return "trtllm-v1"

LL2 = "MLPerf llama2-70b (OpenOrca): mean input length assumed 300 tokens (not in the shared set); mean output from tokens/s over samples/s (the source's derived note)"
MIX = "MLPerf mixtral-8x7b (OpenOrca + GSM8K + MBXP): mean input length assumed 300 tokens and output 145 (B200 row's derived tokens/sample); not stated in the shared set"
# index: dict(scenario) or str(skip reason)
M = {}
def S(i, spec, model, dtype, gpus, tp, isl, osl, engine, conc, kind, ep=1, dp=False, mode="serving", rate=None, over=(), slo=None, assume=""):
    M[i] = dict(spec=spec, model=model, dtype=dtype, gpus=gpus, tp=tp, ep=ep, attention_dp=dp, isl=isl, osl=osl,
                engine=engine, concurrency=conc, mode=mode, request_rate=rate, overrides=dict(over), metric=kind,
                slo=slo, assumptions=assume)
MAXT = "max"
for i, sp, isl, osl in ((0, "h100-sxm", 128, 2048), (1, "h100-sxm", 2048, 2048), (2, "h100-sxm", 1000, 1000), (3, "h200", 128, 2048), (4, "h200", 2048, 2048)):
    S(i, sp, "llama3-8b", "fp8", 1, 1, isl, osl, "trtllm", MAXT, "output_tps_system")
for i, isl, osl in ((5, 128, 2048), (6, 1000, 1000), (7, 2048, 2048)):
    S(i, "h100-sxm", "llama3-70b", "fp8", 2, 2, isl, osl, "trtllm", MAXT, "output_tps_system")
for i, isl, osl in ((8, 1000, 1000), (9, 2048, 2048)):
    S(i, "h200", "llama3-70b", "fp8", 1, 1, isl, osl, "trtllm", MAXT, "output_tps_system")
for i, sp, isl, osl in ((10, "b200", 1000, 1000), (11, "b200", 2048, 2048), (12, "gb200", 1000, 1000), (13, "gb200", 2048, 2048)):
    S(i, sp, "llama3-70b", "fp4", 1, 1, isl, osl, "trtllm", MAXT, "output_tps_system")
S(14, "h100-sxm", "llama3-405b", "fp8", 8, 8, 1000, 1000, "trtllm", MAXT, "output_tps_system")
S(15, "b200", "llama3-405b", "fp4", 4, 4, 1000, 1000, "trtllm", MAXT, "output_tps_system")
S(16, "h200", "qwen3-235b-a22b", "fp8", 8, 8, 1000, 1000, "trtllm", MAXT, "output_tps_system", ep=8, assume="EP not stated in the table: EP 8 assumed (the page's MoE command passes --ep)")
S(17, "b200", "qwen3-235b-a22b", "fp4", 8, 8, 1000, 1000, "trtllm", MAXT, "output_tps_system", ep=8, assume="EP not stated in the table: EP 8 assumed (the page's MoE command passes --ep)")
M[18] = "Llama-4-Maverick is not in the model database"
M[19] = "A100 has no spec in the database"
S(20, "h100-sxm", "llama3-8b", "bf16", 1, 1, 467, 256, "trtllm", None, "ttft_ms", rate=2.0, assume="open loop at 2 requests/s: concurrency from Little's law")
S(21, "h100-sxm", "llama3-8b", "bf16", 1, 1, 467, 256, "trtllm", None, "tpot_ms", rate=2.0, assume="open loop at 2 requests/s; ITL read as TPOT")
S(22, "h100-sxm", "llama3-8b", "bf16", 1, 1, 467, 256, "trtllm", 500, "output_tps_system", assume="QPS=INF with 500 requests: all 500 in flight, capped by memory")
S(23, "h100-sxm", "llama3-70b", "bf16", 4, 4, 467, 256, "trtllm", None, "tpot_ms", rate=2.0, assume="open loop at 2 requests/s; ITL read as TPOT")
S(24, "h100-sxm", "llama3-70b", "bf16", 4, 4, 467, 256, "trtllm", 500, "output_tps_system", assume="QPS=INF with 500 requests: all in flight, capped by memory")
S(25, "h200", "llama3-70b", "bf16", 4, 4, 202, 214, "trtllm", 500, "output_tps_system", assume="QPS=INF with 500 requests; the doc's '131GB' H200 read as the 141 GB spec")
S(26, "h200", "llama3-8b", "bf16", 1, 1, 202, 214, "trtllm", None, "tpot_ms", rate=2.0, assume="open loop at 2 requests/s; ITL read as TPOT")
for i, isl, b in ((27, 128, 1), (28, 128, 8), (29, 128, 32), (30, 128, 128), (31, 2048, 1), (32, 2048, 8), (33, 2048, 32), (34, 2048, 128)):
    S(i, "mi300x", "llama3-70b", "fp8", 8, 8, isl, 2048, "vllm", b, "e2e_s", mode="static")
ROC = "benchmark_throughput 'Throughput (tokens/s)' read as output tokens: the 2048/2048 row at 150 sequences would otherwise decode slower than the static batch of 128"
for i, model, isl, osl, seqs in ((35, "llama3-70b", 128, 2048, 3200), (36, "llama3-70b", 128, 4096, 1500), (37, "llama3-70b", 500, 2000, 2000),
                                 (38, "llama3-70b", 2048, 2048, 1500), (39, "llama3-405b", 128, 2048, 1500), (40, "llama3-405b", 2048, 2048, 500)):
    S(i, "mi300x", model, "fp8", 8, 8, isl, osl, "vllm", MAXT, "output_tps_system",
      over=(("max_num_seqs", seqs), ("max_num_batched_tokens", 131072)), assume=ROC)
for i, sp, dt, g, isl, osl in ((41, "b200", "fp4", 4, 1024, 1024), (42, "gb200", "fp4", 4, 1024, 1024), (43, "h200", "fp8", 8, 1024, 1024),
                               (44, "h200", "fp8", 8, 1024, 8192), (45, "b200", "fp4", 4, 8192, 1024)):
    S(i, sp, "deepseek-r1", dt, g, g, isl, osl, "trtllm", MAXT, "output_tps_per_gpu", ep=g, dp=True)
S(46, "h100-sxm", "llama3-70b", "fp8", 2, 2, 1000, 1000, "trtllm", MAXT, "output_tps_per_gpu")
S(47, "h100-sxm", "qwen3-235b-a22b", "fp8", 8, 8, 1024, 1024, "trtllm", MAXT, "output_tps_per_gpu", ep=8, dp=True)
S(48, "h100-sxm", "gpt-oss-120b", "fp8", 4, 4, 1024, 1024, "trtllm", MAXT, "output_tps_per_gpu", ep=4, dp=True)
S(49, "mi300x", "llama2-70b", "fp8", 8, 1, 300, 293, "vllm", MAXT, "output_tps_system", assume=LL2 + "; TP 1 per GPU (70B FP8 fits one MI300X)")
S(50, "mi300x", "llama2-70b", "fp8", 8, 1, 300, 293, "vllm", None, "slo_output_tps_system", slo=dict(tpot_ms=200, ttft_ms=2000), assume=LL2 + "; TP 1; MLPerf Server limits (p99) applied to the estimate's means")
S(51, "mi300x", "llama2-70b", "fp8", 8, 1, 300, 293, "vllm", None, "tpot_ms", rate=71.74, assume=LL2 + "; TP 1; open loop at the completed 71.74 samples/s")
S(52, "mi325x", "llama2-70b", "fp8", 8, 1, 300, 297, "vllm", MAXT, "output_tps_system", assume=LL2 + "; FP8 and TP 1 assumed")
S(53, "mi325x", "llama2-70b", "fp8", 8, 1, 300, 296, "vllm", None, "slo_output_tps_system", slo=dict(tpot_ms=200, ttft_ms=2000), assume=LL2 + "; FP8, TP 1 assumed; p99 limits applied to means")
S(54, "b200", "llama2-70b", "fp4", 8, 1, 300, 272, "trtllm", MAXT, "output_tps_system", assume=LL2 + "; NVFP4 and TP 1 assumed (NVIDIA's Blackwell submissions)")
S(55, "b200", "llama2-70b", "fp4", 8, 1, 300, 272, "trtllm", None, "slo_output_tps_system", slo=dict(tpot_ms=40, ttft_ms=450), assume=LL2 + "; NVFP4, TP 1 assumed; interactive limits (p99 TPOT 40 ms, TTFT 450 ms) applied to means")
S(56, "b200", "mixtral-8x7b", "fp4", 8, 1, 300, 145, "trtllm", MAXT, "output_tps_system", assume=MIX + "; NVFP4 and TP 1 assumed")
S(57, "h100-sxm", "llama2-70b", "fp8", 8, 2, 300, 292, "trtllm", MAXT, "output_tps_system", assume=LL2 + "; FP8 and TP 2 assumed (70 GB of FP8 weights leave no KV room in 80 GB)")
M[58] = "MLPerf llama3.1-405b: the long-context dataset's input lengths are not in the shared set"
M[59] = "MLPerf llama3.1-405b: the long-context dataset's input lengths are not in the shared set"
M[60] = "MTP speculative decoding (3 draft layers) is not modelled"
S(61, "b200", "deepseek-r1", "fp4", 8, 8, 1024, 2048, "trtllm", 7168, "output_tps_system", ep=8, dp=True,
  over=(("max_num_seqs", 896), ("max_num_batched_tokens", 2048)), assume="ISL/OSL not stated in this section: 1K/2K of the neighbouring sections assumed")
S(62, "b200", "deepseek-r1", "fp4", 8, 8, 1024, 2048, "trtllm", 3072, "output_tps_system", ep=8, dp=True,
  over=(("max_num_seqs", 384), ("max_num_batched_tokens", 1536)), assume="the section's BF16 KV cache is modelled as FP8 (the estimate pairs FP4 weights with an FP8 cache)")
M[63] = "MTP speculative decoding is not modelled"
S(64, "h200", "deepseek-r1", "fp8", 8, 8, 1024, 2048, "trtllm", 1024, "output_tps_system", ep=8, dp=True, over=(("max_num_seqs", 128),))
S(65, "mi355x", "deepseek-r1", "fp4", 4, 4, 1024, 1024, "sglang", 4, "output_tps_per_gpu")
S(66, "mi355x", "deepseek-r1", "fp4", 4, 4, 1024, 1024, "sglang", 4, "tpot_ms")
S(67, "h200", "deepseek-r1", "fp8", 8, 8, 1024, 1024, "trtllm", 4, "output_tps_per_gpu")
S(68, "mi325x", "llama2-70b", "fp8", 8, 1, 300, 265, "vllm", None, "slo_output_tps_system", slo=dict(tpot_ms=200, ttft_ms=2000), assume=LL2 + " (265 from the accuracy line); FP8, TP 1 assumed; p99 limits applied to means")
S(69, "mi325x", "llama2-70b", "fp8", 8, 1, 300, 265, "vllm", MAXT, "output_tps_system", assume=LL2 + " (265 from the accuracy line); FP8, TP 1 assumed")
S(70, "mi325x", "mixtral-8x7b", "fp8", 8, 1, 300, 145, "vllm", None, "slo_output_tps_system", slo=dict(tpot_ms=200, ttft_ms=2000), assume=MIX + "; FP8, TP 1 assumed; p99 limits applied to means")
S(71, "mi325x", "mixtral-8x7b", "fp8", 8, 1, 300, 145, "vllm", MAXT, "output_tps_system", assume=MIX + "; FP8, TP 1 assumed")
assert sorted(M) == list(range(72)), set(range(72)) - set(M)

entries = []
for i, r in enumerate(rows):
    m = M[i]
    e = {"id": f"sp{i:02d}", "family": fam(r), "source": r["source"], "published": r}
    if isinstance(m, str):
        e.update(subset="skipped", skip=m)
    else:
        e.update(scenario=m, subset=None)
    entries.append(e)
# The split, once: per family, entries ordered by the SHA-256 of their id, alternately calibration
# and check, starting at a family-dependent offset so that odd-sized families do not all lean one way.
by = {}
for e in entries:
    if e["subset"] is None:
        by.setdefault(e["family"], []).append(e)
for f, es in sorted(by.items()):
    es.sort(key=lambda e: hashlib.sha256(e["id"].encode()).hexdigest())
    start = int(hashlib.sha256(f.encode()).hexdigest(), 16) % 2
    for j, e in enumerate(es):
        e["subset"] = ("calibration", "check")[(j + start) % 2]
doc = {"schema": 1, "built_from": "/work/shared/reference/serving-published.jsonl (72 lines), by tools in the issue-25 branch; never re-split",
       "split": "per source family, ordered by sha256(id), alternately calibration and check from a family-dependent start",
       "entries": entries}
json.dump(doc, open(sys.argv[1], "w"), indent=1)
from collections import Counter
print(Counter((e["family"], e["subset"]) for e in entries))
print(Counter(e["subset"] for e in entries))
