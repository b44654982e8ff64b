"""DeepLabv3+ (modified aligned Xception) segmentation models and group batch-norm."""

from deepcam_hvd.model.deeplab import DeepLabConfig, DeepLabV3Plus, check_input_size
from deepcam_hvd.model.group_batchnorm import GroupBatchNorm2d, convert_batchnorm
from deepcam_hvd.model.registry import MODEL_NAMES, build_model

__all__ = [
    "MODEL_NAMES",
    "DeepLabConfig",
    "DeepLabV3Plus",
    "GroupBatchNorm2d",
    "build_model",
    "check_input_size",
    "convert_batchnorm",
]
