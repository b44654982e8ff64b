"""Validation: IoU and loss over the whole validation set, every file once over all ranks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.train.metric import per_sample_iou
from deepcam_hvd.train.precision import autocast

if TYPE_CHECKING:
    from deepcam_hvd.data.loader import ShardLoader


class Validator:
    """Scores the model on this rank's validation shard and reduces over ranks."""

    def __init__(self, loader: ShardLoader, backend: Backend, criterion: torch.nn.Module,
                 device: torch.device, precision: str, channels_last: bool) -> None:
        self.loader = loader
        self.backend = backend
        self.criterion = criterion
        self.device = device
        self.precision = precision
        self.channels_last = channels_last

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module,
                 forward: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, float]:
        """Mean per-sample IoU and loss over the validation set (collective)."""
        self.backend.average_buffers(model)  # batch-norm statistics agree on every rank
        model.eval()
        iou_sum, loss_sum, count = 0.0, 0.0, 0
        for batch in self.loader.iter_epoch(0):
            data = batch.data.to(self.device)
            label = batch.label.to(self.device)
            if self.channels_last:
                data = data.contiguous(memory_format=torch.channels_last)
            with autocast(self.precision, self.device):
                logits = forward(data)
            loss_sum += float(self.criterion(logits, label)) * label.shape[0]
            iou_sum += float(per_sample_iou(logits.argmax(dim=1), label).sum())
            count += label.shape[0]
        totals = self.backend.allreduce(
            torch.tensor([iou_sum, loss_sum, float(count)], dtype=torch.float64), "sum")
        iou_total, loss_total, n = totals.tolist()
        model.train()
        return iou_total / n, loss_total / n
