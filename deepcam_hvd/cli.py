"""The ``deepcam-hvd`` command: a click group; each subcommand lives in its own module."""

from __future__ import annotations

import os
import sys

import click

from deepcam_hvd import __version__
from deepcam_hvd.commands.info import info
from deepcam_hvd.commands.train import train
from deepcam_hvd.data.commands import data
from deepcam_hvd.errors import ConfigError, DeepcamError, LaunchError
from deepcam_hvd.launchers import detect_launch


def _launch_position() -> tuple[int, int]:
    """(rank, size) as the launcher tells it, or (0, 1) if the environment is unreadable."""
    try:
        launch = detect_launch(os.environ)
    except LaunchError:
        return 0, 1
    return launch.rank, launch.size


def report_error(exc: DeepcamError) -> None:
    """One line on stderr. Every rank sees the same configuration, so a ConfigError is printed
    by rank 0 alone; other errors may be one rank's own and say which rank met them."""
    rank, size = _launch_position()
    if isinstance(exc, ConfigError) and rank != 0:
        return
    where = f"[rank {rank}/{size}] " if size > 1 and not isinstance(exc, ConfigError) else ""
    click.echo(f"deepcam-hvd: error: {where}{exc}", err=True)


class _Group(click.Group):
    """Turns DeepcamError into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DeepcamError as exc:
            report_error(exc)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="deepcam-hvd")
def main() -> None:
    """Train DeepCAM (MLPerf HPC climate segmentation) with Horovod on CPU and GPU clusters."""


main.add_command(info)
main.add_command(train)
main.add_command(data)
