"""``deepcam-hvd data``: synth, check, convert and stage a data root (under any launcher).

Every subcommand runs on all ranks of the launch; work is split across them and rank 0 prints.
The logic lives in functions taking a Backend (synth_dataset, check, convert, stage modules);
these commands only parse options, start the ranks and print.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.errors import DataError

from .check import check_dataset
from .convert import convert_dataset
from .layout import SPLITS
from .stage import stage_dataset
from .synth_dataset import COMPRESSIONS, synthesize_dataset


def _backend(launcher: str = "auto", backend: str = "auto") -> Backend:
    """This process's communication backend: the runtime's, or a LocalBackend without one."""
    try:
        from deepcam_hvd.runtime import start_runtime
    except ImportError:
        from deepcam_hvd.distributed.local import LocalBackend

        return LocalBackend()
    return start_runtime(launcher=launcher, backend=backend).backend


@contextmanager
def _ranks(launcher: str, backend: str) -> Iterator[Backend]:
    comm = _backend(launcher, backend)
    try:
        yield comm
    finally:
        comm.shutdown()


def _launch_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--backend", default="auto", show_default=True, help="Communication backend."
    )(func)
    func = click.option(
        "--launcher", default="auto", show_default=True, help="Who started the processes."
    )(func)
    return func


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.2f} GB"


@click.group("data")
def data() -> None:
    """Make, check, convert and stage CAM5 climate data roots."""


@data.command("synth")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Data root.")
@click.option("--train", "n_train", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--val", "n_val", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--test", "n_test", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--height", type=click.IntRange(min=16), default=768, show_default=True)
@click.option("--width", type=click.IntRange(min=24), default=1152, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=333, show_default=True)
@click.option(
    "--compression", type=click.Choice(COMPRESSIONS), default="none", show_default=True
)
@click.option("--overwrite", is_flag=True, help="Replace .h5 files already in the splits.")
@_launch_options
def synth(
    out: str, n_train: int, n_val: int, n_test: int, height: int, width: int, seed: int,
    compression: str, overwrite: bool, launcher: str, backend: str,
) -> None:
    """Write a synthetic data root (train/, validation/, stats.h5) in the CAM5 layout."""
    with _ranks(launcher, backend) as comm:
        report = synthesize_dataset(
            out, comm, n_train, n_val, height=height, width=width, seed=seed,
            compression=compression, test=n_test, overwrite=overwrite,
        )
        if comm.is_root:
            counts = ", ".join(f"{n} {s}" for s, n in report.counts.items())
            freq = ", ".join(f"{f:.5f}" for f in report.class_frequencies)
            click.echo(
                f"wrote {counts} samples of {report.shape} to {report.root} "
                f"({_gb(report.bytes_written)}) in {report.seconds:.1f} s on {comm.size} rank(s)"
            )
            click.echo(f"class frequencies (bg, TC, AR): {freq}")


@data.command("check")
@click.argument("root", type=click.Path())
@click.option(
    "--tolerance", type=click.FloatRange(min=0.0), default=0.05, show_default=True,
    help="Allowed excess over [minval, maxval], as a fraction of maxval - minval.",
)
@_launch_options
def check(root: str, tolerance: float, launcher: str, backend: str) -> None:
    """Validate every file of a data root; exit non-zero naming each bad file."""
    with _ranks(launcher, backend) as comm:
        report = check_dataset(root, comm, tolerance)
        if comm.is_root:
            for problem in report.problems:
                click.echo(f"BAD {problem}", err=True)
            click.echo(report.summary())
        if not report.ok:
            raise DataError(f"{root}: {len(report.problems)} problem(s) found")


@data.command("convert")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.argument("dst", type=click.Path(file_okay=False))
@click.option("--split", "splits", multiple=True, type=click.Choice(SPLITS),
              help="Split(s) to convert (default: all present).")
@_launch_options
def convert(src: str, dst: str, splits: tuple[str, ...], launcher: str, backend: str) -> None:
    """Convert an HDF5 data root to npy files (<name>-data.npy, <name>-label.npy)."""
    with _ranks(launcher, backend) as comm:
        report = convert_dataset(src, dst, comm, list(splits) or None)
        if comm.is_root:
            counts = ", ".join(f"{n} {s}" for s, n in report.counts.items())
            click.echo(
                f"converted {counts} samples to {dst} ({_gb(report.bytes_written)}) "
                f"in {report.seconds:.1f} s on {comm.size} rank(s)"
            )


@data.command("stage")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.argument("dst", type=click.Path(file_okay=False))
@click.option("--split", "splits", multiple=True, type=click.Choice(SPLITS),
              help="Split(s) to stage (default: train and validation).")
@click.option("--seed", type=click.IntRange(min=0), default=333, show_default=True,
              help="Seed of the training run (fixes each rank's training share).")
@click.option("--full", is_flag=True, help="Copy every file to every node, not just shares.")
@_launch_options
def stage(
    src: str, dst: str, splits: tuple[str, ...], seed: int, full: bool, launcher: str,
    backend: str,
) -> None:
    """Copy each rank's files to node-local storage (e.g. /dev/shm/deepcam) and time it."""
    with _ranks(launcher, backend) as comm:
        report = stage_dataset(
            src, dst, comm, splits=splits or ("train", "validation"), seed=seed, full=full
        )
        if comm.is_root:
            click.echo(
                f"staged ({report.mode}) {report.files_copied} files, "
                f"{_gb(report.bytes_copied)}, {report.files_skipped} already there, "
                f"in {report.seconds:.2f} s ({report.gbytes_per_second:.2f} GB/s) "
                f"on {comm.size} rank(s)"
            )
            if report.mode == "share":
                click.echo(f"train with: --shuffle local --seed {seed} on {comm.size} ranks")
