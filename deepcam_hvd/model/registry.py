"""Named model variants and :func:`build_model`."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from deepcam_hvd.model.deeplab import DeepLabConfig, DeepLabV3Plus

#: Reference DeepLabv3+ / Xception (56,454,720 parameters for 16 inputs and 3 classes).
REFERENCE_CONFIG = DeepLabConfig()

#: Same topology, narrower and with 2 middle blocks instead of 16: for CPU tests and demos.
SMALL_CONFIG = DeepLabConfig(
    stem_channels=(16, 32),
    entry_channels=(32, 64, 128),
    middle_blocks=2,
    exit_channels=(128, 192, 192, 256),
    aspp_channels=64,
    low_level_channels=16,
    decoder_channels=64,
)

MODEL_CONFIGS: dict[str, DeepLabConfig] = {
    "deeplab-xception": REFERENCE_CONFIG,
    "deeplab-xception-small": SMALL_CONFIG,
}

MODEL_NAMES: tuple[str, ...] = tuple(MODEL_CONFIGS)


def build_model(name: str, in_channels: int, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the named segmentation model.

    Args:
        name: ``"deeplab-xception"`` (the MLCommons reference network) or
            ``"deeplab-xception-small"`` (a reduced variant for fast CPU runs).
        in_channels: number of input channels.
        num_classes: number of output classes.
        **kwargs: overrides of :class:`DeepLabConfig` fields, e.g. ``middle_blocks=4``.

    Raises:
        ValueError: ``name`` is not a known model.
        TypeError: a keyword is not a :class:`DeepLabConfig` field.
    """
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    fields = {f.name for f in dataclasses.fields(DeepLabConfig)}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; "
            f"valid options: {', '.join(sorted(fields))}"
        )
    config = dataclasses.replace(MODEL_CONFIGS[name], **kwargs)
    return DeepLabV3Plus(in_channels, num_classes, config)
