"""A CosmoFlow training run on TensorFlow/Keras, top to bottom: set up, then epochs of
train / validate / checkpoint, as the DeepCAM trainer does.

Keras trains each epoch (``model.fit`` over that epoch's files, ``initial_epoch`` = the epoch,
so the reference's per-epoch LR callback sees the right index); with more than one rank the
optimizer is ``hvd.DistributedOptimizer`` and the reference's Horovod callbacks broadcast rank
0's variables and average the epoch's metrics. Validation runs after each complete epoch on
every rank's share of the validation files, summed over ranks (an exact global mean). The
components: ``inputs`` (files per rank and epoch), ``callbacks`` (loss check, stop window),
``checkpoints``, ``mlperf`` and ``summary``. Every rank runs every line; rank-0-only work sits in
objects that are inactive elsewhere, so no collective is ever inside a rank-0 branch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tensorflow as tf

from deepcam_hvd.allocator import active_allocator
from deepcam_hvd.cosmoflow import mlperf
from deepcam_hvd.cosmoflow.callbacks import StepWatch
from deepcam_hvd.cosmoflow.checkpoints import CosmoCheckpointer, Position
from deepcam_hvd.cosmoflow.config import CosmoConfig
from deepcam_hvd.cosmoflow.inputs import (
    DataSource,
    epoch_plan,
    open_source,
    stage_root,
    steps_per_epoch,
    validation_shard,
)
from deepcam_hvd.cosmoflow.model import build_model, loss_and_metric
from deepcam_hvd.cosmoflow.runtime import TFRuntime
from deepcam_hvd.cosmoflow.schedule import EpochLR, lr_at
from deepcam_hvd.cosmoflow.summary import CosmoSummary
from deepcam_hvd.distributed.agreement import run_agreed, run_on_root
from deepcam_hvd.files import prepare_output_dir
from deepcam_hvd.train.mlperf_log import MLPerfLog, describe_platform
from deepcam_hvd.train.seed import run_seed
from deepcam_hvd.train.signals import StopAgreement, StopRequest
from deepcam_hvd.workloads import cosmoflow as facts


class CosmoTrainer:
    """One CosmoFlow training run on this rank."""

    def __init__(self, cfg: CosmoConfig, runtime: TFRuntime,
                 source: DataSource | None = None) -> None:
        self.cfg = cfg
        self.runtime = runtime
        self.backend = b = runtime.backend
        self.source = source
        self.out = Path(cfg.output_dir)
        self.is_root = b.is_root
        self.position = Position()
        self.progress: dict[str, Any] = {"seconds": 0.0}  # a stopped epoch's time so far
        # Caught from the start: a stop asked for during set-up is honoured at the first check.
        self.stop = StopRequest().install()
        self.agreement = StopAgreement(self.stop, b)
        self.global_batch = facts.logged_global_batch_size(cfg.local_batch_size, b.size)
        self.summary = CosmoSummary(
            ranks=b.size, nodes=max(1, b.size // b.local_size),
            local_batch_size=cfg.local_batch_size, global_batch_size=self.global_batch,
            target_mae=cfg.target_mae, allocator=active_allocator())
        self.log = MLPerfLog(None, False)
        self.seed = cfg.seed
        self.run_start = 0.0

    # ---- set-up: everything inside MLPerf's logged init ------------------------------------
    def setup(self) -> None:
        """Output directory, data, seed, MLPerf init keys, model, optimizer, resume."""
        cfg, b = self.cfg, self.backend
        run_on_root(b, lambda: prepare_output_dir(self.out), str(self.out))
        self.log = MLPerfLog(self.out / "mlperf.log", self.is_root)
        self.log.event("cache_clear", False)
        self.log.start("init_start")
        if self.source is None:  # the data root is listed and checked inside the logged init
            self.source = self._open_data()
        self.source = src = self.source
        assert src is not None
        self.identity = {"benchmark": facts.BENCHMARK, "cube": src.cube, "dropout": cfg.dropout}
        self.checkpointer = CosmoCheckpointer(b, self.out, self.identity, cfg.keep_checkpoints)
        resume_from, state = self.checkpointer.find(cfg.resume, cfg.max_epochs)
        self.seed, origin = run_seed(cfg.seed, int(state["seed"]) if state else None, b)
        self.message(f"seed {self.seed} ({origin})")
        accelerators = b.local_size if self.runtime.device.startswith("/GPU") else 0
        mlperf.log_scale(self.log, self.seed, b.size, self.summary.nodes, accelerators)
        train_n, eval_n = len(src.train_files), len(src.validation_files)
        division = mlperf.division_for(cfg, train_n, eval_n)
        platform = cfg.platform or describe_platform(self.runtime.threads.node_cores,
                                                     "gpu" if accelerators else "cpu")
        mlperf.log_submission(self.log, cfg, division, platform)
        mlperf.log_hyperparameters(self.log, cfg, b.size, train_n, eval_n)
        self.steps = steps_per_epoch(train_n, cfg.local_batch_size, b.size)
        self.validation_files = validation_shard(src.validation_files, b.rank, b.size)
        self.summary.train_samples, self.summary.eval_samples = train_n, eval_n

        # Dropout draws from a tf.random.Generator, whose state a checkpoint can hold.
        tf.keras.backend.experimental.enable_tf_random_generator()
        tf.keras.utils.set_random_seed(self.seed)
        with tf.device(self.runtime.device):
            self.model = build_model(src.cube, dropout=cfg.dropout)
            sgd = tf.keras.optimizers.SGD(lr_at(0, self.global_batch, **cfg.schedule),
                                          momentum=facts.MOMENTUM)
            self.optimizer = self.runtime.distributed_optimizer(sgd)
            loss, metric = loss_and_metric()
            self.model.compile(optimizer=self.optimizer, loss=loss, metrics=[metric])
        if state is not None:
            self.position = self.checkpointer.restore(state, self.model, self.optimizer)
            self.progress = dict(state.get("progress") or {"seconds": 0.0})
            self.summary = CosmoSummary(**{**self.summary.as_dict(), **state["summary"],
                                           "ranks": b.size, "stopped_by": ""})
            self.message(f"resumed from {resume_from} at epoch {self.position.epoch}, batch "
                         f"{self.position.batch}")
        self.summary.seed = self.seed
        self.callbacks = [*self.runtime.keras_callbacks(),
                          EpochLR(self.global_batch, **cfg.schedule)]
        self.log.end("init_stop")

    def _open_data(self) -> DataSource:
        """This run's data root, staged to ``--staging`` first when asked (HPC 3.0: staging
        is part of the logged init); failures on any rank stop every rank."""
        cfg, b = self.cfg, self.backend
        source = run_agreed(b, lambda: open_source(cfg.data_dir, cfg.data_format, cfg.n_train,
                                                   cfg.n_valid, cfg.cube))
        if not cfg.staging_dir:
            return source
        self.log.start("staging_start")
        staged = run_agreed(b, lambda: stage_root(source, cfg.staging_dir, b))
        copied = int(b.allreduce_scalar(staged.copied if staged else 0, "sum"))
        nbytes = int(b.allreduce_scalar(staged.bytes_copied if staged else 0, "sum"))
        self.log.end("staging_stop", metadata={"staged_to": cfg.staging_dir,
                                               "files_copied": copied, "bytes_copied": nbytes})
        self.message(f"staged {copied} files ({nbytes / 1e9:.2f} GB) to {cfg.staging_dir}")
        return run_agreed(b, lambda: open_source(cfg.staging_dir, cfg.data_format, cfg.n_train,
                                                 cfg.n_valid, cfg.cube))

    # ---- the run --------------------------------------------------------------------------
    def fit(self) -> CosmoSummary:
        """Train until the target MAE, max_epochs or a stop signal; return the summary."""
        s = self.summary
        self.log.start("run_start")
        self.run_start = time.perf_counter() - s.run_time_s
        try:
            self.train_epochs()
        finally:
            s.run_time_s = time.perf_counter() - self.run_start
            s.settle_status()
            self.log.end("run_stop", metadata={"status": s.mlperf_status})
            self.log.close()
        if self.position.batch:  # stopped inside an epoch: its checkpoint is written now
            self.save()
        if self.is_root:
            s.write(self.out / "summary.json")
        self.message(s.line())
        return s

    def train_epochs(self) -> None:
        """The loop: train an epoch, validate, checkpoint; until target, max_epochs or stop."""
        cfg, s = self.cfg, self.summary
        while not s.stopped_by and self.position.epoch < cfg.max_epochs:
            epoch = self.position.epoch  # 0-based, as Keras and the LR schedule count
            self.log.start("epoch_start", metadata={"epoch_num": epoch + 1})
            if not self.train_epoch(epoch):
                s.stopped_by = f"signal {self.agreement.signal_name}"
                break
            self.log.end("epoch_stop", metadata={"epoch_num": epoch + 1})
            mae = self.validate_epoch(epoch)
            if s.converged and cfg.stop_at_target:
                s.stopped_by = "target"
            else:  # a signal during the epoch's last steps or its validation
                self.agreement.start()
                if self.agreement.agreed():
                    s.stopped_by = f"signal {self.agreement.signal_name}"
            s.stopped_by = s.stopped_by or ("max_epochs" if self.position.epoch >=
                                            cfg.max_epochs else "")
            self.save()
            self.message(f"epoch {epoch + 1}: train loss {s.train_loss[-1]:.4f}, train MAE "
                         f"{s.train_mae[-1]:.4f}, eval MAE {mae:.4f}, lr "
                         f"{s.learning_rate[-1]:.5g}, {s.train_samples_per_s[-1]:.1f} "
                         f"samples/s, {s.epoch_times_s[-1]:.1f} s")

    def train_epoch(self, epoch: int) -> bool:
        """Train the 0-based ``epoch`` from the batch the position says; False if stopped."""
        cfg, b = self.cfg, self.backend
        plan = epoch_plan(self.source.train_files, self.seed, epoch, cfg.local_batch_size,
                          b.rank, b.size)
        first = self.position.batch
        data = self.source.dataset(plan.files[first * cfg.local_batch_size:],
                                   cfg.local_batch_size, True)
        watch = StepWatch(self.agreement, cfg.stop_check_steps, epoch + 1, first)
        started = time.perf_counter()
        with tf.device(self.runtime.device):
            # Steps given: with a dataset of unknown length Keras would try one more step to
            # find its end, and that attempt advances the optimizer's step count.
            history = self.model.fit(data, initial_epoch=epoch, epochs=epoch + 1, verbose=0,
                                     steps_per_epoch=plan.steps - first,
                                     callbacks=[*self.callbacks, watch])
        seconds = float(self.progress.get("seconds", 0.0)) + time.perf_counter() - started
        self.position.batch = watch.batch
        if watch.stopped and watch.batch < plan.steps:
            self.progress = {"seconds": seconds}
            return False
        logs = {key: float(values[-1]) for key, values in history.history.items()}
        self.epoch_logs = {**logs, "seconds": seconds,
                           "samples_per_s": plan.steps * self.global_batch / max(seconds, 1e-9)}
        self.position = Position(epoch + 1, 0)
        self.progress = {"seconds": 0.0}
        return True

    def validate_epoch(self, epoch: int) -> float:
        """Validate on every rank's share, log eval_error, record the epoch; return the MAE."""
        cfg, s, logs = self.cfg, self.summary, self.epoch_logs
        self.log.start("eval_start", metadata={"epoch_num": epoch + 1})
        mae, loss = self.validate()
        mlperf.log_evaluation(self.log, epoch + 1, mae)
        s.steps = self.position.epoch * self.steps
        s.record_epoch(logs["seconds"], logs["samples_per_s"], logs.get("loss", float("nan")),
                       logs.get(facts.EVAL_METRIC.removeprefix("val_"), float("nan")),
                       logs.get("lr", lr_at(epoch, self.global_batch, **cfg.schedule)),
                       mae, loss)
        if mae <= cfg.target_mae and not s.converged:
            s.converged, s.epochs_to_target = True, epoch + 1
            s.time_to_target_s = time.perf_counter() - self.run_start
        return mae

    def validate(self) -> tuple[float, float]:
        """Validation MAE and loss over all ranks' files (sums, so unequal shares are exact)."""
        data = self.source.dataset(self.validation_files, self.cfg.local_batch_size, False)
        with tf.device(self.runtime.device), self.explained(self.validation_files):
            result = self.model.evaluate(data, verbose=0, return_dict=True)
        n = float(len(self.validation_files))
        metric = facts.EVAL_METRIC.removeprefix("val_")
        total = self.backend.allreduce_values(
            [result[metric] * n, result["loss"] * n, n], "sum")
        return total[0] / total[2], total[1] / total[2]

    # ---- components and helpers -----------------------------------------------------------
    def save(self) -> None:
        """Write a checkpoint of the run as it stands (collective)."""
        self.checkpointer.save(self.model, self.optimizer, self.position, self.seed,
                               self.progress, self.summary.as_dict(),
                               dataclasses.replace(self.cfg, seed=self.seed).to_dict())

    @contextlib.contextmanager
    def explained(self, files: list[str]) -> Iterator[None]:
        """Turn a failed input pipeline into one line naming the bad file."""
        try:
            yield
        except tf.errors.OpError as exc:
            from deepcam_hvd.cosmoflow.data.dataset import explain_error

            raise explain_error(exc, files, self.source.cube if self.source else None) \
                from None

    def message(self, text: str) -> None:
        """Print a line on rank 0."""
        if self.is_root:
            print(text, flush=True)

    def close(self) -> None:
        """Restore the signal handlers."""
        self.stop.uninstall()


def run_cosmoflow(cfg: CosmoConfig, runtime: TFRuntime, source: DataSource | None = None
                  ) -> CosmoSummary:
    """Set up and run a CosmoFlow training job on this rank (``source``: the data root's
    files; None: ``cfg.data_dir``, opened inside the logged init)."""
    trainer = CosmoTrainer(cfg, runtime, source)
    try:
        trainer.setup()
        return trainer.fit()
    finally:
        trainer.close()
