"""CosmoFlow's MLPerf HPC log: the keys the hpc_3.0.0 cosmoflow checker reads, in the order the
MLCommons reference writes them, through the project's writer (``train.mlperf_log.MLPerfLog``:
rank 0 only, one log per invocation, no collectives inside).
"""

from __future__ import annotations

from deepcam_hvd.cosmoflow.config import CosmoConfig
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.train.mlperf_log import MLPerfLog
from deepcam_hvd.workloads import cosmoflow as facts


def division_for(cfg: CosmoConfig, train_samples: int, eval_samples: int) -> str:
    """'closed' only on the full data set (524,288 / 65,536 files); 'open' otherwise.

    The network and SGD with momentum 0.9 are fixed here; batch, LR, warm-up and decay are
    hyper-parameters the closed division lets a submitter set. ``--division closed`` on other
    data is refused, since the checker would reject it."""
    full = train_samples == facts.FULL_TRAIN_SAMPLES and eval_samples == facts.FULL_EVAL_SAMPLES
    if cfg.division == "closed" and not full:
        raise ConfigError(f"--division closed needs the full data set "
                          f"({facts.FULL_TRAIN_SAMPLES} training / {facts.FULL_EVAL_SAMPLES} "
                          f"validation samples); this run has {train_samples} / {eval_samples}")
    if cfg.division == "closed" and cfg.dropout != facts.DROPOUT:
        raise ConfigError(f"--division closed keeps the reference network: --dropout "
                          f"{cfg.dropout} is not {facts.DROPOUT}")
    if cfg.division != "auto":
        return cfg.division
    return "closed" if full and cfg.dropout == facts.DROPOUT else "open"


def log_scale(log: MLPerfLog, seed: int, ranks: int, nodes: int, accelerators: int) -> None:
    """Seed and the run's scale, as the reference logs them right after init_start."""
    log.event("seed", seed)
    log.event("number_of_ranks", ranks)
    log.event("number_of_nodes", nodes)
    log.event("accelerators_per_node", accelerators)


def log_submission(log: MLPerfLog, cfg: CosmoConfig, division: str, platform: str) -> None:
    """The submission keys every HPC log needs."""
    log.event("submission_benchmark", facts.BENCHMARK)
    log.event("submission_org", cfg.organization)
    log.event("submission_division", division)
    log.event("submission_status", cfg.submission_status)
    log.event("submission_platform", platform)


def log_hyperparameters(log: MLPerfLog, cfg: CosmoConfig, ranks: int, train_samples: int,
                        eval_samples: int) -> None:
    """``workloads.cosmoflow.mlperf_hyperparameters`` for this run, key by key, plus the
    momentum and local batch the rules fix or the reader wants."""
    values = facts.mlperf_hyperparameters(
        facts.logged_global_batch_size(cfg.local_batch_size, ranks), train_samples,
        eval_samples, base_lr=cfg.base_lr, base_batch_size=cfg.base_batch_size,
        scaling=cfg.lr_scaling, warmup_epochs=cfg.warmup_epochs,
        decay_schedule=cfg.decay_schedule, dropout=cfg.dropout)
    for key in facts.HYPERPARAMETER_KEYS:
        log.event(key, values[key])
    log.event("opt_momentum", facts.MOMENTUM)
    log.event("local_batch_size", cfg.local_batch_size)


def log_evaluation(log: MLPerfLog, epoch_num: int, mae: float) -> None:
    """The end of one validation (begun by an ``eval_start``): ``eval_error``, the validation
    MAE, then eval_stop."""
    where = {"epoch_num": epoch_num}
    log.event(facts.EVAL_KEY, mae, metadata=where)
    log.end("eval_stop", metadata=where)
