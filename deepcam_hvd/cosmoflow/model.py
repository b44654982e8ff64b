"""The CosmoFlow 3D CNN, layer for layer the MLCommons reference's (``models/cosmoflow.py``).

``conv_layers`` x (Conv3D k``kernel_size`` same-padded, channels doubling from
``conv_channels``; LeakyReLU; MaxPool3D 2), Flatten, Dense ``fc1`` + LeakyReLU + Dropout,
Dense ``fc2`` + LeakyReLU + Dropout, Dense ``targets`` with tanh, times 1.2. Keras' default
initialisers (Glorot-uniform kernels, zero biases) and an L2 penalty ``l2`` on the dense
kernels, as the reference. Written against ``tf.keras`` (Keras 2; tf-keras on TF >= 2.16).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from deepcam_hvd.workloads import cosmoflow as facts


@tf.keras.utils.register_keras_serializable(package="deepcam_hvd")
class Scale(tf.keras.layers.Layer):
    """Multiplies its input by a constant: the reference's ``Lambda(scale_1p2)``, but saved
    and reloaded without the function's module."""

    def __init__(self, factor: float = facts.OUTPUT_SCALE, **kwargs: Any):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        """``inputs * factor``."""
        return inputs * self.factor

    def get_config(self) -> dict[str, Any]:
        """The layer's config with its factor."""
        return {**super().get_config(), "factor": self.factor}


def build_model(cube: int = facts.CUBE_SIZE, channels: int = facts.NUM_CHANNELS,
                targets: int = facts.NUM_TARGETS, conv_channels: int = facts.CONV_CHANNELS,
                layers: int = facts.CONV_LAYERS, dropout: float = facts.DROPOUT,
                kernel_size: int = facts.KERNEL_SIZE, fc1: int = facts.FC1_SIZE,
                fc2: int = facts.FC2_SIZE, l2: float = facts.WEIGHT_DECAY) -> tf.keras.Model:
    """The CosmoFlow network for ``cube``^3 x ``channels`` inputs (a Sequential model).

    ``cube`` must be divisible by 2^``layers`` (32 by default), so every pooling halves it.
    """
    if cube <= 0 or cube % 2**layers:
        raise ValueError(f"cube size {cube} is not a positive multiple of {2**layers} "
                         f"(2^{layers} for {layers} poolings)")
    k = tf.keras.layers
    model = tf.keras.Sequential(name="cosmoflow")
    model.add(tf.keras.Input(shape=(cube, cube, cube, channels)))
    for i in range(layers):
        model.add(k.Conv3D(conv_channels * 2**i, kernel_size, padding="same",
                           kernel_initializer="glorot_uniform", bias_initializer="zeros"))
        model.add(k.LeakyReLU(alpha=facts.LEAKY_RELU_SLOPE))
        model.add(k.MaxPool3D(pool_size=2))
    model.add(k.Flatten())
    for size in (fc1, fc2):
        model.add(k.Dense(size, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                          kernel_regularizer=tf.keras.regularizers.l2(l2)))
        model.add(k.LeakyReLU(alpha=facts.LEAKY_RELU_SLOPE))
        model.add(k.Dropout(dropout))
    model.add(k.Dense(targets, activation="tanh", kernel_initializer="glorot_uniform",
                      bias_initializer="zeros"))
    model.add(Scale(facts.OUTPUT_SCALE))
    return model


def loss_and_metric() -> tuple[tf.keras.losses.Loss, tf.keras.metrics.Metric]:
    """The reference's training loss (mean squared error) and its metric (mean absolute error,
    named so Keras reports it as ``val_mean_absolute_error``, the value logged as eval_error)."""
    return (tf.keras.losses.MeanSquaredError(),
            tf.keras.metrics.MeanAbsoluteError(name=facts.EVAL_METRIC.removeprefix("val_")))
