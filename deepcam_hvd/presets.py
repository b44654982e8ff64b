"""Published settings (--preset) and the rules that fix some of them (--rules).

MLPerf HPC closed presets are the reference convergence points of mlperf-logging's
``rcp_checker/hpc_3.0.0/rcps_deepcam.json``; NERSC-10 and NREL ESIF-HPC4 baselines follow
their published run rules (see ../shared/seeds in the project's steering notes).
"""

from __future__ import annotations

from typing import Any

from deepcam_hvd.config import TrainConfig
from deepcam_hvd.errors import ConfigError

_LAMB = {"optimizer": "LAMB", "weight_decay": 0.01, "optimizer_betas": [0.9, 0.999],
         "gradient_accumulation_frequency": 1, "batchnorm_group_size": 1, "target_iou": 0.82}

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
    # NERSC-10: global batch 2048 required, time to 16 epochs; the 2048 convergence point.
    "nersc10-baseline": {**_LAMB, "global_batch_size": 2048, "start_lr": 0.0055,
                         "lr_schedule": "type=multistep,milestones=800,decay_rate=0.1",
                         "lr_warmup_steps": 400, "lr_warmup_factor": 1.0, "max_epochs": 16},
    # NREL ESIF-HPC4 baseline (Kestrel): local batch 8, 4 readers, AdamW, multistep 1200 x0.5.
    # The warm-up factor there is nodes / local batch; set it with --lr_warmup_factor.
    "esif-baseline": {"optimizer": "AdamW", "start_lr": 1e-3, "weight_decay": 1e-2,
                      "lr_schedule": "type=multistep,milestones=1200,decay_rate=0.5",
                      "lr_warmup_steps": 0, "lr_warmup_factor": 1.0, "local_batch_size": 8,
                      "max_inter_threads": 4, "logging_frequency": 0, "save_frequency": 400,
                      "max_epochs": 200, "gradient_accumulation_frequency": 1,
                      "batchnorm_group_size": 1, "target_iou": 0.82},
}

# What each rule set fixes: option -> required value. MLPerf closed lets only the optimizer,
# its lr/betas/weight decay, warm-up, schedule, batch-norm group, accumulation and seed change;
# of what this tool exposes, that fixes the model, the input channels and the target.
# NERSC-10 fixes the global batch and the accumulation; ESIF-HPC4's baseline fixes save,
# accumulation and logging frequency, batch-norm group size and its baseline hyperparameters.
RULES: dict[str, dict[str, Any]] = {
    "mlperf-closed": {"target_iou": 0.82, "channels": list(range(16)),
                      "model": "deeplab-xception"},
    "nersc10-baseline": {"global_batch_size": 2048, "gradient_accumulation_frequency": 1,
                         "model": "deeplab-xception", "channels": list(range(16))},
    "esif-baseline": {"save_frequency": 400, "gradient_accumulation_frequency": 1,
                      "logging_frequency": 0, "batchnorm_group_size": 1,
                      "model": "deeplab-xception", "channels": list(range(16)),
                      "optimizer": "AdamW", "start_lr": 1e-3, "local_batch_size": 8},
}


def preset(name: str) -> dict[str, Any]:
    """The settings of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r} is not known; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def check_rules(rules: str, cfg: TrainConfig, world_size: int) -> None:
    """Refuse a run that changes a hyperparameter the rule set fixes, naming it."""
    if rules not in RULES:
        raise ConfigError(f"--rules {rules!r} is not known; choose one of {', '.join(RULES)}")
    values = cfg.to_dict()
    values["global_batch_size"] = (cfg.local_batch_size * cfg.gradient_accumulation_frequency
                                   * world_size)
    for key, required in RULES[rules].items():
        if values.get(key) != required:
            raise ConfigError(f"--rules {rules}: {key} is fixed at {required!r}, "
                              f"this run has {values.get(key)!r}")
