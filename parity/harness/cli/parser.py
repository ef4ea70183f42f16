"""Every command's arguments, in one parser (the flags the docs list)."""
from __future__ import annotations

import argparse
from pathlib import Path

from parity.harness.cli.common import Parser, path_arg, paths_arg, spec_id_arg


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="parity", description="Cross-vendor GPU microbenchmarks, normalized against specs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("devices", help="what is here")
    p.add_argument("--device", type=int, default=0, help="GPU index among the visible ones")
    p.add_argument("--json", action="store_true", help="print the detection as JSON")

    p = sub.add_parser("list", help="suites, implementations, presets")
    p.add_argument("--json", action="store_true", help="print the suites as JSON")

    p = sub.add_parser("run", help="run suites (default: the quick preset of every suite)")
    p.add_argument("suites", nargs="*", help="suites to run (default: all)")
    p.add_argument("--preset", help="smoke | quick | full (default quick)")
    p.add_argument("--impl", action="append", help="implementations to run, e.g. triton,torch")
    p.add_argument("--dtype", action="append", help="dtypes to run, e.g. fp32,bf16")
    p.add_argument("--size", action="append", help="sizes replacing the preset's sweep, e.g. 64KiB,1GiB")
    p.add_argument("--shape", action="append", help="shapes replacing the preset's, e.g. GEMM MxNxK 4096x4096x4096")
    p.add_argument("--out", type=path_arg, help="run folder to create (default runs/<time>-<device>)")
    p.add_argument("--resume", type=path_arg, metavar="DIR", help="finish an interrupted run: only missing cases")
    p.add_argument("--device", type=int, default=0, help="GPU index among the visible ones")
    p.add_argument("--time-cap-s", type=float, help="cap on the sampling time of one case (at least 0.001, at most 3600)")
    p.add_argument("--settle-s", type=float, help="idle seconds before each timed compute case (default 0.5 on a GPU, 0 on the CPU; 0 to 3600)")
    p.add_argument("--min-time-s", type=float,
                   help="least sampling time of one case (default 0.5 on a GPU: the sustained clock; 0 on the CPU; 0 to 3600)")
    p.add_argument("--all-gpus", action="store_true", help="run the suites on every visible GPU at once, one process each")
    p.add_argument("--cpu-workers", type=int, metavar="N", help="as --all-gpus with N CPU workers (tests, CI)")
    p.add_argument("--cpu-threads", type=int, metavar="N",
                   help="PyTorch's CPU threads while a CPU case runs (default one per physical core this process may use, "
                        "shared among --cpu-workers; 1 to the CPUs it may use); recorded in each record")
    p.add_argument("--ranks", type=int, metavar="N", help="ranks of a collective suite (default: one per GPU, 2 on the CPU)")
    p.add_argument("--rank-timeout-s", type=float, metavar="S",
                   help="how long a collective waits for a peer, or a rank or GPU worker may go without news (default 300; at least 0.1, at most 86400: a day)")
    p.add_argument("--case-timeout-s", type=float, metavar="S",
                   help="wall-clock limit of one case: past it the case is recorded failed and the run goes on "
                        "(default 900 on a GPU, 300 on the CPU; at least 0.1, at most 86400: a day)")

    p = sub.add_parser("submit", help="run on several Slurm nodes through submitit, gathered into one run")
    p.add_argument("--out", type=path_arg, required=True, help="folder of the gathered run (nodes/, slurm/ inside)")
    p.add_argument("--nodes", type=int, default=1, help="nodes, one job each (a job array)")
    p.add_argument("--local", action="store_true", help="run the jobs on this machine (submitit's local executor)")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--account", help="Slurm account")
    p.add_argument("--time-min", type=int, default=60, help="time limit of each job, minutes (default 60)")
    p.add_argument("--gpus-per-node", type=int, help="GPUs to ask for on each node")
    p.add_argument("--cpus-per-task", type=int, help="CPUs to ask for on each node")
    p.add_argument("--no-wait", action="store_true", help="submit and return; gather later with parity merge")
    p.add_argument("run_args", nargs=argparse.REMAINDER, help="after --: the arguments of parity run on each node")

    p = sub.add_parser("merge", help="gather runs (of several nodes, e.g. from sbatch) into one run folder")
    p.add_argument("runs", nargs="+", type=path_arg, help="run folders")
    p.add_argument("--out", type=path_arg, required=True, help="folder of the merged run")

    p = sub.add_parser("report", help="print the tables of one or more runs")
    p.add_argument("runs", nargs="*", type=path_arg, help="run folders")
    p.add_argument("--format", choices=("text", "md", "html", "csv", "parquet"), default="text")
    p.add_argument("--to", metavar="SPEC", type=spec_id_arg, help="normalize against this spec instead of the matched one")
    p.add_argument("--out", type=path_arg, metavar="FILE", help="write the report to FILE (parquet needs one)")
    p.add_argument("--plots", type=path_arg, metavar="DIR", help="also write every plot as DIR/<name>.png")
    p.add_argument("--publish", action="store_true",
                   help="copy the runs into the results folder, re-render every run there, rewrite its README.md")
    p.add_argument("--results", type=path_arg, default=Path("results"), metavar="DIR",
                   help="the results folder --publish works on (default results)")

    p = sub.add_parser("compare", help="two runs (or sets of runs) of one device, case by case, with a significance test")
    p.add_argument("base", type=paths_arg, help="run folder(s), comma-separated: the reference (several runs: "
                                             "the verdict rests on run-to-run variance)")
    p.add_argument("new", type=paths_arg, help="run folder(s), comma-separated: the candidate")
    p.add_argument("--format", choices=("text", "md", "csv", "json"), default="text")
    p.add_argument("--fail-on-regression", type=float, metavar="PCT",
                   help="exit 1 when a case is significantly slower by more than PCT %% (or broke)")
    p.add_argument("--alpha", type=float, help="significance level of the Mann-Whitney test (default 0.001)")
    p.add_argument("--same-within", type=float, metavar="PCT", help="changes within PCT %% are 'same' (default 1)")
    p.add_argument("--ignore-devices", action="store_true", help="compare runs made on different devices")

    p = sub.add_parser("specs", help="the spec database, or every figure of one spec with its sources")
    p.add_argument("spec", nargs="?", help="a spec id, e.g. h200 or mi455x")
    p.add_argument("--json", action="store_true", help="every figure with its range, sources and confidence, as JSON")
    p.add_argument("--check", type=path_arg, metavar="FILE", help="check one spec file against the schema")

    p = sub.add_parser("project", help="what a run would do on another device")
    p.add_argument("run", type=path_arg, nargs="?", help="run folder (a GPU run)")
    p.add_argument("--to", metavar="SPEC", type=spec_id_arg, help="target spec id")
    p.add_argument("--against", type=path_arg, metavar="RUN", help="a run measured on the target: check the projection")
    p.add_argument("--format", choices=("text", "md", "csv", "json"), default="text")
    p.add_argument("--stack", choices=("carry", "keep"), default="carry",
                   help="carry the software stack's achieved efficiency across (default) or keep the measured one")
    p.add_argument("--validate", action="store_true",
                   help="no run: project every device with published figures onto every other, leaving the target out")

    p = sub.add_parser("estimate", help="a model's step from its kernels: tokens/s per GPU and $/Mtok per device")
    p.add_argument("run", type=path_arg, nargs="?", help="a GPU run whose measured kernels are used (optional)")
    p.add_argument("--model", help="model id (see --list-models)")
    p.add_argument("--list-models", action="store_true", help="the model database, with sources")
    p.add_argument("--phase", choices=("prefill", "decode"), default="decode")
    p.add_argument("--batch", type=int, default=1, help="sequences in the batch (default 1)")
    p.add_argument("--context", type=int, default=2048, help="tokens of context (default 2048)")
    p.add_argument("--output-tokens", type=int, default=0, help="decode: tokens generated after the context")
    p.add_argument("--dtype", choices=("bf16", "fp8", "fp4"), default="bf16", help="weights (and GEMM math)")
    p.add_argument("--tp", type=int, help="tensor-parallel GPUs (default: the least that fits)")
    p.add_argument("--reserve", type=float, default=0.10, help="memory fraction held back for the runtime (default 0.10)")
    p.add_argument("--to", metavar="SPEC,...", help="target spec ids (default: every spec)")
    p.add_argument("--format", choices=("text", "md", "json", "html"), default="text")
    p.add_argument("--out", type=path_arg, metavar="FILE", help="write the output to FILE (html needs one)")
    p.add_argument("--gpus", type=int, help="serving: GPUs of the whole deployment (replicas where > --tp)")
    p.add_argument("--ep", type=int, default=1, help="serving: expert-parallel GPUs (MoE only)")
    p.add_argument("--attention-dp", action="store_true", help="serving: attention data parallel (DEP)")
    p.add_argument("--isl", type=int, help="serving: input tokens per request")
    p.add_argument("--osl", type=int, help="serving: output tokens per request")
    p.add_argument("--concurrency", help="serving: C, max, or C1,C2,... (a curve)")
    p.add_argument("--request-rate", type=float, metavar="REQ_PER_S",
                   help="serving: open-loop arrivals, requests/s of the whole deployment (instead of --concurrency)")
    p.add_argument("--requests", type=int, metavar="N",
                   help="serving: a burst of N requests sent at once (request rate inf; instead of --concurrency)")
    p.add_argument("--engine", help="serving: vllm, trtllm (PyTorch backend), trtllm-cpp (TensorRT engines, C++ executor) or sglang")
    p.add_argument("--limits", choices=("engine", "trtllm-bench"), default="engine",
                   help="serving: batch and token limits from the engine's defaults, or as trtllm-bench throughput tunes them")
    p.add_argument("--price", action="append", default=[], metavar="SPEC=USD", help="serving: $/GPU-hour override")
    p.add_argument("--slo-tpot-ms", type=float, help="serving: the best point with TPOT at most this")
    p.add_argument("--validate", action="store_true", help="the published serving figures against the estimate")

    p = sub.add_parser("history", help="each case's trend over the published runs of a device, with compare verdicts")
    p.add_argument("results", nargs="?", type=path_arg, default=Path("results"), help="results folder (default results)")
    p.add_argument("--device", help="the device name (default: every device, a table each)")
    p.add_argument("--format", choices=("text", "md", "json", "html"), default="text")
    p.add_argument("--out", type=path_arg, metavar="FILE", help="write to FILE (html needs one)")

    p = sub.add_parser("selfcheck", help="check the harness: agreement with an independent timer, spread, flush, telemetry")
    p.add_argument("--device", type=int, default=0, help="GPU index among the visible ones")
    p.add_argument("--repeats", type=int, default=5, help="runs of one case for the spread check (default 5; 2 to 1000)")
    p.add_argument("--settle-s", type=float, help="idle seconds before each timing (default 0.5 on a GPU, 0 on the CPU; 0 to 3600)")
    p.add_argument("--format", choices=("text", "md"), default="text")
    p.add_argument("--json", type=path_arg, metavar="FILE", help="also write the results, device and versions as JSON")

    p = sub.add_parser("inspect", help="what each Triton kernel compiles to, offline, per target (no GPU needed)")
    p.add_argument("--target", metavar="T,...", help="targets: sm_90a, sm_100a, gfx942, gfx950 (default: all)")
    p.add_argument("--suite", action="append", metavar="S", help="only these suites (repeat or comma-separate)")
    p.add_argument("--preset", action="append", metavar="P", help="a representative case of these presets only "
                   "(default: every preset of each suite)")
    p.add_argument("--lead-only", action="store_true", help="compile only the first config of each list")
    p.add_argument("--one-case", action="store_true", help="compile each kernel variant (constexprs, operand "
                   "types, config) for its first case only: a quick check")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    return parser
