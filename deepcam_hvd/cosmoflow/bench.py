"""Timing CosmoFlow's training step: Keras ``fit`` steps on one in-memory batch (no I/O), with
the trainer's optimizer path (SGD momentum 0.9, ``hvd.DistributedOptimizer`` on more than one
rank), for our network or, given its directory at run time, the MLCommons reference's.

Each step is timed from ``on_train_batch_begin`` to ``on_train_batch_end`` on every rank; a
step's time is the slowest rank's (the gradient allreduce makes them finish together), and the
figure reported is the median over the timed steps.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from deepcam_hvd.cosmoflow.model import build_model, loss_and_metric
from deepcam_hvd.cosmoflow.runtime import TFRuntime
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.workloads import cosmoflow as facts


class _StepTimer(tf.keras.callbacks.Callback):
    """Seconds of each training step, as this rank sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.times.append(time.perf_counter() - self._start)


def reference_model(path: str, cube: int) -> tf.keras.Model:
    """The MLCommons reference's network, imported from its ``cosmoflow`` directory ``path``
    (never part of this package); ConfigError naming the path if it is not there."""
    root = Path(path)
    if not (root / "models" / "cosmoflow.py").is_file():
        raise ConfigError(f"--reference {path}: no models/cosmoflow.py there (give the "
                          "reference's cosmoflow/ directory)")
    sys.path.insert(0, str(root))
    try:
        from models.cosmoflow import build_model as reference_build  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(root))
    return reference_build((cube, cube, cube, facts.NUM_CHANNELS), facts.NUM_TARGETS)


def time_step(runtime: TFRuntime, cube: int, batch: int, steps: int, warmup: int,
              reference: str | None = None, seed: int = 1) -> dict[str, Any]:
    """Collective: time ``steps`` training steps after ``warmup`` untimed ones; the figures
    over all ranks."""
    tf.keras.utils.set_random_seed(seed)
    b = runtime.backend
    with tf.device(runtime.device):
        model = reference_model(reference, cube) if reference else build_model(cube)
        loss, metric = loss_and_metric()
        optimizer = runtime.distributed_optimizer(
            tf.keras.optimizers.SGD(facts.BASE_LR, momentum=facts.MOMENTUM))
        model.compile(optimizer=optimizer, loss=loss, metrics=[metric])
    rng = np.random.default_rng(seed + b.rank)
    x = np.log1p(rng.poisson(8.0, (batch, cube, cube, cube, facts.NUM_CHANNELS))
                 ).astype(np.float32)
    y = rng.uniform(-1, 1, (batch, facts.NUM_TARGETS)).astype(np.float32)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    timer = _StepTimer()
    with tf.device(runtime.device):
        model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0,
                  callbacks=[*runtime.keras_callbacks(), timer])
    per_step = _max_over_ranks(b, timer.times[warmup:])
    median = statistics.median(per_step)
    return {
        "model": "reference" if reference else "deepcam-hvd", "cube": cube,
        "local_batch_size": batch, "ranks": b.size, "threads_per_rank": runtime.intra_threads,
        "inter_op_threads": runtime.inter_threads, "device": runtime.device,
        "parameters": int(model.count_params()), "steps": steps, "warmup": warmup,
        "step_s_median": median, "step_s_mean": statistics.fmean(per_step),
        "step_s_min": min(per_step), "samples_per_s": batch * b.size / median,
    }


def _max_over_ranks(backend: Any, times: list[float]) -> list[float]:
    """Element-wise maximum of every rank's step times (gathered: Horovod has no max)."""
    every = backend.allgather_object(list(times))
    return [max(column) for column in zip(*every, strict=True)]
