"""How ranks talk: the one place that chooses and creates the backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.horovod_tuning import Workload
from deepcam_hvd.launchers import LaunchInfo

if TYPE_CHECKING:  # torch backends: imported when one is created, never by TensorFlow ranks
    from deepcam_hvd.distributed.base import Backend

BACKEND_CHOICES = ("auto", "horovod", "torch", "local")


def resolve_backend_name(requested: str, launch: LaunchInfo) -> str:
    """'auto' means horovod with more than one rank and local with one."""
    if requested not in BACKEND_CHOICES:
        raise ConfigError(f"--backend {requested!r} is not one of {', '.join(BACKEND_CHOICES)}")
    if requested == "auto":
        return "horovod" if launch.size > 1 else "local"
    if requested == "local" and launch.size > 1:
        raise ConfigError(f"--backend local runs one process, but {launch.launcher} started "
                          f"{launch.size}; use horovod or torch")
    return requested


def create_backend(name: str, launch: LaunchInfo, device_request: str = "auto",
                   workload: Workload | None = None) -> Backend:
    """Start the named backend for this launch (``device_request`` decides gloo or nccl;
    ``workload``, when known, lets Horovod's settings be chosen from its step)."""
    if name == "local":
        from deepcam_hvd.distributed.local import LocalBackend

        return LocalBackend()
    if name == "horovod":
        from deepcam_hvd.distributed.horovod_backend import HorovodBackend

        return HorovodBackend(launch, device_request, workload)
    if name == "torch":
        from deepcam_hvd.distributed.torch_backend import TorchBackend

        return TorchBackend(launch, device_request)
    raise ConfigError(f"--backend {name!r} is not one of {', '.join(BACKEND_CHOICES)}")
