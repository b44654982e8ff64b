"""Modified aligned Xception encoder (output stride 16) of DeepLabv3+.

Layer names follow the MLCommons HPC DeepCAM reference so that ``state_dict()`` keys agree:
``conv1``/``bn1``, ``conv2``/``bn2``, ``block1`` ... ``block<N>``, ``conv3``/``bn3`` ...
``conv5``/``bn5``; inside a block ``skip``/``skipbn`` and ``rep.<i>``.
"""

from __future__ import annotations

import torch
from torch import nn

from deepcam_hvd.model.layers import Norm2d, SeparableConv2d, kaiming_init


class XceptionBlock(nn.Module):
    """Residual block of ``reps`` separable convolutions with batch-norm and ReLU between them.

    Unlike the original Xception, the block starts with a convolution (no leading ReLU) and
    the last convolution of the stack has no BN/ReLU after it: the residual sum comes first.
    A strided separable convolution ends a downsampling block; ``is_last`` appends an
    unstrided one instead.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        reps: int,
        stride: int = 1,
        dilation: int = 1,
        end_with_relu: bool = True,
        grow_first: bool = True,
        is_last: bool = False,
    ) -> None:
        super().__init__()
        self.end_with_relu = end_with_relu

        self.skip: nn.Conv2d | None = None
        self.skipbn: Norm2d | None = None
        if out_channels != in_channels or stride != 1:
            self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.skipbn = Norm2d(out_channels)

        self.relu = nn.ReLU(inplace=True)

        # (in, out) of each separable convolution in the stack
        if grow_first:
            widths = [(in_channels, out_channels)] + [(out_channels, out_channels)] * (reps - 1)
        else:
            widths = [(in_channels, in_channels)] * (reps - 1) + [(in_channels, out_channels)]

        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(widths):
            layers.append(SeparableConv2d(cin, cout, 3, stride=1, dilation=dilation))
            layers.append(Norm2d(cout))
            if i < len(widths) - 1:
                layers.append(self.relu)
        if stride != 1:
            layers.append(SeparableConv2d(out_channels, out_channels, 3, stride=stride))
        elif is_last:
            layers.append(SeparableConv2d(out_channels, out_channels, 3, stride=1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual stack plus (projected) identity, then ReLU if ``end_with_relu``."""
        out = self.rep(x)
        if self.skip is not None and self.skipbn is not None:
            out = out + self.skipbn(self.skip(x))
        else:
            out = out + x
        if self.end_with_relu:
            out = self.relu(out)
        return out


class Xception(nn.Module):
    """Encoder: returns (features at 1/16 resolution, low-level features at 1/4 resolution).

    Args:
        in_channels: input channels.
        stem_channels: widths of the two stem convolutions (reference: 32, 64).
        entry_channels: widths of the three entry blocks (reference: 128, 256, 728); the first
            is the width of the low-level features.
        middle_blocks: number of middle-flow blocks (reference: 16).
        exit_channels: width of the exit block and of the three separable convolutions after it
            (reference: 1024, 1536, 1536, 2048).

    Attributes:
        low_level_channels: width of the low-level features (``entry_channels[0]``).
        out_channels: width of the 1/16 resolution features (``exit_channels[-1]``).
    """

    def __init__(
        self,
        in_channels: int,
        stem_channels: tuple[int, int] = (32, 64),
        entry_channels: tuple[int, int, int] = (128, 256, 728),
        middle_blocks: int = 16,
        exit_channels: tuple[int, int, int, int] = (1024, 1536, 1536, 2048),
    ) -> None:
        super().__init__()
        s1, s2 = stem_channels
        e1, e2, e3 = entry_channels
        x1, x2, x3, x4 = exit_channels
        # Output stride 16: the third entry block downsamples; exit convolutions dilate by 2.
        exit_dilation = 2

        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, s1, 3, stride=2, padding=1, bias=False)
        self.bn1 = Norm2d(s1)
        self.conv2 = nn.Conv2d(s1, s2, 3, stride=1, padding=1, bias=False)
        self.bn2 = Norm2d(s2)

        self.block1 = XceptionBlock(s2, e1, reps=2, stride=2, end_with_relu=False)
        self.block2 = XceptionBlock(e1, e2, reps=2, stride=2)
        self.block3 = XceptionBlock(e2, e3, reps=2, stride=2, is_last=True)

        self.middle_names: list[str] = []
        for i in range(middle_blocks):
            name = f"block{4 + i}"
            self.add_module(name, XceptionBlock(e3, e3, reps=3))
            self.middle_names.append(name)

        self.exit_name = f"block{4 + middle_blocks}"
        self.add_module(
            self.exit_name,
            XceptionBlock(e3, x1, reps=2, end_with_relu=False, grow_first=False, is_last=True),
        )

        self.conv3 = SeparableConv2d(x1, x2, 3, dilation=exit_dilation)
        self.bn3 = Norm2d(x2)
        self.conv4 = SeparableConv2d(x2, x3, 3, dilation=exit_dilation)
        self.bn4 = Norm2d(x3)
        self.conv5 = SeparableConv2d(x3, x4, 3, dilation=exit_dilation)
        self.bn5 = Norm2d(x4)

        self.low_level_channels = e1
        self.out_channels = x4
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``x`` (N, C, H, W) into (N, C16, H/16, W/16) and (N, C4, H/4, W/4)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))

        # The reference applies an in-place ReLU after taking the low-level features, so they
        # are the rectified output of block1.
        x = self.relu(self.block1(x))
        low_level = x
        x = self.block2(x)
        x = self.block3(x)
        for name in self.middle_names:
            x = getattr(self, name)(x)
        x = getattr(self, self.exit_name)(x)

        x = self.relu(self.bn3(self.conv3(x)))
        x = self.relu(self.bn4(self.conv4(x)))
        x = self.relu(self.bn5(self.conv5(x)))
        return x, low_level
