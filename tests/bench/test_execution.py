"""The model's execution options change speed only: same loss, gradients and state_dict."""

from __future__ import annotations

import torch

from deepcam_hvd.model import build_model
from deepcam_hvd.model.execution import (
    OPTIMISED_EXECUTION,
    REFERENCE_EXECUTION,
    current_execution,
    execution,
)
from deepcam_hvd.train.loss import WeightedCrossEntropy


def _loss_and_grads(options: object) -> tuple[float, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    model = build_model("deeplab-xception-small", 16, 3)
    x = torch.rand(2, 16, 32, 48)
    y = torch.randint(0, 3, (2, 32, 48))
    with execution(options):  # type: ignore[arg-type]
        logits = model(x)
        loss = WeightedCrossEntropy()(logits, y)
        loss.backward()
    assert logits.is_contiguous()  # NCHW out whatever ran inside
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    return float(loss.detach()), grads, logits.detach()


def test_optimised_path_matches_unoptimised() -> None:
    ref_loss, ref_grads, ref_logits = _loss_and_grads(REFERENCE_EXECUTION)
    loss, grads, logits = _loss_and_grads(OPTIMISED_EXECUTION)
    assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    assert float((grads - ref_grads).norm() / ref_grads.norm()) < 1e-3


def test_defaults_are_the_reference_path() -> None:
    assert current_execution() == REFERENCE_EXECUTION  # nothing unproven is on by default


def test_eval_forward_is_the_reference_path_bit_for_bit() -> None:
    torch.manual_seed(3)
    model = build_model("deeplab-xception-small", 16, 3).eval()
    x = torch.rand(1, 16, 32, 48)
    with torch.no_grad():
        want = model(x)
        with execution(OPTIMISED_EXECUTION):  # layouts switch only in training passes
            got = model(x)
    assert torch.equal(got, want)


def test_execution_context_restores() -> None:
    before = current_execution()
    with execution(channels_last=True) as inside:
        assert current_execution() is inside and inside.channels_last
    assert current_execution() is before
