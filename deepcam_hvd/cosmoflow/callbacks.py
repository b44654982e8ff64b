"""The Keras callback that watches each training step: a finite loss, and a stop signal that
every rank acts on at the same step.

Stop window: the ranks compare their flags (``train.signals.StopAgreement``: one allreduce of
a float) after every ``every``-th step of the epoch, so all of them stop after the same step,
at most ``every`` steps after the signal reached the first of them. A signal that arrives in
the last steps of an epoch, during validation or during the checkpoint is honoured at the
epoch's end instead (the trainer agrees once more there).
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from deepcam_hvd.errors import DataError
from deepcam_hvd.train.signals import StopAgreement


class StepWatch(tf.keras.callbacks.Callback):
    """Counts the epoch's steps, refuses a non-finite loss and stops on an agreed signal."""

    def __init__(self, agreement: StopAgreement, every: int, epoch_num: int,
                 first_batch: int = 0) -> None:
        super().__init__()
        self.agreement = agreement
        self.every = every
        self.epoch_num = epoch_num  # 1-based, as the log and the messages count
        self.batch = first_batch  # batches of this epoch done (a resumed epoch starts later)
        self.stopped = False

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """After each step: check the loss; every ``every`` steps, agree on a stop."""
        self.batch += 1
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise DataError(f"epoch {self.epoch_num}, step {self.batch}: training loss is "
                            f"{loss} (diverged: lower --base_lr, or check the data)")
        if self.batch % self.every == 0:
            self.agreement.start()
            if self.agreement.agreed():
                self.stopped = True
                self.model.stop_training = True
