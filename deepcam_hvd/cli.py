"""The ``deepcam-hvd`` command: a click group; each subcommand lives in its own module."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from deepcam_hvd import __version__
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


#: Each subcommand and the module that defines it. A module is imported only when its command
#: runs (or when help lists them all): a CosmoFlow rank then loads TensorFlow and never torch,
#: and ``jobs``/``report`` start without either.
COMMANDS = {
    "info": "deepcam_hvd.commands.info:info",
    "train": "deepcam_hvd.commands.train:train",
    "data": "deepcam_hvd.data.commands:data",
    "jobs": "deepcam_hvd.commands.jobs:jobs",
    "study": "deepcam_hvd.commands.study:study",
    "report": "deepcam_hvd.commands.report:report",
    "bench": "deepcam_hvd.commands.bench:bench",
    "submission": "deepcam_hvd.commands.submission:submission",
    "cosmoflow": "deepcam_hvd.commands.cosmoflow:cosmoflow",
}

# Errors a rank sees when a *peer* failed first: the peer has printed the cause.
PEER_FAILURE_TYPES = ("HorovodInternalError", "HostsUpdatedInterrupt", "DistBackendError")


def _exit_now(code: int) -> None:
    """Exit without running atexit hooks: Horovod's shutdown hook can block when peers died."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _Group(click.Group):
    """Turns errors into one line on stderr naming the rank, never a hang or a bare traceback.

    DeepcamError (bad input) exits 2. A rank whose peer failed says so and exits 3. Anything
    else is a bug: its traceback is printed, then one line naming the rank, exit 1.
    Subcommands load on first use (``COMMANDS``).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, attr = COMMANDS[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DeepcamError as exc:
            report_error(exc)
            if _launch_position()[1] > 1:
                _exit_now(2)
            sys.exit(2)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence for every rank
            rank, size = _launch_position()
            if type(exc).__name__ in PEER_FAILURE_TYPES:
                if os.environ.get("DEEPCAM_TRACEBACK") == "1":  # where a peer's failure hit
                    traceback.print_exc()
                click.echo(f"deepcam-hvd: error: [rank {rank}/{size}] stopped because another "
                           "rank failed (its error is printed above)", err=True)
                _exit_now(3)
            traceback.print_exc()
            click.echo(f"deepcam-hvd: error: [rank {rank}/{size}] unexpected "
                       f"{type(exc).__name__}: {exc}", err=True)
            _exit_now(1)
        return None


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="deepcam-hvd")
def main() -> None:
    """Train DeepCAM (PyTorch) and CosmoFlow (TensorFlow), the MLPerf HPC benchmarks, with
    Horovod on CPU and GPU clusters."""

