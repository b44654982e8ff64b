"""Gradient averaging with one MPI allreduce from the training thread (issue 14).

Horovod runs every collective on its background thread, which negotiates with the other ranks
once per cycle and, under MPI, polls while it waits. When each rank computes on one thread and
every core computes, that thread takes its CPU from the compute thread: on the demo's 0.1 s
step, 2 ranks x 1 thread ran at 0.63 of two independent processes with Horovod's
DistributedOptimizer (50 ms cycle), against 0.87 with this and 0.89 for torch.distributed,
which averages the gradients after backward in one blocking call (``benchmarks/RESULTS.md``,
"Small steps on 2 ranks x 1 thread"). This does the same over MPI: the gradients are flattened
into one buffer, summed with one ``MPI_Allreduce`` on a duplicate of ``MPI_COMM_WORLD``
(mpi4py, the MPI Horovod runs on), and divided by the number of ranks. The backend sends its
other all-rank collectives through the same communicator (``HorovodBackend``), so Horovod's
thread keeps only the batch-norm groups' collectives.

On one node the sum goes through a shared-memory window instead of ``MPI_Allreduce``
(``shared_memory_sum.py``: 1.1 ms against 1.7 ms for the demo's 4.2 MB), where
:func:`deepcam_hvd.horovod_tuning.choose` asks for it (``DEEPCAM_GRADIENT_REDUCTION``) and
``/dev/shm`` has room; :attr:`MpiGradientAverager.reduction` says which one runs.

Small sums can ride along (:meth:`MpiGradientAverager.ride`): the trainer's stop flag is added
to the end of the gradient buffer, so agreeing on a stop costs no collective of its own.

Horovod's background thread then runs on Gloo over loopback (``gloo_beside_mpi.py``), so this
thread is MPI's only caller; where Horovod stays on MPI (a user's choice) it needs
``MPI_THREAD_MULTIPLE``, which the backend checks. :func:`deepcam_hvd.horovod_tuning.choose`
decides when it is used.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from deepcam_hvd.distributed.shared_memory_sum import SharedMemorySum, open_shared_memory_sum

#: dtypes numpy (hence mpi4py) reduces in place; others travel as float32.
NUMPY_FLOATS = (torch.float32, torch.float64, torch.float16)


class _Rider:
    """A float32 tensor to be summed over the ranks with the next gradient averaging."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value = value.detach().to(torch.float32).reshape(-1).clone()
        self.shape = value.shape
        self.result: torch.Tensor | None = None


class MpiGradientAverager:
    """Replaces each gradient by its mean over the ranks of ``comm`` (default: a duplicate of
    ``MPI_COMM_WORLD``); every rank must call it, and :meth:`ride`, in the same order."""

    def __init__(self, comm: Any = None, shared_memory: bool = False) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = MPI.COMM_WORLD.Dup() if comm is None else comm
        self.size = self.comm.Get_size()
        self._riders: list[_Rider] = []
        self._shared: SharedMemorySum | None = None
        #: How the gradients are summed: "mpi", "shared-memory", or "mpi (why not the
        #: other)"; "shared-memory (asked)" until the first averaging opens the window.
        self.reduction = "shared-memory (asked)" if shared_memory else "mpi"

    def ride(self, value: torch.Tensor) -> Callable[[], torch.Tensor]:
        """Sum ``value`` over the ranks in the next gradient averaging; the returned function
        gives the sum (float32), allreducing the waiting riders itself if no averaging ran."""
        rider = _Rider(value)
        self._riders.append(rider)

        def wait() -> torch.Tensor:
            if rider.result is None:
                self._reduce([], 0)
            assert rider.result is not None
            return rider.result

        return wait

    def allreduce(self, tensor: torch.Tensor, mean: bool) -> torch.Tensor:
        """The sum (or mean) of a CPU tensor over the ranks, at once (a new tensor)."""
        out = tensor.detach().clone().contiguous()
        work = out if out.dtype in NUMPY_FLOATS else out.double()
        self.comm.Allreduce(self._mpi.IN_PLACE, work.numpy(), op=self._mpi.SUM)
        if mean:
            work = work / self.size
        return work.to(tensor.dtype)

    def __call__(self, grads: list[torch.Tensor]) -> None:
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {torch.float32: []}
        for g in grads:
            by_dtype.setdefault(g.dtype, []).append(g)
        for dtype in sorted(by_dtype, key=str):  # the same order on every rank
            group = by_dtype[dtype]
            if dtype == torch.float32:
                self._reduce(group, len(group))
            elif group:
                self._average(group)

    def _average(self, group: list[torch.Tensor]) -> None:
        flat = _flatten_dense_tensors(group)
        if flat.dtype not in NUMPY_FLOATS:
            flat = flat.float()
        self.comm.Allreduce(self._mpi.IN_PLACE, flat.numpy(), op=self._mpi.SUM)
        flat.div_(self.size)
        for grad, mean in zip(group, _unflatten_dense_tensors(flat, group), strict=True):
            grad.copy_(mean)

    def _reduce(self, group: list[torch.Tensor], count: int) -> None:
        """One allreduce of float32 ``group`` (averaged) followed by the riders (summed)."""
        riders, self._riders = self._riders, []
        if not group and not riders:
            return
        if count and self.reduction == "shared-memory (asked)":
            total = sum(g.numel() for g in group) + sum(r.value.numel() for r in riders)
            self._shared, self.reduction = open_shared_memory_sum(self.comm, total)
            if self._shared is None and self.comm.Get_rank() == 0:
                print(f"deepcam-hvd: gradients summed by MPI_Allreduce, not shared memory: "
                      f"{self.reduction.removeprefix('mpi (').removesuffix(')')}",
                      file=sys.stderr, flush=True)
        if count and self._shared is not None:
            # Riders are summed in place; a lone rider's sum (no gradients) takes MPI below.
            self._shared([*group, *(r.value for r in riders)], count)
            for r in riders:
                r.result = r.value.reshape(r.shape)
            return
        parts = [g.reshape(-1) for g in group] + [r.value for r in riders]
        flat = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
        self.comm.Allreduce(self._mpi.IN_PLACE, flat.numpy(), op=self._mpi.SUM)
        offset = 0
        for g in group[:count]:
            n = g.numel()
            # one pass over the gradient (a copy, then a division in place, would be two)
            torch.div(flat[offset:offset + n].view_as(g), self.size, out=g)
            offset += n
        for r in riders:
            n = r.value.numel()
            r.result = flat[offset:offset + n].clone().reshape(r.shape)
            offset += n


def mpi_gradient_averager(comm: Any = None, shared_memory: bool = False
                          ) -> MpiGradientAverager:
    """An :class:`MpiGradientAverager` over ``comm`` (default: a duplicate of MPI_COMM_WORLD),
    summing through a shared-memory window where ``shared_memory`` and the node allow."""
    return MpiGradientAverager(comm, shared_memory)
