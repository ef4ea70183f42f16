"""The installed torch's version, parsed once: kernels pick an API by it, and a timed call must not
parse a string ("2.11.0+cu128", "2.6.0a0+git1234", "2.13.0+cpu" -> (2, 11), (2, 6), (2, 13))."""
from __future__ import annotations

import torch

TORCH_VERSION: tuple[int, int] = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
