"""DeepCAM's facts, in one place (``docs/REFERENCE.md`` says where each comes from).

The code that is DeepCAM's alone - the network (``model/``), the CAM5 HDF5 layout
(``data/``), the IoU metric and weighted loss (``train/metric.py``, ``train/loss.py``) - reads
its constants from here, as do the MLPerf log, the presets and the scaling model.
"""

from __future__ import annotations

BENCHMARK = "deepcam"  # MLPerf HPC submission_benchmark

CHANNEL_NAMES = ("TMQ", "U850", "V850", "UBOT", "VBOT", "QREFHT", "PS", "PSL", "T200", "T500",
                 "PRECT", "TS", "TREFHT", "Z1000", "Z200", "ZBOT")
NUM_CHANNELS = len(CHANNEL_NAMES)
CLASS_NAMES = ("background", "tropical_cyclone", "atmospheric_river")
NUM_CLASSES = len(CLASS_NAMES)
# Pixel frequencies of the classes in the full data set (the reference's loss weights).
CLASS_FREQUENCIES = (0.986267818390377, 0.0004578708870701058, 0.01327431072255291)
FULL_SHAPE = (768, 1152)  # latitudes x longitudes of a sample
OUTPUT_STRIDE = 16  # the network's input height and width must be multiples of this

# The full "All-Hist" data set; the MLPerf closed division requires exactly these sizes.
FULL_TRAIN_SAMPLES = 121_266
FULL_EVAL_SAMPLES = 15_158
TARGET_IOU = 0.82  # MLPerf HPC and NREL ESIF-HPC4; NERSC-10 trains to 0.80


def samples_per_update(local_batch_size: int, ranks: int, accumulation: int = 1) -> int:
    """Samples behind one optimizer step over all ranks (what --global_batch_size sets)."""
    return local_batch_size * accumulation * ranks


def logged_global_batch_size(local_batch_size: int, ranks: int) -> int:
    """``global_batch_size`` as the MLPerf HPC rules define it for DeepCAM and the reference
    logs it: "--local_batch_size times number of workers" (accumulation logged apart)."""
    return local_batch_size * ranks
