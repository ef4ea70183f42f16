"""The attention suite's light metadata: its presets, dtypes and implementations (see _meta/__init__.py)."""
from __future__ import annotations

from parity.harness.core.model import SuiteMeta

NAME = "attention"
DTYPES = ("bf16", "fp16", "fp8")
# The SDPA backends forced one at a time; kernels/attention/torch_attention.SDPA_BACKENDS maps each
# to torch's enum (the suite checks, when it is built, that both name the same ones).
SDPA = ("flash", "efficient", "cudnn", "math")

META = SuiteMeta(name=NAME, presets=("smoke", "quick", "full"), dtypes=DTYPES,
                 impls=("triton", "triton-tma", *(f"sdpa-{b}" for b in SDPA), "flex"))
