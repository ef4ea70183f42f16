"""Launching a Triton kernel with the config list of the target it runs on: NVIDIA and AMD each get
their own configs (every kernel family here, and a user's own kernels: docs/own-kernels.md).

`Launcher(kernel, configs, key)` takes one config list per target: "cuda", "hip" (options such as
`waves_per_eu` and `matrix_instr_nonkdim` that the CUDA backend does not know), optionally an
architecture ("cuda:sm_100", "hip:gfx950") whose list is used there instead, and "interpret" (the CPU
interpreter; where absent, the "cuda" list). The kernel is wrapped in `triton.autotune` for the
target it runs on, lazily, on first use; the autotuner benchmarks every config at the first call
with a new key, which the harness makes during validation, outside the timed region, and records
the config it chose. `parity inspect` compiles every config of the "cuda" list for sm_90a/sm_100a
and of the "hip" list for gfx942/gfx950, without a GPU.

    launch = Launcher(my_kernel, {"cuda": [triton.Config({"BLOCK": 128}, num_warps=4), ...],
                                  "hip": [triton.Config({"BLOCK": 256, "waves_per_eu": 2}, num_warps=8)],
                                  "interpret": [triton.Config({"BLOCK": 16}, num_warps=1)]}, key=["n"])
    launch(lambda meta: (triton.cdiv(n, meta["BLOCK"]),), x, out, n, like=x)

`narrow` (optional, the same shape as `configs`) holds the lists for calls whose operands Triton
cannot load in 16-byte vectors (`vector_aligned` below is False: an odd K or stride, a misaligned
view): each element is then loaded alone, with its own address and predicate in registers, so the
large tiles that suit aligned operands spill (issue 24, measured offline). A call passes
`narrow=True` to use them; a target without a narrow list keeps its usual one.

In the Triton CPU interpreter (TRITON_INTERPRET=1) the "interpret" list runs: one config is simply
run; several are each validated once by the harness, which times the first (measurement/autotuning.py).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import torch
import triton

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def as_config(cfg: Mapping[str, Any]) -> triton.Config:
    """A `triton.Config` from a dict of meta-parameters with num_warps and num_stages among them."""
    meta = {k: v for k, v in cfg.items() if k not in ("num_warps", "num_stages")}
    return triton.Config(meta, num_warps=cfg.get("num_warps", 4), num_stages=cfg.get("num_stages", 1))


VECTOR_BYTES = 16  # the widest global load a lane issues (ld.global.v4.b32, buffer_load_dwordx4)
DIVISIBILITY = 16  # Triton specializes an integer argument as divisible by 16, or not at all


def _address(t: torch.Tensor) -> int:
    """The tensor's address; for a meta or fake tensor (no memory) its offset into a fresh, aligned
    allocation."""
    from torch._subclasses.fake_tensor import FakeTensor

    if t.is_meta or isinstance(t, FakeTensor):
        return t.storage_offset() * t.element_size()
    return t.data_ptr()


def vector_aligned(*tensors: torch.Tensor) -> bool:
    """Whether Triton can load each 2-D operand in 16-byte vectors along its unit-stride dimension:
    its address 16-byte aligned, its other stride and its extent along that dimension (a kernel's K
    mask or `% M` wrap) multiples of 16, as Triton's specialization sees them. A tensor on the
    "meta" device stands for a fresh allocation (address 0, aligned)."""
    for t in tensors:
        if t.dim() != 2:
            return False
        unit = [d for d in (1, 0) if t.stride(d) == 1 or t.shape[d] == 1]
        if not unit:
            return False
        inner, outer = unit[0], 1 - unit[0]
        if _address(t) % VECTOR_BYTES or t.shape[inner] % DIVISIBILITY or \
                (t.shape[outer] > 1 and t.stride(outer) % DIVISIBILITY):
            return False
    return True


def target(t: torch.Tensor) -> str:
    """"interpret", "hip" or "cuda": where a kernel on tensor `t` runs. A tensor on the "meta" device
    stands for a GPU one (`parity inspect` prepares kernels on meta tensors, for a target GPU)."""
    if INTERPRET or not (t.is_cuda or t.is_meta):
        return "interpret"
    return "hip" if torch.version.hip else "cuda"


def arch_target(t: torch.Tensor) -> str | None:
    """"hip:gfx942", "cuda:sm_90", ...: the architecture a kernel on `t` runs on, for config lists
    that differ by architecture (LDS is 64 KiB a CU on gfx942, 160 KiB on gfx950; MXFP4 is native on
    sm_100 and emulated, with other tiles, on sm_90); None in the interpreter."""
    where = target(t)
    if where == "hip":
        return "hip:" + torch.cuda.get_device_properties(t.device).gcnArchName.split(":")[0]
    if where == "cuda":
        major, minor = torch.cuda.get_device_capability(t.device)
        return f"cuda:sm_{major}{minor}"
    return None


class Launcher:
    """Launches one Triton kernel with the config list of the target it runs on.

    `configs` maps "cuda", "hip" and "interpret" to lists of `triton.Config` (and optionally an AMD
    architecture, "hip:gfx942" or "cuda:sm_90", to its own list, used there instead of "hip" or
    "cuda"); `key` names the kernel
    arguments whose values make a new tuning problem. An explicit `cfg` (a dict of the kernel's
    meta-parameters, e.g. BLOCK_M and BLOCK_N, and optionally num_warps, num_stages) bypasses tuning.
    """

    def __init__(self, kernel, configs: Mapping[str, Sequence[triton.Config]], key: Sequence[str],
                 narrow: Mapping[str, Sequence[triton.Config]] | None = None):
        self.kernel = kernel
        self.configs = configs
        self.narrow = dict(narrow or {})
        self.key = list(key)
        self._tuned: dict[tuple[str, bool], Any] = {}
        self._narrow_last: dict[str, bool] = {}  # per list: whether its last call took the narrow one

    def lists(self, narrow: bool = False) -> Mapping[str, Sequence[triton.Config]]:
        """The config lists a call uses: with `narrow`, the narrow list where a target has one."""
        return {**self.configs, **self.narrow} if narrow else self.configs

    def _for_target(self, where: str, narrow: bool = False):
        narrow = narrow and where in self.narrow
        if (where, narrow) not in self._tuned:
            configs = list(self.lists(narrow)[where])
            self._tuned[(where, narrow)] = (triton.autotune(configs=configs, key=self.key)(self.kernel)
                                            if len(configs) > 1 else None)
        self._narrow_last[where] = narrow
        return self._tuned[(where, narrow)]

    def list_for(self, like: torch.Tensor) -> str:
        """The key of the config list a kernel on `like` uses: its architecture's, its target's, or in
        the interpreter without an "interpret" list the "cuda" one; a target without a list is a
        ValueError naming the lists there are."""
        arch, where = arch_target(like), target(like)
        if arch in self.configs:
            return arch
        if where not in self.configs and where == "interpret" and "cuda" in self.configs:
            return "cuda"
        if where not in self.configs:
            name = getattr(self.kernel, "__name__", "the kernel")
            raise ValueError(f"{name} has no config list for {where!r} (lists: {', '.join(self.configs)})")
        return where

    def __call__(self, grid: Callable[[Mapping[str, Any]], tuple[int, ...]], *args,
                 like: torch.Tensor, cfg: Mapping[str, Any] | None = None, narrow: bool = False,
                 **kwargs) -> None:
        """Launch on `grid` (a function of the config's meta-parameters) with `args`; `like` is a
        tensor on the device it runs on (it picks the list); `cfg` fixes the config instead;
        `narrow`: the operands take no 16-byte vector loads (the narrow list, where there is one)."""
        where = self.list_for(like)
        tuned = self._for_target(where, narrow) if cfg is None else None
        if tuned is not None:
            tuned[grid](*args, **kwargs)
            return
        if cfg is None:
            only = self.lists(narrow)[where][0]
            cfg = {**only.kwargs, "num_warps": only.num_warps, "num_stages": only.num_stages}
        meta = dict(cfg)
        self.kernel[grid(meta)](*args, **kwargs, **meta)

    def best_config(self, like: torch.Tensor | None = None) -> str | None:
        """The config the autotuner chose last on `like`'s target, or on the one target this process
        has tuned for (None before tuning, or where nothing is tuned)."""
        if like is not None:
            where = self.list_for(like)
            tuned = self._tuned.get((where, self._narrow_last.get(where, False)))
        else:
            tuned = next((t for t in self._tuned.values() if t is not None), None)
        best = getattr(tuned, "best_config", None)
        return None if best is None else str(best)


