"""Weighted cross-entropy with the reference's class weights."""

from __future__ import annotations

import torch
from torch import nn

from deepcam_hvd.workloads.deepcam import CLASS_FREQUENCIES


def class_weights(frequencies: tuple[float, ...] = CLASS_FREQUENCIES) -> torch.Tensor:
    """The reference's weights: frequency ** -0.125."""
    return torch.tensor([f ** -0.125 for f in frequencies], dtype=torch.float32)


class WeightedCrossEntropy(nn.Module):
    """Per-pixel weighted cross-entropy, then a plain mean over pixels (as the reference).

    This is not ``nn.CrossEntropyLoss(weight=...)``'s default mean, which divides by the
    summed weights instead of the pixel count.
    """

    def __init__(self, weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("weights", class_weights() if weights is None else weights)

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Loss of (N, C, H, W) logits against (N, H, W) integer labels."""
        losses = nn.functional.cross_entropy(logits.float(), label, weight=self.weights,
                                             reduction="none")
        return losses.mean()
