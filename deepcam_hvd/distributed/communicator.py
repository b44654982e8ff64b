"""What every rank of every framework does with its peers: ranks, objects and small numbers.

This is the framework-neutral half of the communication API. The neutral helpers (``agree``,
``run_on_root``, ``run_seed``, ``StopAgreement``, data staging and synthesis) take a
:class:`Communicator`, so a TensorFlow rank (CosmoFlow) uses them without importing torch.
PyTorch's tensor collectives, optimizer wrapping and state broadcast live in
:class:`deepcam_hvd.distributed.base.Backend`, a Communicator that also moves torch tensors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ReduceOp = Literal["sum", "mean"]


@dataclass(frozen=True)
class Group:
    """A subset of ranks that reduces together (e.g. for group batch-norm).

    ``ranks`` are global ranks in ascending order; ``handle`` is the backend's own object.
    """

    ranks: tuple[int, ...]
    handle: Any = None

    @property
    def size(self) -> int:
        """Number of ranks in the group."""
        return len(self.ranks)


def partition(size: int, group_size: int) -> list[Sequence[int]]:
    """Consecutive rank groups of ``group_size``; ``group_size`` must divide ``size``."""
    if group_size < 1 or size % group_size:
        raise ValueError(f"group size {group_size} does not divide {size} ranks")
    return [range(start, start + group_size) for start in range(0, size, group_size)]


class Communicator(ABC):
    """How ranks talk, whatever the framework. Collectives must be called by every rank, in
    order."""

    name: str = "abstract"

    @property
    @abstractmethod
    def rank(self) -> int:
        """Global rank of this process."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Number of processes."""

    @property
    @abstractmethod
    def local_rank(self) -> int:
        """Rank of this process among those on the same node."""

    @property
    @abstractmethod
    def local_size(self) -> int:
        """Number of processes on this node."""

    @property
    def is_root(self) -> bool:
        """True on global rank 0."""
        return self.rank == 0

    @abstractmethod
    def barrier(self) -> None:
        """Block until every rank reaches this point."""

    @abstractmethod
    def allreduce_values(self, values: Sequence[float], op: ReduceOp = "sum") -> list[float]:
        """Element-wise sum or mean of a few Python numbers over all ranks, in float64."""

    def allreduce_scalar(self, value: float, op: ReduceOp = "mean") -> float:
        """Sum or mean of a Python number over all ranks, as a float (in float64)."""
        return self.allreduce_values([float(value)], op)[0]

    def start_count_sum(self, counts: Sequence[float], name: str) -> Callable[[], list[float]]:
        """Start summing small counts (flags) over ranks; return the function that waits for
        the sums. Backends that can (Horovod, torch.distributed) run it in the background next
        to the step's own communication; here it completes at once. ``name`` tells concurrent
        operations apart (every rank must use the same one)."""
        sums = self.allreduce_values(counts, "sum")
        return lambda: sums

    @abstractmethod
    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        """Return the picklable ``obj`` as held by ``root`` on every rank."""

    @abstractmethod
    def allgather_object(self, obj: Any) -> list[Any]:
        """Return the list of every rank's ``obj``, indexed by rank."""

    def shutdown(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Release the backend's resources (no-op by default)."""

    def describe(self) -> dict[str, Any]:
        """Facts about this backend for ``deepcam-hvd info``."""
        return {"backend": self.name}


class LocalCommunicator(Communicator):
    """One process, no communication: every collective is the identity."""

    name = "local"

    @property
    def rank(self) -> int:
        return 0

    @property
    def size(self) -> int:
        return 1

    @property
    def local_rank(self) -> int:
        return 0

    @property
    def local_size(self) -> int:
        return 1

    def barrier(self) -> None:
        pass

    def allreduce_values(self, values: Sequence[float], op: ReduceOp = "sum") -> list[float]:
        return [float(v) for v in values]

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allgather_object(self, obj: Any) -> list[Any]:
        return [obj]
