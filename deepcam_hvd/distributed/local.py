"""Single-process torch backend: every collective is the identity."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepcam_hvd.distributed.base import Backend, Group, ReduceOp
from deepcam_hvd.distributed.communicator import LocalCommunicator

if TYPE_CHECKING:
    import torch


class LocalBackend(LocalCommunicator, Backend):
    """One process, no communication. Used when nothing launched more than one rank."""

    name = "local"

    def allreduce(
        self, tensor: torch.Tensor, op: ReduceOp = "mean", group: Group | None = None
    ) -> torch.Tensor:
        return tensor.clone()

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
        return tensor.clone()

    def distributed_optimizer(
        self,
        optimizer: torch.optim.Optimizer,
        model: torch.nn.Module,
        accumulation_steps: int = 1,
        compression: str = "none",
    ) -> torch.optim.Optimizer:
        return optimizer

    def make_groups(self, group_size: int) -> Group:
        if group_size != 1:
            raise ValueError(f"batch-norm group size {group_size} needs {group_size} ranks, have 1")
        return Group(ranks=(0,))
