"""Validation keeps its sums on the device and gives what reading every batch would give."""

from __future__ import annotations

from pathlib import Path

import torch

from deepcam_hvd.data.loader import LoaderSettings, validation_loader
from deepcam_hvd.distributed.local import LocalBackend
from deepcam_hvd.model import build_model
from deepcam_hvd.train.evaluation import Validator
from deepcam_hvd.train.loss import WeightedCrossEntropy
from deepcam_hvd.train.metric import per_sample_iou


def _read_each_batch(loader, model, criterion) -> tuple[float, float]:
    """The figures as they were computed before: each batch's loss and IoU read as numbers."""
    iou_sum, loss_sum, count = 0.0, 0.0, 0
    with torch.no_grad():
        for batch in loader.iter_epoch(0):
            logits = model(batch.data)
            loss_sum += float(criterion(logits, batch.label)) * batch.label.shape[0]
            iou_sum += float(per_sample_iou(logits.argmax(dim=1), batch.label).sum())
            count += batch.label.shape[0]
    return iou_sum / count, loss_sum / count


def test_device_sums_equal_reading_every_batch(synth_root) -> None:
    root: Path = synth_root(8, 5, height=32, width=48, seed=5)
    # batch 2 over 5 files: a short last batch, so the sample weighting is tested too
    loader = validation_loader(root, 0, 1, LoaderSettings(local_batch_size=2))
    torch.manual_seed(4)
    model = build_model("deeplab-xception-small", 16, 3)
    criterion = WeightedCrossEntropy()
    calls: list[int] = []

    def feed(batches):
        for batch in batches:
            calls.append(len(batch.filenames))
            yield batch

    validate = Validator(loader, LocalBackend(), criterion, torch.device("cpu"), "fp32", False,
                         feed)
    iou, loss = validate(model, model)
    assert model.training  # validation hands the model back in training mode
    model.eval()
    expected = _read_each_batch(loader, model, criterion)
    assert (iou, loss) == expected  # the same float64 additions in the same order
    assert calls == [2, 2, 1]  # every batch went through the feed
