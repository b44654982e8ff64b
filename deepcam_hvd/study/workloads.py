"""What ``study run`` runs for each workload, in one place per workload: the training command
and its settings, the study's default sizes, how the synthetic data is made and how a
configuration's step is profiled and read back.

The runner (``study/runner.py``) asks the workload for each of these and knows no workload by
name; the report side of a workload (metric, direction, target key) is its
:class:`~deepcam_hvd.report.workloads.WorkloadSpec`.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepcam_hvd.errors import ConfigError, DataError
from deepcam_hvd.report.workloads import COSMOFLOW, DEEPCAM, WorkloadSpec
from deepcam_hvd.workloads import cosmoflow

if TYPE_CHECKING:
    from deepcam_hvd.study.runner import StudyConfig, StudyOptions

#: The profile figures of a study row, in study.json's order; a workload's profile fills
#: those it measures and leaves the others None.
PROFILE_KEYS = ("compute_s", "allreduce_s", "exposed_allreduce_s", "overlap", "read_s",
                "profile_step_s", "profile_samples_per_s", "load_average")

#: Study options a workload may give defaults for: sizes of the data and of the runs.
SIZE_OPTIONS = ("train_samples", "val_samples", "height", "width", "cube", "max_epochs")

SYNTH_SEED = 333


class StudyWorkload(ABC):
    """One workload's study specifics (subclasses set the class attributes)."""

    report: WorkloadSpec
    """Metric, direction and summary of the workload's runs."""
    train_command: tuple[str, ...]
    """The deepcam-hvd subcommand that trains it."""
    train_defaults: Mapping[str, str]
    """Training options of every study run (flag name without ``--`` -> value); they include
    the target (``report.target_field``). Options after ``--`` on the command line follow
    them, so they can override any."""
    defaults: Mapping[str, int]
    """Default sizes (``SIZE_OPTIONS``); an option missing here does not apply to it."""

    @property
    def name(self) -> str:
        """``deepcam`` or ``cosmoflow``."""
        return self.report.name

    def target(self, extra_train_args: list[str] | tuple[str, ...] = ()) -> float:
        """The quality target the study runs train to: the default (IoU 0.82, MAE 0.25) or
        the last ``--target_iou``/``--target_mae`` among ``extra_train_args``."""
        flag = f"--{self.report.target_field}"
        value = self.train_defaults[self.report.target_field]
        for i, arg in enumerate(extra_train_args):
            if arg == flag and i + 1 < len(extra_train_args):
                value = extra_train_args[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.partition("=")[2]
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{flag} {value!r}: expected a number") from None

    def train_args(self, cfg: StudyConfig, data: Path, run_dir: Path,
                   opts: StudyOptions) -> list[str]:
        """The deepcam-hvd arguments that train ``cfg`` into ``run_dir``."""
        args = [*self.train_command, "--data_dir", str(data), "--output_dir", str(run_dir),
                *self.run_args(cfg, opts), "--local_batch_size", str(cfg.local_batch_size),
                "--max_epochs", str(opts.max_epochs)]
        for key, value in self.train_defaults.items():
            args += [f"--{key}", value]
        return args + list(opts.extra_train_args)

    def run_args(self, cfg: StudyConfig, opts: StudyOptions) -> list[str]:
        """The workload's own training arguments that depend on the configuration or the
        study (none by default)."""
        return []

    @abstractmethod
    def synth(self, opts: StudyOptions, root: Path) -> tuple[dict[str, Any], list[str]]:
        """The synthetic data's description (kept in ``root/synth.json``: equal means the data
        there can be reused) and the deepcam-hvd arguments that write it to ``root``."""

    @abstractmethod
    def profile_args(self, cfg: StudyConfig, data: Path, opts: StudyOptions,
                     out: Path) -> list[str]:
        """The deepcam-hvd arguments that profile ``cfg``'s step and write JSON to ``out``."""

    @abstractmethod
    def read_profile(self, path: Path) -> dict[str, Any]:
        """The study row's ``PROFILE_KEYS`` from the profile written to ``path``."""


def _load_profile(path: Path) -> dict[str, Any]:
    """A profile's JSON object; DataError naming the file if it is missing or malformed."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise DataError(f"{path}: no profile was written ({exc.strerror})") from None
    except ValueError as exc:
        raise DataError(f"{path}: not a profile ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a profile (not a JSON object)")
    return data


def _pick(data: dict[str, Any], path: Path, **keys: str) -> dict[str, Any]:
    """``PROFILE_KEYS`` from ``data``: each named one from the profile key given (DataError
    naming the file and key if it is missing), the rest None."""
    missing = [src for src in keys.values() if src not in data]
    if missing:
        raise DataError(f"{path}: profile has no {', '.join(missing)}")
    return {k: data[keys[k]] if k in keys else None for k in PROFILE_KEYS}


class DeepcamStudy(StudyWorkload):
    """DeepCAM: the reduced model on CAM5-layout HDF5 samples, profiled by ``study profile``
    (compute, allreduce and data read apart)."""

    report = DEEPCAM
    train_command = ("train",)
    #: The reduced model and the README demo's optimizer, which reach IoU 0.82 on the
    #: synthetic data in about 9 epochs at global batch 4.
    train_defaults = {
        "model": "deeplab-xception-small",
        "local_batch_size_validation": "4",
        "max_inter_threads": "1",
        "optimizer": "AdamW",
        "start_lr": "0.002",
        "weight_decay": "0.01",
        "lr_warmup_steps": "0",
        "lr_schedule": "type=cosine_annealing,t_max=1500,eta_min=0.0001",
        "save_frequency": "0",
        "logging_frequency": "0",
        "target_iou": "0.82",
        "division": "open",
    }
    defaults = {"train_samples": 128, "val_samples": 32, "height": 96, "width": 144,
                "max_epochs": 20}

    def run_args(self, cfg: StudyConfig, opts: StudyOptions) -> list[str]:
        """``--run_tag NAME``: the trainer's progress lines and TensorBoard name the run."""
        return ["--run_tag", cfg.name]

    def synth(self, opts: StudyOptions, root: Path) -> tuple[dict[str, Any], list[str]]:
        """``data synth`` of ``--train-samples`` + ``--val-samples`` HEIGHTxWIDTH samples."""
        spec = {"train": opts.train_samples, "val": opts.val_samples, "height": opts.height,
                "width": opts.width, "seed": SYNTH_SEED}
        return spec, ["data", "synth", "--out", str(root), "--train", str(opts.train_samples),
                      "--val", str(opts.val_samples), "--height", str(opts.height),
                      "--width", str(opts.width), "--seed", str(SYNTH_SEED), "--overwrite"]

    def profile_args(self, cfg: StudyConfig, data: Path, opts: StudyOptions,
                     out: Path) -> list[str]:
        """``study profile``: compute, allreduce, distributed step and data read per step."""
        return ["study", "profile", "--model", self.train_defaults["model"],
                "--local-batch-size", str(cfg.local_batch_size), "--height", str(opts.height),
                "--width", str(opts.width), "--steps", str(opts.profile_steps),
                "--data", str(data), "--out", str(out)]

    def read_profile(self, path: Path) -> dict[str, Any]:
        """Every figure: ``study profile`` measures the parts of the step apart."""
        data = _load_profile(path)
        return _pick(data, path, compute_s="compute_s", allreduce_s="allreduce_s",
                     exposed_allreduce_s="exposed_allreduce_s", overlap="overlap",
                     read_s="read_s", profile_step_s="distributed_step_s",
                     profile_samples_per_s="step_samples_per_s", load_average="load_average")


class CosmoflowStudy(StudyWorkload):
    """CosmoFlow: the reference network on 32^3 x 4 synthetic universes with the open-division
    settings of ``jobs/cosmoflow_demo.sh``, profiled by ``cosmoflow bench step`` (whole
    steps: compute and allreduce are not timed apart, data is not read)."""

    report = COSMOFLOW
    train_command = ("cosmoflow", "train")
    #: jobs/cosmoflow_demo.sh's settings: a constant LR of 0.01 after one warm-up epoch,
    #: dropout 0.1, to validation MAE 0.25 (a network that learned nothing scores 0.5).
    train_defaults = {
        "base_lr": "0.01",
        "lr_scaling": "none",
        "warmup_epochs": "1",
        "decay_schedule": "none",
        "dropout": "0.1",
        "target_mae": "0.25",
        "seed": "11",
        "division": "open",
    }
    #: 1024 universes: with 256, no layout reached MAE 0.25 in 10 epochs (best 0.29-0.37)
    defaults = {"train_samples": 1024, "val_samples": 64, "cube": 32, "max_epochs": 8}
    #: Untimed steps before ``bench step`` times (the first traces the graph).
    profile_warmup = 2

    def run_args(self, cfg: StudyConfig, opts: StudyOptions) -> list[str]:
        """``--cube CUBE``: the trainer refuses data of another size (as the profile timed
        CUBE^3), rather than reading it."""
        return ["--cube", str(opts.cube)]

    def synth(self, opts: StudyOptions, root: Path) -> tuple[dict[str, Any], list[str]]:
        """``cosmoflow data synth`` of ``--train-samples`` + ``--val-samples`` CUBE^3 x 4
        universes (gzip TFRecord, the reference's layout)."""
        spec = {"workload": self.name, "train": opts.train_samples, "val": opts.val_samples,
                "cube": opts.cube, "seed": SYNTH_SEED, "version": cosmoflow.SYNTH_VERSION}
        return spec, ["cosmoflow", "data", "synth", "--output", str(root), "--cube",
                      str(opts.cube), "--train", str(opts.train_samples), "--validation",
                      str(opts.val_samples), "--seed", str(SYNTH_SEED), "--overwrite"]

    def profile_args(self, cfg: StudyConfig, data: Path, opts: StudyOptions,
                     out: Path) -> list[str]:
        """``cosmoflow bench step``: the median training step over all ranks (no I/O)."""
        return ["cosmoflow", "bench", "step", "--cube", str(opts.cube),
                "--batch", str(cfg.local_batch_size), "--steps", str(opts.profile_steps),
                "--warmup", str(self.profile_warmup), "--json", str(out)]

    def read_profile(self, path: Path) -> dict[str, Any]:
        """The whole step and its throughput; the load average is read as the profile ends
        (``bench step`` does not record it)."""
        data = _load_profile(path)
        row = _pick(data, path, profile_step_s="step_s_median",
                    profile_samples_per_s="samples_per_s")
        row["load_average"] = os.getloadavg()[0]
        return row


STUDY_WORKLOADS: Mapping[str, StudyWorkload] = {
    w.name: w for w in (DeepcamStudy(), CosmoflowStudy())}


def study_workload(name: str) -> StudyWorkload:
    """The study specifics of workload ``name``; ConfigError naming the choices if unknown."""
    try:
        return STUDY_WORKLOADS[name]
    except KeyError:
        raise ConfigError(f"--workload {name!r} is not one of "
                          f"{', '.join(STUDY_WORKLOADS)}") from None
