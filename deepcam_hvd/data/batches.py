"""Read planned batches of one split into tensors, ahead of the consumer, with reader threads.

:func:`read_batches` turns a plan (the sample indices of each batch, in order) into
:class:`Batch` objects. With ``readers`` > 0 a pool of that many threads reads samples of the
next batches while the caller trains on the current one. The reader moves plain contiguous
arrays with GIL-free ``readinto`` and normalises with numpy (GIL released), so threads overlap;
only chunked/compressed HDF5 reads serialise under h5py's global lock. Each sample is written
straight into its slot of the batch tensor. No process is forked or spawned (forking is unsafe
once MPI is initialised; spawned reader processes measured slower than threads,
``benchmarks/results/loader_throughput.json``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

from .reader import SampleReader


class Batch(NamedTuple):
    """One batch: data (B, C, H, W) float32, label (B, H, W) int64, file path per sample."""

    data: torch.Tensor
    label: torch.Tensor
    filenames: list[str]


def new_batch(reader: SampleReader, size: int, pin: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Uninitialised (data, label) tensors for ``size`` samples of ``reader``'s split; with
    ``pin``, in page-locked memory (needs CUDA) so that copies to the GPU run asynchronously."""
    if pin:
        # torch's caching host allocator reuses freed pinned blocks once their copies are done
        return (torch.empty((size, *reader.output_shape), dtype=torch.float32, pin_memory=True),
                torch.empty((size, *reader.shape[:2]), dtype=torch.int64, pin_memory=True))
    # numpy asks the kernel for huge pages on large arrays: first touch of a fresh 57 MB
    # sample costs ~8 ms instead of ~40 ms for torch.empty (measured, 4 KiB pages)
    return (
        torch.from_numpy(np.empty((size, *reader.output_shape), dtype=np.float32)),
        torch.from_numpy(np.empty((size, *reader.shape[:2]), dtype=np.int64)),
    )


def read_batch(reader: SampleReader, indices: Sequence[int], pin: bool = False) -> Batch:
    """Read samples ``indices`` of the split into one batch, in the calling thread (``pin``:
    into page-locked memory)."""
    data, label = new_batch(reader, len(indices), pin)
    names = [reader.read_into(i, data[j].numpy(), label[j].numpy()) for j, i in enumerate(indices)]
    return Batch(data, label, names)


def read_batches(
    reader: SampleReader, plan: Sequence[Sequence[int]], readers: int, pin: bool = False
) -> Generator[Batch, None, None]:
    """The batches of ``plan`` in order, read by ``readers`` threads (0: in the calling thread),
    into page-locked memory with ``pin``.

    Threads keep about ``2 * readers`` samples (at least two batches) in flight. A read error
    is raised when its batch is reached; closing the iterator early stops the threads.
    """
    if readers == 0:
        for indices in plan:
            yield read_batch(reader, indices, pin)
        return
    largest = max((len(b) for b in plan), default=1)
    in_flight = max(2, math.ceil(2 * readers / largest))
    pending: deque[tuple[torch.Tensor, torch.Tensor, list[Future[str]]]] = deque()
    todo = iter(plan)
    pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="deepcam-reader")

    def submit() -> None:
        indices = next(todo, None)
        if indices is None:
            return
        data, label = new_batch(reader, len(indices), pin)
        futures = [
            pool.submit(reader.read_into, i, data[j].numpy(), label[j].numpy())
            for j, i in enumerate(indices)
        ]
        pending.append((data, label, futures))

    try:
        for _ in range(in_flight):
            submit()
        while pending:
            data, label, futures = pending.popleft()
            names = [f.result() for f in futures]
            submit()
            yield Batch(data, label, names)
    finally:
        for _, _, futures in pending:
            for f in futures:
                f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
