"""The Trainer in this process (local backend): resume is exact, a stop takes one step."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from deepcam_hvd.config import TrainConfig, resolve_config
from deepcam_hvd.runtime import Runtime, start_runtime
from deepcam_hvd.train.hooks import RunHooks
from deepcam_hvd.train.trainer import Trainer, run_training

SETTINGS = {"model": "deeplab-xception-small", "local_batch_size": 2, "max_inter_threads": 0,
            "optimizer": "LAMB", "start_lr": 0.002, "seed": 9, "lr_warmup_steps": 2,
            "lr_schedule": "type=multistep,milestones=3,decay_rate=0.5"}


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return start_runtime("single", "local", "cpu", env={})


def config(root: Path, out: Path, **changes: object) -> TrainConfig:
    return resolve_config(SETTINGS, {"data_dir_prefix": str(root), "output_dir": str(out)},
                          changes).validate(1)


class SignalAtStep(RunHooks):
    """Sends this process SIGUSR1 right after optimizer step ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def after_step(self, trainer: Trainer, steps_per_epoch: int) -> None:
        if trainer.position.step == self.at:
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.mark.slow
def test_stop_within_one_step_then_resume_equals_straight(tiny_root: Path, tmp_path: Path,
                                                          runtime: Runtime) -> None:
    straight = run_training(config(tiny_root, tmp_path / "a", max_epochs=3), runtime)
    cut = tmp_path / "b"
    # 8 samples, batch 2: 4 steps an epoch. Signalled after step 5 (mid epoch 2), the ranks
    # learn of it with step 6's background allreduce and stop after step 6.
    stopped = run_training(config(tiny_root, cut, max_epochs=3), runtime, SignalAtStep(5))
    assert stopped.stopped_by == "signal SIGUSR1"
    assert sorted(p.name for p in (cut / "checkpoints").glob("*.ckpt"))[-1] == \
        "model_step000000006.ckpt"
    resumed = run_training(config(tiny_root, cut, max_epochs=3, checkpoint="auto"), runtime)
    assert (resumed.steps, straight.steps) == (12, 12)
    assert resumed.stopped_by == "max_epochs"
    for key in ("train_loss", "eval_loss", "eval_iou"):
        assert getattr(resumed, key) == pytest.approx(getattr(straight, key), abs=1e-6), key


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_pinned_prefetched_batches_train_as_plain_copies(tiny_root: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Pinned memory and the side-stream prefetch change when bytes move, not which, and LAMB
    all at once is LAMB one tensor at a time: a GPU run with them gives the plain run's losses
    and IoU (to float atomics' reordering: the upsampling's backward adds in any order even
    with deterministic cuDNN)."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    gpu = start_runtime("single", "local", "cuda", env={})
    plain, fed = (run_training(config(tiny_root, tmp_path / name, max_epochs=2,
                                      cudnn_benchmark="off", pin_memory=value,
                                      device_prefetch=value, lamb_foreach=value), gpu)
                  for name, value in (("plain", "off"), ("fed", "on")))
    assert fed.steps == plain.steps == 8
    for key in ("train_loss", "eval_loss", "eval_iou"):
        assert getattr(fed, key) == pytest.approx(getattr(plain, key), rel=1e-4), key
