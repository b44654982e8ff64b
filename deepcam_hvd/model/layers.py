"""Small building blocks shared by the encoder, ASPP and decoder."""

from __future__ import annotations

import torch
from torch import nn


class Norm2d(nn.Module):
    """A batch-norm layer held as ``.bn``.

    The extra level exists only so that ``state_dict()`` keys read ``<name>.bn.weight`` etc., as
    in the MLCommons reference, whose checkpoints then load without renaming.
    :func:`deepcam_hvd.model.group_batchnorm.convert_batchnorm` swaps the inner layer.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.bn: nn.BatchNorm2d = nn.BatchNorm2d(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (N, C, H, W)."""
        return self.bn(x)


def same_padding(kernel_size: int, dilation: int) -> int:
    """Symmetric padding that keeps the spatial size of a stride-1 convolution."""
    effective = kernel_size + (kernel_size - 1) * (dilation - 1)
    return (effective - 1) // 2


class SeparableConv2d(nn.Module):
    """Depthwise ``kernel_size`` convolution (``conv1``) then a 1x1 pointwise one, no bias."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        padding = same_padding(kernel_size, dilation)
        self.conv1 = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the depthwise then the pointwise convolution."""
        return self.pointwise(self.conv1(x))


def kaiming_init(module: nn.Module) -> None:
    """Kaiming-normal (fan-in, ReLU gain) for every ``Conv2d`` below ``module``; BN to 1 and 0.

    The order of initialisation follows ``module.modules()``, so a fixed seed yields the same
    weights as the reference, which initialises the encoder and ASPP branches the same way.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.fill_(1.0)
                m.bias.zero_()
