"""Structure, parameter names, initialisation and shapes of the DeepLabv3+ models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from deepcam_hvd.model import MODEL_NAMES, DeepLabV3Plus, build_model
from deepcam_hvd.model.aspp import ASPP, TrainableAffine

MANIFEST = Path(__file__).with_name("reference_state_dict.json")
REFERENCE_PARAMS = 56_454_720


@pytest.fixture(scope="module")
def full_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("deeplab-xception", 16, 3)


@pytest.fixture(scope="module")
def small_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("deeplab-xception-small", 16, 3)


def test_names() -> None:
    assert MODEL_NAMES == ("deeplab-xception", "deeplab-xception-small")


def test_parameter_count(full_model: nn.Module) -> None:
    assert sum(p.numel() for p in full_model.parameters()) == REFERENCE_PARAMS
    assert all(p.requires_grad for p in full_model.parameters())


def test_state_dict_matches_reference_manifest(full_model: nn.Module) -> None:
    manifest = json.loads(MANIFEST.read_text())
    assert manifest["parameter_count"] == REFERENCE_PARAMS
    expected = [(e["key"], tuple(e["shape"]), e["dtype"]) for e in manifest["state_dict"]]
    got = [
        (k, tuple(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in full_model.state_dict().items()
    ]
    assert len(got) == manifest["num_entries"] == 529
    missing = sorted({e[0] for e in expected} - {g[0] for g in got})
    extra = sorted({g[0] for g in got} - {e[0] for e in expected})
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    assert got == expected  # same order, shapes and dtypes too


def _kaiming_std(w: torch.Tensor) -> float:
    fan_in = w[0].numel()
    return math.sqrt(2.0 / fan_in)


def test_initialisation(full_model: nn.Module) -> None:
    # Encoder and ASPP branches: Kaiming-normal (fan-in, ReLU gain), like the reference.
    kaiming = [full_model.xception_features] + [
        getattr(full_model.bottleneck, f"aspp{i}") for i in range(1, 5)
    ]
    checked = 0
    for part in kaiming:
        for m in part.modules():
            if isinstance(m, nn.Conv2d) and m.weight.numel() >= 20_000:
                w = m.weight.detach()
                assert abs(w.mean().item()) < 0.05 * _kaiming_std(w)
                assert w.std().item() == pytest.approx(_kaiming_std(w), rel=0.05)
                checked += 1
    assert checked > 50
    # The reference leaves the remaining convolutions at PyTorch's default (uniform, bound
    # 1/sqrt(fan_in)); check one from each place.
    for m in (
        full_model.bottleneck.global_avg_pool.global_average_pool[1],
        full_model.bottleneck.conv,
        full_model.conv2,
        full_model.upsample.conv1[0],
    ):
        w = m.weight.detach()
        bound = 1.0 / math.sqrt(w[0].numel())
        assert w.abs().max().item() <= bound
        assert w.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.05)
    bns = [m for m in full_model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 76  # as many as the manifest has running_mean entries
    for bn in bns:
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
        assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)
    affine = full_model.bottleneck.global_avg_pool.global_average_pool[2]
    assert torch.all(affine.weights == 1) and torch.all(affine.bias == 0)


@pytest.mark.parametrize("size", [(96, 144), (64, 64)])
@pytest.mark.parametrize("variant", ["full_model", "small_model"])
def test_forward_shape(variant: str, size: tuple[int, int], request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(variant)
    model.train()
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()
    assert out.std() > 0


def test_small_variant_full_size_eval(small_model: nn.Module) -> None:
    small_model.eval()
    with torch.no_grad():
        out = small_model(torch.randn(1, 16, 768, 1152))
    assert out.shape == (1, 3, 768, 1152)


def test_small_variant_is_small(small_model: nn.Module) -> None:
    n = sum(p.numel() for p in small_model.parameters())
    assert 200_000 < n < 3_000_000


@pytest.mark.parametrize("size", [(100, 144), (96, 150), (8, 16)])
def test_size_not_multiple_of_16(small_model: nn.Module, size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match=f"{size[0]}x{size[1]}"):
        small_model(torch.randn(1, 16, *size))


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="'resnet50'.*deeplab-xception, deeplab-xception-small"):
        build_model("resnet50", 16, 3)


def test_unknown_option() -> None:
    with pytest.raises(TypeError, match="bogus"):
        build_model("deeplab-xception-small", 16, 3, bogus=1)


def test_options_override_config() -> None:
    model = build_model("deeplab-xception-small", 5, 4, middle_blocks=1)
    assert isinstance(model, DeepLabV3Plus)
    assert model.xception_features.middle_names == ["block4"]
    assert model.xception_features.exit_name == "block5"
    assert model.xception_features.conv1.in_channels == 5
    assert model.upsample.last_deconv[0].out_channels == 4


def test_pooled_branch_follows_feature_map() -> None:
    torch.manual_seed(1)
    aspp = ASPP(8, 4).eval()
    with torch.no_grad():
        for bn in (m for m in aspp.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    for h, w in [(3, 5), (48, 72)]:
        x = torch.randn(2, 8, h, w)
        with torch.no_grad():
            got = aspp(x)
            pooled = torch.tile(aspp.global_avg_pool(x), (1, 1, h, w))
            branches = [getattr(aspp, f"aspp{i}")(x) for i in range(1, 5)]
            want = aspp.relu(aspp.bn(aspp.conv(torch.cat([*branches, pooled], dim=1))))
        assert got.shape == (2, 4, h, w)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_layers_are_plain_torch_modules(small_model: nn.Module) -> None:
    # every computing layer is torch.nn's own, as in the reference (whose ASPP pooled branch
    # has the same per-channel affine): no execution switch decides anything inside the model
    leaves = {type(m) for m in small_model.modules() if not list(m.children())}
    assert {t for t in leaves if not t.__module__.startswith("torch.nn.")} == {TrainableAffine}
    assert {t.__name__ for t in leaves} == {
        "AdaptiveAvgPool2d", "BatchNorm2d", "Conv2d", "ConvTranspose2d", "ReLU", "TrainableAffine"}
