"""Hand-made MLPerf HPC logs for the submission tests (the records the hpc_3.0.0 rules read)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SOURCE = "deepcam_hvd/train/mlperf_log.py"
CLOSED_HYPERPARAMETERS: dict[str, Any] = {
    "gradient_accumulation_frequency": 1, "batchnorm_group_size": 1, "opt_name": "LAMB",
    "opt_lr": 0.0055, "opt_betas": [0.9, 0.999], "opt_eps": 1e-6, "opt_weight_decay": 0.01,
    "opt_bias_correction": True, "opt_grad_averaging": True, "opt_max_grad_norm": 1.0,
    "scheduler_type": "multistep", "scheduler_lr_warmup_steps": 400,
    "scheduler_lr_warmup_factor": 1.0, "scheduler_milestones": [800],
    "scheduler_decay_rate": 0.1,
}


def write_log(path: Path, *, division: str = "open", seed: int | None = 1,
              status: str | None = "success", epochs: int = 3, accuracy: float = 0.83,
              global_batch_size: int = 4, org: str = "deepcam-hvd", nodes: int = 1,
              accelerators: int = 0, benchmark: str = "deepcam") -> Path:
    """Write a log of one run that ends after ``epochs`` epochs at ``accuracy``.

    ``status=None`` leaves out run_stop (an unfinished run).
    """
    closed = division == "closed"
    records: list[tuple[str, str, Any, dict[str, Any]]] = [
        ("INTERVAL_START", "init_start", None, {}),
        ("POINT_IN_TIME", "submission_benchmark", benchmark, {}),
        ("POINT_IN_TIME", "submission_org", org, {}),
        ("POINT_IN_TIME", "submission_division", division, {}),
        ("POINT_IN_TIME", "submission_status", "research", {}),
        ("POINT_IN_TIME", "submission_platform", "test-platform", {}),
        ("POINT_IN_TIME", "number_of_nodes", nodes, {}),
        ("POINT_IN_TIME", "accelerators_per_node", accelerators, {}),
        ("POINT_IN_TIME", "cache_clear", False, {}),
    ]
    if seed is not None:
        records.append(("POINT_IN_TIME", "seed", seed, {}))
    records.append(("POINT_IN_TIME", "global_batch_size", global_batch_size, {}))
    if closed:
        records += [("POINT_IN_TIME", k, v, {}) for k, v in CLOSED_HYPERPARAMETERS.items()]
    records += [
        ("POINT_IN_TIME", "train_samples", 121266 if closed else 32, {}),
        ("POINT_IN_TIME", "eval_samples", 15158 if closed else 8, {}),
        ("INTERVAL_END", "init_stop", None, {}),
        ("INTERVAL_START", "run_start", None, {}),
    ]
    for epoch in range(1, epochs + 1):
        value = accuracy if epoch == epochs else accuracy * epoch / (epochs + 1)
        meta = {"epoch_num": epoch}
        records += [("INTERVAL_START", "epoch_start", None, meta),
                    ("INTERVAL_END", "epoch_stop", None, meta),
                    ("INTERVAL_START", "eval_start", None, meta),
                    ("POINT_IN_TIME", "eval_accuracy", round(value, 4), meta),
                    ("INTERVAL_END", "eval_stop", None, meta)]
    if status is not None:
        records.append(("INTERVAL_END", "run_stop", None, {"status": status}))
    lines = []
    for i, (event, key, value, meta) in enumerate(records):
        record = {"namespace": "", "time_ms": 1_700_000_000_000 + 1000 * i,
                  "event_type": event, "key": key, "value": value,
                  "metadata": {"file": SOURCE, "lineno": 100 + i, **meta}}
        lines.append(":::MLLOG " + json.dumps(record))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_runs(root: Path, count: int = 5, **kwargs: Any) -> list[Path]:
    """``count`` run directories root/run_<i>/mlperf.log with seeds 11, 12, ... ."""
    seeds = kwargs.pop("seeds", [11 + i for i in range(count)])
    epochs = kwargs.pop("epoch_list", [kwargs.pop("epochs", 3)] * count)
    dirs = []
    for i in range(count):
        run = root / f"run_{i}"
        write_log(run / "mlperf.log", seed=seeds[i], epochs=epochs[i], **kwargs)
        dirs.append(run)
    return dirs
