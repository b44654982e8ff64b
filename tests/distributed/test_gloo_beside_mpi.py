"""Horovod on Gloo over loopback beside an MPI launch (gloo_beside_mpi.py)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from deepcam_hvd.distributed.gloo_beside_mpi import (
    gloo_environment,
    loopback_interface,
    start_gloo_beside_mpi,
)
from deepcam_hvd.launchers import LaunchInfo


class FakeComm:
    """Rank 0's bcast: what the root sends is what every rank gets."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def bcast(self, obj: Any, root: int = 0) -> Any:
        self.sent.append((obj, root))
        return obj


def test_environment_is_what_horovodrun_gloo_gives_one_node() -> None:
    env = gloo_environment(LaunchInfo("mpich", 1, 3, 1, 3, "mpi"), 4321, "node7")
    assert env == {
        "HOROVOD_CONTROLLER": "gloo", "HOROVOD_CPU_OPERATIONS": "gloo",
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": "127.0.0.1", "HOROVOD_GLOO_RENDEZVOUS_PORT": "4321",
        "HOROVOD_GLOO_IFACE": loopback_interface(), "HOROVOD_HOSTNAME": "node7",
        "HOROVOD_RANK": "1", "HOROVOD_SIZE": "3", "HOROVOD_LOCAL_RANK": "1",
        "HOROVOD_LOCAL_SIZE": "3", "HOROVOD_CROSS_RANK": "0", "HOROVOD_CROSS_SIZE": "1",
    }
    assert loopback_interface() == "lo"  # Linux


def test_rank0_serves_the_rendezvous_and_shares_its_port() -> None:
    comm, env = FakeComm(), {}
    gloo = start_gloo_beside_mpi(LaunchInfo("mpich", 0, 2, 0, 2, "mpi"), comm, env)
    try:
        port = int(env["HOROVOD_GLOO_RENDEZVOUS_PORT"])
        assert comm.sent == [(port, 0)] and port > 0
        # Horovod's store answers on that port: a value put is a value got
        url = f"http://127.0.0.1:{port}/scope/key"
        urllib.request.urlopen(urllib.request.Request(url, data=json.dumps(1).encode(),
                                                      method="PUT"), timeout=5)
        assert json.loads(urllib.request.urlopen(url, timeout=5).read()) == 1
    finally:
        gloo.close()
    gloo.close()  # twice is harmless


def test_other_ranks_take_the_port_from_rank0() -> None:
    class Peer(FakeComm):
        def bcast(self, obj: Any, root: int = 0) -> Any:
            assert obj == 0  # a peer starts no store
            return 5555

    env: dict[str, str] = {}
    start_gloo_beside_mpi(LaunchInfo("mpich", 1, 2, 1, 2, "mpi"), Peer(), env).close()
    assert env["HOROVOD_GLOO_RENDEZVOUS_PORT"] == "5555" and env["HOROVOD_RANK"] == "1"
