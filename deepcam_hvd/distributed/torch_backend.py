"""torch.distributed backend (gloo on CPU, nccl on GPU), for comparison runs against Horovod."""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from deepcam_hvd.device import choose_device
from deepcam_hvd.distributed.base import Backend, Group, ReduceOp, averaging_optimizer, partition
from deepcam_hvd.errors import LaunchError
from deepcam_hvd.launchers import LaunchInfo

TIMEOUT = timedelta(minutes=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def rendezvous_address(launch: LaunchInfo, env: Mapping[str, str]) -> tuple[str, int]:
    """MASTER_ADDR/MASTER_PORT: from the environment, else rank 0's, shared over MPI."""
    if "MASTER_ADDR" in env and "MASTER_PORT" in env:
        return env["MASTER_ADDR"], int(env["MASTER_PORT"])
    if launch.size == 1:
        return "127.0.0.1", _free_port()
    if launch.transport != "mpi":
        raise LaunchError(f"backend torch under {launch.launcher} needs MASTER_ADDR and "
                          "MASTER_PORT in the environment")
    try:
        from mpi4py import MPI
    except ImportError:
        raise LaunchError("backend torch under an MPI launch needs mpi4py to share the "
                          "rendezvous address, or MASTER_ADDR/MASTER_PORT set") from None
    addr = (socket.gethostname(), _free_port()) if MPI.COMM_WORLD.Get_rank() == 0 else None
    host, port = MPI.COMM_WORLD.bcast(addr, root=0)
    return host, int(port)


class TorchBackend(Backend):
    """Collectives through torch.distributed (gloo for CPU tensors, nccl for CUDA tensors)."""

    name = "torch"

    def __init__(self, launch: LaunchInfo, device_request: str = "auto",
                 env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        # torch.distributed has no local rank of its own: the launcher's is the one we have.
        device = choose_device(device_request, launch.local_rank, launch.local_size)
        host, port = rendezvous_address(launch, env)
        self._device = device
        self._launch = launch
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            init_method=f"tcp://{host}:{port}",
            rank=launch.rank,
            world_size=launch.size,
            timeout=TIMEOUT,
        )
        self._groups: dict[int, Group] = {}

    @property
    def rank(self) -> int:
        return dist.get_rank()

    @property
    def size(self) -> int:
        return dist.get_world_size()

    @property
    def local_rank(self) -> int:
        return self._launch.local_rank

    @property
    def local_size(self) -> int:
        return self._launch.local_size

    def barrier(self) -> None:
        dist.barrier()

    def _on_comm_device(self, tensor: torch.Tensor) -> torch.Tensor:
        # nccl only reduces device tensors; gloo only host tensors.
        return tensor.detach().to(self._device, copy=True)

    def allreduce(
        self, tensor: torch.Tensor, op: ReduceOp = "mean", group: Group | None = None
    ) -> torch.Tensor:
        work = self._on_comm_device(tensor)
        dist.all_reduce(work, op=dist.ReduceOp.SUM, group=group.handle if group else None)
        if op == "mean":
            work /= group.size if group else self.size
        return work.to(tensor.device)

    def allreduce_start(self, tensor: torch.Tensor, op: ReduceOp = "sum",
                        name: str = "pending") -> Callable[[], torch.Tensor]:
        work = self._on_comm_device(tensor)
        pending = dist.all_reduce(work, op=dist.ReduceOp.SUM, async_op=True)

        def wait() -> torch.Tensor:
            pending.wait()
            return (work / self.size if op == "mean" else work).to(tensor.device)

        return wait

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
        work = self._on_comm_device(tensor)
        dist.broadcast(work, src=root)
        return work.to(tensor.device)

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=root, device=self._device)
        return box[0]

    def allgather_object(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def _average_grads(self, grads: list[torch.Tensor]) -> None:
        if not grads:
            return
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.size
        for grad, reduced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
            grad.copy_(reduced)

    def distributed_optimizer(
        self,
        optimizer: torch.optim.Optimizer,
        model: torch.nn.Module,
        accumulation_steps: int = 1,
        compression: str = "none",
    ) -> torch.optim.Optimizer:
        if compression != "none":
            raise LaunchError("gradient compression is a Horovod option; use --backend horovod")
        # Accumulation needs nothing here: autograd sums the passes, step() averages once.
        return averaging_optimizer(optimizer, self._average_grads)

    def make_groups(self, group_size: int) -> Group:
        if group_size not in self._groups:
            mine = None
            for ranks in partition(self.size, group_size):  # every rank creates every group
                handle = dist.new_group(list(ranks))
                if self.rank in ranks:
                    mine = Group(tuple(ranks), handle)
            assert mine is not None
            self._groups[group_size] = mine
        return self._groups[group_size]

    def shutdown(self) -> None:
        # Drop our handles first: a process group that outlives destroy_process_group() is
        # destroyed with the interpreter, where gloo's threads can abort the process at exit
        # ("terminate called without an active exception", 1 exit in ~10 under mpirun).
        self._groups.clear()
        if dist.is_initialized():
            dist.destroy_process_group()
        gc.collect()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "controller": dist.get_backend()}
