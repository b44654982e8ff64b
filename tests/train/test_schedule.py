"""The LR of every optimizer step equals the MLCommons reference's, also across a resume.

Expected values follow the reference's rules (deepCam/utils/schedulers.py and
optimizer_helpers.py), applied epoch by epoch as its scheduler does: it is built with
last_epoch=0, so its constructor's step makes optimizer step k train at epoch k + 1; the
cosine without warm-up is built with last_epoch=-1, so step k trains at epoch k there.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from deepcam_hvd.config import LRSchedule
from deepcam_hvd.presets import PRESETS
from deepcam_hvd.train.schedule import build_scheduler, lr_at

MULTI = LRSchedule.parse("type=multistep,milestones=5 9 9 14,decay_rate=0.5")
COSINE = LRSchedule.parse("type=cosine_annealing,t_max=7,eta_min=0.0001")


def reference_lrs(schedule: LRSchedule, warmup: int, factor: float, start: float,
                  n: int) -> list[float]:
    """The reference's LR for optimizer steps 0..n-1, by its per-epoch update rules."""
    if schedule.type == "none":
        return [start] * n
    cosine = schedule.type == "cosine_annealing"
    t_max, eta = schedule.t_max, schedule.eta_min
    shift = warmup + 1 if warmup > 0 else 0
    milestones = [m + shift for m in schedule.milestones]
    lr, out = start, []
    first_epoch = 0 if cosine and warmup == 0 else 1
    for epoch in range(first_epoch, first_epoch + n):
        if epoch < warmup:
            lr = start * (epoch / warmup if factor == 1 else (factor - 1) * epoch / warmup + 1)
        elif not cosine:
            lr *= schedule.decay_rate ** milestones.count(epoch)
        elif (t := epoch - warmup) == 0:
            pass
        elif (t - 1 - t_max) % (2 * t_max) == 0:
            lr += (start - eta) * (1 - math.cos(math.pi / t_max)) / 2
        else:
            lr = eta + (lr - eta) * (1 + math.cos(math.pi * t / t_max)) / \
                (1 + math.cos(math.pi * (t - 1) / t_max))
        out.append(lr)
    return out


def lrs(schedule: LRSchedule, warmup: int, factor: float, start: float, n: int,
        resume_at: int | None = None, load_optimizer: bool = True) -> list[float]:
    """Optimizer LR at each step of our scheduler; optionally checkpoint and rebuild at a step."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=start)
    sched = build_scheduler(opt, schedule, warmup, factor, start)
    out = []
    for k in range(n):
        if k == resume_at:
            buf = io.BytesIO()
            torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
            buf.seek(0)
            state = torch.load(buf)
            opt = torch.optim.SGD([param], lr=start)
            sched = build_scheduler(opt, schedule, warmup, factor, start)
            if load_optimizer:
                opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def preset_args(name: str) -> tuple[LRSchedule, int, float, float]:
    p = PRESETS[name]
    return (LRSchedule.parse(p["lr_schedule"]), p["lr_warmup_steps"],
            p.get("lr_warmup_factor", 1.0), p["start_lr"])


def horizon(schedule: LRSchedule, warmup: int) -> int:
    if schedule.type == "multistep":
        return max(schedule.milestones) + warmup + 50
    return 2 * schedule.t_max + warmup + 50


# Hand-written (step, LR) pairs, both sides of every warm-up end and shifted milestone.
# Warm-up W steps ends on the plateau start * (W - 1) / W; milestone m decays at step m + W
# (0-based) with warm-up, at step m - 1 without.
BOUNDARIES: dict[str, list[tuple[int, float]]] = {
    "mlperf-closed-128": [(0, 0.00155), (1, 0.00155 * (1 + math.cos(math.pi / 9000)) / 2),
                          (4500, 0.000775), (9000, 0.0),
                          (9001, 0.00155 * (1 - math.cos(math.pi / 9000)) / 2)],
    "mlperf-closed-256": [(0, 0.002), (4094, 0.002), (4095, 0.0002), (8190, 0.0002),
                          (8191, 0.00002)],
    "mlperf-closed-512": [(0, 0.00004), (1, 0.00008), (98, 0.00396), (99, 0.00396),
                          (2147, 0.00396), (2148, 0.000396), (4195, 0.000396),
                          (4196, 0.0000396)],
    "mlperf-closed-1024": [(0, 0.00002), (198, 0.00398), (199, 0.00398), (1299, 0.00398),
                           (1300, 0.000398), (4295, 0.000398), (4296, 0.0000398)],
    "mlperf-closed-2048": [(0, 0.00001375), (1, 0.0000275), (398, 0.00548625),
                           (399, 0.00548625), (1199, 0.00548625), (1200, 0.000548625)],
    "nersc10-baseline": [(0, 0.00001375), (398, 0.00548625), (399, 0.00548625),
                         (1199, 0.00548625), (1200, 0.000548625)],
    "esif-baseline": [(0, 0.001), (1198, 0.001), (1199, 0.0005), (1300, 0.0005)],
}


def test_every_preset_has_boundaries() -> None:
    assert set(BOUNDARIES) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(BOUNDARIES))
def test_preset_boundaries(name: str) -> None:
    schedule, warmup, factor, start = preset_args(name)
    got = lrs(schedule, warmup, factor, start, max(s for s, _ in BOUNDARIES[name]) + 1)
    for step, lr in BOUNDARIES[name]:
        assert got[step] == pytest.approx(lr, rel=1e-9, abs=1e-15), f"step {step}"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_every_step(name: str) -> None:
    schedule, warmup, factor, start = preset_args(name)
    n = horizon(schedule, warmup)
    got = lrs(schedule, warmup, factor, start, n)
    assert got == pytest.approx(reference_lrs(schedule, warmup, factor, start, n), rel=1e-9,
                                abs=1e-15)
    assert [lr_at(k, schedule, warmup, factor, start) for k in range(n)] == \
        pytest.approx(got, rel=1e-12, abs=1e-18)


@pytest.mark.parametrize("factor", [1.0, 2.0, 0.5])
def test_esif_ignores_warmup_factor_without_warmup(factor: float) -> None:
    schedule, warmup, _, start = preset_args("esif-baseline")
    assert warmup == 0
    got = lrs(schedule, warmup, factor, start, 1250)
    assert got == [0.001] * 1199 + [0.0005] * 51


@pytest.mark.parametrize("schedule", [MULTI, COSINE], ids=["multistep", "cosine"])
@pytest.mark.parametrize("warmup", [0, 1, 2, 5])
@pytest.mark.parametrize("factor", [1.0, 3.0, 0.5])
def test_small_schedules_every_step(schedule: LRSchedule, warmup: int, factor: float) -> None:
    n = 60
    assert lrs(schedule, warmup, factor, 1e-3, n) == \
        pytest.approx(reference_lrs(schedule, warmup, factor, 1e-3, n), rel=1e-9, abs=1e-15)


def test_multistep_warmup_by_hand() -> None:
    # W=4, factor 1: t/4 for t = 1..3, plateau 3/4; milestone 5 -> 10, 9 (twice) -> 14.
    got = lrs(MULTI, 4, 1.0, 1.0, 16)
    assert got == pytest.approx([0.25, 0.5, 0.75] + [0.75] * 6 + [0.375] * 4 + [0.09375] * 3)
    # factor 3: 2 t / 4 + 1, plateau 2.5.
    got = lrs(MULTI, 4, 3.0, 1.0, 10)
    assert got == pytest.approx([1.5, 2.0, 2.5] + [2.5] * 6 + [1.25])


def test_cosine_warmup_by_hand() -> None:
    # W=2, factor 3: epoch 1 -> 2.0 (also the peak); cosine time t = step - 1, amplitude
    # 2.0 - eta up to t = T, start - eta after it.
    start, eta, t_max = 1.0, 0.1, 7
    schedule = LRSchedule("cosine_annealing", t_max=t_max, eta_min=eta)
    got = lrs(schedule, 2, 3.0, start, 30)
    assert got[:2] == pytest.approx([2.0, 2.0])
    for step in range(1, 30):
        t = step - 1
        top = 2.0 if t <= t_max else start
        assert got[step] == pytest.approx(eta + (top - eta) * (1 + math.cos(math.pi * t / t_max))
                                          / 2, rel=1e-9), f"step {step}"


def test_no_schedule_is_constant() -> None:
    assert lrs(LRSchedule(), 400, 2.0, 0.004, 500) == [0.004] * 500


def test_no_warmup_matches_torch_schedulers() -> None:
    """As the reference: MultiStepLR built with last_epoch=0, CosineAnnealingLR without it."""
    def drive(make: type, **kwargs: object) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
        opt.param_groups[0]["initial_lr"] = 2e-3
        sched = make(opt, **kwargs)
        out = []
        for _ in range(50):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    torch_multi = drive(torch.optim.lr_scheduler.MultiStepLR, milestones=[5, 9, 9, 14],
                        gamma=0.5, last_epoch=0)
    assert lrs(MULTI, 0, 4.0, 2e-3, 50) == pytest.approx(torch_multi, rel=1e-12)
    torch_cos = drive(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=7, eta_min=1e-4)
    assert lrs(COSINE, 0, 4.0, 2e-3, 50) == pytest.approx(torch_cos, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("name", "resume_at"), [
    ("mlperf-closed-2048", 200), ("mlperf-closed-2048", 399), ("mlperf-closed-2048", 1200),
    ("mlperf-closed-2048", 1201), ("mlperf-closed-2048", 1300), ("esif-baseline", 1199),
    ("mlperf-closed-128", 9001)])
def test_resume_equals_uninterrupted(name: str, resume_at: int) -> None:
    schedule, warmup, factor, start = preset_args(name)
    n = resume_at + 60
    whole = lrs(schedule, warmup, factor, start, n)
    assert lrs(schedule, warmup, factor, start, n, resume_at) == whole
    assert lrs(schedule, warmup, factor, start, n, resume_at, load_optimizer=False) == whole


@pytest.mark.parametrize("resume_at", [1, 3, 9, 20])
def test_resume_cosine_with_warmup(resume_at: int) -> None:
    whole = lrs(COSINE, 3, 2.0, 1e-3, 50)
    assert lrs(COSINE, 3, 2.0, 1e-3, 50, resume_at) == whole
