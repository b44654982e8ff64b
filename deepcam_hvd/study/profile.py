"""Split a training step into compute, allreduce and data time (run on every rank).

The trainer times whole steps; this measures the parts separately, on the same model and batch
shape, in four phases separated by barriers:

1. compute: forward, backward and optimizer update with a plain (local) optimizer;
2. allreduce: the gradient buffer (every parameter's gradient, flattened) averaged over ranks
   through the backend, with nothing else running: the raw communication time;
3. distributed step: the same step with the backend's distributed optimizer (Horovod's hooks
   start allreduces during backward). distributed - compute is the *exposed* allreduce time,
   and 1 - exposed / raw the share of it hidden behind the backward pass;
4. data: batches read from a data root by the training loader with no compute (read time).
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from deepcam_hvd.bench.step import StepSettings, TrainStep, time_steps
from deepcam_hvd.data.loader import LoaderSettings, train_loader
from deepcam_hvd.distributed.local import LocalBackend
from deepcam_hvd.runtime import Runtime


@dataclass(frozen=True)
class ProfileSettings:
    """What to profile."""

    model: str = "deeplab-xception-small"
    local_batch_size: int = 2
    height: int = 96
    width: int = 144
    steps: int = 5
    warmup: int = 1
    data_dir: str = ""
    readers: int = 1

    def step_settings(self) -> StepSettings:
        """The same step as ``bench step`` and the trainer time (AdamW, fp32, 16 channels)."""
        return StepSettings(model=self.model, height=self.height, width=self.width,
                            batch=self.local_batch_size)


def _timed(fn: Callable[[], Any], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _read_times(settings: ProfileSettings, rank: int, size: int) -> list[float]:
    loader = train_loader(settings.data_dir, rank, size, LoaderSettings(
        local_batch_size=settings.local_batch_size, readers=settings.readers))
    times: list[float] = []
    try:
        batches = iter(loader.iter_epoch(0))
        for _ in range(min(len(loader), settings.steps + settings.warmup)):
            start = time.perf_counter()
            next(batches)
            times.append(time.perf_counter() - start)
    finally:
        loader.close()
    return times[settings.warmup:] or times


def profile_rank(runtime: Runtime, settings: ProfileSettings) -> dict[str, Any]:
    """This rank's phase timings (seconds per step); every rank must call it.

    The compute and distributed phases are ``bench step``'s :class:`TrainStep` (the trainer's
    step functions) timed by its :func:`time_steps`: once with a plain optimizer, once with
    the backend's distributed one.
    """
    b = runtime.backend
    step_settings = settings.step_settings()
    b.barrier()
    plain = TrainStep(step_settings, LocalBackend(), runtime.device)
    compute = time_steps(plain, settings.steps, settings.warmup).totals
    model = plain.model

    # as many values as one step's gradients (the step itself leaves none behind)
    grads = torch.randn(sum(p.numel() for p in model.parameters() if p.requires_grad))
    b.barrier()
    allreduce = _timed(lambda: b.allreduce(grads, "mean"), settings.steps, settings.warmup)

    distributed_step = TrainStep(step_settings, b, runtime.device)
    distributed = time_steps(distributed_step, settings.steps, settings.warmup,
                             barrier=b.barrier).totals
    b.barrier()
    reads = _read_times(settings, b.rank, b.size) if settings.data_dir else []
    return {"compute": compute, "allreduce": allreduce, "distributed": distributed,
            "read": reads, "gradient_bytes": grads.numel() * grads.element_size(),
            "params": sum(p.numel() for p in model.parameters())}


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def _median(values: list[float]) -> float:
    """Median of a rank's step times: robust to steps slowed by other load on the machine."""
    return statistics.median(values) if values else 0.0


def summarize(per_rank: list[dict[str, Any]], settings: ProfileSettings,
              runtime: Runtime) -> dict[str, Any]:
    """Reduce every rank's timings to one record: each rank's median step, then the mean over
    ranks (and the slowest rank)."""
    def over_ranks(key: str) -> tuple[float, float]:
        medians = [_median(r[key]) for r in per_rank]
        return _mean(medians), max(medians)

    compute, compute_max = over_ranks("compute")
    allreduce, _ = over_ranks("allreduce")
    distributed, distributed_max = over_ranks("distributed")
    read, read_max = over_ranks("read")
    exposed = max(0.0, distributed - compute)
    ranks = runtime.backend.size
    lb = settings.local_batch_size
    return {
        **asdict(settings),
        "ranks": ranks,
        "local_size": runtime.backend.local_size,
        "threads_per_rank": runtime.threads.threads,
        "params": per_rank[0]["params"],
        "gradient_bytes": per_rank[0]["gradient_bytes"],
        "compute_s": compute,
        "compute_s_slowest_rank": compute_max,
        # the fastest step seen: other load on the machine only ever adds time
        "compute_s_min": min(min(r["compute"]) for r in per_rank),
        "allreduce_s": allreduce if ranks > 1 else 0.0,
        "distributed_step_s": distributed,
        "distributed_step_s_slowest_rank": distributed_max,
        "exposed_allreduce_s": exposed if ranks > 1 else 0.0,
        "overlap": (min(1.0, max(0.0, 1 - exposed / allreduce))
                    if ranks > 1 and allreduce > 0 else None),
        "read_s": read if settings.data_dir else None,
        "read_s_slowest_rank": read_max if settings.data_dir else None,
        "compute_samples_per_s": ranks * lb / compute if compute else 0.0,
        "step_samples_per_s": ranks * lb / distributed if distributed else 0.0,
        "host": socket.gethostname(),
        "load_average": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
