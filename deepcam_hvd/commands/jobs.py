"""``deepcam-hvd jobs``: list the known systems, render a ready job script for one."""

from __future__ import annotations

import stat
from pathlib import Path

import click

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.jobs import (
    DEFAULT_WORKLOAD,
    WORKLOADS,
    RenderRequest,
    get_system,
    load_systems,
    render,
    venv_warning,
)


@click.group()
def jobs() -> None:
    """Job scripts for real systems (Slurm sbatch scripts, mpirun/horovodrun command lines)."""


@jobs.command("list")
def list_systems() -> None:
    """Show the systems a job script can be rendered for."""
    systems = load_systems()
    width = max(len(name) for name in systems)
    for name, s in systems.items():
        layout = f"{s.tasks_per_node} ranks x {s.cpus_per_task} cores"
        if s.gpus_per_node:
            layout += f", {s.gpus_per_node} {s.hardware.accelerator}"
        kind = s.launcher if s.renderable else "model only"
        click.echo(f"{name:<{width}}  {kind:<10}  {layout:<28}  {s.description}")


@jobs.command("render", context_settings={"show_default": True})
@click.argument("system")
@click.option("--nodes", type=int, required=True, help="Number of nodes.")
@click.option("--workload", type=click.Choice(WORKLOADS), default=DEFAULT_WORKLOAD,
              help="What to train: 'deepcam-hvd train' or 'deepcam-hvd cosmoflow train' "
                   "(cosmoflow: CPU systems only).")
@click.option("--preset", default=None, metavar="NAME",
              help="DeepCAM training preset (default: the system's; '' for none).")
@click.option("--data", default=None, metavar="DIR",
              help="Data root (DeepCAM: train/, validation/, stats.h5; CosmoFlow: train/, "
                   "validation/); default: the site's copy for the workload.")
@click.option("--time", "time_limit", default=None, metavar="HH:MM:SS",
              help="Time limit (D-HH:MM:SS also accepted).")
@click.option("--account", default=None, help="Budget code (else SBATCH_ACCOUNT at submit).")
@click.option("--partition", default=None, help="Partition, if not the system's.")
@click.option("--qos", default=None, help="Quality of service, if not the system's.")
@click.option("--tasks-per-node", type=int, default=None, help="Ranks per node.")
@click.option("--cpus-per-task", type=int, default=None, help="Cores per rank.")
@click.option("--config", "config_file", default=None, metavar="FILE",
              help="DeepCAM training settings file (TOML/YAML) passed to 'train --config'.")
@click.option("--output-root", "--output-dir", "output_root", default=None, metavar="DIR",
              help="Where each job makes its own training directory, JOBNAME-JOBID "
                   "(JOBNAME-TIME-PID without Slurm)  [default: runs]")
@click.option("--job-name", default=None, help="Slurm job name.")
@click.option("--venv", default=None, metavar="DIR",
              help="Virtual environment with deepcam-hvd (default: this one).")
@click.option("--hosts", default=None, metavar="H1,H2",
              help="Host names for mpirun/horovodrun, one per node.")
@click.option("--srun-mpi", default=None, metavar="PLUGIN",
              help="srun --mpi plugin (default: the system's; '' for the site default).")
@click.option("--module", "modules", multiple=True, metavar="NAME",
              help="Module to load instead of the system's list (repeat it).")
@click.option("--signal-seconds", type=int, default=300,
              help="Seconds before the time limit that SIGUSR1 asks for a checkpoint.")
@click.option("--info/--no-info", "info_step", default=True,
              help="Run 'deepcam-hvd info' on all ranks before training.")
@click.option("-o", "--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="Write the script here (made executable) instead of stdout.")
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED)
def render_job(system: str, nodes: int, workload: str, preset: str | None, data: str | None,
               time_limit: str | None, account: str | None, partition: str | None,
               qos: str | None, tasks_per_node: int | None, cpus_per_task: int | None,
               config_file: str | None, output_root: str | None, job_name: str | None,
               venv: str | None, hosts: str | None, srun_mpi: str | None,
               modules: tuple[str, ...], signal_seconds: int, info_step: bool,
               out_file: str | None, train_args: tuple[str, ...]) -> None:
    """Render SYSTEM's job template; options after '--' go to the workload's train command
    ('deepcam-hvd train' or 'deepcam-hvd cosmoflow train')."""
    req = RenderRequest(
        system=system, nodes=nodes, workload=workload, preset=preset, data=data, time=time_limit,
        account=account, partition=partition, qos=qos, tasks_per_node=tasks_per_node,
        cpus_per_task=cpus_per_task, config=config_file, output_root=output_root,
        job_name=job_name, venv=venv, hosts=hosts, srun_mpi=srun_mpi,
        modules=list(modules) if modules else None, signal_seconds=signal_seconds,
        info_step=info_step, train_args=list(train_args))
    chosen = get_system(system)
    script = render(chosen, req)
    warning = venv_warning(chosen, req)
    if warning:
        click.echo(f"deepcam-hvd: warning: {warning}", err=True)
    if out_file is None:
        click.echo(script, nl=False)
        return
    path = Path(out_file)
    try:
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError as exc:
        raise ConfigError(f"-o {out_file}: {exc.strerror}") from None
    click.echo(f"wrote {path}", err=True)

