"""``deepcam-hvd train``: the Horovod trainer under any launcher."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import fields
from typing import Any, get_type_hints

import click

from deepcam_hvd.commands.options import runtime_options
from deepcam_hvd.config import (
    HELP,
    TrainConfig,
    fit_to_world,
    read_config_file,
    resolve_config,
)
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.horovod_tuning import workload_for_config
from deepcam_hvd.launchers import detect_launch
from deepcam_hvd.presets import PRESETS, RULES, check_rules, preset
from deepcam_hvd.runtime import start_runtime
from deepcam_hvd.train.signals import EXIT_PREEMPTED

ALIASES = {"data_dir_prefix": ["--data_dir", "--data-dir"], "checkpoint": ["--resume"]}


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One option per TrainConfig field, named as the reference does (``--start_lr``).

    Every option defaults to None, meaning "not given", so config-file values survive.
    """
    hints = get_type_hints(TrainConfig)
    for f in reversed(fields(TrainConfig)):
        names = [f"--{f.name}", *ALIASES.get(f.name, [])]
        if "_" in f.name:
            names.append(f"--{f.name.replace('_', '-')}")
        if hints[f.name] is bool:
            flag = f"--{f.name}/--no-{f.name}"
            func = click.option(flag, f.name, default=None, help=HELP[f.name])(func)
        elif f.name == "optimizer_betas":
            func = click.option(*names, f.name, nargs=2, type=float, default=None,
                                help=HELP[f.name])(func)
        else:
            func = click.option(*names, f.name, type=str, default=None, metavar="VALUE",
                                help=HELP[f.name])(func)
    return func


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML or YAML file of settings; command-line options override it.")
@click.option("--preset", "preset_name", default=None, metavar="NAME",
              help=f"Published settings: {', '.join(PRESETS)}.")
@click.option("--rules", default=None, metavar="NAME",
              help=f"Refuse settings that {'/'.join(RULES)} fix.")
@click.option("--wireup_method", "wireup_method", default=None, hidden=True,
              help="Accepted from reference run scripts and ignored: the launcher is detected.")
@click.option("--elastic", is_flag=True, default=False,
              help="Horovod elastic mode (horovodrun --gloo --min-np/--max-np/--host-discovery-"
                   "script): training goes on from the last commit when a worker is lost.")
@runtime_options
@config_options
def train(config_file: str | None, preset_name: str | None, rules: str | None, launcher: str,
          backend: str, device: str, wireup_method: str | None, elastic: bool,
          **options: Any) -> None:
    """Train DeepCAM (run it under horovodrun, srun or mpirun, or as one process)."""
    from deepcam_hvd.train.trainer import run_training

    given = {k: v for k, v in options.items() if v is not None}
    from_file = read_config_file(config_file) if config_file else {}
    layers = [preset(preset_name) if preset_name else {}, from_file, given]
    cfg = resolve_config(*layers)
    if any(str(layer.get("seed", "")).strip() in ("0", "0.0") for layer in layers):
        raise ConfigError("--seed 0: MLPerf HPC requires a seed > 0; leave --seed out for a "
                          "fresh seed from the clock")
    if not cfg.data_dir_prefix:
        raise ConfigError("--data_dir_prefix (or --data_dir) is required: the data root with "
                          "train/, validation/ and stats.h5")
    # Everything is checked against the launch's world size before any process group starts.
    launch = detect_launch(os.environ, launcher)
    cfg = fit_to_world(cfg, launch.size, "local_batch_size" in {**from_file, **given})
    cfg.validate(launch.size)
    if rules:
        check_rules(rules, cfg, launch.size)
    if elastic:
        from deepcam_hvd.train.elastic import check_elastic_launch, run_elastic_training

        check_elastic_launch(launch, backend, os.environ)
        run_training = run_elastic_training
    runtime = start_runtime(launcher, backend, device, launch=launch,
                            workload=workload_for_config(cfg))
    if runtime.backend.is_root:
        click.echo("config: " + json.dumps(cfg.to_dict(), sort_keys=True))
        tuning = getattr(runtime.backend, "tuning", None)
        if tuning is not None:
            click.echo(f"horovod settings: {tuning.summary()}")
    try:
        summary = run_training(cfg, runtime)
    finally:
        runtime.backend.shutdown()
    if summary.stopped_by.startswith("signal"):
        raise SystemExit(EXIT_PREEMPTED)
