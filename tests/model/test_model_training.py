"""The small variant learns to segment a toy dataset of blobs and filaments."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from deepcam_hvd.model import build_model


def toy_batch(
    gen: torch.Generator, n: int, height: int, width: int, channels: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise plus Gaussian blobs in channel 0 (class 1) and a sine filament in channel 1 (2)."""
    x = 0.3 * torch.randn(n, channels, height, width, generator=gen)
    y = torch.zeros(n, height, width, dtype=torch.long)
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    for i in range(n):
        for _ in range(3):
            cy, cx = (torch.rand(2, generator=gen) * torch.tensor([height, width])).tolist()
            r = 3.0 + 4.0 * float(torch.rand(1, generator=gen))
            bump = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            x[i, 0] += 2 * bump
            y[i][bump > 0.5] = 1
        a, b, k, p = torch.rand(4, generator=gen).tolist()
        curve = height * (0.2 + 0.6 * a) + 0.15 * height * b * torch.sin(
            xx * (0.02 + 0.05 * k) + 6.28 * p
        )
        dist = (yy - curve).abs()
        x[i, 1] += 2 * torch.exp(-(dist**2) / 8)
        y[i][(dist < 2.5) & (y[i] == 0)] = 2
    return x, y


def test_toy_data_has_all_classes() -> None:
    _, y = toy_batch(torch.Generator().manual_seed(0), 4, 64, 64)
    freq = torch.bincount(y.flatten(), minlength=3).float() / y.numel()
    assert freq[0] > 0.7 and freq[1] > 0.02 and freq[2] > 0.02


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run single-threaded: on a busy 2-core machine two OpenMP threads slow down many-fold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_small_variant_learns_toy_segmentation() -> None:
    torch.manual_seed(0)
    x, y = toy_batch(torch.Generator().manual_seed(0), 8, 64, 64)
    model = build_model("deeplab-xception-small", 4, 3)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    weight = torch.tensor([1.0, 3.0, 3.0])
    losses = []
    for step in range(20):
        i = (2 * step) % 8
        loss = F.cross_entropy(model(x[i : i + 2]), y[i : i + 2], weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.5 * first, losses
    # and the learned model actually finds both feature kinds
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    for c in (1, 2):
        inter = ((pred == c) & (y == c)).sum().item()
        union = ((pred == c) | (y == c)).sum().item()
        assert inter / union > 0.3, (c, inter / union)
