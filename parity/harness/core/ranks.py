"""A process's place in a group of ranks or workers, from the variables torchrun (or parity) sets.

Below everything that needs it: the limits on --ranks, the case supervisor's worker (fault
injection for the tests), the collectives suite (how many ranks by default) and the launcher.
`PARITY_FAULT=WHO:KIND[:CASE]` (testing only) makes rank or worker WHO raise, hang, exit or segv at
its CASE-th case (default the first).
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from parity.harness.core.model import UsageError

EXIT_RANK = 3  # a rank failed or hung: the run ended early


DEFAULT_TIMEOUT_S = 300.0


STORE_ENV = "PARITY_STORE"  # host:port of the store of the process that started the ranks


FAULT_ENV = "PARITY_FAULT"


WORKER_ENV = "PARITY_WORKER"  # set by multigpu.py for each per-GPU worker


class RankError(Exception):
    """A rank failed, died or stopped answering; the message names it and is one line."""


@dataclass(frozen=True)
class Place:
    rank: int
    world_size: int
    local_rank: int


def place_from_env() -> Place | None:
    """This process's place, from the variables torchrun (or `launch`) sets; None outside a group."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    return Place(rank, world, local)


def local_index(default: int) -> int:
    """The GPU a process uses: its LOCAL_RANK inside a process group, else the one asked for."""
    place = place_from_env()
    return default if place is None else place.local_rank


RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
                  "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE", STORE_ENV)


def launched_by_parity() -> bool:
    """Whether this process is a rank that `launch` started (which reports the rank's faults)."""
    return bool(os.environ.get(STORE_ENV)) and place_from_env() is not None


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process parity starts: this one's, less any place in a group."""
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARIABLES}
    env.update(extra)
    return env


def default_ranks(device) -> int:
    """Ranks parity starts for a collective suite: one per visible GPU, two on the CPU (gloo)."""
    if device.is_gpu:
        import torch

        return torch.cuda.device_count()
    return 2


def inject_fault(who: int, at: int) -> None:
    """Testing only: raise, hang or exit when PARITY_FAULT names this rank or worker and case."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    parts = spec.split(":")
    if int(parts[0]) != who or (int(parts[2]) if len(parts) > 2 else 0) != at:
        return
    if parts[1] == "raise":
        raise RuntimeError(f"injected fault ({FAULT_ENV}={spec})")
    if parts[1] == "hang":
        time.sleep(3600)
    if parts[1] == "exit":
        os._exit(17)
    if parts[1] == "segv":  # as a crashing kernel or driver would end the process
        os.kill(os.getpid(), signal.SIGSEGV)
