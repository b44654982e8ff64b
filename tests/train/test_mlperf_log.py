"""MLPerf log: division on any number of ranks, the keys and values the reference logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepcam_hvd.config import TrainConfig, fit_to_world, resolve_config
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.presets import preset
from deepcam_hvd.train.mlperf_log import (
    MLPerfLog,
    division_for,
    log_hyperparameters,
    log_submission,
)
from deepcam_hvd.workloads.deepcam import FULL_EVAL_SAMPLES, FULL_TRAIN_SAMPLES

FULL = (FULL_TRAIN_SAMPLES, FULL_EVAL_SAMPLES)
CLOSED_SCHEDULE = "type=multistep,milestones=800,decay_rate=0.1"


def closed_cfg(**changes: object) -> TrainConfig:
    return resolve_config({"lr_schedule": CLOSED_SCHEDULE}, changes)


def records(path: Path) -> list[dict]:
    return [json.loads(line.split(":::MLLOG ", 1)[1]) for line in path.read_text().splitlines()
            if ":::MLLOG " in line]


@pytest.mark.parametrize("world", [1, 4, 512, 2048])
def test_full_data_with_closed_settings_is_closed_on_any_world(world: int) -> None:
    cfg = fit_to_world(resolve_config(preset("mlperf-closed-2048")), world, False)
    assert division_for(cfg, *FULL, world) == "closed"
    assert division_for(closed_cfg(), *FULL, world) == "closed"


def test_open_otherwise() -> None:
    assert division_for(closed_cfg(), 1000, 100, 8) == "open"
    assert division_for(closed_cfg(model="deeplab-xception-small"), *FULL, 8) == "open"
    assert division_for(closed_cfg(target_iou=0.5), *FULL, 8) == "open"
    assert division_for(TrainConfig(), *FULL, 8) == "open"  # no schedule: not closed
    assert division_for(closed_cfg(stop_at_target=False), *FULL, 8) == "open"


def test_explicit_division() -> None:
    assert division_for(closed_cfg(division="open"), *FULL, 8) == "open"
    with pytest.raises(ConfigError, match=r"--division closed needs the full data set \(121266 "
                                          r"training / 15158 validation samples\); this run "
                                          r"has 1000 / 100"):
        division_for(closed_cfg(division="closed"), 1000, 100, 8)
    with pytest.raises(ConfigError, match="closed-rule settings .*: channels is fixed"):
        division_for(closed_cfg(division="closed", channels=[0, 1]), *FULL, 8)


def write_log(tmp_path: Path, cfg: TrainConfig, world: int) -> list[dict]:
    log = MLPerfLog(tmp_path / "mlperf.log", active=True)
    log_submission(log, cfg, "open", "test", 2, 0)
    log_hyperparameters(log, cfg, world)
    log.close()
    return records(tmp_path / "mlperf.log")


def test_global_batch_is_local_times_workers(tmp_path: Path) -> None:
    cfg = closed_cfg(local_batch_size=2, gradient_accumulation_frequency=4, seed=77,
                     submission_status="research")
    got = {r["key"]: r["value"] for r in write_log(tmp_path, cfg, 8)}
    # HPC rules: "--local_batch_size times number of workers"; accumulation logged on its own
    assert got["global_batch_size"] == 16
    assert got["gradient_accumulation_frequency"] == 4
    assert (got["seed"], got["number_of_ranks"]) == (77, 8)
    assert got["submission_status"] == "research"
    assert got["scheduler_milestones"] == [800] and got["scheduler_type"] == "multistep"


def test_no_schedule_logs_no_scheduler_keys(tmp_path: Path) -> None:
    keys = {r["key"] for r in write_log(tmp_path, TrainConfig(seed=5), 1)}
    assert "opt_lr" in keys
    assert not {k for k in keys if k.startswith("scheduler_")}


def test_an_earlier_log_is_kept(tmp_path: Path) -> None:
    (tmp_path / "mlperf.log").write_text("old\n")
    MLPerfLog(tmp_path / "mlperf.log", active=True).close()
    assert (tmp_path / "mlperf.1.log").read_text() == "old\n"
