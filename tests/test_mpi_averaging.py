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


WORKER = textwrap.dedent("""
    import json, torch
    import horovod.torch as hvd
    hvd.init()
    from deepcam_hvd.distributed.mpi_averaging import mpi_gradient_averager
    r = hvd.rank()
    grads = [torch.full((3,), float(r + 1)), torch.arange(4.0).reshape(2, 2) * (r + 1)]
    mpi_gradient_averager()(grads)
    threads = hvd.mpi_threads_supported()
    doc = json.dumps({"grads": [g.tolist() for g in grads], "mt": threads})
    print(f"RESULT {r} {doc}", flush=True)  # one write: the ranks share stdout
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
