"""CPU threads per rank: sized to the cores the rank owns, never oversubscribing the node."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from deepcam_hvd.errors import ConfigError


@dataclass(frozen=True)
class ThreadPlan:
    """How many intra-op threads this rank runs, and why."""

    threads: int
    source: str  # which setting decided: SLURM_CPUS_PER_TASK, OMP_NUM_THREADS, binding, cores
    node_cores: int
    bound_cores: list[int]  # the CPUs this process may run on (its affinity mask)
    local_size: int
    capped: bool  # the request was larger than this rank's share and was reduced

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return asdict(self)


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    if name not in env or env[name] == "":
        return None
    try:
        value = int(env[name])
    except ValueError:
        raise ConfigError(f"{name}={env[name]!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{name}={value} must be at least 1")
    return value


def plan_threads(env: Mapping[str, str], local_size: int,
                 affinity: set[int] | None = None, node_cores: int | None = None) -> ThreadPlan:
    """Decide this rank's thread count from the launch.

    Order: SLURM_CPUS_PER_TASK (what srun gave the task), OMP_NUM_THREADS (what the user
    asked), then the cores the launcher bound us to, then the node's cores / local ranks.
    A request above this rank's fair share of the node is capped to it.
    """
    affinity = set(os.sched_getaffinity(0)) if affinity is None else affinity
    node_cores = (os.cpu_count() or 1) if node_cores is None else node_cores
    share = max(1, node_cores // max(1, local_size))
    bound = len(affinity) < node_cores
    for name in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        requested = _positive_int(env, name)
        if requested is not None:
            source = name
            break
    else:
        requested, source = (len(affinity), "binding") if bound else (share, "cores/local_ranks")
    # A binding narrower than the node is the launcher's word on what we own; else our share.
    limit = len(affinity) if bound else share
    threads = min(requested, limit)
    return ThreadPlan(threads, source, node_cores, sorted(affinity), local_size,
                      capped=threads < requested)


def apply_threads(plan: ThreadPlan) -> None:
    """Set torch's intra-op threads (and OMP_NUM_THREADS for any child processes)."""
    import torch

    torch.set_num_threads(plan.threads)
    os.environ["OMP_NUM_THREADS"] = str(plan.threads)
