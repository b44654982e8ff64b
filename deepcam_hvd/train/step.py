"""One training step, in the pieces the trainer, ``bench step`` and ``study run`` all use.

A step is: :func:`forward_loss` then :func:`backward` once per accumulated local batch, then
:func:`optimizer_step`. Keeping the sequence in one place means the benchmarks time exactly
what training runs, and lets every caller see how long it waited for gradient communication.
"""

from __future__ import annotations

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
                      accumulation: int, scaler: torch.amp.GradScaler | None, step: int,
                      with_iou: bool = False) -> tuple[float, float | None]:
    """Forward and backward of one local batch: its (undivided) loss and, ``with_iou``, its
    IoU (the reference logs the last batch's as ``train_accuracy``).

    A non-finite loss stops the run with one line naming the optimizer step.
    """
    loss, logits = forward_with_logits(forward, criterion, data, label, device, precision,
                                       channels_last)
    if not torch.isfinite(loss):
        raise DataError(f"training loss became {loss.item()} at step {step}"
                        " (diverged, or NaN/Inf in the input data)")
    backward(loss, accumulation, scaler)
    iou = float(batch_iou(logits.detach(), label.to(logits.device))) if with_iou else None
    return float(loss.detach()), iou


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
