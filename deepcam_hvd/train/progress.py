"""Where a run stands: completed steps and epochs, and this rank's totals inside an epoch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepcam_hvd.distributed.base import Backend


@dataclass
class Position:
    """Where training stands: completed optimizer steps and epochs."""

    step: int = 0
    epoch: int = 0  # epochs completed


@dataclass(frozen=True)
class EpochFigures:
    """One epoch's training figures over all ranks."""

    loss: float
    samples_per_s: float
    data_wait_fraction: float
    comm_wait_fraction: float
    seconds: float
    last_loss: float  # the last local batch's loss, mean over ranks (the reference's train_loss)
    last_iou: float  # its IoU (the reference's train_accuracy)
    last_lr: float


@dataclass
class EpochProgress:
    """This rank's running totals inside the current epoch (saved with a mid-epoch stop)."""

    steps_done: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    wait_s: float = 0.0
    comm_wait_s: float = 0.0  # waiting for gradient averaging that backward did not hide
    seconds: float = 0.0  # time spent in training steps, data waits included
    # the epoch's last local batch, as the reference logs train_loss/train_accuracy
    last_loss: float = 0.0
    last_iou: float = 0.0
    last_lr: float = 0.0  # learning rate of the epoch's last optimizer step

    def close(self, backend: Backend, global_batch: int) -> EpochFigures:
        """The epoch's figures, averaged over ranks (collective: every rank calls it)."""
        busy = max(1e-9, self.seconds)
        mine = torch.tensor([self.loss_sum / max(1, self.loss_count), self.seconds,
                             self.wait_s / busy, self.comm_wait_s / busy, self.last_loss,
                             self.last_iou], dtype=torch.float64)
        # one collective for all the means (each Horovod operation costs a negotiation cycle)
        loss, seconds, wait, comm, last_loss, last_iou = backend.allreduce(mine, "mean").tolist()
        return EpochFigures(loss, self.steps_done * global_batch / max(1e-9, seconds), wait,
                            comm, seconds, last_loss, last_iou, self.last_lr)
