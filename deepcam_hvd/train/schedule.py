"""Learning-rate schedule of the MLCommons DeepCAM reference, as a closed form of the step.

The reference (``utils/optimizer_helpers.py`` and ``utils/schedulers.py``) builds its
scheduler with ``last_epoch=start_step`` (0 on a fresh run), so the constructor's own
``step()`` leaves ``last_epoch`` at 1 and optimizer step k (0-based) trains at the reference's
``last_epoch = k + 1``; the cosine schedule without warm-up is built without ``last_epoch``,
so there step k trains at ``last_epoch = k``. ``scheduler.step()`` runs once per optimizer
step. This module reproduces the LR of every optimizer step of a fresh reference run:

- ``none`` (no ``--lr_schedule``): start_lr throughout; warm-up settings are ignored.
- No warm-up steps: torch's MultiStepLR / CosineAnnealingLR; the warm-up factor is ignored.
- Warm-up over W steps: ``t / W`` (factor 1) or ``(factor - 1) t / W + 1`` (otherwise) for
  ``t = last_epoch < W``; then the last warm-up value, ``warm(W - 1)``, is kept (start_lr when
  W is 1) as the peak: multistep multiplies it by gamma at ``milestone + W + 1``; cosine
  anneals it with ``t - W`` as its time, but after its first minimum the recursion re-bases
  on start_lr, so later periods have start_lr's amplitude.

The LR is a function of the number of completed optimizer steps only (torch LambdaLR), so a
resumed run uses the uninterrupted run's LR at every step. The reference itself does not on
resume (it rebuilds the scheduler with ``last_epoch`` = the saved step count s on top of the
saved optimizer LR): it decays by gamma twice when s + 1 is a (shifted) milestone, applies the
cosine step twice when resumed in the cosine phase after warm-up (wrong until its next
minimum), restarts the cosine without warm-up from t = 0, and counts micro-batches rather
than optimizer steps when gradients are accumulated.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from deepcam_hvd.config import LRSchedule


def lr_multiplier(step: int, schedule: LRSchedule, warmup_steps: int, warmup_factor: float,
                  start_lr: float) -> float:
    """LR of optimizer step ``step`` (0-based: the number of completed steps) / start_lr.

    Milestones are positive optimizer-step counts, as ``TrainConfig.validate`` requires.
    """
    if schedule.type == "none":
        return 1.0
    floor = schedule.eta_min / start_lr
    if warmup_steps <= 0:
        if schedule.type == "multistep":
            passed = sum(1 for m in schedule.milestones if m <= step + 1)
            return schedule.decay_rate ** passed
        return _cosine(step, schedule.t_max, floor, 1.0, 1.0)

    def warm(t: int) -> float:
        if warmup_factor == 1.0:
            return t / warmup_steps
        return (warmup_factor - 1.0) * t / warmup_steps + 1.0

    epoch = step + 1
    if epoch < warmup_steps:
        return warm(epoch)
    # W == 1: the constructor's step is already past warm-up and keeps the optimizer's start_lr.
    peak = warm(warmup_steps - 1) if warmup_steps > 1 else 1.0
    if schedule.type == "multistep":
        passed = sum(1 for m in schedule.milestones if m + warmup_steps + 1 <= epoch)
        return peak * schedule.decay_rate ** passed
    return _cosine(epoch - warmup_steps, schedule.t_max, floor, peak, 1.0)


def _cosine(t: int, t_max: int, floor: float, first: float, later: float) -> float:
    """Torch's recursive cosine annealing in closed form: amplitude ``first`` up to its first
    minimum (t = t_max), ``later`` after it (where the recursion adds base_lr terms)."""
    top = first if t <= t_max else later
    return floor + (top - floor) * (1.0 + math.cos(math.pi * t / t_max)) / 2.0


def lr_at(step: int, schedule: LRSchedule, warmup_steps: int, warmup_factor: float,
          start_lr: float) -> float:
    """LR the optimizer uses for its step after ``step`` completed steps (0-based index)."""
    return start_lr * lr_multiplier(step, schedule, warmup_steps, warmup_factor, start_lr)


class _ClosedFormLR(torch.optim.lr_scheduler.LambdaLR):
    """LambdaLR whose loaded state sets the LR from the step count alone, so a resumed run
    does not depend on the LR stored in the optimizer's state or on the saved base LR."""

    def __init__(self, optimizer: torch.optim.Optimizer, start_lr: float, lr_lambda: Any):
        self.start_lr = start_lr
        super().__init__(optimizer, lr_lambda)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the step count and set every group's LR to this schedule's value there."""
        start_lr = self.start_lr
        super().load_state_dict(state_dict)
        self.start_lr = start_lr
        self.base_lrs = [self.start_lr] * len(self.optimizer.param_groups)
        for group, fn in zip(self.optimizer.param_groups, self.lr_lambdas, strict=True):
            group["lr"] = self.start_lr * fn(self.last_epoch)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: LRSchedule, warmup_steps: int,
                    warmup_factor: float, start_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR giving the reference's LR; call ``step()`` once per optimizer step."""
    for group in optimizer.param_groups:
        group["lr"] = start_lr
        group["initial_lr"] = start_lr
    return _ClosedFormLR(optimizer, start_lr, lambda step: lr_multiplier(
        step, schedule, warmup_steps, warmup_factor, start_lr))
