"""Floating-point operations of a forward pass, counted from the convolutions' shapes.

Only convolutions and transposed convolutions are counted (2 FLOP per multiply-add); they are
more than 99.9 % of the network's arithmetic. A training step is taken as 3x the forward pass
(forward, gradient w.r.t. inputs, gradient w.r.t. weights), the usual convention and the one
the issue's 1.97 TFLOP per 768x1152 sample uses.
"""

from __future__ import annotations

import torch
from torch import nn

TRAIN_TO_FORWARD = 3.0


def _conv_flops(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> float:
    """2 x multiply-adds of one (transposed) convolution call."""
    assert isinstance(module, nn.Conv2d | nn.ConvTranspose2d)
    kernel = module.weight.shape[2] * module.weight.shape[3]
    if isinstance(module, nn.ConvTranspose2d):
        # every input pixel scatters into kernel x out/groups outputs
        per_input = kernel * module.out_channels // module.groups
        return 2.0 * inputs.numel() * per_input
    per_output = kernel * module.in_channels // module.groups
    return 2.0 * output.numel() * per_output


def forward_flops(model: nn.Module, sample: torch.Tensor) -> float:
    """FLOP of one forward pass of ``model`` on ``sample`` (run once under ``no_grad``)."""
    total = [0.0]

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        total[0] += _conv_flops(module, args[0], output)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    was_training = model.training
    model.eval()  # leave batch-norm running statistics untouched
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total[0]


def train_step_flops(model_name: str, in_channels: int, num_classes: int, batch: int,
                     height: int, width: int) -> float:
    """FLOP of one training step (3x forward) of the named model at the given batch and size.

    The model is built and run on the ``meta`` device, so counting costs no arithmetic and no
    memory even at full size.
    """
    from deepcam_hvd.model import build_model

    with torch.device("meta"):
        model = build_model(model_name, in_channels, num_classes)
        sample = torch.empty(batch, in_channels, height, width)
    return TRAIN_TO_FORWARD * forward_flops(model, sample)
