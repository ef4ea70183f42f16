"""What a run records about its software and host, so that a number can be traced and reproduced."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from parity.harness.core.version import __version__


def versions(device) -> dict[str, Any]:
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # noqa: BLE001 - recorded as missing; the CLI has already said why
        triton_version = None
    return {
        "parity": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda_runtime": torch.version.cuda,
        "hip_runtime": torch.version.hip,
        "driver": device.driver_version,
    }


def git_revision() -> dict[str, Any] | None:
    """The project's revision and whether the tree had changes; None outside a git checkout."""
    root = Path(__file__).resolve().parents[3]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def host() -> dict[str, Any]:
    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "python_executable": sys.executable}
