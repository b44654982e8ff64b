"""One training step, in the pieces the trainer, ``bench step`` and ``study run`` all use.

A step is: :func:`forward_loss` then :func:`backward` once per accumulated local batch, then
:func:`optimizer_step`. Keeping the sequence in one place means the benchmarks time exactly
what training runs, and lets every caller see how long it waited for gradient communication.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from deepcam_hvd.errors import DataError
from deepcam_hvd.train.metric import batch_iou
from deepcam_hvd.train.precision import autocast


def forward_with_logits(forward: Callable[[torch.Tensor], torch.Tensor],
                        criterion: torch.nn.Module, data: torch.Tensor, label: torch.Tensor,
                        device: torch.device, precision: str = "fp32",
                        channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a local batch to ``device``, run the model under the precision's autocast and
    return the (undivided) loss and the logits."""
    data = data.to(device, non_blocking=True)
    label = label.to(device, non_blocking=True)
    if channels_last:
        data = data.contiguous(memory_format=torch.channels_last)
    with autocast(precision, device):
        logits = forward(data)
    return criterion(logits, label), logits


def forward_loss(forward: Callable[[torch.Tensor], torch.Tensor], criterion: torch.nn.Module,
                 data: torch.Tensor, label: torch.Tensor, device: torch.device,
                 precision: str = "fp32", channels_last: bool = False) -> torch.Tensor:
    """The (undivided) loss of a local batch (see :func:`forward_with_logits`)."""
    return forward_with_logits(forward, criterion, data, label, device, precision,
                               channels_last)[0]


def train_local_batch(forward: Callable[[torch.Tensor], torch.Tensor],
                      criterion: torch.nn.Module, data: torch.Tensor, label: torch.Tensor,
                      device: torch.device, precision: str, channels_last: bool,
                      accumulation: int, scaler: torch.amp.GradScaler | None,
                      with_iou: bool = False) -> tuple[torch.Tensor, float | None]:
    """Forward and backward of one local batch: its (undivided) loss, detached and left on
    the device (reading it would make a GPU wait), and, ``with_iou``, its IoU as a number
    (the reference logs the last batch's as ``train_accuracy``)."""
    loss, logits = forward_with_logits(forward, criterion, data, label, device, precision,
                                       channels_last)
    backward(loss, accumulation, scaler)
    iou = float(batch_iou(logits.detach(), label.to(logits.device))) if with_iou else None
    return loss.detach(), iou


class LossTally:
    """Sums training losses on the device and reads them only when asked, checking them.

    A GPU that had to hand over each step's loss would drain its queue every step; here the
    host reads the sum at logging points and epoch ends (on CPU, where reading is free, after
    every step), and a non-finite sum stops the run naming the steps it came from.
    """

    def __init__(self, device: torch.device) -> None:
        self.every_step = device.type == "cpu"
        self._sum = torch.zeros((), dtype=torch.float64, device=device)
        self._count = 0
        self._since = 0  # the last step whose losses were read

    def add(self, loss: torch.Tensor) -> None:
        """Add one local batch's loss."""
        self._sum += loss.detach().to(torch.float64)
        self._count += 1

    def read(self, step: int) -> tuple[float, int]:
        """Sum and count of the losses added since the last read (which ended at ``step``)."""
        total, count = float(self._sum), self._count
        if not math.isfinite(total):
            where = f"step {step}" if step - self._since == 1 else \
                f"steps {self._since + 1}-{step}"
            raise DataError(f"training loss became {total} at {where} (diverged, or NaN/Inf in "
                            "the input data)")
        self._sum.zero_()
        self._count, self._since = 0, step
        return total, count


def backward(loss: torch.Tensor, accumulation: int = 1,
             scaler: torch.amp.GradScaler | None = None) -> None:
    """Backpropagate ``loss / accumulation`` (through the fp16 loss scaler if there is one).

    With Horovod this also starts each gradient's allreduce as soon as it is ready.
    """
    scaled = loss / accumulation
    (scaler.scale(scaled) if scaler is not None else scaled).backward()


def optimizer_step(optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler | None = None) -> float:
    """Apply the accumulated gradients and zero them; return the seconds spent waiting for the
    gradient averaging that backward did not hide (0 for a single process).

    Distributed optimizers (Horovod's, and the torch backend's averaging one) expose
    ``synchronize()``: it is called first, timed, and the update then skips it. Averaging
    happens before the fp16 scaler unscales the gradients.
    """
    synchronize = getattr(optimizer, "synchronize", None)
    waited = 0.0
    if synchronize is not None:
        start = time.perf_counter()
        synchronize()
        waited = time.perf_counter() - start
        with optimizer.skip_synchronize():  # type: ignore[attr-defined]
            _update(optimizer, scaler)
    else:
        _update(optimizer, scaler)
    optimizer.zero_grad()
    return waited


def _update(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
