"""Learning-rate schedules: linear warm-up, then multistep or cosine annealing.

Written as a closed form of the step on top of torch's LambdaLR, so the schedule's whole
state is the step count and resuming is exact.
"""

from __future__ import annotations

import math

import torch

from deepcam_hvd.config import LRSchedule


def lr_multiplier(step: int, schedule: LRSchedule, warmup_steps: int, warmup_factor: float,
                  start_lr: float) -> float:
    """Learning rate at optimizer step ``step`` (0-based) as a multiple of ``start_lr``.

    Warm-up rises linearly to ``warmup_factor`` x start_lr at ``warmup_steps``: from 0 when
    the factor is 1 (as the reference), from start_lr when it is larger. Multistep milestones
    count optimizer steps from the start of training; cosine annealing starts after warm-up
    and follows torch's CosineAnnealingLR (periodic in 2 x t_max).
    """
    peak = warmup_factor
    if step < warmup_steps:
        fraction = step / warmup_steps
        return fraction if warmup_factor == 1.0 else 1.0 + (warmup_factor - 1.0) * fraction
    if schedule.type == "multistep":
        passed = sum(1 for m in schedule.milestones if step >= m)
        return peak * schedule.decay_rate ** passed
    floor = schedule.eta_min / start_lr
    t = step - warmup_steps
    return floor + (peak - floor) * (1 + math.cos(math.pi * t / schedule.t_max)) / 2


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: LRSchedule, warmup_steps: int,
                    warmup_factor: float, start_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR whose ``step()`` is called once per optimizer step."""
    for group in optimizer.param_groups:
        group["lr"] = start_lr
        group["initial_lr"] = start_lr
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, schedule, warmup_steps, warmup_factor,
                                              start_lr))
