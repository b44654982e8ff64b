"""The PyTorch communication interface every torch backend implements (horovod, torch, local).

:class:`Backend` is a :class:`~deepcam_hvd.distributed.communicator.Communicator` (ranks,
objects, small numbers: what every framework shares) that also moves torch tensors, wraps torch
optimizers and broadcasts a module's state.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from deepcam_hvd.distributed.communicator import Communicator, Group, ReduceOp, partition

__all__ = ["Backend", "Group", "ReduceOp", "averaging_optimizer", "partition"]


class Backend(Communicator):
    """How torch ranks talk. Collectives must be called by every rank, in order."""

    @abstractmethod
    def allreduce(
        self, tensor: torch.Tensor, op: ReduceOp = "mean", group: Group | None = None
    ) -> torch.Tensor:
        """Return the sum or mean of ``tensor`` over all ranks (or over ``group``)."""

    def allreduce_start(self, tensor: torch.Tensor, op: ReduceOp = "sum",
                        name: str = "pending") -> Callable[[], torch.Tensor]:
        """Start an allreduce over all ranks; return the function that waits for its result.

        Backends that can run it in the background (Horovod, torch.distributed) override this,
        so it overlaps the work done before the wait; here it completes at once. ``name``
        tells concurrent operations apart (every rank must use the same one).
        """
        result = self.allreduce(tensor, op)
        return lambda: result

    def allreduce_values(self, values: Sequence[float], op: ReduceOp = "sum") -> list[float]:
        """Element-wise sum or mean of a few Python numbers over all ranks, in float64."""
        return self.allreduce(torch.tensor([float(v) for v in values], dtype=torch.float64),
                              op).tolist()

    def start_count_sum(self, counts: Sequence[float], name: str) -> Callable[[], list[float]]:
        """Start summing small counts in the background (float32, exact below 2**24, so that
        Horovod fuses them with the step's float32 gradients); return the wait."""
        wait = self.allreduce_start(torch.tensor([float(c) for c in counts],
                                                 dtype=torch.float32), "sum", name=name)
        return lambda: wait().tolist()

    @abstractmethod
    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
        """Return ``tensor`` as held by ``root`` on every rank."""

    def broadcast_many(self, tensors: Sequence[torch.Tensor], root: int = 0) -> list[torch.Tensor]:
        """``broadcast`` of each tensor; backends with per-operation latency (Horovod's
        negotiation cycle) override it to run them together."""
        return [self.broadcast(t, root) for t in tensors]

    def allreduce_many(self, tensors: Sequence[torch.Tensor], op: ReduceOp = "mean",
                       group: Group | None = None) -> list[torch.Tensor]:
        """``allreduce`` of each tensor (overridden to run them together, as above)."""
        return [self.allreduce(t, op, group) for t in tensors]

    @abstractmethod
    def distributed_optimizer(
        self,
        optimizer: torch.optim.Optimizer,
        model: torch.nn.Module,
        accumulation_steps: int = 1,
        compression: str = "none",
    ) -> torch.optim.Optimizer:
        """Wrap ``optimizer`` so ``step()`` applies gradients averaged over ranks.

        The caller runs ``accumulation_steps`` backward passes (each on a loss already divided
        by ``accumulation_steps``), then one ``step()``; gradients are summed locally over the
        passes and averaged over ranks, i.e. one step over the global batch. ``compression``
        ("none" or "fp16") is how gradients travel, where the backend supports it.
        """

    def broadcast_state(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, root: int = 0
    ) -> None:
        """Make every rank's parameters, buffers and optimizer state equal to ``root``'s.

        Unlike ``hvd.broadcast_optimizer_state`` this never takes a dummy optimizer step to
        create missing state (which would apply weight decay and advance Adam's step count).
        """
        with torch.no_grad():
            mine = list(model.state_dict().values())
            for tensor, received in zip(mine, self.broadcast_many(mine, root), strict=True):
                tensor.copy_(received)
        if optimizer is None or self.size == 1:
            return
        state = optimizer.state_dict()
        layout, tensors = _split_tensors(state) if self.rank == root else (None, [])
        layout = self.broadcast_object(layout, root)
        received = self.broadcast_many([
            tensors[i] if self.rank == root else torch.empty(shape, dtype=dtype)
            for i, (shape, dtype) in enumerate(layout["tensors"])], root)
        if self.rank != root:
            optimizer.load_state_dict(_join_tensors(layout, received))

    def average_buffers(self, model: torch.nn.Module, group: Group | None = None) -> None:
        """Average floating-point buffers (batch-norm running statistics) over ranks in place."""
        with torch.no_grad():
            buffers = [b for b in model.buffers() if b.is_floating_point()]
            for buf, mean in zip(buffers, self.allreduce_many(buffers, "mean", group),
                                 strict=True):
                buf.copy_(mean)

    @abstractmethod
    def make_groups(self, group_size: int) -> Group:
        """Split ranks into consecutive groups of ``group_size``; return this rank's group.

        Every rank must call this, with the same ``group_size``.
        """



def _split_tensors(state: dict[str, Any]) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Separate an optimizer state_dict into a picklable layout and its tensors, in order."""
    tensors: list[torch.Tensor] = []

    def strip(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            tensors.append(value.detach().cpu() if value.device.type != "cpu" else value.detach())
            return _TensorSlot(len(tensors) - 1)
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(strip(v) for v in value)
        return value

    skeleton = strip(state)
    return {"skeleton": skeleton, "tensors": [(t.shape, t.dtype) for t in tensors]}, tensors


def _join_tensors(layout: dict[str, Any], tensors: list[torch.Tensor]) -> dict[str, Any]:
    """Inverse of `_split_tensors`."""

    def fill(value: Any) -> Any:
        if isinstance(value, _TensorSlot):
            return tensors[value.index]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(fill(v) for v in value)
        return value

    return fill(layout["skeleton"])


@dataclass(frozen=True)
class _TensorSlot:
    """Placeholder for the n-th tensor of an optimizer state in a broadcast layout."""

    index: int


def averaging_optimizer(
    optimizer: torch.optim.Optimizer, average: Callable[[list[torch.Tensor]], None]
) -> torch.optim.Optimizer:
    """Make ``optimizer.step()`` first call ``average(grads)`` on every parameter gradient.

    As Horovod's DistributedOptimizer, the result also has ``synchronize()`` (average now, so
    the caller can time the communication apart) and ``skip_synchronize()`` (a context for the
    ``step()`` that follows; gradients are never averaged twice either way). The instance's
    class is swapped for a subclass so it stays a real ``Optimizer`` for LR schedulers, keeps
    its state, and pickles its state_dict unchanged.
    """
    base = optimizer.__class__

    def synchronize(self: torch.optim.Optimizer) -> None:
        average([p.grad for g in self.param_groups for p in g["params"] if p.grad is not None])
        self._grads_averaged = True  # type: ignore[attr-defined]

    def step(self: torch.optim.Optimizer, closure: Any = None) -> Any:
        if not getattr(self, "_grads_averaged", False):
            synchronize(self)
        self._grads_averaged = False  # type: ignore[attr-defined]
        return base.step(self, closure)

    @contextlib.contextmanager
    def skip_synchronize(self: torch.optim.Optimizer) -> Iterator[None]:
        yield

    optimizer.__class__ = type(f"Averaging{base.__name__}", (base,), {
        "step": step, "synchronize": synchronize, "skip_synchronize": skip_synchronize})
    return optimizer
