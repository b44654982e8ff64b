"""Horovod on Gloo over loopback under an MPI launch, so that only the training thread calls MPI.

With the gradients averaged from the training thread (``mpi_averaging.py``, chosen by
``horovod_tuning.gradient_path``), Horovod's background thread must not use MPI as well: its
controller negotiates with an MPI collective every cycle, and Debian's MPICH 4.0.2 (ch4:ucx)
aborted in CI with both threads in MPI (UCX ``ucp_worker.c: Assertion
'worker->inprogress++ == 0'``, the failure of MPICH issue 6173), although MPI granted
``MPI_THREAD_MULTIPLE``. So Horovod's controller and CPU collectives run on Gloo instead, as
under ``horovodrun --gloo``: rank 0 serves Horovod's own rendezvous store (the one horovodrun
starts), every rank learns its address over MPI and sets the variables horovodrun would set,
and ``hvd.init()`` then never initialises MPI. Gloo talks over the loopback interface, so this
is for ranks that all run on one node (``horovod_tuning`` chooses the main-thread path only
there).
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping
from typing import Any

from deepcam_hvd.launchers import LaunchInfo

LOOPBACK_ADDRESS = "127.0.0.1"


def gloo_environment(launch: LaunchInfo, port: int, hostname: str) -> dict[str, str]:
    """The variables that make ``hvd.init()`` join a Gloo job of ``launch``'s ranks on one
    node, through the rendezvous store at ``LOOPBACK_ADDRESS:port``: what horovodrun --gloo
    sets for each worker (horovod/runner/gloo_run.py), here by hand."""
    return {
        "HOROVOD_CONTROLLER": "gloo",
        "HOROVOD_CPU_OPERATIONS": "gloo",
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": LOOPBACK_ADDRESS,
        "HOROVOD_GLOO_RENDEZVOUS_PORT": str(port),
        "HOROVOD_GLOO_IFACE": loopback_interface(),
        "HOROVOD_HOSTNAME": hostname,
        "HOROVOD_RANK": str(launch.rank),
        "HOROVOD_SIZE": str(launch.size),
        "HOROVOD_LOCAL_RANK": str(launch.local_rank),
        "HOROVOD_LOCAL_SIZE": str(launch.local_size),
        "HOROVOD_CROSS_RANK": "0",
        "HOROVOD_CROSS_SIZE": "1",
    }


def loopback_interface() -> str:
    """The name of the interface that carries 127.0.0.1 ("lo" on Linux)."""
    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == LOOPBACK_ADDRESS for a in addresses):
            return name
    return "lo"


class GlooBesideMpi:
    """Rank 0's rendezvous store for Horovod's Gloo, kept until :meth:`close`."""

    def __init__(self, server: Any | None) -> None:
        self._server = server

    def close(self) -> None:
        """Stop rank 0's rendezvous store (after ``hvd.shutdown()``)."""
        if self._server is not None:
            self._server.stop()
            self._server = None


def start_gloo_beside_mpi(launch: LaunchInfo, comm: Any,
                          env: MutableMapping[str, str] | None = None) -> GlooBesideMpi:
    """Collective over ``comm`` (mpi4py, all of ``launch``'s ranks, one node): start Horovod's
    rendezvous store on rank 0 and export the Gloo variables into ``env`` (default
    ``os.environ``) for ``hvd.init()`` to read."""
    from horovod.runner.common.util.hosts import SlotInfo
    from horovod.runner.http.http_server import RendezvousServer

    target = os.environ if env is None else env
    hostname = socket.gethostname()
    server = None
    port = 0
    if launch.rank == 0:
        server = RendezvousServer()
        port = server.start()
        server.init([SlotInfo(hostname, r, r, 0, launch.size, launch.size, 1)
                     for r in range(launch.size)])
    port = comm.bcast(port, root=0)
    target.update(gloo_environment(launch, port, hostname))
    return GlooBesideMpi(server)
