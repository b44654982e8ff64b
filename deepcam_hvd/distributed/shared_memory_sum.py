"""Summing the gradients of the ranks of one node through an MPI shared-memory window (issue 14).

On the main-thread path (``mpi_averaging.py``) every rank's gradients are summed after backward
with no free core to hide the work on, so the cost of the sum is the exposed communication.
``MPI_Allreduce`` of a flattened copy moves each value several times: the flatten, the MPI
library's own copies (MPICH ch4:ucx here sends through UCX's shared-memory transport) and the
copy back. Here each rank instead writes its gradients once into its own segment of a window
that every rank of the node maps (``MPI_Win_allocate_shared``), and after a barrier sums one
slice of every segment into a shared result, in rank order; after a second barrier each rank
reads the result straight into its gradients, one call each way (a loop over ~100 gradients
costs more in calls than in copies). Measured on the demo's 4.2 MB of gradients, 2 ranks, caches
flushed as after backward (``benchmarks/gradient_reduction.py``, ``benchmarks/RESULTS.md``,
"Gradients through shared memory"): 1.1 ms a step against 1.7 ms for ``MPI_Allreduce``.

The values equal ``MPI_Allreduce``'s for 2 ranks (floating-point addition is commutative, so
``a + b`` is the same whichever rank adds) and are the same on every rank for any number of
ranks: each element is summed once, in rank order, by one rank, and read by all.

Memory: the window holds ``size + 1`` blocks of at most :data:`WINDOW_BYTES` in all; larger
gradients go through in rounds of one block, two barriers each. The window lives in the node's
``/dev/shm`` (MPICH maps a file there), so it is made only where that has room twice over;
otherwise :func:`open_shared_memory_sum` says why and the caller stays with ``MPI_Allreduce``.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import torch

#: The window's size at most (all ranks' blocks and the result): 64 MiB.
WINDOW_BYTES = 64 * 2**20
#: Blocks and slices start on 64-byte cache lines, so no two ranks write one line.
ALIGN = 16
FLOAT_BYTES = 4
#: Where MPICH (and Open MPI) put shared-memory windows on Linux.
SHM_DIR = "/dev/shm"


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def block_floats(size: int, count: int, budget: int = WINDOW_BYTES) -> int:
    """Floats per rank block for ``count`` values over ``size`` ranks within ``budget`` bytes."""
    most = budget // (FLOAT_BYTES * (size + 1)) // ALIGN * ALIGN
    return max(ALIGN, min(_align(count), most))


def window_bytes(size: int, block: int) -> int:
    """Bytes of a window for ``size`` ranks' blocks of ``block`` floats and the result."""
    return FLOAT_BYTES * block * (size + 1)


def flat_view(tensor: torch.Tensor) -> torch.Tensor | None:
    """A 1-D view of every element of ``tensor`` in memory order (a channels-last gradient
    too), or None when its elements are not one dense run of memory."""
    if tensor.is_contiguous():
        return tensor.view(-1)
    order = sorted(range(tensor.dim()), key=lambda d: -tensor.stride(d))
    permuted = tensor.permute(order)
    return permuted.view(-1) if permuted.is_contiguous() else None


class SharedMemorySum:
    """Sums float32 tensors over the ranks of ``comm`` (all on one node) in place; every rank
    must call it with tensors of the same sizes, in the same order."""

    def __init__(self, comm: Any, block: int) -> None:
        from mpi4py import MPI

        self.comm = comm
        self.size = comm.Get_size()
        self.rank = comm.Get_rank()
        self.block = block
        nbytes = window_bytes(self.size, block) if self.rank == 0 else 0
        # One allocation (rank 0's) that every rank maps: segment q at block q, the result
        # last. Pages are placed where they are first written, i.e. near their writer.
        self.window = MPI.Win.Allocate_shared(nbytes, FLOAT_BYTES, comm=comm)
        memory, _ = self.window.Shared_query(0)
        whole = torch.frombuffer(memory, dtype=torch.float32)
        self.segments = [whole[q * block:(q + 1) * block] for q in range(self.size)]
        self.result = whole[self.size * block:(self.size + 1) * block]
        # A passive epoch for the window's life: Sync() orders this rank's loads and stores
        # around each barrier, as the MPI-3 shared-memory model asks.
        self.window.Lock_all(MPI.MODE_NOCHECK)

    def __call__(self, tensors: Sequence[torch.Tensor], mean_count: int) -> None:
        """Replace each float32 tensor by its sum over the ranks; the first ``mean_count`` by
        that sum divided by the number of ranks (their mean)."""
        flats = []
        staged: list[tuple[torch.Tensor, torch.Tensor]] = []
        for t in tensors:
            flat = flat_view(t)
            if flat is None:  # not one dense run: reduce a contiguous copy, then copy back
                copy = t.contiguous()
                staged.append((t, copy))
                flat = copy.view(-1)
            flats.append(flat)
        sizes = [f.numel() for f in flats]
        ends = list(accumulate(sizes))
        total = ends[-1] if ends else 0
        means_end = ends[mean_count - 1] if mean_count else 0
        for start in range(0, total, self.block):
            stop = min(total, start + self.block)
            parts = [flats[i] if hi - lo == sizes[i] else flats[i][lo:hi]
                     for i, lo, hi in _pieces(ends, start, stop)]
            # One call each way: a loop over ~100 gradients costs more in calls than in copies.
            torch.cat(parts, out=self.segments[self.rank][:stop - start])
            self._barrier()
            self._sum_my_slice(start, stop, means_end)
            self._barrier()
            results = torch.split(self.result[:stop - start], [p.numel() for p in parts])
            torch._foreach_copy_(parts, list(results))
        for t, copy in staged:
            t.copy_(copy)

    def _sum_my_slice(self, start: int, stop: int, means_end: int) -> None:
        """Sum this rank's slice of values [start, stop) of every segment, in rank order, into
        the result, and divide what lies below ``means_end`` by the number of ranks."""
        width = _align(-(-(stop - start) // self.size))
        lo = min(stop, start + self.rank * width)
        hi = min(stop, lo + width)
        if lo >= hi:
            return
        out = self.result[lo - start:hi - start]
        segments = [s[lo - start:hi - start] for s in self.segments]
        if self.size == 1:
            out.copy_(segments[0])
        else:
            torch.add(segments[0], segments[1], out=out)
            for segment in segments[2:]:
                out.add_(segment)
        if means_end > lo:  # the division mpi_averaging does, on the same sums
            out[:min(hi, means_end) - lo].div_(self.size)

    def _barrier(self) -> None:
        self.window.Sync()
        self.comm.Barrier()
        self.window.Sync()


def _pieces(ends: list[int], start: int, stop: int) -> list[tuple[int, int, int]]:
    """The parts of the tensors (cumulative sizes ``ends``) within values [start, stop), in
    order: for each, (tensor index, first and past-last value within the tensor)."""
    out = []
    i = bisect.bisect_right(ends, start)
    at = start
    while i < len(ends) and at < stop:
        first = ends[i - 1] if i else 0
        hi = min(ends[i], stop)
        if hi > at:  # an empty tensor has no part
            out.append((i, at - first, hi - first))
        at = hi
        i += 1
    return out


def free_shm_bytes(path: str = SHM_DIR) -> int | None:
    """Bytes free in the node's shared-memory file system (None: there is none)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def open_shared_memory_sum(comm: Any, count: int) -> tuple[SharedMemorySum | None, str]:
    """A :class:`SharedMemorySum` over ``comm`` for ``count`` values, or None and why not
    (ranks on several nodes, or too little room in ``/dev/shm``). Collective: every rank of
    ``comm`` gets the same answer."""
    from mpi4py import MPI

    size = comm.Get_size()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    on_one_node = node.Get_size() == size
    node.Free()
    block = block_floats(size, count)
    needed = window_bytes(size, block)
    free = free_shm_bytes()
    room = free is not None and free >= 2 * needed
    # Every rank must take the same path: the room is measured on each and the least counts.
    agreed = comm.allreduce(int(on_one_node and room), op=MPI.MIN)
    if agreed:
        return SharedMemorySum(comm, block), "shared-memory"
    if not on_one_node:
        return None, "mpi (ranks on several nodes)"
    have = "none" if free is None else f"{_size(free)} free"
    return None, f"mpi ({SHM_DIR} has {have}, the window needs twice {_size(needed)})"


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"
