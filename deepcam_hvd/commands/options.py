"""Options shared by every command that starts a runtime (launcher, backend, device)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from deepcam_hvd.device import DEVICE_CHOICES
from deepcam_hvd.distributed.select import BACKEND_CHOICES
from deepcam_hvd.launchers import launcher_names


def runtime_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --launcher, --backend and --device to a click command."""
    func = click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto",
                        show_default=True, help="Compute device; GPUs go by local rank.")(func)
    func = click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto",
                        show_default=True,
                        help="Communication: horovod with >1 rank, local with 1.")(func)
    func = click.option("--launcher", type=click.Choice(["auto", *launcher_names()]),
                        default="auto", show_default=True,
                        help="Who started the processes; auto detects it from the "
                             "environment.")(func)
    return func
