"""Who started the processes: one class per launcher, each recognising itself from the environment.

The environment gives the *expected* layout (rank, size, local rank, local size). The backend's
communicator is the truth; `deepcam_hvd.runtime` checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from deepcam_hvd.errors import LaunchError

Transport = Literal["mpi", "gloo", "none"]


@dataclass(frozen=True)
class LaunchInfo:
    """What the launcher says about this process."""

    launcher: str
    rank: int
    size: int
    local_rank: int
    local_size: int
    transport: Transport  # how Horovod should talk under this launcher


class Launcher:
    """A way processes get started. Subclasses name the variables that identify them."""

    name: ClassVar[str]
    description: ClassVar[str]
    markers: ClassVar[tuple[str, ...]]  # any of these present -> this launcher claims the process
    transport: ClassVar[Transport] = "mpi"

    @classmethod
    def detect(cls, env: Mapping[str, str]) -> bool:
        """True when ``env`` shows this launcher started the process."""
        return any(name in env for name in cls.markers)

    @classmethod
    def info(cls, env: Mapping[str, str]) -> LaunchInfo:
        """Read rank and sizes from ``env``; raise LaunchError naming what is missing or wrong."""
        raise NotImplementedError


def _ints(launcher: str, env: Mapping[str, str], names: tuple[str, ...]) -> list[int]:
    """Integer values of ``names`` in ``env``, or a LaunchError naming the missing/bad ones."""
    missing = [n for n in names if n not in env]
    if missing:
        raise LaunchError(
            f"{launcher} environment is incomplete: {', '.join(missing)} not set "
            f"(found {', '.join(n for n in names if n in env) or 'none of them'}); "
            f"launch through {launcher} itself or pass --launcher"
        )
    values = []
    for n in names:
        try:
            values.append(int(env[n].split("(")[0].split(",")[0]))
        except ValueError:
            raise LaunchError(f"{launcher}: {n}={env[n]!r} is not an integer") from None
    return values


def _checked(launcher: str, rank: int, size: int, lrank: int, lsize: int,
             transport: Transport) -> LaunchInfo:
    """Build a LaunchInfo after checking the numbers are consistent."""
    if size < 1 or not 0 <= rank < size:
        raise LaunchError(f"{launcher}: rank {rank} is outside a world of size {size}")
    if lsize < 1 or not 0 <= lrank < lsize or lsize > size:
        raise LaunchError(
            f"{launcher}: local rank {lrank} / local size {lsize} inconsistent with size {size}"
        )
    return LaunchInfo(launcher, rank, size, lrank, lsize, transport)


class HorovodrunGloo(Launcher):
    """``horovodrun --gloo``: Horovod's own rendezvous, no MPI."""

    name = "horovodrun-gloo"
    description = "horovodrun with Gloo (HOROVOD_GLOO_RENDEZVOUS_ADDR, HOROVOD_RANK, ...)"
    markers = ("HOROVOD_GLOO_RENDEZVOUS_ADDR",)
    transport = "gloo"

    @classmethod
    def info(cls, env: Mapping[str, str]) -> LaunchInfo:
        r, s, lr, ls = _ints(cls.name, env, ("HOROVOD_RANK", "HOROVOD_SIZE",
                                              "HOROVOD_LOCAL_RANK", "HOROVOD_LOCAL_SIZE"))
        return _checked(cls.name, r, s, lr, ls, cls.transport)


class OpenMpi(Launcher):
    """Open MPI's ``mpirun`` (also ``horovodrun --mpi`` on Open MPI)."""

    name = "openmpi"
    description = "Open MPI mpirun (OMPI_COMM_WORLD_*)"
    markers = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")

    @classmethod
    def info(cls, env: Mapping[str, str]) -> LaunchInfo:
        r, s, lr, ls = _ints(cls.name, env, (
            "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"))
        return _checked(cls.name, r, s, lr, ls, cls.transport)


class MpichHydra(Launcher):
    """MPICH's Hydra ``mpirun``/``mpiexec`` (also ``horovodrun --mpi`` on MPICH).

    Hydra exports PMI_RANK/PMI_SIZE and MPI_LOCALRANKID/MPI_LOCALNRANKS; the last two are
    what tells it from srun, which may also set PMI_RANK.
    """

    name = "mpich-hydra"
    description = "MPICH Hydra mpirun (PMI_RANK, MPI_LOCALRANKID)"
    markers = ("MPI_LOCALRANKID", "MPI_LOCALNRANKS")

    @classmethod
    def info(cls, env: Mapping[str, str]) -> LaunchInfo:
        r, s, lr, ls = _ints(cls.name, env, ("PMI_RANK", "PMI_SIZE",
                                              "MPI_LOCALRANKID", "MPI_LOCALNRANKS"))
        return _checked(cls.name, r, s, lr, ls, cls.transport)


class SlurmSrun(Launcher):
    """Slurm ``srun`` (PMI, PMI2 or PMIx): ranks come from the job step's SLURM_* variables.

    Only a job *step* counts (SLURM_STEP_ID); the batch script itself is a single process.
    """

    name = "slurm"
    description = "Slurm srun (SLURM_PROCID, SLURM_STEP_NUM_TASKS; PMI/PMI2/PMIx)"
    markers = ("SLURM_STEP_ID",)

    @classmethod
    def detect(cls, env: Mapping[str, str]) -> bool:
        return "SLURM_STEP_ID" in env and env.get("SLURM_STEP_ID") not in ("batch", "extern")

    @classmethod
    def info(cls, env: Mapping[str, str]) -> LaunchInfo:
        size_var = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"
        r, s, lr = _ints(cls.name, env, ("SLURM_PROCID", size_var, "SLURM_LOCALID"))
        ls = _slurm_local_size(env, s)
        return _checked(cls.name, r, s, lr, ls, cls.transport)


def _slurm_local_size(env: Mapping[str, str], size: int) -> int:
    """Tasks on this node: from SLURM_STEP_TASKS_PER_NODE ('2(x3),1') and this node's index."""
    spec = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    if not spec:
        nnodes = int(env.get("SLURM_STEP_NUM_NODES", env.get("SLURM_NNODES", "1")))
        return max(1, size // max(1, nnodes))
    counts: list[int] = []
    for part in spec.split(","):
        if "(x" in part:
            n, rep = part.rstrip(")").split("(x")
            counts += [int(n)] * int(rep)
        else:
            counts.append(int(part))
    node = int(env.get("SLURM_NODEID", "0"))
    if node >= len(counts):
        raise LaunchError(f"slurm: SLURM_NODEID={node} but tasks-per-node is {spec!r}")
    return counts[node]


class SingleProcess(Launcher):
    """Nothing launched us: one rank."""

    name = "single"
    description = "a plain single process"
    markers = ()
    transport = "none"

    @classmethod
    def detect(cls, env: Mapping[str, str]) -> bool:
        return True

    @classmethod
    def info(cls, env: Mapping[str, str]) -> LaunchInfo:
        return LaunchInfo(cls.name, 0, 1, 0, 1, cls.transport)


# First match wins: the most specific launchers come first. horovodrun --gloo may run inside a
# Slurm allocation, and Hydra inside a Slurm step, so both go before srun.
LAUNCHERS: tuple[type[Launcher], ...] = (HorovodrunGloo, OpenMpi, MpichHydra, SlurmSrun,
                                         SingleProcess)


def launcher_names() -> list[str]:
    """Names accepted by ``--launcher`` (besides ``auto``)."""
    return [launcher.name for launcher in LAUNCHERS]


def detect_launch(env: Mapping[str, str], override: str = "auto") -> LaunchInfo:
    """Find who launched this process (or use ``override``) and read its layout from ``env``."""
    if override != "auto":
        for launcher in LAUNCHERS:
            if launcher.name == override:
                return launcher.info(env)
        raise LaunchError(
            f"--launcher {override!r} is not known; choose auto or one of "
            f"{', '.join(launcher_names())}"
        )
    for launcher in LAUNCHERS:
        if launcher.detect(env):
            return launcher.info(env)
    raise AssertionError("SingleProcess always matches")
