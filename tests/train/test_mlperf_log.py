"""MLPerf division choice."""

from __future__ import annotations

import pytest

from deepcam_hvd.config import TrainConfig
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.train.mlperf_log import FULL_EVAL_SAMPLES, FULL_TRAIN_SAMPLES, division_for

FULL = (FULL_TRAIN_SAMPLES, FULL_EVAL_SAMPLES)


def test_closed_only_on_full_data_with_closed_settings() -> None:
    assert division_for(TrainConfig(), *FULL, 8) == "closed"
    assert division_for(TrainConfig(), 1000, 100, 8) == "open"
    assert division_for(TrainConfig(model="deeplab-xception-small"), *FULL, 8) == "open"
    assert division_for(TrainConfig(target_iou=0.5), *FULL, 8) == "open"


def test_explicit_division() -> None:
    assert division_for(TrainConfig(division="open"), *FULL, 8) == "open"
    with pytest.raises(ConfigError, match="--division closed needs the full data set"):
        division_for(TrainConfig(division="closed"), 1000, 100, 8)
    with pytest.raises(ConfigError, match="closed-rule settings"):
        division_for(TrainConfig(division="closed", channels=[0, 1]), *FULL, 8)
