"""Validation: IoU and loss over the whole validation set, every file once over all ranks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch

from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.train.metric import per_sample_iou
from deepcam_hvd.train.precision import autocast

if TYPE_CHECKING:
    from deepcam_hvd.data.batches import Batch
    from deepcam_hvd.data.loader import ShardLoader

    Feed = Callable[[Iterable[Batch]], Iterable[Batch]]


class Validator:
    """Scores the model on this rank's validation shard and reduces over ranks.

    The sums stay on the device until the end (a GPU is not drained after every batch); they
    are float64 and add the same values in the same order as reading each batch's figures
    would, so the result does not change.
    """

    def __init__(self, loader: ShardLoader, backend: Backend, criterion: torch.nn.Module,
                 device: torch.device, precision: str, channels_last: bool,
                 feed: Feed | None = None) -> None:
        self.loader = loader
        self.backend = backend
        self.criterion = criterion
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.feed = feed

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module,
                 forward: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, float]:
        """Mean per-sample IoU and loss over the validation set (collective)."""
        self.backend.average_buffers(model)  # batch-norm statistics agree on every rank
        model.eval()
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # IoU, loss
        count = 0
        batches = self.loader.iter_epoch(0)
        for batch in self.feed(batches) if self.feed is not None else batches:
            data = batch.data.to(self.device, non_blocking=True)
            label = batch.label.to(self.device, non_blocking=True)
            if self.channels_last:
                data = data.contiguous(memory_format=torch.channels_last)
            with autocast(self.precision, self.device):
                logits = forward(data)
            loss = self.criterion(logits, label).to(torch.float64)
            sums[0] += per_sample_iou(logits.argmax(dim=1), label).sum().to(torch.float64)
            sums[1] += loss * label.shape[0]
            count += label.shape[0]
        iou_sum, loss_sum = sums.tolist()
        totals = self.backend.allreduce(
            torch.tensor([iou_sum, loss_sum, float(count)], dtype=torch.float64), "sum")
        iou_total, loss_total, n = totals.tolist()
        model.train()
        return iou_total / n, loss_total / n
