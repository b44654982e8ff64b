"""Decoder of transposed convolutions that brings 1/16 features back to full resolution."""

from __future__ import annotations

import torch
from torch import nn

from deepcam_hvd.model.layers import Norm2d


def _deconv(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """3x3 transposed convolution, stride 2, that exactly doubles height and width."""
    return nn.ConvTranspose2d(
        in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=False
    )


class DeconvDecoder(nn.Module):
    """Upsample x4, fuse with the reduced low-level features, upsample x4 to class logits.

    Args:
        in_channels: width of the ASPP output.
        low_level_channels: width of the reduced low-level features (reference: 48).
        channels: working width of the decoder (reference: 256).
        num_classes: number of output classes.
    """

    def __init__(
        self, in_channels: int, low_level_channels: int, channels: int, num_classes: int
    ) -> None:
        super().__init__()
        self.deconv1 = nn.Sequential(
            _deconv(in_channels, channels),
            Norm2d(channels),
            nn.ReLU(),
            _deconv(channels, channels),
            Norm2d(channels),
            nn.ReLU(),
        )
        self.conv1 = nn.Sequential(
            nn.Conv2d(channels + low_level_channels, channels, 3, padding=1, bias=False),
            Norm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            Norm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )
        self.deconv2 = nn.Sequential(_deconv(channels, channels), Norm2d(channels), nn.ReLU())
        # The logits layer has neither bias nor batch-norm.
        self.last_deconv = nn.Sequential(_deconv(channels, num_classes))

    def forward(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        """Decode (N, C, H/16, W/16) with low-level (N, C_low, H/4, W/4) to (N, K, H, W)."""
        x = self.deconv1(x)
        x = torch.cat((x, low_level), dim=1)
        x = self.conv1(x)
        x = self.deconv2(x)
        return self.last_deconv(x)
