"""IoU against hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from deepcam_hvd.train.metric import (
    batch_iou,
    counts_by_bincount,
    counts_by_comparison,
    per_sample_iou,
)


def t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor([rows])


def test_perfect_prediction_is_one() -> None:
    label = t([[0, 1], [2, 0]])
    assert per_sample_iou(label, label).tolist() == [1.0]


def test_hand_computed_case() -> None:
    # label:      pred:
    # 0 0 1       0 1 1
    # 2 2 0       2 0 0
    label = t([[0, 0, 1], [2, 2, 0]])
    pred = t([[0, 1, 1], [2, 0, 0]])
    # class 0: tp=2 (0,0),(1,2); fp=1 (1,1); fn=1 (0,1) -> 2/4
    # class 1: tp=1; fp=1 (0,1); fn=0 -> 1/2
    # class 2: tp=1; fp=0; fn=1 (1,1) -> 1/2
    expected = (0.5 + 0.5 + 0.5) / 3
    assert per_sample_iou(pred, label).item() == pytest.approx(expected)


def test_class_absent_from_both_counts_one_third() -> None:
    label = t([[0, 0], [1, 1]])
    pred = t([[0, 1], [1, 1]])
    # class 0: tp 1, fp 0, fn 1 -> 1/2 ; class 1: tp 2, fp 1 -> 2/3 ; class 2 absent -> 1
    assert per_sample_iou(pred, label).item() == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)


def test_all_wrong_is_zero() -> None:
    label = t([[0, 0], [0, 0]])
    pred = t([[1, 1], [1, 1]])
    # class 0: 0/4, class 1: 0/4, class 2 absent -> 1 -> mean 1/3
    assert per_sample_iou(pred, label).item() == pytest.approx(1 / 3)


def test_batch_mean_and_logits() -> None:
    label = torch.tensor([[[0, 1]], [[2, 2]]])
    logits = torch.zeros(2, 3, 1, 2)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = 5  # sample 0 perfect
    logits[1, 0] = 5  # sample 1 predicts background everywhere: classes 0,2 -> 0, 1 absent -> 1
    assert batch_iou(logits, label).item() == pytest.approx((1.0 + 1 / 3) / 2)


def test_matches_reference_formula_on_random_data() -> None:
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 3, (4, 16, 24), generator=g)
    label = torch.randint(0, 3, (4, 16, 24), generator=g)
    label[0] = 0  # classes missing from a sample
    pred[0] = 0
    ours = per_sample_iou(pred, label)
    for b in range(4):
        total = 0.0
        for c in range(3):
            tp = ((pred[b] == c) & (label[b] == c)).sum().item()
            fp = ((pred[b] == c) & (label[b] != c)).sum().item()
            fn = ((pred[b] != c) & (label[b] == c)).sum().item()
            total += tp / (tp + fp + fn) if tp + fp + fn else 1.0
        assert ours[b].item() == pytest.approx(total / 3, abs=1e-6)


@pytest.mark.parametrize("batch", [1, 3])
def test_gpu_counting_gives_the_cpu_counts(batch: int) -> None:
    """The GPU's counting (comparisons, no host read-back) and the CPU's (one bincount) give
    the same integers, so the IoU does not depend on the device."""
    gen = torch.Generator().manual_seed(batch)
    shares = torch.tensor([0.9, 0.03, 0.07])
    gt = torch.multinomial(shares, batch * 48 * 64, replacement=True, generator=gen)
    pred = torch.multinomial(shares, batch * 48 * 64, replacement=True, generator=gen)
    gt, pred = gt.view(batch, -1), pred.view(batch, -1)
    gt[0, :5] = 2  # every class present in some sample
    by_bincount = counts_by_bincount(pred, gt)
    by_comparison = counts_by_comparison(pred, gt)
    for a, b in zip(by_bincount, by_comparison, strict=True):
        assert a.dtype == b.dtype == torch.float64
        assert torch.equal(a, b)
    tp, predicted, actual = by_bincount
    assert tp.sum().item() == (pred == gt).sum().item()
    assert predicted[0].tolist() == [float((pred[0] == c).sum()) for c in range(3)]
    assert actual[0].tolist() == [float((gt[0] == c).sum()) for c in range(3)]
