"""Horovod elastic training: the one training loop run inside ``hvd.elastic.run``.

Launch with ``horovodrun --gloo --min-np M --max-np N --host-discovery-script S deepcam-hvd
train --elastic ...``. The model, optimizer, learning-rate schedule, position in the run and the
run summary are committed to host memory every few steps and at every epoch end. When a worker
dies, the others get a ``HorovodInternalError`` from their next collective: they roll back to the
last commit, Horovod re-forms the communicator from the survivors, the data shards are rebuilt
for the new rank and size, and training goes on from the committed step. A host added by the
discovery script interrupts the run at the next commit (``HostsUpdatedInterrupt``) in the same
way.

Limits: a worker added after start-up runs ``Trainer.setup``, whose collectives do not pair with
the running workers' state sync, so growing the job is not supported (shrinking is). If rank 0
dies, the new rank 0 starts a fresh ``mlperf.log`` (the old one is kept as ``mlperf.N.log``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from deepcam_hvd.config import TrainConfig
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.launchers import LaunchInfo
from deepcam_hvd.runtime import Runtime
from deepcam_hvd.train import mlperf_log as mlp
from deepcam_hvd.train.hooks import RunHooks
from deepcam_hvd.train.progress import EpochProgress, Position
from deepcam_hvd.train.reporting import Reporter, RunSummary
from deepcam_hvd.train.trainer import Trainer, run_training

COMMIT_STEPS_ENV = "DEEPCAM_ELASTIC_COMMIT_STEPS"
DEFAULT_COMMIT_STEPS = 4


def check_elastic_launch(launch: LaunchInfo, backend: str, env: Mapping[str, str]) -> None:
    """Raise ConfigError unless this process is a horovodrun --gloo elastic worker on Horovod."""
    if backend not in ("auto", "horovod"):
        raise ConfigError(f"--elastic needs the horovod backend, not --backend {backend}")
    if launch.launcher != "horovodrun-gloo" or env.get("HOROVOD_ELASTIC") != "1":
        raise ConfigError("--elastic needs horovodrun --gloo with --min-np/--max-np and "
                          f"--host-discovery-script (this launch: {launch.launcher})")
    if env.get("HOROVOD_FUSION_THRESHOLD", ""):
        # Measured: with both the cycle time and the fusion threshold fixed, Horovod 0.28.1
        # dies (SIGSEGV in BayesianParameter::SetValue) when a lost worker resets the job.
        raise ConfigError("--elastic: unset HOROVOD_FUSION_THRESHOLD; with it Horovod 0.28.1 "
                          "crashes when a worker is lost (the default, 128 MiB, is used)")


def commit_steps_from_env(env: Mapping[str, str]) -> int:
    """Optimizer steps between commits (``DEEPCAM_ELASTIC_COMMIT_STEPS``, default 4)."""
    raw = env.get(COMMIT_STEPS_ENV, str(DEFAULT_COMMIT_STEPS))
    try:
        steps = int(raw)
    except ValueError:
        steps = 0
    if steps < 1:
        raise ConfigError(f"{COMMIT_STEPS_ENV}={raw!r}: must be a whole number >= 1")
    return steps


class ElasticHooks(RunHooks):
    """Commit and restore around the training loop, which runs under ``hvd.elastic.run``."""

    def __init__(self, commit_steps: int) -> None:
        self.commit_steps = commit_steps
        self.world_sizes: list[int] = []
        self._loaders_stale = False
        self.trainer: Trainer | None = None
        self.state: Any = None

    def attach(self, trainer: Trainer) -> None:
        """After set-up: the elastic state object holding everything to roll back to."""
        import horovod.torch as hvd

        self.trainer = trainer
        self.world_sizes = [trainer.backend.size]
        # The optimizer travels as a plain state dict: Horovod's optimizer handler would sync
        # it with broadcast_optimizer_state, which may take a dummy step on fresh state.
        self.state = hvd.elastic.TorchState(model=trainer.model, optimizer=None,
                                            **_snapshot(trainer))
        self.state.register_reset_callbacks([self._on_reset])

    def run(self, loop: Callable[[], None]) -> None:
        """Run the loop; after a reset Horovod runs it again from the last commit."""
        import horovod.torch as hvd

        hvd.elastic.run(lambda _state: loop())(self.state)

    def before_epochs(self, trainer: Trainer) -> None:
        """Rebuild the shards for a new world and continue from the committed state."""
        if self._loaders_stale:  # shards follow rank and size
            assert trainer.loaders is not None
            trainer.loaders.close()
            trainer.loaders = trainer.build_loaders()
            trainer.validate.loader = trainer.loaders.validation
            self._loaders_stale = False
        _restore(trainer, self.state)
        if self.world_sizes[-1] != trainer.backend.size:
            trainer.message(f"elastic: continuing on {trainer.backend.size} ranks (was "
                             f"{self.world_sizes[-1]}) from epoch {trainer.position.epoch}, "
                             f"step {trainer.position.step}")
            self.world_sizes.append(trainer.backend.size)

    def after_step(self, trainer: Trainer, steps_per_epoch: int) -> None:
        """Commit every ``commit_steps`` optimizer steps (epoch ends commit after_epoch)."""
        done = trainer.progress.steps_done
        if done < steps_per_epoch and done % self.commit_steps == 0:
            self.commit(trainer)

    def after_epoch(self, trainer: Trainer) -> None:
        """Commit at every epoch end."""
        self.commit(trainer)

    def commit(self, trainer: Trainer) -> None:
        """Save the state to host memory; raises HostsUpdatedInterrupt on a host change."""
        for name, value in _snapshot(trainer).items():
            setattr(self.state, name, value)
        self.state.commit()

    def _on_reset(self) -> None:
        """After Horovod re-formed the communicator: drop stale gradients, note the new world."""
        trainer = self.trainer
        assert trainer is not None
        for param in trainer.model.parameters():
            param.grad = None
        # Object-collective names count calls per rank; restart the count on every rank.
        trainer.backend.reset_object_names()
        self._loaders_stale = True
        was_root, trainer.is_root = trainer.is_root, trainer.backend.is_root
        if trainer.is_root and not was_root:  # rank 0 was lost: this rank takes over its files
            trainer.log = mlp.MLPerfLog(trainer.out / "mlperf.log", True)
            trainer.reporter = Reporter(True, trainer.out, 0)


def _snapshot(trainer: Trainer) -> dict[str, Any]:
    """Plain copies of what the model and optimizer handlers do not cover."""
    return {
        "step": trainer.position.step,
        "epoch": trainer.position.epoch,
        # samples trained in this epoch over all ranks: survives a change of world size
        "epoch_samples": trainer.progress.steps_done * trainer.global_batch_size,
        "progress": asdict(trainer.progress),
        "optimizer_state": copy.deepcopy(trainer.optimizer.state_dict()),
        "scheduler": copy.deepcopy(trainer.scheduler.state_dict()),
        "scaler": copy.deepcopy(trainer.scaler.state_dict()) if trainer.scaler else None,
        "summary": copy.deepcopy(trainer.summary.as_dict()),
    }


def _restore(trainer: Trainer, state: Any) -> None:
    """Make this rank's trainer match the (synced) committed state."""
    trainer.position = Position(step=int(state.step), epoch=int(state.epoch))
    trainer.optimizer.load_state_dict(copy.deepcopy(state.optimizer_state))
    trainer.scheduler.load_state_dict(copy.deepcopy(state.scheduler))
    if trainer.scaler is not None and state.scaler is not None:
        trainer.scaler.load_state_dict(copy.deepcopy(state.scaler))
    summary = copy.deepcopy(state.summary)
    summary.update(ranks=trainer.backend.size, global_batch_size=trainer.global_batch_size,
                   nodes=max(1, trainer.backend.size // trainer.backend.local_size))
    trainer.summary = RunSummary(**summary)
    progress = EpochProgress(**state.progress)
    progress.steps_done = min(trainer.steps_per_epoch(),
                              int(state.epoch_samples) // trainer.global_batch_size)
    trainer.progress = progress


def run_elastic_training(cfg: TrainConfig, runtime: Runtime) -> RunSummary:
    """Set up and run an elastic training job on this worker."""
    return run_training(cfg, runtime, ElasticHooks(commit_steps_from_env(os.environ)))
