"""CosmoFlow's learning-rate schedule: the MLCommons reference's (``utils/optimizers.py``,
applied by a Keras ``LearningRateScheduler`` in ``train.py``), as a closed form of the epoch.

The reference sets the LR once per epoch, at its start, from Keras' 0-based epoch index
(the MLPerf log numbers that epoch ``epoch + 1``); it is constant within the epoch:

- peak LR = base LR x scale factor, the factor being global batch / base batch for ``linear``
  scaling (the global batch is the local batch times the number of ranks), its square root
  for ``sqrt``, 1 for ``none`` (other names raise here; the reference takes 1 for them);
- warm-up over W epochs: ``epoch * (peak - base) / W + base`` for ``epoch < W``, linear from the
  *unscaled* base LR at epoch 0; epoch W is the first at the peak (W = 0: no warm-up);
- after warm-up: peak x the factor of the latest decay boundary strictly below the epoch, so
  boundary 32 first applies to epoch 33 (logged epoch_num 34). Factors are relative to the
  peak, not cumulative; boundaries inside the warm-up only act after it.

The LR depends on the epoch index alone, so a run resumed with Keras' ``initial_epoch`` uses
the uninterrupted run's LR in every epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from deepcam_hvd.workloads import cosmoflow as facts


def lr_at(epoch: int, global_batch_size: int, *, base_lr: float = facts.BASE_LR,
          base_batch_size: int = facts.BASE_BATCH_SIZE, scaling: str | None = facts.LR_SCALING,
          warmup_epochs: int = facts.WARMUP_EPOCHS,
          decay_schedule: Mapping[int, float] = facts.DECAY_SCHEDULE) -> float:
    """The reference's LR for the 0-based ``epoch`` of a run with ``global_batch_size``."""
    if warmup_epochs < 0 or any(boundary < 0 for boundary in decay_schedule):
        raise ValueError(f"warm-up epochs ({warmup_epochs}) and decay boundaries "
                         f"({sorted(decay_schedule)}) must not be negative")
    peak_lr = base_lr * facts.lr_scale_factor(global_batch_size, base_batch_size, scaling)
    # The reference's operation order, so both give the same float.
    if epoch < warmup_epochs:
        return epoch * (peak_lr - base_lr) / warmup_epochs + base_lr
    passed = [boundary for boundary in decay_schedule if boundary < epoch]
    return peak_lr * (decay_schedule[max(passed)] if passed else 1.0)


class EpochLR(tf.keras.callbacks.Callback):
    """Sets the optimizer's LR to ``lr_at(epoch, ...)`` at the start of every epoch and reports
    it as ``logs["lr"]`` at its end, as the reference's ``LearningRateScheduler`` does."""

    def __init__(self, global_batch_size: int, **schedule: Any):
        super().__init__()
        self.global_batch_size = global_batch_size
        self.schedule = schedule
        self.lr(0)  # bad settings fail here, not at the first epoch

    def lr(self, epoch: int) -> float:
        """The LR of the 0-based ``epoch``."""
        return lr_at(epoch, self.global_batch_size, **self.schedule)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Set the LR of this epoch."""
        tf.keras.backend.set_value(self.model.optimizer.learning_rate, self.lr(epoch))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Add the epoch's LR to its logs (the history's ``lr`` column)."""
        if logs is not None:
            logs["lr"] = float(tf.keras.backend.get_value(self.model.optimizer.learning_rate))
