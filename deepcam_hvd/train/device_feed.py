"""Batches onto the compute device: as they come, or the next one copied ahead on a side stream.

Without prefetching the feed hands the loader's host batches on unchanged, and the step copies
each to the device when it starts (``non_blocking``: asynchronous from pinned memory). With
``device_prefetch`` on a GPU, the copy of batch N+1 is queued on a side stream before batch N is
handed out, so the copy engine moves it while N computes; the compute stream waits only for its
own batch's copy (an event per batch), and the device memory is marked as used by the compute
stream so the allocator cannot hand it out while a kernel still reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import TypeVar

import torch

from deepcam_hvd.data.batches import Batch
from deepcam_hvd.errors import ConfigError

Item = TypeVar("Item")
Staged = TypeVar("Staged")
Out = TypeVar("Out")


def one_ahead(items: Iterable[Item], stage: Callable[[Item], Staged],
              hand_out: Callable[[Staged], Out]) -> Generator[Out, None, None]:
    """Yield ``hand_out(stage(item))`` for each item in order, staging item N+1 before item N is
    handed out (the first hand-out stages two). Closing the generator closes ``items``."""
    source = iter(items)
    try:
        current = next(source, None)
        if current is None:
            return
        staged = stage(current)
        for following in source:
            staged_next = stage(following)
            yield hand_out(staged)
            staged = staged_next
        yield hand_out(staged)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


class DeviceFeed:
    """Turns a loader's host batches into what the step reads, on ``device``."""

    def __init__(self, device: torch.device, prefetch: bool) -> None:
        if prefetch and device.type != "cuda":
            raise ConfigError(f"--device_prefetch on needs a GPU (this rank computes on "
                              f"{device.type})")
        self.device = device
        self.prefetch = prefetch
        self._stream = torch.cuda.Stream(device) if prefetch else None

    def __call__(self, batches: Iterable[Batch]) -> Iterable[Batch]:
        """The batches to train or validate on, in the loader's order."""
        if not self.prefetch:
            return batches
        return one_ahead(batches, self._copy, self._hand_out)

    def _copy(self, batch: Batch) -> tuple[Batch, torch.cuda.Event]:
        """Queue the batch's copy on the side stream; the event marks its end."""
        assert self._stream is not None
        with torch.cuda.stream(self._stream):
            data = batch.data.to(self.device, non_blocking=True)
            label = batch.label.to(self.device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self._stream)
        return Batch(data, label, batch.filenames), ready

    def _hand_out(self, staged: tuple[Batch, torch.cuda.Event]) -> Batch:
        batch, ready = staged
        compute = torch.cuda.current_stream(self.device)
        compute.wait_event(ready)
        batch.data.record_stream(compute)
        batch.label.record_stream(compute)
        return batch
