"""The ``deepcam-hvd`` command: a click group; each subcommand lives in its own module."""

from __future__ import annotations

import sys

import click

from deepcam_hvd import __version__
from deepcam_hvd.commands.info import info
from deepcam_hvd.errors import DeepcamError


class _Group(click.Group):
    """Turns DeepcamError into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DeepcamError as exc:
            click.echo(f"deepcam-hvd: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="deepcam-hvd")
def main() -> None:
    """Train DeepCAM (MLPerf HPC climate segmentation) with Horovod on CPU and GPU clusters."""


main.add_command(info)
