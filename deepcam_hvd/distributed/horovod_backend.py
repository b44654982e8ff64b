"""Horovod backend: MPI or Gloo controller on CPU, NCCL/RCCL for GPU tensors."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from deepcam_hvd.distributed.base import Backend, Group, ReduceOp, averaging_optimizer, partition
from deepcam_hvd.distributed.gloo_beside_mpi import GlooBesideMpi, start_gloo_beside_mpi
from deepcam_hvd.distributed.horovod_common import (
    HorovodRanks,
    check_communicator,
    check_horovod_launch,
)
from deepcam_hvd.distributed.mpi_averaging import MpiGradientAverager, mpi_gradient_averager
from deepcam_hvd.horovod_tuning import (
    CONTROLLER_VARIABLE,
    GRADIENT_VARIABLE,
    MAIN_THREAD,
    REDUCTION_VARIABLE,
    SHARED_MEMORY,
    Workload,
    tune,
)
from deepcam_hvd.launchers import LaunchInfo


def _cpu_run(device_request: str) -> bool:
    """Whether this process will train on the CPU (decided before Horovod starts)."""
    return device_request == "cpu" or (device_request == "auto"
                                       and not torch.cuda.is_available())


def horovod_build() -> dict[str, Any]:
    """What the installed Horovod's PyTorch extension was built with (``installed: False``,
    with the reason, when Horovod or that extension is missing)."""
    try:
        import horovod
    except ImportError as exc:
        return {"installed": False, "error": str(exc).splitlines()[0]}
    frameworks = horovod_frameworks()
    if "torch" not in frameworks:
        # horovod.torch imports without its extension (it only warns), then lacks every call
        return {"installed": False, "version": horovod.__version__, "frameworks": frameworks,
                "error": f"Horovod {horovod.__version__} was built for "
                         f"{' + '.join(frameworks) or 'no framework'} only; DeepCAM needs the "
                         "venv of a torch profile (cpu-mpi, cpu-gloo, nvidia-nccl, amd-rccl)"}
    try:
        import horovod.torch as hvd
    except ImportError as exc:
        return {"installed": False, "error": str(exc).splitlines()[0]}
    return {
        "installed": True,
        "version": horovod.__version__,
        "frameworks": frameworks,
        "mpi": bool(hvd.mpi_built()),
        "gloo": bool(hvd.gloo_built()),
        "nccl": bool(hvd.nccl_built()) and not hvd.rocm_built(),
        "rccl": bool(hvd.nccl_built()) and bool(hvd.rocm_built()),
        "cuda": bool(hvd.cuda_built()),
        "rocm": bool(hvd.rocm_built()),
    }


def horovod_frameworks() -> list[str]:
    """The frameworks this Horovod has an extension for, found without importing them
    (TensorFlow takes seconds to import)."""
    import importlib.util

    found = []
    for framework, module in (("torch", "horovod.torch"), ("tensorflow", "horovod.tensorflow")):
        spec = importlib.util.find_spec(module)
        if spec and spec.submodule_search_locations and any(
                any(Path(d).glob("mpi_lib*.so")) for d in spec.submodule_search_locations):
            found.append(framework)
    return found


class HorovodBackend(HorovodRanks, Backend):
    """Collectives through ``horovod.torch``; initialised for the launcher that started us."""

    name = "horovod"

    def __init__(self, launch: LaunchInfo, device_request: str = "auto",
                 workload: Workload | None = None) -> None:
        build = horovod_build()
        check_horovod_launch(build, launch, os.environ)
        import horovod.torch as hvd

        # Cycle time, fusion threshold and background-thread placement: chosen from the run
        # (device, transport, threads, cores, the workload's step) in one place; a user's
        # HOROVOD_* variables win. Horovod reads them once, in hvd.init().
        self.tuning = tune("cpu" if _cpu_run(device_request) else "cuda", launch.transport,
                           launch.local_size, workload, ranks=launch.size)
        self._hvd = hvd
        self._gloo: GlooBesideMpi | None = None
        if launch.transport == "mpi" and self.tuning.chosen(CONTROLLER_VARIABLE) == "gloo":
            from mpi4py import MPI

            self._gloo = start_gloo_beside_mpi(launch, MPI.COMM_WORLD)
        # Dynamic process sets let make_groups() build batch-norm groups after start-up.
        hvd.init(process_sets="dynamic")
        self._build = build
        self._groups: dict[int, Group] = {}
        self._object_ops = 0
        self._averager: MpiGradientAverager | None = None
        check_communicator(hvd, launch)
        # Main-thread mode (horovod_tuning.gradient_path): every collective over all ranks
        # runs on the calling thread through MPI; Horovod's thread keeps only the batch-norm
        # groups' collectives (on Gloo when tuning chose it, so that MPI has one caller).
        if self.gradient_averaging == MAIN_THREAD:
            self._averager = mpi_gradient_averager(
                shared_memory=self.tuning.value(REDUCTION_VARIABLE) == SHARED_MEMORY)

    def barrier(self) -> None:
        if self._averager is not None:
            self._averager.comm.Barrier()
            return
        self._hvd.barrier()

    def _reduce_args(self, op: ReduceOp, group: Group | None) -> tuple[Any, Any, str]:
        """Horovod's op and process set for ``op`` over ``group``, and a name part for them."""
        hvd_op = self._hvd.Average if op == "mean" else self._hvd.Sum
        process_set = group.handle if group is not None else self._hvd.global_process_set
        where = "all" if group is None else "-".join(map(str, group.ranks))
        return hvd_op, process_set, f"allreduce.{op}.{where}"

    def allreduce(
        self, tensor: torch.Tensor, op: ReduceOp = "mean", group: Group | None = None
    ) -> torch.Tensor:
        if self._averager is not None and group is None and tensor.device.type == "cpu":
            # Gradients averaged on this thread: so are the loop's other sums, objects and
            # barriers, so that nothing in training waits for Horovod's next cycle (which is
            # long then, horovod_tuning.MAIN_THREAD_CYCLE_MS).
            return self._averager.allreduce(tensor, mean=op == "mean")
        hvd_op, process_set, kind = self._reduce_args(op, group)
        return self._hvd.allreduce(tensor, op=hvd_op, process_set=process_set,
                                   name=_stable_name(kind, tensor))

    def allreduce_start(self, tensor: torch.Tensor, op: ReduceOp = "sum",
                        name: str = "pending") -> Callable[[], torch.Tensor]:
        if self._averager is not None and tensor.device.type == "cpu":
            # Gradients averaged on this thread: the sum rides in their allreduce.
            wait = self._averager.ride(tensor)
            if op == "mean":
                return lambda: wait() / self.size
            return wait
        hvd_op, process_set, kind = self._reduce_args(op, None)
        handle = self._hvd.allreduce_async(tensor, op=hvd_op, process_set=process_set,
                                           name=f"deepcam.{kind}.{name}")
        return lambda: self._hvd.synchronize(handle)

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
        if self._averager is not None and tensor.device.type == "cpu":  # see allreduce
            out = tensor.detach().clone().contiguous()
            self._averager.comm.Bcast(out.reshape(-1).view(torch.uint8).numpy(), root=root)
            return out
        return self._hvd.broadcast(tensor, root_rank=root,
                                   name=_stable_name(f"broadcast.{root}", tensor))

    def broadcast_many(self, tensors: Sequence[torch.Tensor], root: int = 0) -> list[torch.Tensor]:
        if self._averager is not None:
            return [self.broadcast(t, root) for t in tensors]
        # All in flight at once: one negotiation cycle for the lot, not one per tensor.
        handles = [self._hvd.broadcast_async(t, root_rank=root,
                                             name=_stable_name(f"broadcast.{root}.{i}", t))
                   for i, t in enumerate(tensors)]
        return [self._hvd.synchronize(h) for h in handles]

    def allreduce_many(self, tensors: Sequence[torch.Tensor], op: ReduceOp = "mean",
                       group: Group | None = None) -> list[torch.Tensor]:
        if self._averager is not None and group is None:
            return [self.allreduce(t, op) for t in tensors]
        hvd_op, process_set, kind = self._reduce_args(op, group)
        handles = [self._hvd.allreduce_async(t, op=hvd_op, process_set=process_set,
                                             name=_stable_name(f"{kind}.{i}", t))
                   for i, t in enumerate(tensors)]
        return [self._hvd.synchronize(h) for h in handles]

    def _next_name(self, kind: str) -> str:
        # Horovod names object collectives after the object's type unless told otherwise, so a
        # root holding a dict and a peer holding None would wait on different names forever.
        self._object_ops += 1
        return f"deepcam.{kind}.{self._object_ops}"

    def reset_object_names(self) -> None:
        """Restart object-collective naming (every rank, e.g. after an elastic reset)."""
        self._object_ops = 0

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        if self._averager is not None:  # see allreduce
            return self._averager.comm.bcast(obj, root=root)
        return self._hvd.broadcast_object(obj, root_rank=root, name=self._next_name("bcast"))

    def allgather_object(self, obj: Any) -> list[Any]:
        if self._averager is not None:
            return list(self._averager.comm.allgather(obj))
        return list(self._hvd.allgather_object(obj, name=self._next_name("gather")))

    def distributed_optimizer(
        self,
        optimizer: torch.optim.Optimizer,
        model: torch.nn.Module,
        accumulation_steps: int = 1,
        compression: str = "none",
    ) -> torch.optim.Optimizer:
        if self._averager is not None and compression == "none":
            # One MPI allreduce of all gradients from this thread after backward (see
            # horovod_tuning.gradient_path for when and why); accumulation needs nothing:
            # autograd sums the passes and step() averages once.
            return averaging_optimizer(optimizer, self._averager)
        codec = self._hvd.Compression.fp16 if compression == "fp16" else \
            self._hvd.Compression.none
        # Horovod's hooks start each gradient's allreduce as soon as backward produces it
        # (on the last of the accumulation passes), overlapping communication with backward.
        return self._hvd.DistributedOptimizer(
            optimizer,
            named_parameters=model.named_parameters(),
            backward_passes_per_step=accumulation_steps,
            op=self._hvd.Average,
            compression=codec,
        )

    @property
    def gradient_averaging(self) -> str:
        """Who averages the gradients: "horovod" (DistributedOptimizer, on Horovod's thread)
        or "main-thread" (one MPI allreduce after backward: MPI must be running, and with
        MPI_THREAD_MULTIPLE when Horovod's thread uses MPI too)."""
        path = self.tuning.value(GRADIENT_VARIABLE) or "horovod"
        if path != MAIN_THREAD:
            return path
        if self._gloo is not None:
            return path
        if self._hvd.mpi_enabled() and self._hvd.mpi_threads_supported():
            return path
        return "horovod"

    def make_groups(self, group_size: int) -> Group:
        if group_size in self._groups:
            return self._groups[group_size]
        if group_size == self.size:
            mine = Group(tuple(range(self.size)), self._hvd.global_process_set)
        else:
            mine = None
            for ranks in partition(self.size, group_size):  # same order on every rank
                process_set = self._hvd.add_process_set(list(ranks))
                if self.rank in ranks:
                    mine = Group(tuple(ranks), process_set)
        assert mine is not None
        self._groups[group_size] = mine
        return mine

    def shutdown(self) -> None:
        self._hvd.shutdown()
        if self._gloo is not None:
            self._gloo.close()

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "controller": "mpi" if self._hvd.mpi_enabled() else
            "gloo beside mpi" if self._gloo is not None else
            "gloo" if self._hvd.gloo_enabled() else "unknown",
            "horovod_cycle_time_ms": self.tuning.value("HOROVOD_CYCLE_TIME") or
            "horovod default",
            "gradient_averaging": self.gradient_averaging,
            "gradient_reduction": self._averager.reduction if self._averager is not None else
            "horovod",
            "horovod_tuning": self.tuning.as_dict(),
        }


def _stable_name(kind: str, tensor: torch.Tensor) -> str:
    """A name that repeats for repeated synchronous collectives of the same kind and shape.

    Unnamed Horovod ops get a fresh name each call, which fills Horovod's response cache (and
    warns of evictions) in a loop; these calls block until done, so reusing a name is safe.
    """
    shape = "x".join(map(str, tensor.shape)) or "scalar"
    return f"deepcam.{kind}.{str(tensor.dtype).removeprefix('torch.')}.{shape}"
