"""Scaling studies: measured series on this machine and a calibrated scaling model."""

from deepcam_hvd.study.model import (
    PREDICTION_LABEL,
    Calibration,
    StepPrediction,
    Workload,
    allreduce_seconds,
    predict,
    scaling_series,
)

__all__ = ["PREDICTION_LABEL", "Calibration", "StepPrediction", "Workload",
           "allreduce_seconds", "predict", "scaling_series"]
