"""An in-process stand-in for several ranks: one thread per rank, collectives via a barrier."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from deepcam_hvd.distributed.base import Backend, Group, ReduceOp

T = TypeVar("T")


class _Hub:
    def __init__(self, size: int) -> None:
        self.size = size
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots: list[Any] = [None] * size


class ThreadRankBackend(Backend):
    """Rank ``rank`` of ``hub.size`` threads; ``local_size`` ranks per pretend node."""

    name = "threads"

    def __init__(self, hub: _Hub, rank: int, local_size: int | None = None) -> None:
        self.hub = hub
        self._rank = rank
        self._local_size = local_size or hub.size

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def size(self) -> int:
        return self.hub.size

    @property
    def local_rank(self) -> int:
        return self._rank % self._local_size

    @property
    def local_size(self) -> int:
        return self._local_size

    def barrier(self) -> None:
        self.hub.barrier.wait()

    def allgather_object(self, obj: Any) -> list[Any]:
        self.hub.slots[self._rank] = obj
        self.hub.barrier.wait()
        out = list(self.hub.slots)
        self.hub.barrier.wait()
        return out

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        return self.allgather_object(obj)[root]

    def allreduce(
        self, tensor: torch.Tensor, op: ReduceOp = "mean", group: Group | None = None
    ) -> torch.Tensor:
        total = torch.stack(self.allgather_object(tensor.clone())).sum(0)
        return total / self.size if op == "mean" else total

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
        return self.allgather_object(tensor.clone())[root]

    def distributed_optimizer(self, optimizer, model, accumulation_steps=1):  # type: ignore[override]
        raise NotImplementedError

    def broadcast_state(self, model, optimizer=None, root=0):  # type: ignore[override]
        raise NotImplementedError

    def make_groups(self, group_size: int) -> Group:
        raise NotImplementedError


def run_ranks(size: int, fn: Callable[[Backend], T], local_size: int | None = None) -> list[T]:
    """Run ``fn(backend)`` on ``size`` thread-ranks; return results by rank, re-raise a failure."""
    hub = _Hub(size)
    results: list[Any] = [None] * size
    errors: list[BaseException | None] = [None] * size

    def body(rank: int) -> None:
        try:
            results[rank] = fn(ThreadRankBackend(hub, rank, local_size))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            errors[rank] = exc

    threads = [threading.Thread(target=body, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a thread-rank hung"
    for exc in errors:
        if exc is not None:
            raise exc
    return results
