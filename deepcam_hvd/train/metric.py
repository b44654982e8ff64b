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
    tp, predicted, actual = class_counts(pred, gt, num_classes)
    union = predicted + actual - tp  # tp + fp + fn
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.ones_like(tp))
    return (iou.mean(dim=1)).float()


def class_counts(pred: torch.Tensor, gt: torch.Tensor, num_classes: int = NUM_CLASSES
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample and class (float64, exact integers): true positives, predicted pixels and
    labelled pixels of ``pred`` and ``gt`` (shape (batch, pixels), int64).

    On the CPU one bincount gives the confusion matrix. On a GPU bincount reads its input's
    maximum back to the host, which drains the GPU's queue, so there the counts come from
    comparisons and sums, which stay on the device (they take twice as long on the CPU; the
    counts are the same integers).
    """
    if gt.device.type == "cpu":
        return counts_by_bincount(pred, gt, num_classes)
    return counts_by_comparison(pred, gt, num_classes)


def counts_by_bincount(pred: torch.Tensor, gt: torch.Tensor, num_classes: int = NUM_CLASSES
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`class_counts` from one bincount over (sample, gt, pred) triples."""
    batch = gt.shape[0]
    index = (torch.arange(batch, device=gt.device)[:, None] * num_classes + gt) * num_classes \
        + pred
    confusion = torch.bincount(index.reshape(-1), minlength=batch * num_classes ** 2)
    confusion = confusion.reshape(batch, num_classes, num_classes).double()
    return confusion.diagonal(dim1=1, dim2=2), confusion.sum(dim=1), confusion.sum(dim=2)


def counts_by_comparison(pred: torch.Tensor, gt: torch.Tensor, num_classes: int = NUM_CLASSES
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`class_counts` from one comparison per class and sums (no host read-back)."""
    classes = torch.arange(num_classes, device=gt.device)[None, :, None]
    is_pred, is_gt = pred[:, None, :] == classes, gt[:, None, :] == classes
    return ((is_pred & is_gt).sum(dim=2).double(), is_pred.sum(dim=2).double(),
            is_gt.sum(dim=2).double())


def batch_iou(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Mean per-sample IoU of the arg-max prediction over the batch."""
    return per_sample_iou(logits.argmax(dim=1), label).mean()
