"""The training configuration: typed, merged from defaults < config file < command line, and
validated before any process group starts.

Option names follow the MLCommons reference parser (``--start_lr``, ``--lr_schedule`` ...), so
its run scripts translate one to one. Over 300 lines because every option's type, default,
check and help text live here together, one table for the command line and config files.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

import tomllib

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.workloads.deepcam import NUM_CHANNELS, TARGET_IOU, samples_per_update

ADAM_EPS = 1e-6  # fixed by the MLPerf HPC rules

OptimizerName = Literal["Adam", "AdamW", "LAMB"]
ScheduleType = Literal["none", "multistep", "cosine_annealing"]
Precision = Literal["fp32", "bf16", "fp16"]
Compression = Literal["none", "fp16"]
DataFormat = Literal["hdf5", "npy"]
Division = Literal["auto", "closed", "open"]
Shuffle = Literal["global", "local"]
SubmissionStatus = Literal["onprem", "cloud", "preview", "research"]
Switch = Literal["auto", "on", "off"]  # auto: the measured default for the device


@dataclass
class LRSchedule:
    """Learning-rate schedule after warm-up (reference: ``--lr_schedule type=...,key=value``).

    ``none`` is the reference run without ``--lr_schedule``: no scheduler at all, so the
    learning rate stays at start_lr and warm-up settings have no effect.
    """

    type: ScheduleType = "none"
    milestones: list[int] = field(default_factory=lambda: [15000, 25000])
    decay_rate: float = 0.1
    t_max: int = 0
    eta_min: float = 0.0

    @classmethod
    def parse(cls, text: str) -> LRSchedule:
        """Read the reference's form: ``type=multistep,milestones=800 1600,decay_rate=0.1``."""
        values: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--lr_schedule: {item!r} is not key=value")
            values[key.strip()] = value.strip()
        if "milestones" in values:
            values["milestones"] = values["milestones"].replace(";", " ").split()
        return _build(cls, values, "lr_schedule")


@dataclass
class TrainConfig:
    """Every setting of a training run."""

    # data
    data_dir_prefix: str = ""
    data_format: DataFormat = "hdf5"
    channels: list[int] = field(default_factory=lambda: list(range(NUM_CHANNELS)))
    max_inter_threads: int = 1
    stage_dir: str = ""
    clear_cache: bool = False
    shuffle: Shuffle = "global"
    skip_bad_files: bool = False
    # run and outputs
    output_dir: str = "runs/deepcam"
    run_tag: str = "deepcam"
    checkpoint: str = ""
    model_prefix: str = "model"
    model: str = "deeplab-xception"
    max_epochs: int = 30
    save_frequency: int = 0
    logging_frequency: int = 0
    keep_checkpoints: int = 2
    # batch and optimisation
    local_batch_size: int = 1
    global_batch_size: int = 0  # 0: local_batch_size decides; else local is derived from it
    local_batch_size_validation: int = 1
    gradient_accumulation_frequency: int = 1
    optimizer: OptimizerName = "Adam"
    start_lr: float = 1e-3
    optimizer_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1e-6
    lr_warmup_steps: int = 0
    lr_warmup_factor: float = 1.0
    lr_schedule: LRSchedule = field(default_factory=LRSchedule)
    target_iou: float = TARGET_IOU
    stop_at_target: bool = True
    batchnorm_group_size: int = 1
    seed: int = 0  # 0: not given; the run draws a fresh one from the clock
    # speed options: off until a benchmark shows a gain on the hardware
    precision: Precision = "fp32"
    channels_last: bool = False
    compile: bool = False
    gradient_compression: Compression = "none"
    # GPU-only speed options (deepcam_hvd/train/gpu_options.py says what auto means where)
    pin_memory: Switch = "auto"
    device_prefetch: Switch = "auto"
    cudnn_benchmark: Switch = "auto"
    lamb_foreach: Switch = "auto"
    # MLPerf logging
    division: Division = "auto"
    organization: str = "deepcam-hvd"
    platform: str = ""
    submission_status: SubmissionStatus = "onprem"

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict of every setting."""
        return dataclasses.asdict(self)

    def validate(self, world_size: int | None = None) -> TrainConfig:
        """Check every value and combination; raise ConfigError naming the option."""
        _positive(self, "max_epochs", "local_batch_size", "local_batch_size_validation",
                  "gradient_accumulation_frequency", "batchnorm_group_size", "keep_checkpoints")
        _non_negative(self, "max_inter_threads", "save_frequency", "logging_frequency",
                      "lr_warmup_steps", "weight_decay", "seed", "global_batch_size")
        if not self.start_lr > 0 or not math.isfinite(self.start_lr):
            raise ConfigError(f"--start_lr must be a positive number, got {self.start_lr}")
        # The reference takes any float; with no warm-up it ignores the factor (ESIF's recipe
        # passes nodes / 8, which is 0 below 8 nodes). MLPerf closed wants >= 1 (presets.py).
        if not math.isfinite(self.lr_warmup_factor) or self.lr_warmup_factor < 0:
            raise ConfigError(f"--lr_warmup_factor must be a number >= 0, got "
                              f"{self.lr_warmup_factor}")
        if len(self.optimizer_betas) != 2 or not all(0 <= b < 1 for b in self.optimizer_betas):
            raise ConfigError(f"--optimizer_betas needs two values in [0, 1), "
                              f"got {self.optimizer_betas}")
        if not 0 < self.target_iou <= 1:
            raise ConfigError(f"--target_iou must be in (0, 1], got {self.target_iou}")
        if not self.channels:
            raise ConfigError("--channels selects no channel")
        bad = [c for c in self.channels if not 0 <= c < NUM_CHANNELS]
        if bad:
            raise ConfigError(f"--channels {bad} out of range 0..{NUM_CHANNELS - 1}")
        if len(set(self.channels)) != len(self.channels):
            raise ConfigError(f"--channels {self.channels} repeats a channel")
        sched = self.lr_schedule
        if sched.type == "multistep":
            if sorted(sched.milestones) != sched.milestones or any(m <= 0 for m in
                                                                   sched.milestones):
                raise ConfigError(f"--lr_schedule milestones must be increasing positive steps, "
                                  f"got {sched.milestones}")
            if not 0 < sched.decay_rate <= 1:
                raise ConfigError(f"--lr_schedule decay_rate must be in (0, 1], "
                                  f"got {sched.decay_rate}")
        elif sched.type == "cosine_annealing" and sched.t_max <= 0:
            raise ConfigError(f"--lr_schedule cosine_annealing needs t_max > 0, got {sched.t_max}")
        if world_size is not None and world_size % self.batchnorm_group_size:
            raise ConfigError(f"--batchnorm_group_size {self.batchnorm_group_size} does not "
                              f"divide the {world_size} ranks")
        return self


def fit_to_world(cfg: TrainConfig, world_size: int, local_given: bool) -> TrainConfig:
    """Derive the local batch from ``global_batch_size`` (if set) for ``world_size`` ranks."""
    if cfg.global_batch_size <= 0:
        return cfg
    per_sample = samples_per_update(1, world_size, cfg.gradient_accumulation_frequency)
    if cfg.global_batch_size % per_sample:
        raise ConfigError(
            f"--global_batch_size {cfg.global_batch_size} is not divisible by {world_size} "
            f"ranks x --gradient_accumulation_frequency {cfg.gradient_accumulation_frequency}")
    local = cfg.global_batch_size // per_sample
    if local_given and local != cfg.local_batch_size:
        raise ConfigError(
            f"--local_batch_size {cfg.local_batch_size} contradicts --global_batch_size "
            f"{cfg.global_batch_size} on {world_size} ranks (needs {local})")
    return dataclasses.replace(cfg, local_batch_size=local)


def _positive(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name} must be at least 1, got {getattr(cfg, name)}")


def _non_negative(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"--{name} must not be negative, got {getattr(cfg, name)}")


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert a file or command-line value to the annotated type, or raise ConfigError."""
    origin = getattr(hint, "__origin__", None)
    try:
        if origin is Literal:
            choices = get_args(hint)
            if value not in choices:
                raise ConfigError(f"--{name} {value!r} is not one of {', '.join(choices)}")
            return value
        if origin is list:
            (item,) = get_args(hint)
            items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
            return [_coerce(v, item, name) for v in items]
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name}: {value!r} is not a valid {getattr(hint, '__name__', hint)}"
                          ) from None
    return value


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if hint is LRSchedule:
            kwargs[key] = value if isinstance(value, LRSchedule) else \
                LRSchedule.parse(value) if isinstance(value, str) else \
                _build(LRSchedule, value, "lr_schedule")
        else:
            kwargs[key] = _coerce(value, hint, key)
    return cls(**kwargs)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML (.toml) or YAML (.yaml/.yml) file, as a flat dict."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path}: use .toml, .yaml/.yml or .json")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"config file {path}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # yaml.YAMLError without importing yaml at module load
        if type(exc).__module__.startswith("yaml"):
            raise ConfigError(f"config file {path}: {str(exc).splitlines()[0]}") from None
        raise
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a table of settings")
    return data


def resolve_config(*layers: Mapping[str, Any]) -> TrainConfig:
    """Merge layers (later wins) over the defaults into a TrainConfig; values are coerced."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    return _build(TrainConfig, merged, "config")


HELP: dict[str, str] = {
    "data_dir_prefix": "Data root with train/, validation/ and stats.h5 (alias --data_dir).",
    "data_format": "Sample files: hdf5 (*.h5) or npy (from 'deepcam-hvd data convert').",
    "channels": "Input channels to use, e.g. '0,1,2' (default all 16).",
    "max_inter_threads": "Parallel readers per rank (0: read in the training thread).",
    "stage_dir": "Node-local directory (e.g. /dev/shm/deepcam): inside the logged init, "
                 "each node copies what its ranks read there (staging_start/stop) and the run "
                 "reads from it. With --shuffle local each rank copies its own share.",
    "clear_cache": "Evict every data file from the page cache at the start of init "
                   "(fadvise DONTNEED, checked with mincore; as root also drop_caches); "
                   "cache_clear is logged true only then.",
    "shuffle": "global: reshuffle all training files over all ranks each epoch (the "
               "reference); local: keep each rank's staged share ('data stage').",
    "skip_bad_files": "Skip unreadable training files, counting and logging them.",
    "output_dir": "Directory for checkpoints, MLPerf log, TensorBoard and summary.json.",
    "run_tag": "Name of this run.",
    "checkpoint": "Checkpoint to resume from, or 'auto' for the newest valid one in "
                  "output_dir if any (alias --resume).",
    "model_prefix": "File name prefix of saved checkpoints.",
    "model": "Network: deeplab-xception (the reference) or deeplab-xception-small.",
    "max_epochs": "Stop after this many epochs.",
    "save_frequency": "Save a checkpoint every N epochs (0: only at the end).",
    "logging_frequency": "Log training loss every N steps (0: once per epoch).",
    "keep_checkpoints": "How many of the newest checkpoints to keep.",
    "local_batch_size": "Samples per rank per backward pass.",
    "global_batch_size": "Samples per optimizer step over all ranks; derives the local batch.",
    "local_batch_size_validation": "Samples per rank per validation batch.",
    "gradient_accumulation_frequency": "Backward passes per optimizer step.",
    "optimizer": "Adam, AdamW or LAMB (eps fixed at 1e-6).",
    "start_lr": "Learning rate at the start (before warm-up scaling).",
    "optimizer_betas": "Adam-type betas: two numbers.",
    "weight_decay": "Weight decay.",
    "lr_warmup_steps": "Linear warm-up steps.",
    "lr_warmup_factor": "Warm-up rises towards factor x start_lr (from start_lr/steps when 1; "
                        "levels off one step short, as the reference); ignored without warm-up "
                        "steps. MLPerf closed needs >= 1.",
    "lr_schedule": "E.g. 'type=multistep,milestones=800 1600,decay_rate=0.1' or "
                   "'type=cosine_annealing,t_max=9000,eta_min=0'; default none: constant "
                   "start_lr, as the reference without --lr_schedule.",
    "target_iou": "Validation IoU that counts as converged.",
    "stop_at_target": "Stop at the target IoU (MLPerf, ESIF); --no-stop_at_target trains on "
                      "to max_epochs (NERSC-10 times 16 complete epochs).",
    "batchnorm_group_size": "Ranks whose batch-norm statistics are reduced together.",
    "seed": "Random seed (> 0; model init and data order). Default: a fresh seed from the "
            "clock, drawn on rank 0, printed and logged; a resumed run keeps its own.",
    "precision": "fp32, bf16 (autocast) or fp16 (GPU, with a loss scaler).",
    "channels_last": "Use the channels-last memory format.",
    "compile": "Compile the model with torch.compile.",
    "gradient_compression": "Horovod gradient compression on the wire: none or fp16.",
    "pin_memory": "GPU: read batches into page-locked host memory so that their copies to the "
                  "GPU run asynchronously. auto, on or off (auto: on only where measured to "
                  "win on a GPU; train prints the value and why).",
    "device_prefetch": "GPU: copy the next batch to the GPU on a side stream while the current "
                       "one computes. auto, on or off (as --pin_memory).",
    "cudnn_benchmark": "GPU: let cuDNN time its algorithms for each input shape and keep the "
                       "fastest. auto, on or off (as --pin_memory).",
    "lamb_foreach": "GPU: LAMB updates all tensors at once (torch._foreach_*) instead of one "
                    "at a time; the same arithmetic. auto, on or off (as --pin_memory).",
    "division": "MLPerf division: auto (closed only on the full data set), closed or open.",
    "organization": "MLPerf submission_org.",
    "platform": "MLPerf submission_platform (default: a description of this machine).",
    "submission_status": "MLPerf submission_status: onprem, cloud, preview or research.",
}
