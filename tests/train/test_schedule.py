"""Learning-rate schedule values at given steps."""

from __future__ import annotations

import math

import pytest
import torch

from deepcam_hvd.config import LRSchedule
from deepcam_hvd.train.schedule import build_scheduler, lr_multiplier


def lrs(schedule: LRSchedule, steps: int, warmup: int = 0, factor: float = 1.0,
        start: float = 1e-3) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=start)
    sched = build_scheduler(opt, schedule, warmup, factor, start)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_multistep_without_warmup() -> None:
    got = lrs(LRSchedule("multistep", [3, 5], 0.5), 7)
    assert got == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])


def test_warmup_factor_one_starts_from_zero() -> None:
    got = lrs(LRSchedule("multistep", [100], 0.1), 6, warmup=4, factor=1.0)
    assert got == pytest.approx([0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])


def test_warmup_factor_scales_to_target() -> None:
    got = lrs(LRSchedule("multistep", [6], 0.1), 8, warmup=4, factor=4.0)
    assert got == pytest.approx([1e-3, 1.75e-3, 2.5e-3, 3.25e-3, 4e-3, 4e-3, 4e-4, 4e-4])


def test_cosine_after_warmup() -> None:
    sched = LRSchedule("cosine_annealing", t_max=10, eta_min=1e-4)
    got = lrs(sched, 16, warmup=2, factor=2.0)
    assert got[:2] == pytest.approx([1e-3, 1.5e-3])
    assert got[2] == pytest.approx(2e-3)
    assert got[7] == pytest.approx(1e-4 + (2e-3 - 1e-4) * (1 + math.cos(math.pi * 5 / 10)) / 2)
    assert got[12] == pytest.approx(1e-4)


def test_cosine_matches_torch_without_warmup() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1e-3)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7, eta_min=1e-5)
    expected = []
    for _ in range(20):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert lrs(LRSchedule("cosine_annealing", t_max=7, eta_min=1e-5), 20) == \
        pytest.approx(expected, rel=1e-9)


def test_resume_is_exact() -> None:
    schedule = LRSchedule("multistep", [3], 0.1)
    assert lr_multiplier(4, schedule, 2, 2.0, 1e-3) == pytest.approx(0.2)
