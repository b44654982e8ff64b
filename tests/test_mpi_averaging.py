"""Gradient averaging with one MPI allreduce from the training thread (mpi_averaging.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deepcam_hvd.distributed.mpi_averaging import mpi_gradient_averager
from tests.launch import PYTHON, results, run_ranks


class FakeComm:
    """A communicator of ``size`` ranks that all hold what this one holds."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls: list[tuple[str, int]] = []

    def Get_size(self) -> int:  # noqa: N802 - mpi4py's name
        return self.size

    def Allreduce(self, _sendbuf: Any, recvbuf: np.ndarray, op: Any) -> None:  # noqa: N802
        self.calls.append((str(recvbuf.dtype), recvbuf.size))
        recvbuf *= self.size


def test_equal_gradients_stay_and_each_dtype_is_one_call() -> None:
    comm = FakeComm(2)
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]]),
             torch.tensor([0.5], dtype=torch.float64), torch.tensor([4.0], dtype=torch.bfloat16)]
    expected = [g.clone() for g in grads]
    mpi_gradient_averager(comm)(grads)
    for got, want in zip(grads, expected, strict=True):
        assert got.dtype == want.dtype and torch.equal(got, want)
    # one allreduce per dtype, in a fixed order; bfloat16 travels as float32
    assert comm.calls == [("float32", 1), ("float32", 3), ("float64", 1)]


def test_a_rider_is_summed_in_the_gradients_allreduce() -> None:
    comm = FakeComm(2)
    averager = mpi_gradient_averager(comm)
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    wait = averager.ride(torch.tensor([1.0]))
    averager(grads)
    assert comm.calls == [("float32", 4)]  # 3 gradient values + the flag, one call
    assert [g.tolist() for g in grads] == [[1.0, 2.0], [[3.0]]]  # averaged: unchanged
    assert wait().tolist() == [2.0]  # summed, not averaged
    assert comm.calls == [("float32", 4)]  # reading it costs nothing more


def test_a_rider_without_averaging_is_reduced_when_read() -> None:
    comm = FakeComm(3)
    averager = mpi_gradient_averager(comm)
    first, second = averager.ride(torch.tensor([1.0])), averager.ride(torch.tensor([0.0, 2.0]))
    assert second().tolist() == [0.0, 6.0] and first().tolist() == [3.0]
    assert comm.calls == [("float32", 3)]  # both waiting riders in one call
    averager([torch.tensor([5.0])])
    assert comm.calls[-1] == ("float32", 1)  # nothing left riding


def test_plain_allreduce_sums_or_averages_in_the_tensors_dtype() -> None:
    averager = mpi_gradient_averager(FakeComm(4))
    got = averager.allreduce(torch.tensor([1.0, 3.0], dtype=torch.float64), mean=True)
    assert got.dtype == torch.float64 and got.tolist() == [1.0, 3.0]
    counts = averager.allreduce(torch.tensor([2, 5]), mean=False)
    assert counts.dtype == torch.int64 and counts.tolist() == [8, 20]


WORKER = textwrap.dedent("""
    import json, sys, torch
    import horovod.torch as hvd
    hvd.init()
    from deepcam_hvd.distributed.mpi_averaging import mpi_gradient_averager
    r = hvd.rank()
    grads = [torch.full((3,), float(r + 1)), torch.arange(4.0).reshape(2, 2) * (r + 1)]
    mpi_gradient_averager()(grads)
    threads = hvd.mpi_threads_supported()
    doc = json.dumps({"grads": [g.tolist() for g in grads], "mt": threads})
    sys.stdout.write(f"RESULT {r} {doc}\\n")  # one write: the ranks share stdout
    sys.stdout.flush()
    hvd.shutdown()
""")


@pytest.mark.multirank
def test_two_ranks_average_beside_horovod(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    found = results(run_ranks([PYTHON, str(script)], env={"PYTHONPATH": str(
        Path(__file__).resolve().parents[1])}))
    assert sorted(found) == [0, 1]
    for doc in found.values():
        assert doc["mt"] is True  # Horovod's MPI runs MPI_THREAD_MULTIPLE here
        assert doc["grads"] == [[1.5, 1.5, 1.5], [[0.0, 1.5], [3.0, 4.5]]]
