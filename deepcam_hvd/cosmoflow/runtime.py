"""TensorFlow start-up for CosmoFlow: the same decisions as ``deepcam_hvd.runtime``, made for TF.

Launcher (``launchers.detect_launch``), thread count (``threads.plan_threads``), Horovod's
settings (``horovod_tuning.tune``) and the launcher-versus-communicator check are the PyTorch
runtime's own, imported. What differs is only where TensorFlow's API differs:

- ``TF_ENABLE_ONEDNN_OPTS=1`` must be in the environment before TensorFlow is imported (the
  ARCHER2 guide measured 12x on AMD CPUs with it); a value the user set is kept.
- threads are TF's intra-op pool (= the planned threads) and inter-op pool
  (:func:`inter_op_threads`), set before TF's runtime starts;
- the communicator is ``horovod.tensorflow.keras`` (more than one rank) wrapped as a
  :class:`~deepcam_hvd.distributed.communicator.Communicator`, so the neutral helpers
  (``run_on_root``, ``run_seed``, ``StopAgreement``) work unchanged; one process needs no
  Horovod. Nothing here imports torch: a TensorFlow rank never loads it;
- the GPU is pinned with ``tf.config.set_visible_devices`` by the communicator's local rank.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deepcam_hvd.allocator import active_allocator
from deepcam_hvd.device import DEVICE_CHOICES, gpu_index
from deepcam_hvd.distributed.communicator import Communicator, LocalCommunicator, ReduceOp
from deepcam_hvd.distributed.horovod_common import (
    HorovodRanks,
    check_communicator,
    check_horovod_launch,
)
from deepcam_hvd.distributed.select import resolve_backend_name
from deepcam_hvd.errors import ConfigError, LaunchError
from deepcam_hvd.horovod_tuning import CosmoWorkload, HorovodTuning, tune
from deepcam_hvd.launchers import LaunchInfo, detect_launch
from deepcam_hvd.packages import installed_version
from deepcam_hvd.threads import ThreadPlan, plan_threads

if TYPE_CHECKING:
    import tensorflow as tf

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
TF_LOG_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
#: The reference's ``--inter-threads`` default: CosmoFlow is a chain of layers, so at most a
#: couple of independent ops (e.g. a gradient and the next layer's backward) run side by side.
REFERENCE_INTER_THREADS = 2
TF_BACKENDS = ("auto", "horovod", "local")


def prepare_environment(env: MutableMapping[str, str] | None = None) -> str:
    """Set what TensorFlow reads at import: oneDNN on, its C++ INFO/WARNING lines off (each
    kept if the user set it). Returns how oneDNN was decided: 'user', 'set' or 'too late'
    (TensorFlow was imported before this call and did not see our value)."""
    target = os.environ if env is None else env
    target.setdefault(TF_LOG_VARIABLE, "2")
    if target.get(ONEDNN_VARIABLE, "") != "":
        return "user"
    target[ONEDNN_VARIABLE] = "1"
    return "too late" if "tensorflow" in sys.modules else "set"


def inter_op_threads(intra: int, requested: int | None = None) -> int:
    """TF inter-op threads: ``requested`` if given (0: TensorFlow chooses, as the ARCHER2 job
    script does), else the reference's 2, never more than the rank's intra-op threads (more
    would run ops on cores this rank does not own)."""
    if requested is not None:
        if requested < 0:
            raise ConfigError(f"--inter_threads {requested} must be 0 (TensorFlow chooses) or "
                              "more")
        return requested
    return max(1, min(REFERENCE_INTER_THREADS, intra))


def choose_tf_device(request: str, local_rank: int, local_size: int) -> str:
    """Pick and pin this rank's device ('auto', 'cpu', 'cuda'); returns a TF device name.

    A GPU rank sees only its own GPU (so TF's '/GPU:0' is it) with memory growth on; a CPU
    rank hides the GPUs. Must run before TensorFlow's runtime starts."""
    import tensorflow as tf

    if request not in DEVICE_CHOICES:
        raise ConfigError(f"--device {request!r} is not one of {', '.join(DEVICE_CHOICES)}")
    gpus = tf.config.list_physical_devices("GPU")
    if request == "cpu" or (request == "auto" and not gpus):
        if gpus:
            _set_visible(tf, [])
        return "/CPU:0"
    if not gpus:
        raise ConfigError("--device cuda but TensorFlow sees no GPU (the tensorflow-cpu build: "
                          "install with DEEPCAM_BACKEND=nvidia-nccl-tf; or no CUDA driver; or "
                          "CUDA_VISIBLE_DEVICES hides them)")
    chosen = gpus[gpu_index(len(gpus), local_rank, local_size)]
    _set_visible(tf, [chosen])
    tf.config.experimental.set_memory_growth(chosen, True)
    return "/GPU:0"


def _set_visible(tf: Any, devices: list[Any]) -> None:
    """``set_visible_devices`` for GPUs, tolerated once TF runs if it is already so."""
    try:
        tf.config.set_visible_devices(devices, "GPU")
    except RuntimeError:
        if list(tf.config.get_visible_devices("GPU")) != devices:
            raise LaunchError("TensorFlow's runtime started before the device was chosen; "
                              "start_tf_runtime must come before any TensorFlow op") from None


def apply_tf_threads(intra: int, inter: int) -> tuple[int, int]:
    """Size TF's thread pools (and OMP_NUM_THREADS for any child); returns the pools in effect.

    TF fixes them when its runtime starts: a second runtime in the same process (tests) keeps
    the first one's, which the return value then shows."""
    import tensorflow as tf

    os.environ["OMP_NUM_THREADS"] = str(intra)
    threading = tf.config.threading
    try:
        threading.set_intra_op_parallelism_threads(intra)
        threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:
        pass
    return (threading.get_intra_op_parallelism_threads(),
            threading.get_inter_op_parallelism_threads())


def horovod_tf_build() -> dict[str, Any]:
    """What the installed Horovod's TensorFlow extension was built with (``installed: False``
    with the import error when it is missing)."""
    try:
        import horovod
        import horovod.tensorflow.keras as hvd
    except ImportError as exc:
        return {"installed": False, "error": str(exc).splitlines()[0]}
    except Exception as exc:  # noqa: BLE001 - e.g. Keras 3 breaks the import at run time
        return {"installed": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    return {"installed": True, "version": horovod.__version__, "mpi": bool(hvd.mpi_built()),
            "gloo": bool(hvd.gloo_built()), "nccl": bool(hvd.nccl_built()),
            "cuda": bool(hvd.cuda_built()), "rocm": bool(hvd.rocm_built())}


class HorovodTFCommunicator(HorovodRanks, Communicator):
    """Collectives through ``horovod.tensorflow.keras``, behind the project's Communicator API.

    Numbers (what the neutral helpers pass: flags and figures) travel as float64 tensors
    through Horovod's TensorFlow ops. Gradients never come here: the Keras optimizer is
    wrapped by :meth:`TFRuntime.distributed_optimizer`.
    """

    name = "horovod"

    def __init__(self, launch: LaunchInfo) -> None:
        import horovod.tensorflow.keras as hvd

        self._hvd = hvd
        hvd.init()
        self._object_ops = 0
        check_communicator(hvd, launch)

    def barrier(self) -> None:
        import horovod.tensorflow as hvd_tf

        hvd_tf.barrier()

    def _name(self, kind: str) -> str:
        # Every rank calls collectives in the same order, so a counter names them alike.
        self._object_ops += 1
        return f"cosmoflow.{kind}.{self._object_ops}"

    def allreduce_values(self, values: Sequence[float], op: ReduceOp = "sum") -> list[float]:
        import horovod.tensorflow as hvd_tf
        import tensorflow as tf

        out = hvd_tf.allreduce(tf.constant([float(v) for v in values], dtype=tf.float64),
                               op=hvd_tf.Average if op == "mean" else hvd_tf.Sum,
                               name=self._name(f"allreduce.{op}"))
        return [float(v) for v in out.numpy()]

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        import horovod.tensorflow as hvd_tf

        return hvd_tf.broadcast_object(obj, root_rank=root, name=self._name("bcast"))

    def allgather_object(self, obj: Any) -> list[Any]:
        import horovod.tensorflow as hvd_tf

        return list(hvd_tf.allgather_object(obj, name=self._name("gather")))

    def shutdown(self) -> None:
        self._hvd.shutdown()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "controller": "mpi" if self._hvd.mpi_enabled() else
                "gloo" if self._hvd.gloo_enabled() else "unknown"}


@dataclass
class TFRuntime:
    """Everything CosmoFlow needs to know about where and how this rank runs."""

    launch: LaunchInfo
    backend: Communicator  # LocalCommunicator (one process) or HorovodTFCommunicator
    device: str  # TF device name: '/CPU:0' or '/GPU:0' (this rank's own GPU)
    threads: ThreadPlan
    intra_threads: int  # TF's pools as in effect
    inter_threads: int
    onednn: str  # how TF_ENABLE_ONEDNN_OPTS was decided (prepare_environment)
    tuning: HorovodTuning | None = None  # None: one process, no Horovod
    notes: list[str] = field(default_factory=list)

    @property
    def rank(self) -> int:
        """Global rank (from the communicator)."""
        return self.backend.rank

    @property
    def size(self) -> int:
        """World size (from the communicator)."""
        return self.backend.size

    @property
    def distributed(self) -> bool:
        """True when gradients are averaged by Horovod (more than one rank)."""
        return isinstance(self.backend, HorovodTFCommunicator)

    def distributed_optimizer(self, optimizer: tf.keras.optimizers.Optimizer
                              ) -> tf.keras.optimizers.Optimizer:
        """``hvd.DistributedOptimizer(optimizer)`` with more than one rank (gradients averaged
        in the step, on Horovod's thread); the optimizer itself with one."""
        if not self.distributed:
            return optimizer
        import horovod.tensorflow.keras as hvd

        return hvd.DistributedOptimizer(optimizer)

    def keras_callbacks(self) -> Sequence[tf.keras.callbacks.Callback]:
        """The reference's Horovod callbacks: rank 0's variables broadcast after the first
        batch, and the epoch's training metrics averaged over ranks (none with one rank)."""
        if not self.distributed:
            return []
        import horovod.tensorflow.keras as hvd

        return [hvd.callbacks.BroadcastGlobalVariablesCallback(0),
                hvd.callbacks.MetricAverageCallback()]

    def describe(self) -> dict[str, Any]:
        """This rank's facts (printed by rank 0 at start, and kept in the summary)."""
        import tensorflow as tf

        return {
            "launcher": self.launch.launcher, **self.backend.describe(),
            "rank": self.backend.rank, "size": self.backend.size,
            "local_rank": self.backend.local_rank, "local_size": self.backend.local_size,
            "host": socket.gethostname(), "pid": os.getpid(), "device": self.device,
            "threads": self.threads.threads, "thread_source": self.threads.source,
            "bound_cores": self.threads.bound_cores, "node_cores": self.threads.node_cores,
            "intra_op_threads": self.intra_threads, "inter_op_threads": self.inter_threads,
            "onednn": f"{os.environ.get(ONEDNN_VARIABLE, '')} ({self.onednn})",
            "allocator": active_allocator(),
            "horovod": _tuning_line(self.tuning),
            "horovod_tuning": self.tuning.as_dict() if self.tuning else None,
            "horovod_build": {**horovod_tf_build(), "frameworks": ["tensorflow"]},
            "tensorflow": tf.__version__, "torch": installed_version("torch"),
            "python": platform.python_version(),
        }


def _tuning_line(tuning: HorovodTuning | None) -> str:
    """Horovod's settings in one line (Keras always averages in its DistributedOptimizer)."""
    if tuning is None:
        return "no Horovod (1 rank)"
    return tuning.summary()


def start_tf_runtime(launcher: str = "auto", backend: str = "auto", device: str = "auto",
                     env: MutableMapping[str, str] | None = None,
                     launch: LaunchInfo | None = None,
                     inter_threads: int | None = None,
                     workload: CosmoWorkload | None = None) -> TFRuntime:
    """Detect the launcher (unless ``launch`` is given), start Horovod's TensorFlow
    communicator for more than one rank, pin the device and size TF's thread pools;
    ``workload`` (one rank's step) sets Horovod's cycle.

    Call it before any TensorFlow op runs: TF fixes its pools and devices at its first op.
    """
    env = os.environ if env is None else env
    onednn = prepare_environment(env)
    launch = launch or detect_launch(env, launcher)
    if backend not in TF_BACKENDS:
        raise ConfigError(f"--backend {backend!r}: CosmoFlow runs on TensorFlow, so one of "
                          f"{', '.join(TF_BACKENDS)} (torch.distributed is PyTorch's)")
    name = resolve_backend_name(backend, launch)
    plan = plan_threads(env, launch.local_size)
    tuning = None
    comm: Communicator
    if name == "horovod":
        check_horovod_launch(horovod_tf_build(), launch, env, "TensorFlow")
        gpu = device == "cuda" or (device == "auto" and _tf_sees_gpu())
        # Cycle time, fusion threshold, thread placement: chosen in one place for both
        # frameworks, from the workload's estimated step (none given: unknown); a user's
        # HOROVOD_* variables win. Horovod reads them once, in hvd.init().
        tuning = tune("cuda" if gpu else "cpu", launch.transport, launch.local_size, workload,
                      env, framework="tensorflow", ranks=launch.size)
        comm = HorovodTFCommunicator(launch)
    else:
        comm = LocalCommunicator()
    if comm.size != launch.size:
        raise LaunchError(f"{launch.launcher} reports {launch.size} ranks but the {name} "
                          f"backend's communicator has {comm.size}")
    chosen = choose_tf_device(device, comm.local_rank, comm.local_size)
    intra, inter = apply_tf_threads(plan.threads, inter_op_threads(plan.threads, inter_threads))
    return TFRuntime(launch, comm, chosen, plan, intra, inter, onednn, tuning)


def _tf_sees_gpu() -> bool:
    """Whether TensorFlow lists a GPU (without starting its runtime)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))
