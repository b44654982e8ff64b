"""Horovod's run-time settings (cycle time, fusion threshold, background-thread placement),
chosen from the run in this one place before ``hvd.init()`` (issue 14).

Why they matter on CPUs (Horovod 0.28.1, ``horovod/common/operations.cc``): every collective
is run by one background thread per rank that sleeps until its next *cycle*
(``HOROVOD_CYCLE_TIME``, default 1 ms) and then negotiates with the other ranks through the
controller, once per cycle even when nothing is queued (with the MPI controller: an
``MPI_Allreduce`` of the response-cache bits, plus an ``MPI_Allgather`` with dynamic process
sets). An operation queued between cycles waits for the next one. The settings are read once,
at ``hvd.init()``; nothing in 0.28.1 changes them later except ``HOROVOD_AUTOTUNE``, whose
Bayesian search needs hundreds of steps of stable timing and was left off.

Under MPI (MPICH ch4:ucx here) a rank whose cycle starts before its peer's spins in the
collective until the peer arrives (``perf``: the background thread's time is in UCX/MPICH
progress polling). Each thread schedules its next cycle from its own last start, so the
offset between the ranks' cycles persists and grows as wake-ups are delayed by the compute
threads sharing the core; it only shrinks when a cycle's work outlasts the cycle (a large
fused allreduce realigns the ranks). When the ranks' threads fill their cores, that spinning
is CPU taken from compute. Two costs pull the cycle time apart:

* latency: gradients that backward finishes wait on average half a cycle for the next one,
  and the step's last gradients are exposed (plus the trainer's blocking logging collective);
* polling: the more cycles per step, the more spinning between the realignments.

Where the gradients are averaged decides the rest (:func:`gradient_path`). With one compute
thread per rank, no free core, MPI and every rank on one node, they are averaged by one MPI
allreduce from the training thread after backward (``distributed/mpi_averaging.py``), and
every other all-rank collective goes the same way, so nothing in training waits on Horovod's
thread: its cycle is ``MAIN_THREAD_CYCLE_MS`` (200 ms), which only sets how often it polls,
and its controller is Gloo over loopback (:func:`controller`,
``distributed/gloo_beside_mpi.py``), so that MPI has one caller (MPICH 4.0/UCX aborted in CI
with two threads in MPI). On one node that sum goes through a shared-memory window instead of
``MPI_Allreduce`` (:func:`reduction`, ``DEEPCAM_GRADIENT_REDUCTION=shared-memory|mpi``).
``DEEPCAM_GRADIENT_AVERAGING=horovod|main-thread`` overrides. Otherwise
(threads > 1 or a spare core, Gloo, GPU) Horovod's DistributedOptimizer overlaps them with
backward and the cycle is a fixed fraction of the step, ``step / CYCLES_PER_STEP``, within
[``MIN_CYCLE_MS``, ``MAX_CYCLE_MS``]; the step comes from the workload
(:func:`estimate_step_s`: the workload's FLOPs over a per-core rate of its framework fitted to
measured steps, :class:`Workload` for DeepCAM, :class:`CosmoWorkload` for CosmoFlow) since
``hvd.init()`` runs before any step. Without a workload
(``deepcam-hvd info``, ``data`` commands) it is ``MAX_CYCLE_MS``, the full-size choice. GPU
ranks keep Horovod's defaults (their steps are short and their cores are not the compute).

Measured (``benchmarks/RESULTS.md``, "Small steps on 2 ranks x 1 thread", from
``benchmarks/small_step_scaling.py``; earlier sweeps in "Layout study"): at full size (a 20-40 s
step) 1 ms cycles cost 50 % of the step and 50 ms was best (20 ms: +18 %, 200 ms: no better);
on the demo's 0.1 s step, 2 ranks x 1 thread ran at 0.63 of two independent processes with the
50 ms cycle and Horovod's optimizer, 0.87-0.89 with the main-thread path and a 200 ms cycle
(30 ms: about 0.1 lower); with Horovod's optimizer, 1/10 of the step beat 1/100 on both
workloads (:data:`CYCLES_PER_STEP`).

Fusion threshold: Horovod's 128 MiB, stated explicitly. The demo's 4.2 MB of gradients fit one
buffer and the full model's 226 MB two; a smaller buffer only splits the same copies and
reductions into more cycles.

Thread placement: with ``HOROVOD_THREAD_AFFINITY`` Horovod pins each local rank's background
thread to one core. It pays only where that core is not computing: when this rank is bound to
more cores than it runs threads on, the background thread goes to the last such core;
otherwise (every core computing, as with 2 ranks x 1 thread on 2 cores) it is left with the
rank, where the scheduler shares it with the compute threads.

A variable the user set (``HOROVOD_CYCLE_TIME``, ``HOROVOD_FUSION_THRESHOLD``,
``HOROVOD_THREAD_AFFINITY``) is kept as given; ``deepcam-hvd info`` shows each value, where
it came from and why.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from deepcam_hvd.config import TrainConfig

CYCLE_VARIABLE = "HOROVOD_CYCLE_TIME"
FUSION_VARIABLE = "HOROVOD_FUSION_THRESHOLD"
AFFINITY_VARIABLE = "HOROVOD_THREAD_AFFINITY"
CONTROLLER_VARIABLE = "HOROVOD_CONTROLLER"
#: The variables apply() exports; the controller is set up by the backend
#: (distributed/gloo_beside_mpi.py needs a rendezvous, not just a variable).
EXPORTED = (CYCLE_VARIABLE, FUSION_VARIABLE, AFFINITY_VARIABLE)
#: A user who sets these chose how Horovod talks: the main-thread path is then not chosen.
USER_CONTROLLER_VARIABLES = (CONTROLLER_VARIABLE, "HOROVOD_CPU_OPERATIONS")
#: Ours, not Horovod's: "horovod" (hvd.DistributedOptimizer: allreduces on Horovod's
#: background thread, overlapped with backward) or "main-thread" (one MPI allreduce of all
#: gradients after backward, deepcam_hvd/distributed/mpi_averaging.py).
GRADIENT_VARIABLE = "DEEPCAM_GRADIENT_AVERAGING"
HOROVOD_PATH = "horovod"
MAIN_THREAD = "main-thread"
#: Ours too: how the main-thread path sums, "shared-memory" (one MPI shared-memory window on
#: the node, deepcam_hvd/distributed/shared_memory_sum.py) or "mpi" (MPI_Allreduce).
REDUCTION_VARIABLE = "DEEPCAM_GRADIENT_REDUCTION"
SHARED_MEMORY = "shared-memory"
MPI_ALLREDUCE = "mpi"

#: Horovod 0.28.1's own defaults (operations.cc).
HOROVOD_CYCLE_MS = 1.0
HOROVOD_FUSION_BYTES = 128 * 1024 * 1024
#: With the gradients on Horovod's thread the cycle is this fraction of the (estimated) step,
#: within the bounds below: gradients wait ~half a cycle, and each cycle polls on the compute
#: cores. Measured on 2 ranks x 1 thread (benchmarks/RESULTS.md, "Horovod's cycle on its own
#: thread"): DeepCAM's demo step (~0.05 s) ran at 59 samples/s with a 1.2 ms cycle, 67 at 5 ms,
#: 69 at 12 ms; CosmoFlow's 32^3 step at 0.084 s (1 ms), 0.069 (5 ms), 0.070 (10 ms), 0.075
#: (20 ms), 0.097 (50 ms); full size (20-40 s) was best at 50 ms.
CYCLES_PER_STEP = 10
#: With them on the main thread, nothing in training waits on Horovod's thread (sums, the stop
#: flag, objects and barriers go the same way; only start-up broadcasts and batch-norm groups
#: stay), so the cycle only sets how often its idle negotiation polls: 200 ms, measured better
#: than 30 ms on the demo (benchmarks/RESULTS.md, "Small steps on 2 ranks x 1 thread").
MAIN_THREAD_CYCLE_MS = 200.0
MIN_CYCLE_MS = 1.0
MAX_CYCLE_MS = 50.0


class StepWork(Protocol):
    """What one rank computes per step, as far as the step's length goes: its FLOP and the
    rate model t = FLOP / (rate x threads) + overhead of its framework."""

    core_gflop_per_s: ClassVar[float]
    step_overhead_s: ClassVar[float]

    def train_step_flops(self) -> float:
        """FLOP of one training step of this rank."""
        ...


@dataclass(frozen=True)
class Workload:
    """DeepCAM's step on one rank: the model, the sample size and the local batch."""

    model: str
    height: int
    width: int
    local_batch_size: int
    in_channels: int = 16
    #: PyTorch on one core of the 2-core EPYC VM of benchmarks/RESULTS.md: 35.9 s for the full
    #: model's 1.97 TFLOP step at 768x1152 (2x1-solo) and 0.121 s for the reduced model's
    #: 2.56 GFLOP step at 96x144, batch 2 (profiled compute). For choosing a cycle only.
    core_gflop_per_s: ClassVar[float] = 55.0
    step_overhead_s: ClassVar[float] = 0.074

    def train_step_flops(self) -> float:
        """FLOP counted by :func:`deepcam_hvd.bench.flops.train_step_flops`."""
        from deepcam_hvd.bench.flops import train_step_flops

        return train_step_flops(self.model, self.in_channels, 3, self.local_batch_size,
                                self.height, self.width)


@dataclass(frozen=True)
class CosmoWorkload:
    """CosmoFlow's step on one rank: the cube side and the local batch."""

    cube: int
    local_batch_size: int
    #: TensorFlow 2.15 with oneDNN on one core of a 2-core EPYC VM (benchmarks/RESULTS.md,
    #: "CosmoFlow's training step"): 0.045 s for 12.9 GFLOP (32^3, batch 4, 2 threads) and
    #: ~0.046 s for 6.5 GFLOP (batch 2, 1 thread): no overhead to speak of.
    core_gflop_per_s: ClassVar[float] = 140.0
    step_overhead_s: ClassVar[float] = 0.0

    def train_step_flops(self) -> float:
        """FLOP of :func:`deepcam_hvd.workloads.cosmoflow.train_step_flops`."""
        from deepcam_hvd.workloads.cosmoflow import train_step_flops

        return train_step_flops(self.cube, self.local_batch_size)


@dataclass(frozen=True)
class RunShape:
    """What the choice is made from: device, transport, threads, cores and the step."""

    device: str  # "cpu" or "cuda"
    transport: str  # Horovod's controller: "mpi" or "gloo"
    threads_per_rank: int
    local_ranks: int
    node_cores: int
    bound_cores: tuple[int, ...]  # this rank's affinity mask
    step_estimate_s: float | None  # None: no workload given
    framework: str = "torch"  # "torch" or "tensorflow" (Keras averages in its optimizer)
    single_node: bool = True  # every rank on this node (the launcher's local size = size)


@dataclass(frozen=True)
class Setting:
    """One Horovod variable: its value (None: Horovod's default), who decided it and why."""

    variable: str
    value: str | None
    source: str  # "user" (set before we started), "chosen" (here) or "horovod default"
    reason: str


@dataclass(frozen=True)
class HorovodTuning:
    """The settings chosen for one rank, and what they were chosen from."""

    shape: RunShape
    settings: tuple[Setting, ...]

    def value(self, variable: str) -> str | None:
        """The value in effect for ``variable`` (None: Horovod's default)."""
        return next((s.value for s in self.settings if s.variable == variable), None)

    def chosen(self, variable: str) -> str | None:
        """The value chosen here for ``variable``; None where the user or Horovod decides."""
        return next((s.value for s in self.settings
                     if s.variable == variable and s.source == "chosen"), None)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (``deepcam-hvd info --json``)."""
        return {"shape": asdict(self.shape), "settings": [asdict(s) for s in self.settings]}

    def summary(self) -> str:
        """One line: 'cycle 25 ms (chosen), fusion 134217728 B (chosen), affinity default
        (horovod default), gradients main-thread (chosen), reduction shared-memory (chosen),
        controller gloo (chosen)'."""
        names = {CYCLE_VARIABLE: "cycle", FUSION_VARIABLE: "fusion",
                 AFFINITY_VARIABLE: "affinity", GRADIENT_VARIABLE: "gradients",
                 REDUCTION_VARIABLE: "reduction", CONTROLLER_VARIABLE: "controller"}
        units = {CYCLE_VARIABLE: " ms", FUSION_VARIABLE: " B"}
        return ", ".join(
            f"{names[s.variable]} {s.value + units.get(s.variable, '') if s.value else 'default'} "
            f"({s.source})" for s in self.settings)


def workload_for_config(cfg: TrainConfig, full_size: tuple[int, int] = (768, 1152)
                        ) -> Workload:
    """The workload of a training config: its model, channels and batch per optimizer step
    (local batch x accumulation), at the size of the first training sample found under its
    data root (``full_size``, the CAM5 size, when none can be read)."""
    from deepcam_hvd.data.layout import list_split
    from deepcam_hvd.data.reader import peek_shape

    try:
        height, width, _ = peek_shape(list_split(cfg.data_dir_prefix, "train"))
    except Exception:  # noqa: BLE001 - an estimate only; the trainer reports bad data itself
        height, width = full_size
    return Workload(cfg.model, height, width,
                    cfg.local_batch_size * cfg.gradient_accumulation_frequency,
                    len(cfg.channels))


def estimate_step_s(workload: StepWork, threads: int) -> float:
    """Seconds of one training step of ``workload`` on ``threads`` cores of this machine."""
    return (workload.train_step_flops() / (workload.core_gflop_per_s * 1e9 * max(1, threads))
            + workload.step_overhead_s)


def cycle_time_ms(step_s: float | None, cycles_per_step: int = CYCLES_PER_STEP) -> float:
    """The CPU cycle time for a step of ``step_s`` seconds (unknown: ``MAX_CYCLE_MS``)."""
    if step_s is None:
        return MAX_CYCLE_MS
    return round(min(MAX_CYCLE_MS, max(MIN_CYCLE_MS, 1000 * step_s / cycles_per_step)), 1)


def gradient_path(shape: RunShape) -> tuple[str, str]:
    """Where gradients are averaged by default, and why: one MPI allreduce from the training
    thread where Horovod's thread could only run on a core that computes (one thread per rank,
    no free core, MPI, one node), else Horovod's DistributedOptimizer."""
    if shape.framework != "torch":
        return HOROVOD_PATH, "Keras: Horovod's DistributedOptimizer"
    if shape.device != "cpu":
        return HOROVOD_PATH, "GPU ranks: Horovod's DistributedOptimizer"
    if shape.transport != "mpi":
        return HOROVOD_PATH, f"{shape.transport} transport: no MPI to call from the main thread"
    if shape.threads_per_rank > 1 or spare_core(shape) is not None:
        return HOROVOD_PATH, ("Horovod's thread overlaps backward on cores the compute "
                              "threads share with it")
    if not shape.single_node:
        # Horovod's thread then needs MPI too (its Gloo beside MPI runs on loopback only), and
        # MPICH 4.0/UCX aborted in CI with two threads in MPI (gloo_beside_mpi.py).
        return HOROVOD_PATH, ("ranks on several nodes: Horovod's thread would share MPI with "
                              f"the training thread ({GRADIENT_VARIABLE}=main-thread to insist)")
    # One compute thread per rank, no free core, one node: measured best (RESULTS.md, "Small
    # steps on 2 ranks x 1 thread"); Horovod itself then runs on Gloo over loopback.
    return MAIN_THREAD, ("one compute thread per rank and no free core: one MPI allreduce "
                         "after backward, nothing waits on Horovod's thread")


def controller(shape: RunShape, path: str) -> tuple[str | None, str]:
    """Horovod's controller: Gloo over loopback when the training thread owns MPI (the
    main-thread path on one node, ``distributed/gloo_beside_mpi.py``), else Horovod's own
    choice (MPI under an MPI launch, Gloo under horovodrun --gloo)."""
    if path == MAIN_THREAD and shape.transport == "mpi" and shape.single_node:
        return "gloo", ("the training thread owns MPI: Horovod on Gloo over loopback, so that "
                        "two threads are never in MPI at once")
    return None, "Horovod's default: the launch's transport"


def reduction(shape: RunShape, path: str) -> tuple[str | None, str]:
    """How the main-thread path sums the gradients: through a shared-memory window when every
    rank is on this node, else ``MPI_Allreduce``; nothing to choose on Horovod's path."""
    if path != MAIN_THREAD:
        return None, "gradients on Horovod's thread"
    if not shape.single_node:
        return MPI_ALLREDUCE, "ranks on several nodes: MPI_Allreduce"
    # RESULTS.md, "Gradients through shared memory": 1.1 ms against MPI_Allreduce's 1.7 ms
    # for the demo's 4.2 MB on 2 ranks (MPICH 4.0 ch4:ucx); exposed wait 4.1 % against 5.6 %.
    return SHARED_MEMORY, ("every rank on this node: one shared-memory window, each rank "
                           "sums a slice (falls back to MPI_Allreduce without /dev/shm room)")


def spare_core(shape: RunShape) -> int | None:
    """A core of this rank's own binding that its compute threads leave free, if any."""
    bound = len(shape.bound_cores) < shape.node_cores
    if bound and len(shape.bound_cores) > shape.threads_per_rank:
        return shape.bound_cores[-1]
    return None


def choose(shape: RunShape, env: Mapping[str, str]) -> HorovodTuning:
    """The three settings for ``shape``; a variable already in ``env`` is kept (source user)."""
    path, path_why = gradient_path(shape)
    if shape.framework != "torch":  # ours is PyTorch-only: a user's choice does not apply
        env = {k: v for k, v in env.items() if k not in (GRADIENT_VARIABLE, REDUCTION_VARIABLE)}
    if env.get(REDUCTION_VARIABLE, "") not in ("", SHARED_MEMORY, MPI_ALLREDUCE):
        from deepcam_hvd.errors import ConfigError

        raise ConfigError(f"{REDUCTION_VARIABLE}={env[REDUCTION_VARIABLE]!r}: expected "
                          f"{SHARED_MEMORY} or {MPI_ALLREDUCE}")
    if env.get(GRADIENT_VARIABLE, "") in (HOROVOD_PATH, MAIN_THREAD):
        path = env[GRADIENT_VARIABLE]
    elif path == MAIN_THREAD and any(env.get(v) for v in USER_CONTROLLER_VARIABLES):
        path, path_why = HOROVOD_PATH, ("the user chose Horovod's controller or CPU "
                                        "operations: its thread would share MPI")
    if shape.device != "cpu":
        wanted: dict[str, tuple[str | None, str]] = {
            CYCLE_VARIABLE: (None, "GPU ranks: Horovod's default"),
            FUSION_VARIABLE: (None, "GPU ranks: Horovod's default"),
            AFFINITY_VARIABLE: (None, "GPU ranks: Horovod's default"),
            GRADIENT_VARIABLE: (path, path_why),
            REDUCTION_VARIABLE: reduction(shape, path),
            CONTROLLER_VARIABLE: (None, "GPU ranks: Horovod's default"),
        }
    else:
        step = shape.step_estimate_s
        if path == MAIN_THREAD:
            cycle = MAIN_THREAD_CYCLE_MS
            why = "gradients on the main thread: nothing in training waits on Horovod's cycle"
        else:
            cycle = cycle_time_ms(step)
            why = (f"step ~{step:.3g} s (estimated) / {CYCLES_PER_STEP}, within "
                   f"[{MIN_CYCLE_MS:g}, {MAX_CYCLE_MS:g}] ms" if step is not None else
                   f"step unknown: the full-size choice ({MAX_CYCLE_MS:g} ms)")
        core = spare_core(shape)
        wanted = {
            CYCLE_VARIABLE: (f"{cycle:g}", why),
            # Left unset: Horovod 0.28.1 crashes (SIGSEGV in BayesianParameter::SetValue) on
            # an elastic reset when the cycle time and the fusion threshold are both fixed.
            FUSION_VARIABLE: (None, "Horovod's 128 MiB: a step's gradients in one or two "
                                    "buffers"),
            AFFINITY_VARIABLE: (
                (str(core), f"core {core} of this rank's binding runs no compute thread")
                if core is not None else
                (None, "every core of this rank computes: the thread stays with the rank")),
            GRADIENT_VARIABLE: (path, path_why),
            REDUCTION_VARIABLE: reduction(shape, path),
            CONTROLLER_VARIABLE: controller(shape, path),
        }
    settings = []
    for variable, (value, reason) in wanted.items():
        if env.get(variable, "") != "":
            settings.append(Setting(variable, env[variable], "user", "set before the run"))
        elif value is None:
            settings.append(Setting(variable, None, "horovod default", reason))
        else:
            settings.append(Setting(variable, value, "chosen", reason))
    return HorovodTuning(shape, tuple(settings))


def apply(tuning: HorovodTuning, env: MutableMapping[str, str] | None = None) -> None:
    """Export the chosen HOROVOD_* values (never overwriting a user's) for ``hvd.init()`` to
    read; the gradient path is read from ``tuning`` by the backend, not exported."""
    target = os.environ if env is None else env
    for variable in EXPORTED:
        value = tuning.chosen(variable)
        if value is not None:
            target.setdefault(variable, value)


def tune(device: str, transport: str, local_ranks: int, workload: StepWork | None = None,
         env: MutableMapping[str, str] | None = None, framework: str = "torch",
         ranks: int | None = None) -> HorovodTuning:
    """Choose and export this rank's Horovod settings; call it right before ``hvd.init()``.

    Threads per rank are planned as the runtime will plan them (``deepcam_hvd.threads``);
    the step is estimated from ``workload`` when given.
    """
    from deepcam_hvd.threads import plan_threads

    target = os.environ if env is None else env
    plan = plan_threads(target, local_ranks)
    step = estimate_step_s(workload, plan.threads) if workload and device == "cpu" else None
    shape = RunShape(device, transport, plan.threads, local_ranks, plan.node_cores,
                     tuple(plan.bound_cores), step, framework,
                     single_node=ranks is None or ranks == local_ranks)
    tuning = choose(shape, target)
    apply(tuning, target)
    return tuning
