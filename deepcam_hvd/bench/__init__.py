"""Timing of full training steps (``deepcam-hvd bench step``) and FLOP counting."""

from deepcam_hvd.bench.flops import forward_flops, train_step_flops
from deepcam_hvd.bench.step import StepSettings, StepTimes, TrainStep, time_steps

__all__ = [
    "StepSettings",
    "StepTimes",
    "TrainStep",
    "forward_flops",
    "time_steps",
    "train_step_flops",
]
