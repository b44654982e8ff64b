"""Our DeepLabv3+ against the MLCommons HPC reference implementation, loaded from its source.

Runs only when ``DEEPCAM_REFERENCE_SRC`` names the reference's ``deepcam/src/deepCam``
directory (the one holding ``architecture/deeplab_xception.py``); nothing of it is vendored.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from deepcam_hvd.model import build_model

SRC = os.environ.get("DEEPCAM_REFERENCE_SRC", "")
pytestmark = pytest.mark.skipif(
    not SRC, reason="set DEEPCAM_REFERENCE_SRC to the reference's deepcam/src/deepCam directory"
)

HEIGHT, WIDTH = 768, 1152
ATOL = 1e-4


@pytest.fixture(scope="module")
def reference_class() -> Iterator[type[nn.Module]]:
    src = Path(SRC)
    if not (src / "architecture" / "deeplab_xception.py").is_file():
        pytest.fail(f"DEEPCAM_REFERENCE_SRC={SRC} has no architecture/deeplab_xception.py")
    sys.path.insert(0, str(src))
    try:
        module = importlib.import_module("architecture.deeplab_xception")
        yield module.DeepLabv3_plus
    finally:
        sys.path.remove(str(src))


def _reference(cls: type[nn.Module]) -> nn.Module:
    return cls(n_input=16, n_classes=3, os=16, pretrained=False, _print=False)


def test_same_seed_same_initial_weights(reference_class: type[nn.Module]) -> None:
    torch.manual_seed(333)
    ref = _reference(reference_class)
    torch.manual_seed(333)
    ours = build_model("deeplab-xception", 16, 3)
    ref_state, our_state = ref.state_dict(), ours.state_dict()
    assert list(our_state) == list(ref_state)
    for key, value in ref_state.items():
        assert torch.equal(our_state[key], value), key


def test_forward_matches_reference_at_full_size(reference_class: type[nn.Module]) -> None:
    torch.manual_seed(333)
    ref = _reference(reference_class)
    # Move batch-norm and affine state away from its initial values so that copying it matters
    # and eval mode sees realistic running statistics. The reference only runs at 768x1152, so
    # the statistics come from a cheap train-mode pass of a scratch copy of ours at 96x144.
    with torch.no_grad():
        for name, tensor in ref.named_parameters():
            if name.endswith(("bn.weight", "2.weights")):
                tensor.uniform_(0.8, 1.2)
            elif name.endswith(("bn.bias", "2.bias")):
                tensor.normal_(0.0, 0.1)
        scratch = build_model("deeplab-xception", 16, 3)
        scratch.load_state_dict(ref.state_dict(), strict=True)
        scratch.train()
        for m in scratch.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # first update sets the running statistics to the batch's
        scratch(torch.rand(2, 16, 96, 144))
        ref.load_state_dict(scratch.state_dict(), strict=True)
        del scratch
    torch.manual_seed(1)
    ours = build_model("deeplab-xception", 16, 3)
    ours.load_state_dict(ref.state_dict(), strict=True)

    x = torch.rand(1, 16, HEIGHT, WIDTH)
    report = []
    for mode in ("eval", "train"):
        ref.train(mode == "train")
        ours.train(mode == "train")
        with torch.no_grad():
            want = ref(x)
            got = ours(x)
        assert got.shape == want.shape == (1, 3, HEIGHT, WIDTH)
        diff = (got - want).abs().max().item()
        report.append(f"{mode}: max |diff| {diff:.3g} (output max |y| {want.abs().max():.3g})")
        assert diff <= ATOL, report[-1]
    # train mode updated the running statistics identically
    ref_state = ref.state_dict()
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(value, ref_state[key], rtol=1e-5, atol=1e-6, msg=key)
    print("; ".join(report))
