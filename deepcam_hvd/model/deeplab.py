"""DeepLabv3+ with the modified aligned Xception encoder, as in the MLCommons HPC reference."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepcam_hvd.model.aspp import ASPP
from deepcam_hvd.model.decoder import DeconvDecoder
from deepcam_hvd.model.layers import Norm2d
from deepcam_hvd.model.xception import Xception

OUTPUT_STRIDE = 16


@dataclass(frozen=True)
class DeepLabConfig:
    """Widths and depth of a DeepLabv3+ network; the defaults are the reference's."""

    stem_channels: tuple[int, int] = (32, 64)
    entry_channels: tuple[int, int, int] = (128, 256, 728)
    middle_blocks: int = 16
    exit_channels: tuple[int, int, int, int] = (1024, 1536, 1536, 2048)
    aspp_channels: int = 256
    aspp_rates: tuple[int, int, int, int] = (1, 6, 12, 18)
    low_level_channels: int = 48
    decoder_channels: int = 256


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ segmentation network, output stride 16.

    Input (N, in_channels, H, W) with H and W divisible by 16; output logits
    (N, num_classes, H, W). Submodule names (``xception_features``, ``bottleneck``, ``conv2``,
    ``bn2``, ``upsample``) and hence ``state_dict()`` keys match the reference.
    """

    def __init__(
        self, in_channels: int, num_classes: int, config: DeepLabConfig | None = None
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"in_channels and num_classes must be positive, got {in_channels}, {num_classes}"
            )
        cfg = config or DeepLabConfig()
        self.config = cfg
        self.in_channels = in_channels
        self.num_classes = num_classes

        self.xception_features = Xception(
            in_channels,
            stem_channels=cfg.stem_channels,
            entry_channels=cfg.entry_channels,
            middle_blocks=cfg.middle_blocks,
            exit_channels=cfg.exit_channels,
        )
        self.bottleneck = ASPP(
            self.xception_features.out_channels, cfg.aspp_channels, cfg.aspp_rates
        )
        # 1x1 reduction of the low-level features before they join the decoder
        self.conv2 = nn.Conv2d(
            self.xception_features.low_level_channels, cfg.low_level_channels, 1, bias=False
        )
        self.bn2 = Norm2d(cfg.low_level_channels)
        self.relu = nn.ReLU()
        self.upsample = DeconvDecoder(
            cfg.aspp_channels, cfg.low_level_channels, cfg.decoder_channels, num_classes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment ``x`` (N, C, H, W) into per-pixel class logits (N, K, H, W)."""
        check_input_size(x.shape[-2], x.shape[-1])
        features, low_level = self.xception_features(x)
        features = self.bottleneck(features)
        low_level = self.relu(self.bn2(self.conv2(low_level)))
        return self.upsample(features, low_level)


def check_input_size(height: int, width: int) -> None:
    """Raise ``ValueError`` unless both sides are positive multiples of the output stride."""
    if height <= 0 or width <= 0 or height % OUTPUT_STRIDE or width % OUTPUT_STRIDE:
        raise ValueError(
            f"input size {height}x{width} is not supported: height and width must be "
            f"positive multiples of {OUTPUT_STRIDE}"
        )
