"""Launcher detection from patched environments."""

from __future__ import annotations

import pytest

from deepcam_hvd.errors import LaunchError
from deepcam_hvd.launchers import detect_launch, launcher_names

HOROVODRUN_GLOO = {
    "HOROVOD_GLOO_RENDEZVOUS_ADDR": "127.0.0.1", "HOROVOD_GLOO_RENDEZVOUS_PORT": "1234",
    "HOROVOD_CONTROLLER": "gloo", "HOROVOD_RANK": "1", "HOROVOD_SIZE": "4",
    "HOROVOD_LOCAL_RANK": "1", "HOROVOD_LOCAL_SIZE": "2",
}
OPENMPI = {
    "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8",
    "OMPI_COMM_WORLD_LOCAL_RANK": "3", "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
}
HYDRA = {"PMI_RANK": "5", "PMI_SIZE": "6", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"}
SRUN = {
    "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0", "SLURM_PROCID": "9", "SLURM_NTASKS": "16",
    "SLURM_STEP_NUM_TASKS": "16", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
    "SLURM_STEP_TASKS_PER_NODE": "8(x2)", "PMI_RANK": "9", "PMI_SIZE": "16",
}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (HOROVODRUN_GLOO, ("horovodrun-gloo", 1, 4, 1, 2, "gloo")),
        (OPENMPI, ("openmpi", 3, 8, 3, 4, "mpi")),
        (HYDRA, ("mpich-hydra", 5, 6, 1, 2, "mpi")),
        (SRUN, ("slurm", 9, 16, 1, 8, "mpi")),
        ({}, ("single", 0, 1, 0, 1, "none")),
        # a batch script inside an allocation is one process, not a step
        ({"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "batch", "SLURM_PROCID": "0"},
         ("single", 0, 1, 0, 1, "none")),
        # horovodrun --gloo inside a Slurm step: horovodrun's layout wins
        ({**SRUN, **HOROVODRUN_GLOO}, ("horovodrun-gloo", 1, 4, 1, 2, "gloo")),
        # Hydra mpirun inside a Slurm allocation: Hydra's layout wins
        ({**SRUN, **HYDRA}, ("mpich-hydra", 5, 6, 1, 2, "mpi")),
    ],
)
def test_detects_launcher(env: dict[str, str], expected: tuple) -> None:
    info = detect_launch(env)
    got = (info.launcher, info.rank, info.size, info.local_rank, info.local_size, info.transport)
    assert got == expected


def test_slurm_uneven_tasks_per_node() -> None:
    env = {**SRUN, "SLURM_STEP_TASKS_PER_NODE": "3(x2),1", "SLURM_NODEID": "2",
           "SLURM_STEP_NUM_TASKS": "7", "SLURM_PROCID": "6", "SLURM_LOCALID": "0"}
    info = detect_launch(env)
    assert (info.size, info.local_size, info.local_rank) == (7, 1, 0)


def test_slurm_without_step_size_uses_ntasks() -> None:
    env = {k: v for k, v in SRUN.items() if k != "SLURM_STEP_NUM_TASKS"}
    assert detect_launch(env).size == 16


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "2", "PMI_RANK": "0"}, "PMI_SIZE not set"),
        ({"OMPI_COMM_WORLD_RANK": "0"}, "OMPI_COMM_WORLD_SIZE"),
        ({"HOROVOD_GLOO_RENDEZVOUS_ADDR": "x", "HOROVOD_RANK": "0"}, "HOROVOD_SIZE"),
        ({"SLURM_STEP_ID": "0", "SLURM_PROCID": "0"}, "SLURM_NTASKS"),
        ({**HYDRA, "PMI_RANK": "six"}, "PMI_RANK='six' is not an integer"),
        ({**HYDRA, "PMI_RANK": "6"}, "rank 6 is outside a world of size 6"),
        ({**HYDRA, "MPI_LOCALNRANKS": "9"}, "inconsistent with size 6"),
    ],
)
def test_partial_or_wrong_environment_is_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(LaunchError, match=message):
        detect_launch(env)


def test_override_forces_a_launcher() -> None:
    env = {**SRUN, **HYDRA}
    assert detect_launch(env, "slurm").launcher == "slurm"
    assert detect_launch(env, "single").size == 1


def test_override_of_absent_launcher_names_missing_variables() -> None:
    with pytest.raises(LaunchError,
                       match="openmpi environment is incomplete.*OMPI_COMM_WORLD_RANK"):
        detect_launch({}, "openmpi")


def test_unknown_override_lists_choices() -> None:
    with pytest.raises(LaunchError, match="'pbs' is not known.*mpich-hydra"):
        detect_launch({}, "pbs")
    assert "single" in launcher_names()
