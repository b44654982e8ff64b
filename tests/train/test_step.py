"""The shared training step: accumulation, the update, and the timed gradient averaging."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from deepcam_hvd.distributed.base import averaging_optimizer
from deepcam_hvd.train.step import backward, forward_loss, optimizer_step


def _model_and_batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Conv2d(2, 3, 1)
    return model, torch.randn(2, 2, 4, 4), torch.randint(0, 3, (2, 4, 4))


def test_backward_divides_by_accumulation_and_step_zeroes() -> None:
    model, data, label = _model_and_batch()
    loss = forward_loss(model, nn.CrossEntropyLoss(), data, label, torch.device("cpu"))
    backward(loss, accumulation=1)
    full = model.weight.grad.clone()
    model.zero_grad()
    backward(forward_loss(model, nn.CrossEntropyLoss(), data, label, torch.device("cpu")), 2)
    torch.testing.assert_close(model.weight.grad, full / 2)

    before = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    assert optimizer_step(optimizer) == 0.0  # nothing to wait for in one process
    torch.testing.assert_close(model.weight.detach(), before - 0.5 * full / 2)
    assert model.weight.grad is None or not model.weight.grad.any()


def test_forward_loss_moves_data_to_channels_last() -> None:
    seen: list[bool] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return x[:, :3]

    data = torch.randn(1, 4, 5, 5)
    label = torch.zeros(1, 5, 5, dtype=torch.long)
    forward_loss(forward, nn.CrossEntropyLoss(), data, label, torch.device("cpu"),
                 channels_last=True)
    assert seen == [True]


def test_averaging_happens_once_and_its_wait_is_timed() -> None:
    model, data, label = _model_and_batch()
    calls: list[int] = []

    def average(grads: list[torch.Tensor]) -> None:
        time.sleep(0.05)
        calls.append(len(grads))
        for g in grads:
            g.mul_(0.0)  # a visible effect: the update must use the averaged gradients

    optimizer = averaging_optimizer(torch.optim.SGD(model.parameters(), lr=1.0), average)
    before = model.weight.detach().clone()
    backward(forward_loss(model, nn.CrossEntropyLoss(), data, label, torch.device("cpu")))
    waited = optimizer_step(optimizer)
    assert calls == [2]  # weight and bias, averaged once, not again inside step()
    assert waited >= 0.05
    torch.testing.assert_close(model.weight.detach(), before)
    # a plain step() still averages by itself
    backward(forward_loss(model, nn.CrossEntropyLoss(), data, label, torch.device("cpu")))
    optimizer.step()
    assert calls == [2, 2]


def test_loss_tally_reads_sums_and_names_the_steps_of_a_bad_one() -> None:
    import math

    from deepcam_hvd.errors import DataError
    from deepcam_hvd.train.step import LossTally

    tally = LossTally(torch.device("cpu"))
    assert tally.every_step  # on CPU reading is free: every step is checked
    tally.add(torch.tensor(1.5))
    tally.add(torch.tensor(0.5))
    assert tally.read(1) == (2.0, 2)
    assert tally.read(2) == (0.0, 0)
    # as on a GPU: three steps summed on the device, read once, the bad one among them
    for value in (1.0, math.nan, 2.0):
        tally.add(torch.tensor(value))
    with pytest.raises(DataError, match=r"^training loss became nan at steps 3-5 \(diverged"):
        tally.read(5)
