"""``deepcam-hvd cosmoflow``: CosmoFlow (MLPerf HPC) on TensorFlow/Keras + Horovod.

``train`` under any launcher (the same detection and runtime decisions as DeepCAM's
``train``), ``data synth`` (synthetic universes, written in parallel over the ranks) and
``bench step`` (the training step's time). TensorFlow is imported only after the runtime has
set what it reads at import (``cosmoflow.runtime.prepare_environment``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from deepcam_hvd.commands.info import json_option, output_option, show_ranks
from deepcam_hvd.commands.options import runtime_options
from deepcam_hvd.cosmoflow.config import (
    DATA_FORMATS,
    DIVISIONS,
    SUBMISSION_STATUSES,
    CosmoConfig,
    parse_decay_schedule,
)
from deepcam_hvd.cosmoflow.data.layout import peek_cube
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.horovod_tuning import CosmoWorkload
from deepcam_hvd.launchers import detect_launch
from deepcam_hvd.train.signals import EXIT_PREEMPTED
from deepcam_hvd.workloads import cosmoflow as facts

DEFAULT_DECAY = ",".join(f"{k}:{v:g}" for k, v in facts.DECAY_SCHEDULE.items())


@click.group("cosmoflow")
def cosmoflow() -> None:
    """CosmoFlow (MLPerf HPC cosmology regression) on TensorFlow/Keras with Horovod."""


@cosmoflow.command("train")
@click.option("--data_dir", "--data-dir", "--data_dir_prefix", "data_dir", required=True,
              help="Data root with train/ and validation/ (one sample per file).")
@click.option("--output_dir", "--output-dir", "output_dir", default="runs/cosmoflow",
              show_default=True, help="Checkpoints, mlperf.log and summary.json go here.")
@click.option("--format", "data_format", type=click.Choice(DATA_FORMATS), default="auto",
              show_default=True, help="Sample files (auto: whichever the splits hold).")
@click.option("--cube", type=click.IntRange(min=0), default=0, show_default=True,
              help="Voxels per side; 0: read from the data (a mismatch is an error).")
@click.option("--n_train", "--n-train", "n_train", type=click.IntRange(min=0), default=0,
              show_default=True, help="Training files used (first N by name); 0: all.")
@click.option("--n_valid", "--n-valid", "n_valid", type=click.IntRange(min=0), default=0,
              show_default=True, help="Validation files used; 0: all.")
@click.option("--local_batch_size", "--batch-size", "local_batch_size", type=int,
              default=facts.LOCAL_BATCH_SIZE, show_default=True, help="Samples per rank per step.")
@click.option("--max_epochs", "--n-epochs", "max_epochs", type=int, default=facts.EPOCHS,
              show_default=True, help="Epochs at most.")
@click.option("--target_mae", type=float, default=facts.TARGET_MAE, show_default=True,
              help="Validation MAE that counts as converged.")
@click.option("--stop_at_target/--no-stop_at_target", default=True, show_default=True,
              help="Stop at the first epoch at or below --target_mae.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed; 0: a fresh one from the clock (a resumed run keeps its own).")
@click.option("--resume", default="", metavar="auto|PATH",
              help="auto: continue from the newest valid checkpoint in --output_dir.")
@click.option("--base_lr", "--lr", "base_lr", type=float, default=facts.BASE_LR,
              show_default=True, help="LR at --base_batch_size.")
@click.option("--base_batch_size", type=int, default=facts.BASE_BATCH_SIZE, show_default=True,
              help="Global batch at which --base_lr applies.")
@click.option("--lr_scaling", type=click.Choice(facts.LR_SCALINGS), default=facts.LR_SCALING,
              show_default=True, help="Peak LR from the global batch.")
@click.option("--warmup_epochs", type=int, default=facts.WARMUP_EPOCHS, show_default=True,
              help="Epochs of linear warm-up to the peak LR.")
@click.option("--decay_schedule", default=DEFAULT_DECAY, show_default=True,
              metavar="EPOCH:FACTOR,...", help="Factor of the peak LR after each epoch; none.")
@click.option("--dropout", type=float, default=facts.DROPOUT, show_default=True,
              help="Dropout after the hidden dense layers (closed division: 0.5).")
@click.option("--staging", "--stage-dir", "staging_dir", default="",
              help="Node-local directory to copy the data to inside the logged init.")
@click.option("--stop_check_steps", type=click.IntRange(min=1), default=8, show_default=True,
              help="Steps between the ranks' agreements on a stop signal.")
@click.option("--keep_checkpoints", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--inter_threads", type=click.IntRange(min=0), default=None,
              help="TF inter-op threads (0: TensorFlow chooses; default: min(2, threads)).")
@click.option("--division", type=click.Choice(DIVISIONS), default="auto", show_default=True)
@click.option("--organization", default="deepcam-hvd", show_default=True)
@click.option("--platform", default="", help="MLPerf submission_platform.")
@click.option("--submission_status", type=click.Choice(SUBMISSION_STATUSES), default="onprem",
              show_default=True)
@runtime_options
def train(launcher: str, backend: str, device: str, decay_schedule: str,
          inter_threads: int | None, **options: Any) -> None:
    """Train CosmoFlow (run it under horovodrun, srun or mpirun, or as one process).

    SIGTERM/SIGUSR1 stop every rank after the same step (checked every --stop_check_steps
    steps and at each epoch's end), write a checkpoint and exit 75; rerun with --resume auto.
    """
    from deepcam_hvd.cosmoflow.runtime import start_tf_runtime

    cfg = CosmoConfig(decay_schedule=parse_decay_schedule(decay_schedule), **options)
    launch = detect_launch(os.environ, launcher)
    cfg.validate(launch.size)
    cube = cfg.cube or peek_cube(cfg.data_dir)
    runtime = start_tf_runtime(launcher, backend, device, launch=launch,
                               inter_threads=inter_threads,
                               workload=CosmoWorkload(cube, cfg.local_batch_size) if cube else None)
    from deepcam_hvd.cosmoflow.trainer import run_cosmoflow

    if runtime.backend.is_root:
        click.echo("runtime: " + json.dumps(runtime.describe(), sort_keys=True))
        click.echo("config: " + json.dumps(cfg.to_dict(), sort_keys=True))
    try:
        summary = run_cosmoflow(cfg, runtime)
    finally:
        runtime.backend.shutdown()
    if summary.stopped_by.startswith("signal"):
        raise SystemExit(EXIT_PREEMPTED)


@cosmoflow.command("info")
@json_option
@output_option
@click.option("--cube", type=click.IntRange(min=32), default=None,
              help="Show the Horovod settings a run on this cube size would get (with "
                   "--local_batch_size).")
@click.option("--local_batch_size", "--batch", "batch", type=click.IntRange(min=1),
              default=facts.LOCAL_BATCH_SIZE, show_default=True)
@click.option("--inter_threads", type=click.IntRange(min=0), default=None,
              help="TF inter-op threads (0: TensorFlow chooses; default: min(2, threads)).")
@runtime_options
def info(as_json: bool, output: str | None, cube: int | None, batch: int,
         inter_threads: int | None, launcher: str, backend: str, device: str) -> None:
    """Show, per rank, how this launch is wired for TensorFlow (run it under your launcher)."""
    from deepcam_hvd.cosmoflow.runtime import start_tf_runtime

    runtime = start_tf_runtime(launcher, backend, device, inter_threads=inter_threads,
                               workload=CosmoWorkload(cube, batch) if cube else None)
    try:
        show_ranks(runtime.backend, runtime.describe(), as_json, output)
    finally:
        runtime.backend.shutdown()


@cosmoflow.group("data")
def data() -> None:
    """Make CosmoFlow data roots."""


@data.command("synth")
@click.option("--output", "--out", "output", required=True,
              type=click.Path(file_okay=False), help="Data root to write.")
@click.option("--cube", type=click.IntRange(min=1), default=facts.CUBE_SIZE, show_default=True)
@click.option("--train", "n_train", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--validation", "--val", "n_valid", type=click.IntRange(min=1), default=16,
              show_default=True)
@click.option("--format", "data_format", type=click.Choice(["tfrecord", "npy"]),
              default="tfrecord", show_default=True)
@click.option("--compression", type=click.Choice(["gzip", "none"]), default="gzip",
              show_default=True, help="TFRecord compression (the reference's is gzip).")
@click.option("--seed", type=click.IntRange(min=0), default=333, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace sample files already there.")
@runtime_options
def synth(output: str, cube: int, n_train: int, n_valid: int, data_format: str,
          compression: str, seed: int, overwrite: bool, launcher: str, backend: str,
          device: str) -> None:
    """Write synthetic universes in the real layout, the ranks sharing the files."""
    from deepcam_hvd.cosmoflow.runtime import start_tf_runtime

    runtime = start_tf_runtime(launcher, backend, "cpu")
    from deepcam_hvd.cosmoflow.data.synth import synthesize
    from deepcam_hvd.distributed.agreement import run_agreed

    b = runtime.backend
    is_root, size = b.is_root, b.size  # Horovod answers neither after shutdown
    try:
        report = run_agreed(b, lambda: synthesize(
            output, n_train, n_valid, cube=cube, seed=seed,
            compression=None if compression == "none" else compression,
            fmt=data_format,  # type: ignore[arg-type]
            rank=b.rank, size=b.size, overwrite=overwrite))
        assert report is not None
        files = int(b.allreduce_scalar(report.files_written, "sum"))
        nbytes = int(b.allreduce_scalar(report.bytes_written, "sum"))
        seconds = b.allreduce_scalar(report.seconds, "mean")
    finally:
        b.shutdown()
    if is_root:
        click.echo(f"wrote {files} samples ({n_train} train + {n_valid} validation, {cube}^3, "
                   f"{data_format}) to {output}: {nbytes / 1e6:.1f} MB in {seconds:.1f} s on "
                   f"{size} rank(s)")


@cosmoflow.group("bench")
def bench() -> None:
    """Timing of CosmoFlow's training path."""


@bench.command("step")
@click.option("--cube", type=click.IntRange(min=32), default=facts.CUBE_SIZE, show_default=True)
@click.option("--local_batch_size", "--batch", "batch", type=click.IntRange(min=1),
              default=facts.LOCAL_BATCH_SIZE, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True,
              help="Timed steps (after the warm-up).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed steps first (tracing, allocation).")
@click.option("--reference", default=None, metavar="DIR",
              help="Time the MLCommons reference's network instead, imported from its "
                   "cosmoflow/ directory (e.g. /tmp/cosmo-ref/cosmoflow).")
@click.option("--inter_threads", type=click.IntRange(min=0), default=None,
              help="TF inter-op threads (0: TensorFlow chooses).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the figures to this file (rank 0).")
@runtime_options
def step(cube: int, batch: int, steps: int, warmup: int, reference: str | None,
         inter_threads: int | None, json_out: str | None, launcher: str, backend: str,
         device: str) -> None:
    """Time the training step on this launch (e.g. 1 rank x 2 threads, or
    ``mpirun -np 2`` with OMP_NUM_THREADS=1); prints samples/s over all ranks."""
    if cube % 32:
        raise ConfigError(f"--cube {cube} is not a multiple of 32 (5 poolings)")
    from deepcam_hvd.cosmoflow.runtime import start_tf_runtime

    runtime = start_tf_runtime(launcher, backend, device, inter_threads=inter_threads,
                               workload=CosmoWorkload(cube, batch))
    from deepcam_hvd.cosmoflow.bench import time_step

    is_root = runtime.backend.is_root
    try:
        figures = time_step(runtime, cube, batch, steps, warmup, reference)
    finally:
        runtime.backend.shutdown()
    if is_root:
        click.echo(f"{figures['model']}: {figures['ranks']} rank(s) x "
                   f"{figures['threads_per_rank']} thread(s), {cube}^3, batch {batch}/rank: "
                   f"step {figures['step_s_median']:.3f} s (median of {steps}), "
                   f"{figures['samples_per_s']:.2f} samples/s")
        click.echo(json.dumps(figures, sort_keys=True))
        if json_out:
            Path(json_out).write_text(json.dumps(figures, indent=2) + "\n")
