"""The training run, top to bottom: set up, then epochs of train / validate / checkpoint.

Every rank runs every line of ``fit``; rank-0-only work (logs, progress, files) sits in
objects that are inactive elsewhere, so no collective is ever inside a rank-0 branch.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from deepcam_hvd.allocator import active_allocator
from deepcam_hvd.config import TrainConfig
from deepcam_hvd.data.cache import clear_page_cache
from deepcam_hvd.data.loader import Loaders, LoaderSettings, build_loaders
from deepcam_hvd.data.stage import stage_dataset
from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.errors import ConfigError, DataError
from deepcam_hvd.model import build_model, convert_batchnorm
from deepcam_hvd.runtime import Runtime
from deepcam_hvd.train import mlperf_log as mlp
from deepcam_hvd.train.checkpoint import (
    check_compatible,
    checkpoint_path,
    latest_valid_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from deepcam_hvd.train.loss import WeightedCrossEntropy
from deepcam_hvd.train.metric import batch_iou, per_sample_iou
from deepcam_hvd.train.optim import build_optimizer
from deepcam_hvd.train.precision import autocast, grad_scaler
from deepcam_hvd.train.reporting import Reporter, RunSummary
from deepcam_hvd.train.schedule import build_scheduler
from deepcam_hvd.train.seed import run_seed
from deepcam_hvd.train.signals import StopRequest
from deepcam_hvd.train.step import backward, forward_with_logits, optimizer_step

NUM_CLASSES = 3


@dataclass
class Position:
    """Where training stands: completed optimizer steps and epochs."""

    step: int = 0
    epoch: int = 0  # epochs completed


@dataclass
class EpochProgress:
    """This rank's running totals inside the current epoch (saved with a mid-epoch stop)."""

    steps_done: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    wait_s: float = 0.0
    comm_wait_s: float = 0.0  # waiting for gradient averaging that backward did not hide
    seconds: float = 0.0  # time spent in training steps, data waits included
    # the epoch's last local batch, as the reference logs train_loss/train_accuracy
    last_loss: float = 0.0
    last_iou: float = 0.0
    last_lr: float = 0.0  # learning rate of the epoch's last optimizer step

    def close(self, backend: Backend, global_batch: int) -> EpochFigures:
        """The epoch's figures, averaged over ranks (collective: every rank calls it)."""
        busy = max(1e-9, self.seconds)
        mine = torch.tensor([self.loss_sum / max(1, self.loss_count), self.seconds,
                             self.wait_s / busy, self.comm_wait_s / busy, self.last_loss,
                             self.last_iou], dtype=torch.float64)
        # one collective for all the means (each Horovod operation costs a negotiation cycle)
        loss, seconds, wait, comm, last_loss, last_iou = backend.allreduce(mine, "mean").tolist()
        return EpochFigures(loss, self.steps_done * global_batch / max(1e-9, seconds), wait,
                            comm, seconds, last_loss, last_iou, self.last_lr)


@dataclass(frozen=True)
class EpochFigures:
    """One epoch's training figures over all ranks."""

    loss: float
    samples_per_s: float
    data_wait_fraction: float
    comm_wait_fraction: float
    seconds: float
    last_loss: float  # the last local batch's loss, mean over ranks (the reference's train_loss)
    last_iou: float  # its IoU (the reference's train_accuracy)
    last_lr: float


def model_identity(cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into this run's model."""
    return {"model": cfg.model, "in_channels": len(cfg.channels), "num_classes": NUM_CLASSES,
            "channels": list(cfg.channels)}


class Trainer:
    """One training run of DeepCAM on this rank."""

    def __init__(self, cfg: TrainConfig, runtime: Runtime) -> None:
        self.cfg = cfg
        self.rt = runtime
        self.backend = runtime.backend
        self.device = runtime.device
        self.out = Path(cfg.output_dir)
        self.is_root = self.backend.is_root
        self.position = Position()
        self.progress = EpochProgress()
        # Caught from the start: a stop asked for during set-up is honoured at the first step.
        self.stop = StopRequest().install()
        self.summary = RunSummary(
            ranks=self.backend.size,
            nodes=max(1, self.backend.size // self.backend.local_size),
            local_batch_size=cfg.local_batch_size,
            gradient_accumulation_frequency=cfg.gradient_accumulation_frequency,
            global_batch_size=self.global_batch_size,
            target_iou=cfg.target_iou,
            allocator=active_allocator(),
        )

    @property
    def global_batch_size(self) -> int:
        """Samples per optimizer step over all ranks."""
        return (self.cfg.local_batch_size * self.cfg.gradient_accumulation_frequency
                * self.backend.size)

    # ---- set-up ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Build data, model, optimizer and schedule; resume if asked; sync all ranks."""
        b = self.backend
        self._on_root_then_everywhere(self._prepare_output_dir)
        resume_from, state = self._find_checkpoint()
        seed, origin = run_seed(self.cfg.seed, _checkpoint_seed(state), b)
        self.cfg = cfg = dataclasses.replace(self.cfg, seed=seed)
        self._message(f"seed {seed} ({origin})")
        self.log = mlp.MLPerfLog(self.out / "mlperf.log", self.is_root)
        self.log.start("init_start")
        # MLPerf: caches are flushed before each run; logged true only once it happened
        if cfg.clear_cache:
            evicted = clear_page_cache(cfg.data_dir_prefix, b)
            self._message(f"cache clear: {evicted} data files evicted from the page cache")
        self.log.event("cache_clear", cfg.clear_cache)
        torch.manual_seed(seed)

        self.data_root = cfg.data_dir_prefix
        if cfg.stage_dir:  # staging belongs inside the logged init (HPC 3.0 data state rule)
            self.log.start("staging_start")
            staged = stage_dataset(cfg.data_dir_prefix, cfg.stage_dir, b, seed=seed,
                                   full=cfg.shuffle == "global")
            self.log.end("staging_stop", metadata={
                "staged_to": cfg.stage_dir, "mode": staged.mode,
                "files_copied": staged.files_copied, "bytes_copied": staged.bytes_copied})
            self._message(f"staged to {cfg.stage_dir} ({staged.mode}): {staged.files_copied} "
                          f"files, {staged.bytes_copied / 1e9:.2f} GB in "
                          f"{staged.seconds:.1f} s")
            self.data_root = cfg.stage_dir
        self.loaders: Loaders = self._build_loaders()

        model = build_model(cfg.model, len(cfg.channels), NUM_CLASSES).to(self.device)
        if cfg.batchnorm_group_size > 1:
            model = convert_batchnorm(model, b, b.make_groups(cfg.batchnorm_group_size))
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.forward = torch.compile(model) if cfg.compile else model
        self.criterion = WeightedCrossEntropy().to(self.device)
        self.optimizer = b.distributed_optimizer(
            build_optimizer(cfg, model), model, cfg.gradient_accumulation_frequency,
            cfg.gradient_compression)
        self.scheduler = build_scheduler(self.optimizer, cfg.lr_schedule, cfg.lr_warmup_steps,
                                         cfg.lr_warmup_factor, cfg.start_lr)
        self.scaler = grad_scaler(cfg.precision, self.device)
        rank_buffers = self._resume(resume_from, state)
        b.broadcast_state(model, self.optimizer, root=0)
        if rank_buffers is not None:
            with torch.no_grad():
                for name, buf in model.named_buffers():
                    buf.copy_(rank_buffers[name])

        self.division = mlp.division_for(cfg, self.loaders.train_samples,
                                         self.loaders.validation_samples, b.size)
        accelerators = self.backend.local_size if self.device.type == "cuda" else 0
        mlp.log_submission(self.log, cfg, self.division, cfg.platform or _platform(self.rt),
                           self.summary.nodes, accelerators)
        mlp.log_hyperparameters(self.log, cfg, b.size)
        self.log.event("train_samples", self.loaders.train_samples)
        self.log.event("eval_samples", self.loaders.validation_samples)
        self.log.end("init_stop")

    def _build_loaders(self) -> Loaders:
        """This rank's training and validation loaders (a collective: shards follow rank/size)."""
        cfg = self.cfg
        return build_loaders(self.data_root, self.backend, LoaderSettings(
            local_batch_size=cfg.local_batch_size, readers=cfg.max_inter_threads,
            channels=tuple(cfg.channels), seed=cfg.seed, shuffle=cfg.shuffle,
            validation_batch_size=cfg.local_batch_size_validation,
            skip_bad_files=cfg.skip_bad_files))

    def _steps_per_epoch(self) -> int:
        """Optimizer steps per epoch on this world (equal on every rank)."""
        accum = self.cfg.gradient_accumulation_frequency
        steps = len(self.loaders.train) // accum
        if steps == 0:
            raise ConfigError(
                f"--gradient_accumulation_frequency {accum} needs more batches per epoch than "
                f"this rank's {len(self.loaders.train)} over {self.backend.size} ranks")
        return steps

    def _find_checkpoint(self) -> tuple[Path | None, dict[str, Any] | None]:
        """The checkpoint named by --checkpoint ('auto': newest valid in output_dir), loaded.

        A run that finished (target reached or max_epochs done) is never continued: a new
        run needs a fresh output directory and a fresh seed.
        """
        cfg = self.cfg
        if not cfg.checkpoint:
            return None, None
        if cfg.checkpoint == "auto":
            path = latest_valid_checkpoint(self.out / "checkpoints", cfg.model_prefix)
            if path is None:
                return None, None
        else:
            path = Path(cfg.checkpoint)
        state = load_checkpoint(path)
        check_compatible(state.get("identity", {}), model_identity(cfg), path)
        finished = state.get("summary", {}).get("stopped_by", "")
        if finished == "target" or (finished == "max_epochs"
                                    and int(state.get("epoch", 0)) >= cfg.max_epochs):
            raise ConfigError(f"{path}: that run already finished ({finished.replace('_', ' ')} "
                              "reached); a finished run is never continued into a new log: "
                              "start a new run in a fresh --output_dir without --resume")
        return path, state

    def _resume(self, path: Path | None,
                state: dict[str, Any] | None) -> dict[str, torch.Tensor] | None:
        """Restore model, optimizer, schedule and position from a loaded checkpoint.

        Returns this rank's own batch-norm buffers when the world size is unchanged.
        """
        if path is None or state is None:
            return None
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.position = Position(step=int(state["step"]), epoch=int(state["epoch"]))
        saved = state.get("progress", [])
        same_world = len(saved) == self.backend.size
        self.progress = EpochProgress(**(saved[self.backend.rank] if same_world else
                                         saved[0] if saved else {}))
        self.summary = RunSummary(**{**self.summary.as_dict(), **state.get("summary", {}),
                                     "ranks": self.backend.size})
        self._message(f"resumed from {path} at epoch {self.position.epoch}, "
                      f"step {self.position.step}")
        buffers = state.get("rank_buffers", [])
        return buffers[self.backend.rank] if same_world and buffers else None

    # ---- the run --------------------------------------------------------------------------
    def fit(self) -> RunSummary:
        """Train until the target IoU, max_epochs or a stop signal; return the summary."""
        cfg = self.cfg
        steps_per_epoch = self._steps_per_epoch()
        remaining = steps_per_epoch * (cfg.max_epochs - self.position.epoch) - \
            self.progress.steps_done
        self.reporter = Reporter(self.is_root, self.out, remaining)
        self.log.start("run_start")
        run_start = time.perf_counter() - self.summary.run_time_s
        status = "aborted"
        try:
            while self.position.epoch < cfg.max_epochs:
                epoch = self.position.epoch + 1  # MLPerf counts epochs from 1
                self.log.start("epoch_start", metadata={"epoch_num": epoch})
                if not self.train_epoch(epoch, steps_per_epoch):
                    self.summary.stopped_by = f"signal {self.stop.signal_name}"
                    break
                iou = self.end_epoch(epoch, run_start)
                if iou >= cfg.target_iou:
                    status = "success"
                    if cfg.stop_at_target:
                        self.summary.stopped_by = "target"
                        break
                if cfg.save_frequency and epoch % cfg.save_frequency == 0:
                    self.save()
            else:
                self.summary.stopped_by = "max_epochs"
        finally:
            self.summary.run_time_s = time.perf_counter() - run_start
            if self.summary.converged:  # also when reached before a resume
                status = "success"
            self.summary.status = status
            self.log.end("run_stop", metadata={"status": status})
            self.log.close()
            self.reporter.close()
        self.save()
        self.summary.finish(estimate_16_epochs=cfg.stop_at_target)
        if self.is_root:
            self.summary.write(self.out / "summary.json")
        self._message(self.summary.line())
        return self.summary

    def train_epoch(self, epoch: int, steps: int) -> bool:
        """Train ``epoch`` from where ``self.progress`` stands; False if stopped by a signal."""
        cfg, b = self.cfg, self.backend
        accum = cfg.gradient_accumulation_frequency
        p = self.progress
        self.model.train()
        window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
        batches = iter(self.loaders.train.iter_epoch(epoch - 1, p.steps_done * accum))
        while p.steps_done < steps:
            started = time.perf_counter()
            logging_step = cfg.logging_frequency > 0 and \
                (p.steps_done + 1) % cfg.logging_frequency == 0
            for micro in range(accum):
                fetch = time.perf_counter()
                batch = next(batches)
                p.wait_s += time.perf_counter() - fetch
                last = micro == accum - 1 and (logging_step or p.steps_done == steps - 1)
                loss = self._forward_backward(batch.data, batch.label, accum, last)
                p.loss_sum += loss
                p.loss_count += 1
                window_loss += loss
                window_count += 1
            p.comm_wait_s += optimizer_step(self.optimizer, self.scaler)
            p.last_lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            self.position.step += 1
            p.steps_done += 1
            p.seconds += time.perf_counter() - started
            if logging_step:
                # every rank reduces; only rank 0 prints and writes
                window_mean, last_loss, last_iou = b.allreduce(torch.tensor(
                    [window_loss / window_count, p.last_loss, p.last_iou],
                    dtype=torch.float64), "mean").tolist()
                rate = window_count * cfg.local_batch_size * b.size / \
                    (time.perf_counter() - window_start)
                self.reporter.scalars(self.position.step, {
                    "train/loss": window_mean, "train/samples_per_s": rate,
                    "train/lr": p.last_lr})
                self._log_train_figures(epoch, p.last_lr, last_iou, last_loss)
                window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
            self.reporter.advance(1, self.position.step, p.loss_sum / p.loss_count,
                                  p.loss_count * cfg.local_batch_size * b.size / p.seconds,
                                  epoch)
            # Ranks may see a signal at different steps: agree before acting on it.
            if b.allreduce_scalar(float(self.stop.requested), "sum") > 0:
                return False
            self._after_step(steps)
        return True

    def _after_step(self, steps: int) -> None:
        """Hook run on every rank after each optimizer step (the elastic trainer commits)."""

    def end_epoch(self, epoch: int, run_start: float) -> float:
        """Close the epoch's totals, validate, log and record it; return the validation IoU."""
        figures = self.progress.close(self.backend, self.global_batch_size)
        self.summary.skipped_files = int(self.backend.allreduce_scalar(
            len(self.loaders.train.reader.skipped), "sum"))
        self.progress = EpochProgress()
        self.summary.epoch_times_s.append(figures.seconds)
        self._log_train_figures(epoch, figures.last_lr, figures.last_iou, figures.last_loss)
        step_num = self.position.step * self.cfg.gradient_accumulation_frequency
        self.log.end("epoch_stop", metadata={"epoch_num": epoch, "step_num": step_num})
        self.position.epoch = epoch

        self.log.start("eval_start", metadata={"epoch_num": epoch})
        iou, eval_loss = self.validate()
        where = {"epoch_num": epoch, "step_num": step_num}
        self.log.event("eval_accuracy", iou, metadata=where)
        self.log.event("eval_loss", eval_loss, metadata=where)
        if iou >= self.cfg.target_iou and not self.summary.converged:
            self.log.event("target_accuracy_reached", self.cfg.target_iou, metadata=where)
        self.log.end("eval_stop", metadata={"epoch_num": epoch})
        self._record_epoch(epoch, figures, iou, eval_loss,
                           time.perf_counter() - run_start)
        return iou

    def _forward_backward(self, data: torch.Tensor, label: torch.Tensor, accum: int,
                          keep_figures: bool = False) -> float:
        """Forward and backward of one local batch; returns its (undivided) loss.

        With ``keep_figures`` the batch's loss and IoU are kept as the "last batch" figures
        the reference logs (``train_loss``, ``train_accuracy``).
        """
        cfg = self.cfg
        loss, logits = forward_with_logits(self.forward, self.criterion, data, label,
                                           self.device, cfg.precision, cfg.channels_last)
        if not torch.isfinite(loss):
            raise DataError(f"training loss became {loss.item()} at step {self.position.step}"
                            " (diverged, or NaN/Inf in the input data)")
        backward(loss, accum, self.scaler)
        value = float(loss.detach())
        if keep_figures:
            self.progress.last_loss = value
            self.progress.last_iou = float(batch_iou(logits.detach(),
                                                     label.to(logits.device)))
        return value

    def _log_train_figures(self, epoch: int, lr: float, iou: float, loss: float) -> None:
        """The reference's training keys, at its step count (local batches, not updates)."""
        where = {"epoch_num": epoch,
                 "step_num": self.position.step * self.cfg.gradient_accumulation_frequency}
        self.log.event("learning_rate", lr, metadata=where)
        self.log.event("train_accuracy", iou, metadata=where)
        self.log.event("train_loss", loss, metadata=where)

    @torch.no_grad()
    def validate(self) -> tuple[float, float]:
        """IoU and loss over the whole validation set (every file once over all ranks)."""
        self.backend.average_buffers(self.model)  # batch-norm statistics agree on every rank
        self.model.eval()
        iou_sum, loss_sum, count = 0.0, 0.0, 0
        for batch in self.loaders.validation.iter_epoch(0):
            data = batch.data.to(self.device)
            label = batch.label.to(self.device)
            if self.cfg.channels_last:
                data = data.contiguous(memory_format=torch.channels_last)
            with autocast(self.cfg.precision, self.device):
                logits = self.forward(data)
            loss_sum += float(self.criterion(logits, label)) * label.shape[0]
            iou_sum += float(per_sample_iou(logits.argmax(dim=1), label).sum())
            count += label.shape[0]
        totals = self.backend.allreduce(
            torch.tensor([iou_sum, loss_sum, float(count)], dtype=torch.float64), "sum")
        iou_total, loss_total, n = totals.tolist()
        self.model.train()
        return iou_total / n, loss_total / n

    def _record_epoch(self, epoch: int, figures: EpochFigures, iou: float, eval_loss: float,
                      elapsed: float) -> None:
        s = self.summary
        s.steps = self.position.step
        loss, rate, wait = figures.loss, figures.samples_per_s, figures.data_wait_fraction
        s.train_loss.append(loss)
        s.train_samples_per_s.append(rate)
        s.data_wait_fraction.append(wait)
        s.comm_wait_fraction.append(figures.comm_wait_fraction)
        s.eval_iou.append(iou)
        s.eval_loss.append(eval_loss)
        if iou >= self.cfg.target_iou and not s.converged:
            s.converged, s.epochs_to_target, s.time_to_target_s = True, epoch, elapsed
        self.reporter.scalars(self.position.step, {
            "eval/iou": iou, "eval/loss": eval_loss, "train/epoch_loss": loss,
            "train/epoch_samples_per_s": rate, "train/data_wait_fraction": wait,
            "train/comm_wait_fraction": figures.comm_wait_fraction})
        self._message(f"epoch {epoch}: train loss {loss:.4f}, eval loss {eval_loss:.4f}, "
                      f"eval IoU {iou:.4f}, {rate:.2f} samples/s, data wait {100 * wait:.1f}%, "
                      f"allreduce wait {100 * figures.comm_wait_fraction:.1f}%")

    def _on_root_then_everywhere(self, action: Any) -> None:
        """Run ``action`` on rank 0 and re-raise its error on every rank, so none waits alone."""
        error = None
        if self.is_root:
            try:
                action()
            except (OSError, DataError, ConfigError) as exc:
                error = str(exc) if not isinstance(exc, OSError) else \
                    f"{getattr(exc, 'filename', '') or self.out}: {exc.strerror or exc}"
        error = self.backend.broadcast_object(error, root=0)
        if error is not None:
            raise DataError(error)

    def _prepare_output_dir(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        probe = self.out / f".write-test-{self.backend.size}"
        probe.write_text("ok")
        probe.unlink()

    def save(self) -> None:
        """Rank 0 writes a checkpoint; a failure there (disk full) stops every rank cleanly."""
        # Mid-epoch totals and batch-norm running statistics differ per rank until the next
        # validation averages them: keep every rank's, so each resumes exactly its own.
        progress = self.backend.allgather_object(asdict(self.progress))
        buffers = self.backend.allgather_object(
            {name: buf.detach().cpu() for name, buf in self.model.named_buffers()})
        self._on_root_then_everywhere(lambda: self._write_checkpoint(progress, buffers))

    def _write_checkpoint(self, progress: list[dict[str, Any]],
                          buffers: list[dict[str, torch.Tensor]]) -> None:
        state = {
            "identity": model_identity(self.cfg),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.position.step,
            "epoch": self.position.epoch,
            "progress": progress,
            "rank_buffers": buffers,
            "config": _plain(self.cfg.to_dict()),
            "summary": _plain(self.summary.as_dict()),
            "world_size": self.backend.size,
        }
        save_checkpoint(state, checkpoint_path(self.out / "checkpoints",
                                               self.cfg.model_prefix, self.position.step),
                        keep=self.cfg.keep_checkpoints)


    def _message(self, text: str) -> None:
        if self.is_root:
            reporter = getattr(self, "reporter", None)
            if reporter is not None and reporter.active:
                reporter.message(text)
            else:
                print(text, flush=True)

    def close(self) -> None:
        """Stop loader workers and restore the signal handlers."""
        self.stop.uninstall()
        loaders = getattr(self, "loaders", None)
        if loaders is not None:
            loaders.close()


def _plain(value: Any) -> Any:
    """Only the types ``torch.load(weights_only=True)`` accepts (no floats like nan issue)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _checkpoint_seed(state: dict[str, Any] | None) -> int | None:
    """The seed a checkpointed run used (so a resumed run keeps its data order)."""
    if state is None:
        return None
    seed = state.get("config", {}).get("seed")
    return int(seed) if seed else None


def _platform(runtime: Runtime) -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    kind = runtime.device.type
    return f"{runtime.threads.node_cores}-core {cpu} ({kind})"


def run_training(cfg: TrainConfig, runtime: Runtime) -> RunSummary:
    """Set up and run a training job on this rank."""
    trainer = Trainer(cfg, runtime)
    try:
        trainer.setup()
        return trainer.fit()
    finally:
        trainer.close()
