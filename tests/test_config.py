"""Configuration: layering, coercion and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepcam_hvd.config import LRSchedule, TrainConfig, read_config_file, resolve_config
from deepcam_hvd.errors import ConfigError


def test_defaults_match_reference() -> None:
    cfg = TrainConfig()
    assert (cfg.optimizer, cfg.start_lr, cfg.weight_decay) == ("Adam", 1e-3, 1e-6)
    assert cfg.optimizer_betas == [0.9, 0.999] and cfg.local_batch_size == 1
    assert cfg.target_iou == 0.82 and cfg.channels == list(range(16))
    # the reference without --lr_schedule: no scheduler (constant LR)
    assert cfg.lr_schedule.type == "none"
    # 0 = not given: the run draws a fresh seed from the clock, as the reference README asks
    assert cfg.seed == 0
    cfg.validate(world_size=1)


def test_lr_schedule_reference_syntax() -> None:
    s = LRSchedule.parse("type=multistep,milestones=800 1600,decay_rate=0.1")
    assert (s.type, s.milestones, s.decay_rate) == ("multistep", [800, 1600], 0.1)
    c = LRSchedule.parse("type=cosine_annealing,t_max=9000,eta_min=0")
    assert (c.type, c.t_max) == ("cosine_annealing", 9000)
    with pytest.raises(ConfigError, match="lr_schedule: unknown setting"):
        LRSchedule.parse("type=multistep,gamma=0.1")
    with pytest.raises(ConfigError, match="'linear' is not one of"):
        LRSchedule.parse("type=linear")


def test_file_then_command_line(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('optimizer = "LAMB"\nstart_lr = 0.004\nchannels = [0, 1, 2]\n'
                    '[lr_schedule]\ntype = "multistep"\nmilestones = [2048, 4096]\n')
    yaml = tmp_path / "run.yaml"
    yaml.write_text("optimizer: AdamW\nlocal_batch_size: 8\n")
    cfg = resolve_config(read_config_file(toml), read_config_file(yaml), {"start_lr": "0.002"})
    assert cfg.optimizer == "AdamW" and cfg.start_lr == 0.002 and cfg.local_batch_size == 8
    assert cfg.channels == [0, 1, 2] and cfg.lr_schedule.milestones == [2048, 4096]


@pytest.mark.parametrize(
    ("values", "world", "message"),
    [
        ({"local_batch_size": 0}, 1, "--local_batch_size must be at least 1"),
        ({"start_lr": -1}, 1, "--start_lr must be a positive"),
        ({"lr_warmup_factor": -1}, 1, "--lr_warmup_factor must be a number >= 0"),
        ({"channels": [0, 16]}, 1, r"--channels \[16\] out of range"),
        ({"batchnorm_group_size": 4}, 6, "--batchnorm_group_size 4 does not divide the 6"),
        ({"lr_schedule": "type=cosine_annealing"}, 1, "needs t_max > 0"),
        ({"lr_schedule": "type=multistep,milestones=50 20"}, 1, "increasing"),
        ({"optimizer_betas": [0.9]}, 1, "--optimizer_betas needs two"),
    ],
)
def test_invalid_values_name_the_option(values: dict, world: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config(values).validate(world)


def test_bad_types_and_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="--max_epochs: 'ten' is not a valid int"):
        resolve_config({"max_epochs": "ten"})
    with pytest.raises(ConfigError, match="unknown setting.*learning_rate"):
        resolve_config({"learning_rate": 1})
    with pytest.raises(ConfigError, match="--optimizer 'SGD' is not one of"):
        resolve_config({"optimizer": "SGD"})


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.toml"):
        read_config_file(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("optimizer = \n")
    with pytest.raises(ConfigError, match="broken.toml"):
        read_config_file(broken)
    ini = tmp_path / "run.ini"
    ini.write_text("x=1")
    with pytest.raises(ConfigError, match="use .toml"):
        read_config_file(ini)
