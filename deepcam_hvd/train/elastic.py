"""Horovod elastic training: the ``Trainer`` run inside ``hvd.elastic.run``.

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
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from deepcam_hvd.config import TrainConfig
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.launchers import LaunchInfo
from deepcam_hvd.runtime import Runtime
from deepcam_hvd.train import mlperf_log as mlp
from deepcam_hvd.train.reporting import Reporter, RunSummary
from deepcam_hvd.train.trainer import EpochProgress, Position, Trainer

COMMIT_STEPS_ENV = "DEEPCAM_ELASTIC_COMMIT_STEPS"
DEFAULT_COMMIT_STEPS = 4


def check_elastic_launch(launch: LaunchInfo, backend: str, env: Mapping[str, str]) -> None:
    """Raise ConfigError unless this process is a horovodrun --gloo elastic worker on Horovod."""
    if backend not in ("auto", "horovod"):
        raise ConfigError(f"--elastic needs the horovod backend, not --backend {backend}")
    if launch.launcher != "horovodrun-gloo" or env.get("HOROVOD_ELASTIC") != "1":
        raise ConfigError("--elastic needs horovodrun --gloo with --min-np/--max-np and "
                          f"--host-discovery-script (this launch: {launch.launcher})")


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


class ElasticTrainer(Trainer):
    """A ``Trainer`` whose epochs run under ``hvd.elastic.run`` with periodic commits."""

    def __init__(self, cfg: TrainConfig, runtime: Runtime, commit_steps: int) -> None:
        super().__init__(cfg, runtime)
        self.commit_steps = commit_steps
        self.world_sizes: list[int] = [self.backend.size]
        self._loaders_stale = False

    # ---- committed state ------------------------------------------------------------------
    def setup(self) -> None:
        """The normal set-up, then the elastic state object holding everything to roll back."""
        import horovod.torch as hvd

        super().setup()
        # The optimizer travels as a plain state dict: Horovod's optimizer handler would sync
        # it with broadcast_optimizer_state, which may take a dummy step on fresh state.
        self.state = hvd.elastic.TorchState(model=self.model, optimizer=None,
                                            **self._snapshot())
        self.state.register_reset_callbacks([self._on_reset])

    def _snapshot(self) -> dict[str, Any]:
        """Plain copies of what the model and optimizer handlers do not cover."""
        return {
            "step": self.position.step,
            "epoch": self.position.epoch,
            # samples trained in this epoch over all ranks: survives a change of world size
            "epoch_samples": self.progress.steps_done * self.global_batch_size,
            "progress": asdict(self.progress),
            "optimizer_state": copy.deepcopy(self.optimizer.state_dict()),
            "scheduler": copy.deepcopy(self.scheduler.state_dict()),
            "scaler": copy.deepcopy(self.scaler.state_dict()) if self.scaler else None,
            "summary": copy.deepcopy(self.summary.as_dict()),
        }

    def commit(self) -> None:
        """Save the current state to host memory; raises HostsUpdatedInterrupt on a change."""
        for name, value in self._snapshot().items():
            setattr(self.state, name, value)
        self.state.commit()

    def _restore_from_state(self) -> None:
        """Make this rank's trainer match the (synced) committed state."""
        s = self.state
        self.position = Position(step=int(s.step), epoch=int(s.epoch))
        self.optimizer.load_state_dict(copy.deepcopy(s.optimizer_state))
        self.scheduler.load_state_dict(copy.deepcopy(s.scheduler))
        if self.scaler is not None and s.scaler is not None:
            self.scaler.load_state_dict(copy.deepcopy(s.scaler))
        summary = copy.deepcopy(s.summary)
        summary.update(ranks=self.backend.size, global_batch_size=self.global_batch_size,
                       nodes=max(1, self.backend.size // self.backend.local_size))
        self.summary = RunSummary(**summary)
        progress = EpochProgress(**s.progress)
        steps = self._steps_per_epoch()
        progress.steps_done = min(steps, int(s.epoch_samples) // self.global_batch_size)
        self.progress = progress

    def _on_reset(self) -> None:
        """After Horovod re-formed the communicator: drop stale gradients, note the new world."""
        for param in self.model.parameters():
            param.grad = None
        # Object-collective names count calls per rank; restart the count on every rank.
        self.backend.reset_object_names()
        self._loaders_stale = True
        was_root, self.is_root = self.is_root, self.backend.is_root
        if self.is_root and not was_root:  # rank 0 was lost: this rank takes over its files
            self.log = mlp.MLPerfLog(self.out / "mlperf.log", True)
            self.reporter = Reporter(True, self.out, 0)

    # ---- the run --------------------------------------------------------------------------
    def fit(self) -> RunSummary:
        """Train elastically until the target IoU, max_epochs or a stop signal."""
        import horovod.torch as hvd

        cfg = self.cfg
        remaining = self._steps_per_epoch() * (cfg.max_epochs - self.position.epoch) - \
            self.progress.steps_done
        self.reporter = Reporter(self.is_root, self.out, remaining)
        self.log.start("run_start")
        self._run_start = time.perf_counter() - self.summary.run_time_s
        try:
            hvd.elastic.run(ElasticTrainer._elastic_body)(self.state, self)
        finally:
            if self.summary.status == "running":
                self.summary.status = "aborted"
                self.summary.run_time_s = time.perf_counter() - self._run_start
            self.log.end("run_stop", metadata={"status": self.summary.status})
            self.log.close()
            self.reporter.close()
        self.summary.finish()
        if self.is_root:
            self.summary.write(self.out / "summary.json")
        self._message(self.summary.line())
        return self.summary

    @staticmethod
    def _elastic_body(state: Any, trainer: ElasticTrainer) -> None:
        """What ``hvd.elastic.run`` repeats from the last commit after every reset."""
        del state  # the same object as trainer.state, already synced from rank 0
        trainer._train_from_commit()

    def _train_from_commit(self) -> None:
        if self._loaders_stale:  # shards follow rank and size: rebuild for the new world
            self.loaders.close()
            self.loaders = self._build_loaders()
            self._loaders_stale = False
        self._restore_from_state()
        if self.world_sizes[-1] != self.backend.size:
            self._message(f"elastic: continuing on {self.backend.size} ranks (was "
                          f"{self.world_sizes[-1]}) from epoch {self.position.epoch}, step "
                          f"{self.position.step}")
            self.world_sizes.append(self.backend.size)
        cfg = self.cfg
        while not self.summary.stopped_by and self.position.epoch < cfg.max_epochs:
            epoch = self.position.epoch + 1  # MLPerf counts epochs from 1
            if self.progress.steps_done == 0:
                self.log.start("epoch_start", metadata={"epoch_num": epoch})
            if not self.train_epoch(epoch, self._steps_per_epoch()):
                self.summary.stopped_by = f"signal {self.stop.signal_name}"
                break
            iou = self.end_epoch(epoch, self._run_start)
            if iou >= cfg.target_iou:
                self.summary.stopped_by = "target"
            elif cfg.save_frequency and epoch % cfg.save_frequency == 0:
                self.save()
            self.commit()
        if not self.summary.stopped_by:
            self.summary.stopped_by = "max_epochs"
        self.summary.status = "success" if self.summary.stopped_by == "target" else "aborted"
        self.summary.run_time_s = time.perf_counter() - self._run_start
        self.save()

    def _after_step(self, steps: int) -> None:
        """Commit every ``commit_steps`` optimizer steps (epoch ends commit in the loop)."""
        done = self.progress.steps_done
        if done < steps and done % self.commit_steps == 0:
            self.commit()


def run_elastic_training(cfg: TrainConfig, runtime: Runtime) -> RunSummary:
    """Set up and run an elastic training job on this worker."""
    trainer = ElasticTrainer(cfg, runtime, commit_steps_from_env(os.environ))
    try:
        trainer.setup()
        return trainer.fit()
    finally:
        trainer.close()
