"""CosmoFlow training settings: one frozen dataclass, each field documented where it is declared.

Defaults are the MLCommons reference's ``configs/cosmo.yaml`` (``deepcam_hvd.workloads.
cosmoflow``); nothing here imports TensorFlow. ``validate`` checks everything against the
launch's world size before any communicator starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.workloads import cosmoflow as facts

DATA_FORMATS = ("auto", "tfrecord", "npy")
DIVISIONS = ("auto", "closed", "open")
SUBMISSION_STATUSES = ("onprem", "cloud", "preview", "research")


@dataclass(frozen=True)
class CosmoConfig:
    """One CosmoFlow training run."""

    data_dir: str
    """Data root with ``train/`` and ``validation/`` (one sample per file)."""
    output_dir: str = "runs/cosmoflow"
    """Where checkpoints, ``mlperf.log`` and ``summary.json`` go."""
    data_format: str = "auto"
    """Sample files: ``tfrecord`` (the reference's gzip TFRecords), ``npy``, or ``auto``
    (whichever the split holds)."""
    cube: int = 0
    """Voxels per side; 0: read from the first training sample."""
    n_train: int = 0
    """Training files used (the first N in name order); 0: all."""
    n_valid: int = 0
    """Validation files used; 0: all."""
    local_batch_size: int = facts.LOCAL_BATCH_SIZE
    """Samples per rank per step (the reference's ``batch_size``)."""
    max_epochs: int = facts.EPOCHS
    """Epochs at most (the reference's ``n_epochs``)."""
    target_mae: float = facts.TARGET_MAE
    """Validation MAE that counts as converged (MLPerf HPC 3.0: 0.124)."""
    stop_at_target: bool = True
    """Stop at the first epoch whose validation MAE is at or below ``target_mae``."""
    seed: int = 0
    """Random seed on every rank; 0: rank 0 draws one from the clock (a resume keeps its own)."""
    resume: str = ""
    """``auto``: continue from the newest valid checkpoint in ``output_dir`` (if any); or a
    checkpoint path; empty: start afresh."""
    base_lr: float = facts.BASE_LR
    """LR at ``base_batch_size``; scaled to the global batch by ``lr_scaling``."""
    base_batch_size: int = facts.BASE_BATCH_SIZE
    """Global batch at which ``base_lr`` applies."""
    lr_scaling: str = facts.LR_SCALING
    """How the peak LR follows the global batch: linear, sqrt or none."""
    warmup_epochs: int = facts.WARMUP_EPOCHS
    """Epochs of linear warm-up from ``base_lr`` to the peak."""
    decay_schedule: Mapping[int, float] = field(
        default_factory=lambda: dict(facts.DECAY_SCHEDULE))
    """Epoch boundary -> factor of the peak LR after it (the latest boundary counts)."""
    dropout: float = facts.DROPOUT
    """Dropout after both hidden dense layers."""
    staging_dir: str = ""
    """Node-local directory to copy the files to inside the logged init (empty: read in place)."""
    stop_check_steps: int = 8
    """Every this many steps the ranks agree on a stop signal (one tiny allreduce)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    division: str = "auto"
    """MLPerf division: auto (closed only on the full data set), closed or open."""
    organization: str = "deepcam-hvd"
    """MLPerf submission_org."""
    platform: str = ""
    """MLPerf submission_platform (default: a description of this machine)."""
    submission_status: str = "onprem"
    """MLPerf submission_status: onprem, cloud, preview or research."""

    def validate(self, world_size: int) -> None:
        """Raise ConfigError naming the first bad option for a run on ``world_size`` ranks."""
        positive = {"local_batch_size": self.local_batch_size, "max_epochs": self.max_epochs,
                    "base_batch_size": self.base_batch_size,
                    "stop_check_steps": self.stop_check_steps,
                    "keep_checkpoints": self.keep_checkpoints}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"--{name} {value} must be at least 1")
        for name, value in {"n_train": self.n_train, "n_valid": self.n_valid,
                            "warmup_epochs": self.warmup_epochs, "cube": self.cube,
                            "seed": self.seed}.items():
            if value < 0:
                raise ConfigError(f"--{name} {value} must not be negative")
        if self.data_format not in DATA_FORMATS:
            raise ConfigError(f"--format {self.data_format!r} is not one of "
                              f"{', '.join(DATA_FORMATS)}")
        if self.lr_scaling not in facts.LR_SCALINGS:
            raise ConfigError(f"--lr_scaling {self.lr_scaling!r} is not one of "
                              f"{', '.join(facts.LR_SCALINGS)}")
        if self.target_mae <= 0:
            raise ConfigError(f"--target_mae {self.target_mae} must be above 0")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout {self.dropout} must be in [0, 1)")
        if self.base_lr <= 0:
            raise ConfigError(f"--base_lr {self.base_lr} must be above 0")
        for boundary, factor in self.decay_schedule.items():
            if boundary < 0 or not 0 < factor <= 1:
                raise ConfigError(f"--decay_schedule {boundary}:{factor}: boundaries must not "
                                  "be negative and factors must be in (0, 1]")
        if self.division not in DIVISIONS:
            raise ConfigError(f"--division {self.division!r} is not one of "
                              f"{', '.join(DIVISIONS)}")
        if self.submission_status not in SUBMISSION_STATUSES:
            raise ConfigError(f"--submission_status {self.submission_status!r} is not one of "
                              f"{', '.join(SUBMISSION_STATUSES)}")
        if world_size < 1:
            raise ConfigError(f"world size {world_size} must be at least 1")

    @property
    def schedule(self) -> dict[str, Any]:
        """The keyword arguments of ``schedule.lr_at`` / ``EpochLR`` for this run."""
        return {"base_lr": self.base_lr, "base_batch_size": self.base_batch_size,
                "scaling": self.lr_scaling, "warmup_epochs": self.warmup_epochs,
                "decay_schedule": dict(self.decay_schedule)}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON, checkpoints); decay boundaries as strings, as JSON keys are."""
        d = asdict(self)
        d["decay_schedule"] = {str(k): v for k, v in self.decay_schedule.items()}
        return d


def parse_decay_schedule(text: str) -> dict[int, float]:
    """``"32:0.25,64:0.125"`` -> ``{32: 0.25, 64: 0.125}``; ``""`` or ``none`` -> no decay."""
    if text.strip().lower() in ("", "none"):
        return {}
    schedule: dict[int, float] = {}
    for part in text.split(","):
        try:
            boundary, factor = part.split(":")
            schedule[int(boundary)] = float(factor)
        except ValueError:
            raise ConfigError(f"--decay_schedule {text!r}: write EPOCH:FACTOR pairs separated "
                              "by commas, e.g. 32:0.25,64:0.125") from None
    return schedule
