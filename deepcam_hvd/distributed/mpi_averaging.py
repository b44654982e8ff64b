"""Gradient averaging with one MPI allreduce from the training thread (issue 14).

Horovod runs every collective on its background thread, which negotiates with the other ranks
once per cycle and, under MPI, polls while it waits. When each rank computes on one thread and
every core computes, that thread takes its CPU from the compute thread: on the demo's 0.1 s
step, 2 ranks x 1 thread ran at 0.55 of two independent processes whatever the cycle time
(1-50 ms), against 0.83 for torch.distributed, which averages the gradients after backward in
one blocking call (``benchmarks/RESULTS.md``, "Small steps on 2 ranks x 1 thread"). This does
the same over MPI: the gradients are flattened into one buffer, summed with one
``MPI_Allreduce`` on a duplicate of ``MPI_COMM_WORLD`` (mpi4py, the MPI Horovod runs on), and
divided by the number of ranks. Horovod keeps every other collective.

It needs ``MPI_THREAD_MULTIPLE`` (Horovod's background thread uses MPI at the same time); the
caller checks ``hvd.mpi_threads_supported()``. :func:`deepcam_hvd.horovod_tuning.choose`
decides when it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

#: dtypes numpy (hence mpi4py) reduces in place; others travel as float32.
NUMPY_FLOATS = (torch.float32, torch.float64, torch.float16)


def mpi_gradient_averager(comm: Any = None) -> Callable[[list[torch.Tensor]], None]:
    """A function that replaces each gradient by its mean over the ranks of ``comm``
    (default: a duplicate of ``MPI_COMM_WORLD``; every rank must call it in the same order)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Dup() if comm is None else comm
    size = comm.Get_size()

    def average(grads: list[torch.Tensor]) -> None:
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for g in grads:
            by_dtype.setdefault(g.dtype, []).append(g)
        for dtype in sorted(by_dtype, key=str):  # the same order on every rank
            group = by_dtype[dtype]
            flat = _flatten_dense_tensors(group)
            if dtype not in NUMPY_FLOATS:
                flat = flat.float()
            comm.Allreduce(MPI.IN_PLACE, flat.numpy(), op=MPI.SUM)
            flat.div_(size)
            for grad, mean in zip(group, _unflatten_dense_tensors(flat, group), strict=True):
                grad.copy_(mean)

    return average
