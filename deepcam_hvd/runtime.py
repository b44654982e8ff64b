"""Start-up wiring: launcher -> backend -> device -> threads, decided once per process."""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from deepcam_hvd.allocator import active_allocator
from deepcam_hvd.device import choose_device
from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.distributed.select import create_backend, resolve_backend_name
from deepcam_hvd.errors import LaunchError
from deepcam_hvd.horovod_tuning import Workload
from deepcam_hvd.launchers import LaunchInfo, detect_launch
from deepcam_hvd.packages import installed_version
from deepcam_hvd.threads import ThreadPlan, apply_threads, plan_threads


@dataclass
class Runtime:
    """Everything a command needs to know about where and how this rank runs."""

    launch: LaunchInfo
    backend: Backend
    device: torch.device
    threads: ThreadPlan

    @property
    def rank(self) -> int:
        """Global rank (from the communicator)."""
        return self.backend.rank

    @property
    def size(self) -> int:
        """World size (from the communicator)."""
        return self.backend.size

    def describe(self) -> dict[str, Any]:
        """This rank's facts, for ``deepcam-hvd info``."""
        from deepcam_hvd.distributed.horovod_backend import horovod_build

        return {
            "launcher": self.launch.launcher,
            **self.backend.describe(),
            "rank": self.backend.rank,
            "size": self.backend.size,
            "local_rank": self.backend.local_rank,
            "local_size": self.backend.local_size,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(self.device),
            "threads": self.threads.threads,
            "thread_source": self.threads.source,
            "bound_cores": self.threads.bound_cores,
            "node_cores": self.threads.node_cores,
            "allocator": active_allocator(),
            "torch": torch.__version__,
            "tensorflow": installed_version("tensorflow"),
            "python": platform.python_version(),
            "horovod_build": horovod_build(),
        }


def start_runtime(
    launcher: str = "auto",
    backend: str = "auto",
    device: str = "auto",
    env: Mapping[str, str] | None = None,
    launch: LaunchInfo | None = None,
    workload: Workload | None = None,
) -> Runtime:
    """Detect the launcher (unless ``launch`` is given), start the backend (``workload``: what
    each rank will compute per step, when known), pick the device and size the threads."""
    env = os.environ if env is None else env
    launch = launch or detect_launch(env, launcher)
    name = resolve_backend_name(backend, launch)
    comm = create_backend(name, launch, device, workload)
    if comm.size != launch.size:
        raise LaunchError(f"{launch.launcher} reports {launch.size} ranks but the {name} "
                          f"backend's communicator has {comm.size}")
    chosen = choose_device(device, comm.local_rank, comm.local_size)
    plan = plan_threads(env, comm.local_size)
    apply_threads(plan)
    return Runtime(launch, comm, chosen, plan)
