"""Time the autotuned matmul with parity.measure, checked against torch on random inputs.

    python examples/matmul/measure.py            # on a GPU: Triton tunes; on a CPU: the interpreter

On a GPU the autotuner benchmarks the target's list at the first (checked) call and the result names
the config it chose; in the interpreter every config of the "interpret" list is checked once and
the first is timed (the time is the interpreter's, not a kernel's).
"""
from __future__ import annotations

import sys
from pathlib import Path

import parity

device = parity.detect()  # before the kernel is imported: on a CPU this turns the interpreter on
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402

from parity_matmul.kernel import matmul  # noqa: E402

m, n, k = (4096, 4096, 4096) if device.is_gpu else (40, 24, 56)
where = "cuda" if device.is_gpu else "cpu"
gen = torch.Generator(device=where).manual_seed(0)
a = torch.randn(m, k, generator=gen, device=where).to(torch.bfloat16 if device.is_gpu else torch.float32)
b = torch.randn(k, n, generator=gen, device=where).to(a.dtype)
c = torch.empty(m, n, dtype=a.dtype, device=where)
result = parity.measure(lambda: matmul(a, b, c), flops=2 * m * n * k, bytes_read=(m * k + k * n) * a.element_size(),
                        bytes_written=m * n * a.element_size(), dtype="bf16" if device.is_gpu else "fp32",
                        reference=lambda: torch.matmul(a.float(), b.float()).to(a.dtype),
                        time_cap_s=None if device.is_gpu else 0.2)
print(result)
for tuned in result.autotune:
    print(f"{tuned['kernel']}: " + (f"{tuned['config']} ({tuned['choice']}, {tuned['validated']} of "
                                    f"{tuned['configs']} configs validated)" if "config" in tuned
                                    else f"heuristics {tuned['heuristics']}"))
