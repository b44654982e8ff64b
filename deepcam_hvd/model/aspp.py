"""Atrous spatial pyramid pooling (the reference calls it the ``bottleneck``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepcam_hvd.model.layers import Norm2d, kaiming_init


class ASPPBranch(nn.Module):
    """Atrous convolution (1x1 for rate 1, else 3x3 dilated by ``rate``), BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, rate: int) -> None:
        super().__init__()
        kernel_size, padding = (1, 0) if rate == 1 else (3, rate)
        self.atrous_convolution = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=1,
            padding=padding,
            dilation=rate,
            bias=False,
        )
        self.bn = Norm2d(out_channels)
        self.relu = nn.ReLU()
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply convolution, batch-norm and ReLU."""
        return self.relu(self.bn(self.atrous_convolution(x)))


class TrainableAffine(nn.Module):
    """Per-channel ``weights * x + bias`` (stands in for BN on the 1x1 pooled branch)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.weights = nn.Parameter(torch.ones(num_features, 1, 1))
        self.bias = nn.Parameter(torch.zeros(num_features, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale and shift each channel."""
        return self.weights * x + self.bias


class GlobalPoolBranch(nn.Module):
    """Global average pool, 1x1 convolution, trainable affine, ReLU; output is (N, C, 1, 1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.global_average_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(in_channels, out_channels, 1, stride=1, bias=False),
            TrainableAffine(out_channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` to one value per channel and project it."""
        return self.global_average_pool(x)


class ASPP(nn.Module):
    """Four atrous branches plus a global-pool branch, concatenated and fused by a 1x1 conv.

    The reference tiles the pooled branch to a fixed 48x72 (only 768x1152 inputs work); here it
    is broadcast to whatever size the feature map has, which is the same at 768x1152.
    """

    def __init__(
        self, in_channels: int, out_channels: int, rates: Sequence[int] = (1, 6, 12, 18)
    ) -> None:
        super().__init__()
        if len(rates) != 4:
            raise ValueError(f"ASPP needs 4 rates, got {tuple(rates)}")
        self.aspp1 = ASPPBranch(in_channels, out_channels, rates[0])
        self.aspp2 = ASPPBranch(in_channels, out_channels, rates[1])
        self.aspp3 = ASPPBranch(in_channels, out_channels, rates[2])
        self.aspp4 = ASPPBranch(in_channels, out_channels, rates[3])
        self.global_avg_pool = GlobalPoolBranch(in_channels, out_channels)
        self.conv = nn.Conv2d(5 * out_channels, out_channels, 1, bias=False)
        self.bn = Norm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, C_in, h, w) to (N, C_out, h, w)."""
        pooled = self.global_avg_pool(x).expand(-1, -1, x.shape[-2], x.shape[-1])
        x = torch.cat((self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled), dim=1)
        return self.relu(self.bn(self.conv(x)))
