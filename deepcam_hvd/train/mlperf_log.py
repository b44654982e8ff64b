"""MLPerf HPC logging (mlperf-logging's mllog), written by rank 0 only.

Every method is local: no collective may hide in here, because callers invoke it on every rank
and only rank 0 writes. Values that need a reduction are reduced by the caller first.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from deepcam_hvd.config import ADAM_EPS, TrainConfig
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.workloads.deepcam import (
    BENCHMARK,
    FULL_EVAL_SAMPLES,
    FULL_TRAIN_SAMPLES,
    logged_global_batch_size,
)

RULESET = "3.0.0"


class MLPerfLog:
    """An mllog writer that is active on rank 0 and silent elsewhere."""

    def __init__(self, path: Path | None, active: bool) -> None:
        self.active = active and path is not None
        self.path = path
        self._log: Any = None
        if self.active:
            from mlperf_logging import mllog

            assert path is not None
            path.parent.mkdir(parents=True, exist_ok=True)
            # One log per invocation: the checker rejects two run_starts in one file, so an
            # earlier attempt's log (e.g. before a resume) is kept under a numbered name.
            if path.exists():
                n = 1
                while path.with_name(f"{path.stem}.{n}{path.suffix}").exists():
                    n += 1
                path.rename(path.with_name(f"{path.stem}.{n}{path.suffix}"))
            logger = logging.getLogger(f"deepcam_hvd.mlperf.{id(self)}")
            logger.setLevel(logging.INFO)
            logger.propagate = False  # the file only: mllog's default also prints to stdout
            handler = logging.FileHandler(path, mode="w")
            handler.setLevel(logging.INFO)
            logger.addHandler(handler)
            # root_dir only shortens the file names mllog records in each line's metadata
            mllog.config(logger=logger, default_stack_offset=2,
                         root_dir=str(Path(__file__).resolve().parents[1]))
            self._log = mllog.get_mllogger()
            self._handler = handler

    def close(self) -> None:
        """Flush and close the log file."""
        if self.active:
            self._handler.close()

    def event(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None) -> None:
        """One POINT_IN_TIME record."""
        if self.active:
            self._log.event(key=key, value=value, metadata=metadata or {})

    def start(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None) -> None:
        """One INTERVAL_START record."""
        if self.active:
            self._log.start(key=key, value=value, metadata=metadata or {})

    def end(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None) -> None:
        """One INTERVAL_END record."""
        if self.active:
            self._log.end(key=key, value=value, metadata=metadata or {})

    def train_figures(self, epoch: int, step_num: int, lr: float, iou: float,
                      loss: float) -> None:
        """The reference's training keys (its step count is in local batches, not updates)."""
        where = {"epoch_num": epoch, "step_num": step_num}
        self.event("learning_rate", lr, metadata=where)
        self.event("train_accuracy", iou, metadata=where)
        self.event("train_loss", loss, metadata=where)

    def evaluation(self, epoch: int, step_num: int, iou: float, loss: float,
                   first_at_target: float | None) -> None:
        """The reference's validation keys; ``target_accuracy_reached`` the first time."""
        where = {"epoch_num": epoch, "step_num": step_num}
        self.event("eval_accuracy", iou, metadata=where)
        self.event("eval_loss", loss, metadata=where)
        if first_at_target is not None:
            self.event("target_accuracy_reached", first_at_target, metadata=where)


def division_for(cfg: TrainConfig, train_samples: int, eval_samples: int,
                 world_size: int) -> str:
    """'closed' only on the full data set with closed-rule settings; 'open' otherwise.

    ``train_samples`` and ``eval_samples`` are the data set's sizes (files per split), whatever
    the number of ranks. An explicit --division wins, except that 'closed' is refused where
    the checker would reject it (other data) or the rules forbid it (a changed fixed setting).
    """
    from deepcam_hvd.presets import rule_violations

    full = train_samples == FULL_TRAIN_SAMPLES and eval_samples == FULL_EVAL_SAMPLES
    broken = rule_violations("mlperf-closed", cfg, world_size)
    if cfg.division == "closed" and not full:
        raise ConfigError(f"--division closed needs the full data set ({FULL_TRAIN_SAMPLES} "
                          f"training / {FULL_EVAL_SAMPLES} validation samples); this run has "
                          f"{train_samples} / {eval_samples}")
    if cfg.division == "closed" and broken:
        raise ConfigError(f"--division closed needs closed-rule settings (--rules "
                          f"mlperf-closed): {broken[0]}")
    if cfg.division != "auto":
        return cfg.division
    return "closed" if full and not broken else "open"


def log_submission(log: MLPerfLog, cfg: TrainConfig, division: str, platform: str,
                   nodes: int, accelerators_per_node: int) -> None:
    """The submission and system keys every HPC log needs."""
    log.event("submission_benchmark", BENCHMARK)
    log.event("submission_org", cfg.organization)
    log.event("submission_division", division)
    log.event("submission_status", cfg.submission_status)
    log.event("submission_platform", platform)
    log.event("number_of_nodes", nodes)
    log.event("accelerators_per_node", accelerators_per_node)


def log_hyperparameters(log: MLPerfLog, cfg: TrainConfig, world_size: int) -> None:
    """Seed, batch, optimizer and schedule keys, named as the hpc_3.0.0 rules read them.

    ``global_batch_size`` is what the HPC rules define (and the reference logs): the local
    batch times the number of workers; gradient accumulation is logged on its own. With no
    schedule the reference builds no scheduler and logs no scheduler keys; neither do we.
    """
    log.event("seed", cfg.seed)
    log.event("number_of_ranks", world_size)
    log.event("global_batch_size", logged_global_batch_size(cfg.local_batch_size, world_size))
    log.event("local_batch_size", cfg.local_batch_size)
    log.event("gradient_accumulation_frequency", cfg.gradient_accumulation_frequency)
    log.event("batchnorm_group_size", cfg.batchnorm_group_size)
    log.event("opt_name", cfg.optimizer)
    log.event("opt_lr", cfg.start_lr)
    log.event("opt_betas", list(cfg.optimizer_betas))
    log.event("opt_eps", ADAM_EPS)
    log.event("opt_weight_decay", cfg.weight_decay)
    if cfg.optimizer == "LAMB":
        log.event("opt_bias_correction", True)
        log.event("opt_grad_averaging", True)
        log.event("opt_max_grad_norm", 1.0)
    sched = cfg.lr_schedule
    if sched.type == "none":
        return
    log.event("scheduler_type", sched.type)
    log.event("scheduler_lr_warmup_steps", cfg.lr_warmup_steps)
    log.event("scheduler_lr_warmup_factor", cfg.lr_warmup_factor)
    if sched.type == "multistep":
        log.event("scheduler_milestones", list(sched.milestones))
        log.event("scheduler_decay_rate", sched.decay_rate)
    else:
        log.event("scheduler_t_max", sched.t_max)
        log.event("scheduler_eta_min", sched.eta_min)


def describe_platform(node_cores: int, device_type: str) -> str:
    """A default ``submission_platform``: this node's cores, processor and device kind."""
    import platform

    return f"{node_cores}-core {platform.processor() or platform.machine()} ({device_type})"
