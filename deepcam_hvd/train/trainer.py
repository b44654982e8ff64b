"""The training run, top to bottom: set up, then epochs of train / validate / checkpoint.

Every rank runs every line; rank-0-only work (logs, progress, files) sits in objects that are
inactive elsewhere, so no collective is ever inside a rank-0 branch. Checkpoints
(``checkpointing.py``), validation (``evaluation.py``) and the MLPerf log (``mlperf_log.py``)
are components the loop calls; elastic training is the same loop with other ``hooks``.
About 330 lines on purpose: set-up and the loop read top to bottom in one file.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from deepcam_hvd.allocator import active_allocator
from deepcam_hvd.config import TrainConfig
from deepcam_hvd.data.cache import clear_page_cache
from deepcam_hvd.data.loader import Loaders, LoaderSettings, build_loaders
from deepcam_hvd.data.stage import stage_dataset
from deepcam_hvd.distributed.agreement import run_on_root
from deepcam_hvd.errors import ConfigError, DataError
from deepcam_hvd.files import prepare_output_dir
from deepcam_hvd.model import build_model, convert_batchnorm
from deepcam_hvd.runtime import Runtime
from deepcam_hvd.train import mlperf_log as mlp
from deepcam_hvd.train.checkpointing import Checkpointer, checkpoint_seed
from deepcam_hvd.train.device_feed import DeviceFeed
from deepcam_hvd.train.evaluation import Validator
from deepcam_hvd.train.gpu_options import resolve_gpu_options
from deepcam_hvd.train.hooks import RunHooks
from deepcam_hvd.train.loss import WeightedCrossEntropy
from deepcam_hvd.train.metric import NUM_CLASSES
from deepcam_hvd.train.optim import build_optimizer
from deepcam_hvd.train.precision import grad_scaler
from deepcam_hvd.train.progress import EpochProgress, Position
from deepcam_hvd.train.reporting import Reporter, RunSummary
from deepcam_hvd.train.schedule import build_scheduler
from deepcam_hvd.train.seed import run_seed
from deepcam_hvd.train.signals import StopAgreement, StopRequest
from deepcam_hvd.train.step import LossTally, optimizer_step, train_local_batch
from deepcam_hvd.workloads.deepcam import OUTPUT_STRIDE, samples_per_update


class Trainer:
    """One training run of DeepCAM on this rank."""

    def __init__(self, cfg: TrainConfig, runtime: Runtime, hooks: RunHooks | None = None) -> None:
        self.cfg = cfg
        self.backend = b = runtime.backend
        self.device = runtime.device
        self.node_cores = runtime.threads.node_cores
        self.hooks = hooks or RunHooks()
        self.out = Path(cfg.output_dir)
        self.is_root = b.is_root
        self.position = Position()
        self.progress = EpochProgress()
        # Caught from the start: a stop asked for during set-up is honoured at the first step.
        self.stop = StopRequest().install()
        self.stop_agreement = StopAgreement(self.stop, b)
        self.checkpointer = Checkpointer(cfg, b, self.out)
        self.summary = RunSummary(
            ranks=b.size, nodes=max(1, b.size // b.local_size),
            local_batch_size=cfg.local_batch_size,
            gradient_accumulation_frequency=cfg.gradient_accumulation_frequency,
            global_batch_size=self.global_batch_size, target_iou=cfg.target_iou,
            allocator=active_allocator())
        self.reporter = Reporter(False, self.out, 0)  # the real one starts with the run
        self.log = mlp.MLPerfLog(None, False)
        self.loaders: Loaders | None = None
        self.run_start = 0.0
        self._epoch_logged = False

    @property
    def global_batch_size(self) -> int:
        """Samples per optimizer step over all ranks."""
        return samples_per_update(self.cfg.local_batch_size, self.backend.size,
                                  self.cfg.gradient_accumulation_frequency)

    # ---- set-up: everything inside MLPerf's logged init ------------------------------------
    def setup(self) -> None:
        """Seed, cache clear, GPU options, staging, data, model, optimizer, schedule, resume;
        log init."""
        b = self.backend
        self.gpu = resolve_gpu_options(self.cfg, self.device)  # fails before any file is made
        run_on_root(b, lambda: prepare_output_dir(self.out), str(self.out))
        resume_from, state = self.checkpointer.find()
        seed, origin = run_seed(self.cfg.seed, checkpoint_seed(state), b)
        self.cfg = cfg = dataclasses.replace(self.cfg, seed=seed)
        self.checkpointer.cfg = cfg
        self.message(f"seed {seed} ({origin})")
        self.log = mlp.MLPerfLog(self.out / "mlperf.log", self.is_root)
        self.log.start("init_start")
        if cfg.clear_cache:  # MLPerf: caches are flushed before each run; logged true only then
            evicted = clear_page_cache(cfg.data_dir_prefix, b)
            self.message(f"cache clear: {evicted} data files evicted from the page cache")
        self.log.event("cache_clear", cfg.clear_cache)
        self.gpu.apply(self.device)
        if self.device.type == "cuda":
            self.message(f"gpu options: {self.gpu.describe(cfg)}")
        self.feed = DeviceFeed(self.device, self.gpu.device_prefetch)
        torch.manual_seed(seed)
        self.data_root = self._stage() if cfg.stage_dir else cfg.data_dir_prefix
        self.loaders = loaders = self.build_loaders()
        height, width = loaders.train.reader.shape[:2]
        if height % OUTPUT_STRIDE or width % OUTPUT_STRIDE:
            raise DataError(f"{self.data_root}: samples are {height}x{width}; the network "
                            f"needs height and width divisible by {OUTPUT_STRIDE}")

        model = build_model(cfg.model, len(cfg.channels), NUM_CLASSES).to(self.device)
        if cfg.batchnorm_group_size > 1:
            model = convert_batchnorm(model, b, b.make_groups(cfg.batchnorm_group_size))
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.forward = torch.compile(model) if cfg.compile else model
        self.criterion = WeightedCrossEntropy().to(self.device)
        self.validate = Validator(loaders.validation, b, self.criterion, self.device,
                                  cfg.precision, cfg.channels_last, self.feed)
        self.optimizer = b.distributed_optimizer(
            build_optimizer(cfg, model, self.gpu.lamb_foreach), model,
            cfg.gradient_accumulation_frequency,
            cfg.gradient_compression)
        self.scheduler = build_scheduler(self.optimizer, cfg.lr_schedule, cfg.lr_warmup_steps,
                                         cfg.lr_warmup_factor, cfg.start_lr)
        self.scaler = grad_scaler(cfg.precision, self.device)
        rank_buffers = None
        if state is not None:
            restored = self.checkpointer.restore(state, model, self.optimizer, self.scheduler)
            self.position, self.progress = restored.position, restored.progress
            self.summary = RunSummary(**{**self.summary.as_dict(), **restored.summary,
                                         "ranks": b.size})
            rank_buffers = restored.rank_buffers
            self.message(f"resumed from {resume_from} at epoch {self.position.epoch}, "
                          f"step {self.position.step}")
        b.broadcast_state(model, self.optimizer, root=0)
        if rank_buffers is not None:  # each rank resumes its own batch-norm statistics
            with torch.no_grad():
                for name, buf in model.named_buffers():
                    buf.copy_(rank_buffers[name])

        division = mlp.division_for(cfg, loaders.train_samples, loaders.validation_samples,
                                    b.size)
        accelerators = b.local_size if self.device.type == "cuda" else 0
        platform = cfg.platform or mlp.describe_platform(self.node_cores, self.device.type)
        mlp.log_submission(self.log, cfg, division, platform, self.summary.nodes, accelerators)
        mlp.log_hyperparameters(self.log, cfg, b.size)
        self.log.event("train_samples", loaders.train_samples)
        self.log.event("eval_samples", loaders.validation_samples)
        self.log.end("init_stop")
        self.hooks.attach(self)

    def _stage(self) -> str:
        """Copy what this node's ranks read to --stage_dir (HPC 3.0: inside the logged init)."""
        cfg = self.cfg
        self.log.start("staging_start")
        staged = stage_dataset(cfg.data_dir_prefix, cfg.stage_dir, self.backend, seed=cfg.seed,
                               full=cfg.shuffle == "global")
        self.log.end("staging_stop", metadata={
            "staged_to": cfg.stage_dir, "mode": staged.mode,
            "files_copied": staged.files_copied, "bytes_copied": staged.bytes_copied})
        self.message(f"staged to {cfg.stage_dir} ({staged.mode}): {staged.files_copied} "
                      f"files, {staged.bytes_copied / 1e9:.2f} GB in {staged.seconds:.1f} s")
        return cfg.stage_dir

    def build_loaders(self) -> Loaders:
        """This rank's training and validation loaders (a collective: shards follow rank/size)."""
        cfg = self.cfg
        return build_loaders(self.data_root, self.backend, LoaderSettings(
            local_batch_size=cfg.local_batch_size, readers=cfg.max_inter_threads,
            channels=tuple(cfg.channels), seed=cfg.seed, shuffle=cfg.shuffle,
            validation_batch_size=cfg.local_batch_size_validation,
            skip_bad_files=cfg.skip_bad_files, pin_memory=self.gpu.pin_memory))

    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch on this world (equal on every rank)."""
        accum = self.cfg.gradient_accumulation_frequency
        assert self.loaders is not None
        steps = len(self.loaders.train) // accum
        if steps == 0:
            raise ConfigError(
                f"--gradient_accumulation_frequency {accum} needs more batches per epoch than "
                f"this rank's {len(self.loaders.train)} over {self.backend.size} ranks")
        return steps

    # ---- the run --------------------------------------------------------------------------
    def fit(self) -> RunSummary:
        """Train until the target IoU, max_epochs or a stop signal; return the summary."""
        cfg, s = self.cfg, self.summary
        remaining = self.steps_per_epoch() * (cfg.max_epochs - self.position.epoch) - \
            self.progress.steps_done
        self.reporter = Reporter(self.is_root, self.out, remaining)
        self.log.start("run_start")
        self.run_start = time.perf_counter() - s.run_time_s
        try:
            self.hooks.run(self.train_epochs)
        finally:
            self.summary.run_time_s = time.perf_counter() - self.run_start
            self.summary.settle_status()
            self.log.end("run_stop", metadata={"status": self.summary.mlperf_status})
            self.log.close()
            self.reporter.close()
        self.save()
        self.summary.finish(estimate_16_epochs=cfg.stop_at_target)
        if self.is_root:
            self.summary.write(self.out / "summary.json")
        self.message(self.summary.line())
        return self.summary

    def train_epochs(self) -> None:
        """The loop: train an epoch, validate, checkpoint; until target, max_epochs or stop."""
        cfg = self.cfg
        self.hooks.before_epochs(self)
        while not self.summary.stopped_by and self.position.epoch < cfg.max_epochs:
            epoch = self.position.epoch + 1  # MLPerf counts epochs from 1
            if self.progress.steps_done == 0 or not self._epoch_logged:
                self.log.start("epoch_start", metadata={"epoch_num": epoch})
                self._epoch_logged = True
            if not self.train_epoch(epoch, self.steps_per_epoch()):
                self.summary.stopped_by = f"signal {self.stop_agreement.signal_name}"
                break
            iou = self.end_epoch(epoch)
            if iou >= cfg.target_iou and cfg.stop_at_target:
                self.summary.stopped_by = "target"
            elif cfg.save_frequency and epoch % cfg.save_frequency == 0:
                self.save()
            self.hooks.after_epoch(self)
        if not self.summary.stopped_by:
            self.summary.stopped_by = "max_epochs"

    def train_epoch(self, epoch: int, steps: int) -> bool:
        """Train ``epoch`` from where ``self.progress`` stands; False if stopped by a signal."""
        cfg, b, p = self.cfg, self.backend, self.progress
        accum = cfg.gradient_accumulation_frequency
        assert self.loaders is not None
        self.model.train()
        window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
        losses = LossTally(self.device)
        batches = iter(self.feed(self.loaders.train.iter_epoch(epoch - 1, p.steps_done * accum)))
        while p.steps_done < steps:
            started = time.perf_counter()
            self.stop_agreement.start()  # travels with this step's gradient averaging
            logging_step = cfg.logging_frequency > 0 and \
                (p.steps_done + 1) % cfg.logging_frequency == 0
            for micro in range(accum):
                fetch = time.perf_counter()
                batch = next(batches)
                p.wait_s += time.perf_counter() - fetch
                last = micro == accum - 1 and (logging_step or p.steps_done == steps - 1)
                loss, iou = train_local_batch(
                    self.forward, self.criterion, batch.data, batch.label, self.device,
                    cfg.precision, cfg.channels_last, accum, self.scaler, with_iou=last)
                losses.add(loss)
                if iou is not None:  # the last batch's figures, as the reference logs them
                    p.last_loss, p.last_iou = float(loss), iou
            p.comm_wait_s += optimizer_step(self.optimizer, self.scaler)
            p.last_lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            self.position.step += 1
            p.steps_done += 1
            p.seconds += time.perf_counter() - started
            stop = self.stop_agreement.agreed()  # the same answer, at the same step, everywhere
            if losses.every_step or logging_step or stop or p.steps_done == steps:
                total, count = losses.read(self.position.step)
                p.loss_sum, p.loss_count = p.loss_sum + total, p.loss_count + count
                window_loss, window_count = window_loss + total, window_count + count
            if logging_step:  # every rank reduces; only rank 0 prints and writes
                window_mean, last_loss, last_iou = b.allreduce(torch.tensor(
                    [window_loss / window_count, p.last_loss, p.last_iou],
                    dtype=torch.float64), "mean").tolist()
                rate = window_count * cfg.local_batch_size * b.size / \
                    (time.perf_counter() - window_start)
                self.reporter.scalars(self.position.step, {
                    "train/loss": window_mean, "train/samples_per_s": rate,
                    "train/lr": p.last_lr})
                self.log.train_figures(epoch, self.step_num, p.last_lr, last_iou, last_loss)
                window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
            self.reporter.advance(1, self.position.step, p.loss_sum / max(1, p.loss_count),
                                  p.steps_done * accum * cfg.local_batch_size * b.size / p.seconds,
                                  epoch)
            if stop:
                return False
            self.hooks.after_step(self, steps)
        return True

    def end_epoch(self, epoch: int) -> float:
        """Close the epoch's totals, validate, log and record it; return the validation IoU."""
        assert self.loaders is not None
        figures = self.progress.close(self.backend, self.global_batch_size)
        self.summary.skipped_files = int(self.backend.allreduce_scalar(
            len(self.loaders.train.reader.skipped), "sum"))
        self.progress = EpochProgress()
        self.summary.epoch_times_s.append(figures.seconds)
        f = figures
        self.log.train_figures(epoch, self.step_num, f.last_lr, f.last_iou, f.last_loss)
        self.log.end("epoch_stop", metadata={"epoch_num": epoch, "step_num": self.step_num})
        self.position.epoch = epoch

        self.log.start("eval_start", metadata={"epoch_num": epoch})
        iou, eval_loss = self.validate(self.model, self.forward)
        s, target = self.summary, self.cfg.target_iou
        first = iou >= target and not s.converged
        self.log.evaluation(epoch, self.step_num, iou, eval_loss, target if first else None)
        self.log.end("eval_stop", metadata={"epoch_num": epoch})
        s.steps = self.position.step
        s.record_epoch(f.loss, f.samples_per_s, f.data_wait_fraction, f.comm_wait_fraction,
                       iou, eval_loss)
        if first:
            s.converged, s.epochs_to_target = True, epoch
            s.time_to_target_s = time.perf_counter() - self.run_start
        self.reporter.epoch(self.position.step, epoch, f.loss, f.samples_per_s,
                            f.data_wait_fraction, f.comm_wait_fraction, iou, eval_loss)
        return iou

    @property
    def step_num(self) -> int:
        """The reference's step count: local batches, not optimizer updates."""
        return self.position.step * self.cfg.gradient_accumulation_frequency

    # ---- components and helpers -----------------------------------------------------------
    def save(self) -> None:
        """Write a checkpoint of the run as it stands (collective)."""
        self.checkpointer.save(self.model, self.optimizer, self.scheduler, self.position,
                               self.progress, self.summary.as_dict())

    def message(self, text: str) -> None:
        """Print a line on rank 0 (through the progress bar while it runs)."""
        if self.is_root:
            if self.reporter.active:
                self.reporter.message(text)
            else:
                print(text, flush=True)

    def close(self) -> None:
        """Stop loader workers and restore the signal handlers."""
        self.stop.uninstall()
        if self.loaders is not None:
            self.loaders.close()


def run_training(cfg: TrainConfig, runtime: Runtime, hooks: RunHooks | None = None
                 ) -> RunSummary:
    """Set up and run a training job on this rank."""
    trainer = Trainer(cfg, runtime, hooks)
    try:
        trainer.setup()
        return trainer.fit()
    finally:
        trainer.close()
