"""Backend choice and the single-process backend."""

from __future__ import annotations

import pytest
import torch

from deepcam_hvd.distributed.base import partition
from deepcam_hvd.distributed.local import LocalBackend
from deepcam_hvd.distributed.select import resolve_backend_name
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.launchers import LaunchInfo

ONE = LaunchInfo("single", 0, 1, 0, 1, "none")
TWO = LaunchInfo("mpich-hydra", 0, 2, 0, 2, "mpi")


def test_auto_is_horovod_for_many_and_local_for_one() -> None:
    assert resolve_backend_name("auto", ONE) == "local"
    assert resolve_backend_name("auto", TWO) == "horovod"
    assert resolve_backend_name("torch", TWO) == "torch"


def test_local_backend_refuses_many_ranks() -> None:
    with pytest.raises(ConfigError, match="--backend local runs one process"):
        resolve_backend_name("local", TWO)


def test_unknown_backend() -> None:
    with pytest.raises(ConfigError, match="'mpi4py' is not one of"):
        resolve_backend_name("mpi4py", ONE)


def test_local_collectives_are_identity_and_copies() -> None:
    b = LocalBackend()
    x = torch.tensor([1.0, 2.0])
    y = b.allreduce(x, "sum")
    assert torch.equal(y, x) and y is not x
    assert b.allreduce_scalar(2.5, "sum") == 2.5
    assert b.broadcast_object({"a": 1}) == {"a": 1}
    assert b.allgather_object(7) == [7]
    assert b.make_groups(1).ranks == (0,)
    with pytest.raises(ValueError, match="group size 2"):
        b.make_groups(2)


def test_partition() -> None:
    assert [list(g) for g in partition(8, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="does not divide"):
        partition(6, 4)
