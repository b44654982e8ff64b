"""CosmoFlow's facts, in one place (``docs/REFERENCE.md`` says where each comes from).

The MLCommons reference's ``configs/cosmo.yaml`` for the defaults, the MLPerf HPC 3.0.0 rules
and compliance checker (``closed_cosmoflow.yaml``) for the target and the logged keys. Nothing
here imports TensorFlow: the code that needs it lives in ``deepcam_hvd/cosmoflow/``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

BENCHMARK = "cosmoflow"  # MLPerf HPC submission_benchmark

CUBE_SIZE = 128  # voxels along each side of a sample
NUM_CHANNELS = 4  # redshifts per voxel
NUM_TARGETS = 4  # cosmological parameters regressed
SAMPLE_SHAPE = (CUBE_SIZE, CUBE_SIZE, CUBE_SIZE, NUM_CHANNELS)

# The MLPerf HPC v1.0+ data set; the closed division trains on exactly these sizes.
FULL_TRAIN_SAMPLES = 524_288
FULL_EVAL_SAMPLES = 65_536
# The 179 MB "small" tarball for getting started.
SMALL_TRAIN_SAMPLES = 32
SMALL_EVAL_SAMPLES = 32

# Quality target: a logged eval_error (validation MAE) with 0 < value <= TARGET_MAE.
TARGET_MAE = 0.124
EVAL_KEY = "eval_error"
# Version of the synthetic universes (cosmoflow/data/synth.py): a study reuses its data only
# if it was made by the same version. 2: y1 sets the growth between snapshots (was the slope).
SYNTH_VERSION = 2
EVAL_METRIC = "val_mean_absolute_error"  # the Keras history key the reference logs as eval_error

# The network (reference ``models/cosmoflow.py`` with ``configs/cosmo.yaml``).
CONV_CHANNELS = 32  # first convolution; doubled by each further one
CONV_LAYERS = 5
KERNEL_SIZE = 3
FC1_SIZE = 128
FC2_SIZE = 64
LEAKY_RELU_SLOPE = 0.3  # Keras 2's LeakyReLU default, which the reference uses
OUTPUT_SCALE = 1.2  # tanh output scaled so targets in [-1, 1] are not at its asymptotes
DROPOUT = 0.5
WEIGHT_DECAY = 0.0  # the reference's ``l2`` on the dense kernels, logged as opt_weight_decay

# Training defaults (``configs/cosmo.yaml``).
LOCAL_BATCH_SIZE = 4
EPOCHS = 128
OPTIMIZER = "SGD"
MOMENTUM = 0.9  # fixed by the HPC rules for the closed division
BASE_LR = 0.001  # at BASE_BATCH_SIZE, scaled to the global batch by LR_SCALING
BASE_BATCH_SIZE = 64
LR_SCALING = "linear"
LR_SCALINGS = ("linear", "sqrt", "none")
WARMUP_EPOCHS = 4
# Epoch -> factor of the peak LR used after that epoch (not cumulative: the latest one counts).
DECAY_SCHEDULE: Mapping[int, float] = MappingProxyType({32: 0.25, 64: 0.125})

# MLPerf log keys the reference writes for CosmoFlow, in its order. The HPC 3.0.0 closed
# checker wants exactly one of each in CLOSED_EXACTLY_ONE_KEYS; dropout must be in [0, 1) and
# opt_weight_decay >= 0 when logged; opt_name must be "sgd" or "SGD"; base LR, warm-up epochs
# and warm-up factor >= 0; global_batch_size > 0. The rules add momentum 0.9 and decay factors
# in (0, 1). train_samples and eval_samples are required in both divisions.
HYPERPARAMETER_KEYS = (
    "global_batch_size", "train_samples", "eval_samples", "opt_weight_decay", "dropout",
    "opt_name", "opt_base_learning_rate", "opt_learning_rate_warmup_epochs",
    "opt_learning_rate_warmup_factor", "opt_learning_rate_decay_boundary_epochs",
    "opt_learning_rate_decay_factor")
CLOSED_EXACTLY_ONE_KEYS = (
    "global_batch_size", "opt_name", "opt_base_learning_rate", "opt_learning_rate_warmup_epochs",
    "opt_learning_rate_warmup_factor", "opt_learning_rate_decay_boundary_epochs",
    "opt_learning_rate_decay_factor")
CLOSED_OPT_NAMES = ("sgd", "SGD")


def logged_global_batch_size(local_batch_size: int, ranks: int) -> int:
    """``global_batch_size`` as the HPC rules define it for CosmoFlow and the reference logs it:
    the local ``batch_size`` times the number of workers."""
    return local_batch_size * ranks


def lr_scale_factor(global_batch_size: int, base_batch_size: int = BASE_BATCH_SIZE,
                    scaling: str | None = LR_SCALING) -> float:
    """Factor from the base LR to the peak LR: global / base batch (``linear``), its square
    root (``sqrt``) or 1 (``none`` or None). Unknown names raise, where the reference uses 1."""
    if scaling == "linear":
        return global_batch_size / base_batch_size
    if scaling == "sqrt":
        return math.sqrt(global_batch_size / base_batch_size)
    if scaling in (None, "none"):
        return 1.0
    raise ValueError(f"unknown LR scaling {scaling!r}: choose from {', '.join(LR_SCALINGS)}")


def mlperf_hyperparameters(
        global_batch_size: int, train_samples: int, eval_samples: int, *,
        base_lr: float = BASE_LR, base_batch_size: int = BASE_BATCH_SIZE,
        scaling: str | None = LR_SCALING, warmup_epochs: int = WARMUP_EPOCHS,
        decay_schedule: Mapping[int, float] = DECAY_SCHEDULE, dropout: float = DROPOUT,
        weight_decay: float = WEIGHT_DECAY, optimizer: str = OPTIMIZER) -> dict[str, object]:
    """The values the reference logs under HYPERPARAMETER_KEYS, in that order.

    As the reference: opt_base_learning_rate is the scaled (peak) LR, the warm-up factor is the
    scale factor, and the decay factor is the largest of the schedule's factors (1 without).
    """
    scale = lr_scale_factor(global_batch_size, base_batch_size, scaling)
    return {
        "global_batch_size": global_batch_size,
        "train_samples": train_samples,
        "eval_samples": eval_samples,
        "opt_weight_decay": weight_decay,
        "dropout": dropout,
        "opt_name": optimizer,
        "opt_base_learning_rate": base_lr * scale,
        "opt_learning_rate_warmup_epochs": warmup_epochs,
        "opt_learning_rate_warmup_factor": scale,
        "opt_learning_rate_decay_boundary_epochs": sorted(decay_schedule),
        "opt_learning_rate_decay_factor": max(decay_schedule.values(), default=1),
    }


#: A training step costs about three forward passes (backward: gradients of the inputs and of
#: the weights), as bench/flops.py counts DeepCAM's.
TRAIN_TO_FORWARD = 3


def forward_flops(cube: int = CUBE_SIZE) -> float:
    """FLOP of the network's forward pass on one ``cube``^3 x 4 sample: its convolutions
    (2 per multiply-add of each same-padded k^3 kernel at every output voxel, each pooled
    layer half the side of the last) and dense layers; activations and pooling left out."""
    flop, side, channels = 0.0, cube, NUM_CHANNELS
    for layer in range(CONV_LAYERS):
        out_channels = CONV_CHANNELS * 2**layer
        flop += 2.0 * side**3 * out_channels * channels * KERNEL_SIZE**3
        side, channels = side // 2, out_channels
    features = side**3 * channels
    for size in (FC1_SIZE, FC2_SIZE, NUM_TARGETS):
        flop += 2.0 * features * size
        features = size
    return flop


def train_step_flops(cube: int, local_batch_size: int) -> float:
    """FLOP of one rank's training step: ``local_batch_size`` samples of ``cube``^3."""
    return TRAIN_TO_FORWARD * forward_flops(cube) * local_batch_size
