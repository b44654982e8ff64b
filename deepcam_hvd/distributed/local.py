"""Single-process backend: every collective is the identity."""

from __future__ import annotations

from typing import Any

import torch

from deepcam_hvd.distributed.base import Backend, Group, ReduceOp


class LocalBackend(Backend):
    """One process, no communication. Used when nothing launched more than one rank."""

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

    def allreduce(
        self, tensor: torch.Tensor, op: ReduceOp = "mean", group: Group | None = None
    ) -> torch.Tensor:
        return tensor.clone()

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
        return tensor.clone()

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allgather_object(self, obj: Any) -> list[Any]:
        return [obj]

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
