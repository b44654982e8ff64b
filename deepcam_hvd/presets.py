"""Published settings (--preset) and the rules that fix some of them (--rules).

MLPerf HPC closed presets are the reference convergence points of mlperf-logging's
``rcp_checker/hpc_3.0.0/rcps_deepcam.json``. NERSC-10 follows NERSC's ``bench_rcp.conf``
(train to IoU 0.80, the figure of merit is the time to complete 16 epochs); NREL ESIF-HPC4
follows its baseline run script (Kestrel). The README's rules table lists what each rule set
fixes; ``tests/test_presets.py`` checks that the table and this module agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from deepcam_hvd.config import LRSchedule, TrainConfig
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.workloads.deepcam import NUM_CHANNELS, samples_per_update

ALL_CHANNELS = list(range(NUM_CHANNELS))

_LAMB = {"optimizer": "LAMB", "weight_decay": 0.01, "optimizer_betas": [0.9, 0.999],
         "gradient_accumulation_frequency": 1, "batchnorm_group_size": 1, "target_iou": 0.82}

_NERSC10_LR = {"optimizer": "LAMB", "start_lr": 0.0055, "weight_decay": 0.01,
               "optimizer_betas": [0.9, 0.999],
               "lr_schedule": "type=multistep,milestones=800,decay_rate=0.1",
               "lr_warmup_steps": 400, "lr_warmup_factor": 1.0}
# Trained to 0.80, timed over 16 complete epochs: training goes on after the target.
_NERSC10_RUN = {"global_batch_size": 2048, "gradient_accumulation_frequency": 1,
                "target_iou": 0.80, "max_epochs": 16, "stop_at_target": False}

_ESIF_FIXED = {"save_frequency": 400, "gradient_accumulation_frequency": 1,
               "logging_frequency": 0, "batchnorm_group_size": 1}
# The warm-up factor of ESIF's script is $((nodes / 8)); with 0 warm-up steps the reference
# builds a plain MultiStepLR and ignores it, so it is left to the command line.
_ESIF_BASELINE = {**_ESIF_FIXED, "optimizer": "AdamW", "start_lr": 1e-3, "weight_decay": 1e-2,
                  "lr_schedule": "type=multistep,milestones=1200,decay_rate=0.5",
                  "lr_warmup_steps": 0, "local_batch_size": 8, "max_inter_threads": 4,
                  "max_epochs": 200, "target_iou": 0.82}

PRESETS: dict[str, dict[str, Any]] = {
    "mlperf-closed-128": {**_LAMB, "global_batch_size": 128, "start_lr": 0.00155,
                          "lr_schedule": "type=cosine_annealing,t_max=9000,eta_min=0.0",
                          "lr_warmup_steps": 0, "lr_warmup_factor": 1.0},
    "mlperf-closed-256": {**_LAMB, "global_batch_size": 256, "start_lr": 0.002,
                          "lr_schedule": "type=multistep,milestones=4096 8192,decay_rate=0.1",
                          "lr_warmup_steps": 0, "lr_warmup_factor": 1.0},
    "mlperf-closed-512": {**_LAMB, "global_batch_size": 512, "start_lr": 0.004,
                          "lr_schedule": "type=multistep,milestones=2048 4096,decay_rate=0.1",
                          "lr_warmup_steps": 100, "lr_warmup_factor": 1.0},
    "mlperf-closed-1024": {**_LAMB, "global_batch_size": 1024, "start_lr": 0.004,
                           "lr_schedule": "type=multistep,milestones=1100 4096,decay_rate=0.1",
                           "lr_warmup_steps": 200, "lr_warmup_factor": 1.0},
    "mlperf-closed-2048": {**_LAMB, "global_batch_size": 2048, "start_lr": 0.0055,
                           "lr_schedule": "type=multistep,milestones=800,decay_rate=0.1",
                           "lr_warmup_steps": 400, "lr_warmup_factor": 1.0},
    "nersc10-baseline": {**_NERSC10_LR, **_NERSC10_RUN, "batchnorm_group_size": 1,
                         "logging_frequency": 10, "save_frequency": 0},
    "esif-baseline": dict(_ESIF_BASELINE),
}


def _has_schedule(cfg: TrainConfig) -> str | None:
    if cfg.lr_schedule.type == "none":
        return "lr_schedule is required (multistep or cosine_annealing), this run has none"
    return None


def _warmup_factor_at_least_one(cfg: TrainConfig) -> str | None:
    if cfg.lr_warmup_factor < 1.0:
        return f"lr_warmup_factor must be >= 1, this run has {cfg.lr_warmup_factor!r}"
    return None


@dataclass(frozen=True)
class RuleSet:
    """What one set of run rules fixes: option -> required value, plus checks of ranges."""

    name: str
    description: str
    fixed: dict[str, Any]
    mutable: tuple[str, ...]
    checks: tuple[Callable[[TrainConfig], str | None], ...] = field(default=())


_WHAT_MLPERF_LETS_CHANGE = ("optimizer", "start_lr", "optimizer_betas", "weight_decay",
                            "lr_warmup_steps", "lr_warmup_factor", "lr_schedule",
                            "batchnorm_group_size", "gradient_accumulation_frequency",
                            "local_batch_size", "seed")
_THE_BENCHMARK = {"model": "deeplab-xception", "channels": ALL_CHANNELS}

RULES: dict[str, RuleSet] = {r.name: r for r in (
    RuleSet("mlperf-closed", "MLPerf HPC 3.0 closed division",
            {**_THE_BENCHMARK, "target_iou": 0.82, "stop_at_target": True},
            _WHAT_MLPERF_LETS_CHANGE, (_has_schedule, _warmup_factor_at_least_one)),
    RuleSet("nersc10-baseline", "NERSC-10 baseline (bench_rcp.conf)",
            {**_THE_BENCHMARK, **_NERSC10_LR, **_NERSC10_RUN, "batchnorm_group_size": 1},
            ("max_inter_threads", "seed")),
    RuleSet("nersc10-optimized", "NERSC-10 optimized: hyperparameters may change",
            {**_THE_BENCHMARK, **_NERSC10_RUN},
            ("optimizer", "start_lr", "optimizer_betas", "weight_decay", "lr_warmup_steps",
             "lr_warmup_factor", "lr_schedule", "batchnorm_group_size", "max_inter_threads",
             "seed")),
    RuleSet("esif-baseline", "NREL ESIF-HPC4 baseline (Kestrel run script)",
            {**_THE_BENCHMARK, **_ESIF_BASELINE}, ("lr_warmup_factor", "seed")),
    RuleSet("esif-optimized", "NREL ESIF-HPC4 optimized: the mutable hyperparameters may "
            "change", {**_THE_BENCHMARK, **_ESIF_FIXED, "target_iou": 0.82},
            ("optimizer", "start_lr", "lr_schedule", "lr_warmup_steps", "lr_warmup_factor",
             "weight_decay", "max_inter_threads", "local_batch_size", "seed")),
)}


def preset(name: str) -> dict[str, Any]:
    """The settings of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r} is not known; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def rule_violations(rules: str, cfg: TrainConfig, world_size: int) -> list[str]:
    """Every way ``cfg`` on ``world_size`` ranks breaks rule set ``rules`` (empty: none)."""
    if rules not in RULES:
        raise ConfigError(f"--rules {rules!r} is not known; choose one of {', '.join(RULES)}")
    rule = RULES[rules]
    values = cfg.to_dict()
    values["global_batch_size"] = samples_per_update(
        cfg.local_batch_size, world_size, cfg.gradient_accumulation_frequency)
    found = []
    for key, want in rule.fixed.items():
        if key == "lr_schedule":
            if values[key] != asdict(LRSchedule.parse(want)):
                found.append(f"lr_schedule is fixed at {want!r}, this run has "
                             f"{_schedule_text(values[key])!r}")
        elif values.get(key) != want:
            found.append(f"{key} is fixed at {want!r}, this run has {values.get(key)!r}")
    found.extend(msg for check in rule.checks if (msg := check(cfg)) is not None)
    return found


def check_rules(rules: str, cfg: TrainConfig, world_size: int) -> None:
    """Refuse a run that changes what rule set ``rules`` fixes, naming the first setting."""
    found = rule_violations(rules, cfg, world_size)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ConfigError(f"--rules {rules}: {found[0]}{more}")


def _schedule_text(schedule: dict[str, Any]) -> str:
    if schedule["type"] == "multistep":
        return (f"type=multistep,milestones={' '.join(map(str, schedule['milestones']))},"
                f"decay_rate={schedule['decay_rate']}")
    if schedule["type"] == "cosine_annealing":
        return f"type=cosine_annealing,t_max={schedule['t_max']},eta_min={schedule['eta_min']}"
    return "none"


def rules_table() -> str:
    """The README's Markdown table of what each rule set fixes and lets change."""
    def show(value: Any) -> str:
        if value == ALL_CHANNELS:
            return "all 16"
        return str(value).replace("type=", "").replace("|", "/")

    lines = ["| `--rules` | what | fixed | may change |", "|---|---|---|---|"]
    for rule in RULES.values():
        fixed = ", ".join(f"`{k}` {show(v)}" for k, v in rule.fixed.items())
        extra = {_has_schedule: "a schedule", _warmup_factor_at_least_one: "warm-up factor >= 1"}
        fixed += "".join(f", {extra[c]}" for c in rule.checks)
        lines.append(f"| `{rule.name}` | {rule.description} | {fixed} | "
                     f"{', '.join(f'`{m}`' for m in rule.mutable)} |")
    return "\n".join(lines)
