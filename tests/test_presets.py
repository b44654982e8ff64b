"""Presets and rule sets: what each fixes, that presets pass their own rules, the README table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from deepcam_hvd.config import TrainConfig, fit_to_world, resolve_config
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.presets import PRESETS, RULES, check_rules, preset, rule_violations, rules_table

README = Path(__file__).resolve().parents[1] / "README.md"


def from_preset(name: str, world: int, **changes: object) -> TrainConfig:
    cfg = fit_to_world(resolve_config(preset(name), changes), world, "local_batch_size" in changes)
    return cfg.validate(world)


@pytest.mark.parametrize("world", [512, 1024, 2048])
def test_nersc10_preset_passes_both_nersc10_rule_sets(world: int) -> None:
    cfg = from_preset("nersc10-baseline", world)
    assert (cfg.target_iou, cfg.max_epochs, cfg.stop_at_target) == (0.80, 16, False)
    assert cfg.local_batch_size * world == 2048
    check_rules("nersc10-baseline", cfg, world)
    check_rules("nersc10-optimized", cfg, world)


def test_nersc10_baseline_names_each_changed_setting() -> None:
    cfg = from_preset("nersc10-baseline", 2048, start_lr=0.004)
    with pytest.raises(ConfigError, match=r"^--rules nersc10-baseline: start_lr is fixed at "
                                          r"0\.0055, this run has 0\.004$"):
        check_rules("nersc10-baseline", cfg, 2048)
    check_rules("nersc10-optimized", cfg, 2048)  # the optimized rules let the LR change
    changed = dataclasses.replace(cfg, lr_warmup_steps=200, stop_at_target=True)
    found = rule_violations("nersc10-baseline", changed, 2048)
    assert any(f.startswith("lr_warmup_steps is fixed at 400") for f in found)
    assert any(f.startswith("stop_at_target is fixed at False") for f in found)
    assert rule_violations("nersc10-optimized", changed, 2048) == \
        ["stop_at_target is fixed at False, this run has True"]
    # a smaller global batch breaks both
    assert rule_violations("nersc10-optimized", cfg, 1024)[0].startswith(
        "global_batch_size is fixed at 2048, this run has 1024")


def test_schedule_is_compared_as_a_schedule() -> None:
    cfg = from_preset("nersc10-baseline", 2048,
                      lr_schedule="type=multistep,milestones=801,decay_rate=0.1")
    assert rule_violations("nersc10-baseline", cfg, 2048) == [
        "lr_schedule is fixed at 'type=multistep,milestones=800,decay_rate=0.1', this run has "
        "'type=multistep,milestones=801,decay_rate=0.1'"]


@pytest.mark.parametrize("nodes", [4, 8, 16])
def test_esif_recipe_passes_on_any_node_count(nodes: int) -> None:
    # ESIF's script: --lr_warmup_factor $((NNODES / 8)) with 0 warm-up steps (ignored there)
    cfg = from_preset("esif-baseline", 4 * nodes, lr_warmup_factor=nodes // 8)
    check_rules("esif-baseline", cfg, 4 * nodes)
    check_rules("esif-optimized", dataclasses.replace(cfg, optimizer="LAMB", start_lr=0.004),
                4 * nodes)
    with pytest.raises(ConfigError, match="--rules esif-optimized: logging_frequency is fixed "
                                          "at 0, this run has 10"):
        check_rules("esif-optimized", dataclasses.replace(cfg, logging_frequency=10), 4 * nodes)


def test_warmup_factor_any_number_as_the_reference() -> None:
    resolve_config({"lr_schedule": "type=multistep,milestones=5", "lr_warmup_factor": 0}
                   ).validate()
    resolve_config({"lr_schedule": "type=multistep,milestones=5", "lr_warmup_steps": 3,
                    "lr_warmup_factor": 0.5}).validate()
    with pytest.raises(ConfigError, match="--lr_warmup_factor must be a number >= 0, got -1"):
        resolve_config({"lr_warmup_factor": -1}).validate()


@pytest.mark.parametrize("name", [n for n in PRESETS if n.startswith("mlperf-closed")])
@pytest.mark.parametrize("world", [1, 4, 128])
def test_mlperf_presets_are_closed(name: str, world: int) -> None:
    assert rule_violations("mlperf-closed", from_preset(name, world), world) == []


def test_mlperf_closed_needs_a_schedule_and_factor_at_least_one() -> None:
    assert rule_violations("mlperf-closed", TrainConfig(), 4) == [
        "lr_schedule is required (multistep or cosine_annealing), this run has none"]
    cfg = from_preset("esif-baseline", 8, lr_warmup_factor=0)
    assert "lr_warmup_factor must be >= 1, this run has 0.0" in \
        rule_violations("mlperf-closed", cfg, 8)


def test_unknown_rules_named() -> None:
    with pytest.raises(ConfigError, match="--rules 'nope' is not known; choose one of "
                                          "mlperf-closed, nersc10-baseline"):
        check_rules("nope", TrainConfig(), 1)


def test_readme_table_is_the_rules() -> None:
    assert rules_table() in README.read_text()
    assert set(RULES) == {"mlperf-closed", "nersc10-baseline", "nersc10-optimized",
                          "esif-baseline", "esif-optimized"}
