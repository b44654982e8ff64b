"""Weighted cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch

from deepcam_hvd.train.loss import CLASS_FREQUENCIES, WeightedCrossEntropy, class_weights


def test_weights_are_frequency_power() -> None:
    w = class_weights()
    for got, f in zip(w.tolist(), CLASS_FREQUENCIES, strict=True):
        assert got == pytest.approx(f ** -0.125, rel=1e-6)
    assert w[1] > w[2] > w[0]


def test_plain_mean_of_weighted_pixel_losses() -> None:
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 1, 0, 0] = 2.0
    label = torch.tensor([[[1, 0]]])
    w = class_weights()
    p1 = math.exp(2) / (math.exp(2) + 2)  # softmax prob of class 1 at pixel 0
    # pixel 1 has equal logits: probability 1/3 for its class 0
    expected = (w[1].item() * -math.log(p1) + w[0].item() * -math.log(1 / 3)) / 2
    assert WeightedCrossEntropy()(logits, label).item() == pytest.approx(expected, rel=1e-6)
