"""What Horovod's PyTorch and TensorFlow communicators share (the same API in both)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepcam_hvd.errors import LaunchError
from deepcam_hvd.launchers import LaunchInfo


class HorovodRanks:
    """This process's place in Horovod's communicator (``self._hvd``: ``horovod.torch`` or
    ``horovod.tensorflow.keras``, initialised)."""

    _hvd: Any

    @property
    def rank(self) -> int:
        return int(self._hvd.rank())

    @property
    def size(self) -> int:
        return int(self._hvd.size())

    @property
    def local_rank(self) -> int:
        return int(self._hvd.local_rank())

    @property
    def local_size(self) -> int:
        return int(self._hvd.local_size())


def check_communicator(hvd: Any, launch: LaunchInfo) -> None:
    """Raise LaunchError unless Horovod's communicator is the one the launcher started."""
    if hvd.size() != launch.size or hvd.rank() != launch.rank:
        raise LaunchError(
            f"{launch.launcher} started rank {launch.rank} of {launch.size} but Horovod's "
            f"communicator has rank {hvd.rank()} of {hvd.size()}: the launcher's MPI does "
            "not match the MPI Horovod was built with (use the matching mpirun/srun --mpi)")


def check_horovod_launch(build: Mapping[str, Any], launch: LaunchInfo, env: Mapping[str, str],
                         framework: str = "PyTorch") -> None:
    """Refuse a launch this Horovod (``build``: what one framework's extension was built
    with) cannot serve, before ``hvd.init()``."""
    if not build["installed"]:
        raise LaunchError(f"{launch.launcher} started {launch.size} ranks but Horovod's "
                          f"{framework} extension is not importable ({build['error']}); run "
                          "backends/install.sh")
    if launch.transport == "mpi" and not build["mpi"]:
        raise LaunchError(f"{launch.launcher} is an MPI launch but this Horovod was built "
                          "without MPI; launch with horovodrun --gloo or rebuild with the "
                          "cpu-mpi profile")
    if launch.transport == "gloo" and not build["gloo"]:
        raise LaunchError("horovodrun --gloo launch but this Horovod was built without Gloo")
    if launch.transport == "mpi" and env.get("HOROVOD_CPU_OPERATIONS", "").lower() == "gloo":
        raise LaunchError(f"HOROVOD_CPU_OPERATIONS=gloo under an MPI launch "
                          f"({launch.launcher}) crashes Horovod; unset it, or launch with "
                          "horovodrun --gloo")
