"""Intersection over union, exactly as MLPerf HPC DeepCAM scores it."""

from __future__ import annotations

import torch

from deepcam_hvd.workloads.deepcam import NUM_CLASSES


def per_sample_iou(prediction: torch.Tensor, label: torch.Tensor,
                   num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Mean over classes of IoU for each sample (shape (batch,)).

    A class absent from both prediction and label has union 0; it counts 1/num_classes
    toward the mean, as the reference's ``nan_to_num(tp / union, nan=1/num_classes)`` does.
    """
    batch = label.shape[0]
    pred = prediction.reshape(batch, -1).long()
    gt = label.reshape(batch, -1).long()
    # One bincount over (sample, gt, pred) triples gives the whole confusion matrix per sample.
    index = (torch.arange(batch, device=gt.device)[:, None] * num_classes + gt) * num_classes + pred
    confusion = torch.bincount(index.reshape(-1), minlength=batch * num_classes ** 2)
    confusion = confusion.reshape(batch, num_classes, num_classes).double()
    tp = confusion.diagonal(dim1=1, dim2=2)
    union = confusion.sum(dim=2) + confusion.sum(dim=1) - tp  # tp + fn + fp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.ones_like(tp))
    return (iou.mean(dim=1)).float()


def batch_iou(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Mean per-sample IoU of the arg-max prediction over the batch."""
    return per_sample_iou(logits.argmax(dim=1), label).mean()
