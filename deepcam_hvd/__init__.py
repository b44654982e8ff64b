"""deepcam-hvd: DeepCAM climate segmentation trained with Horovod on CPU and GPU clusters."""

__version__ = "0.1.0"
