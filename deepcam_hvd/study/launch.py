"""Start a deepcam-hvd command on R ranks x T threads (mpirun or srun), with a hard timeout."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from deepcam_hvd.errors import LaunchError

LAUNCHES = ("mpirun", "srun")


def deepcam_command() -> str:
    """The deepcam-hvd executable beside this Python (the virtual environment's)."""
    candidate = Path(sys.executable).parent / "deepcam-hvd"
    return str(candidate) if candidate.exists() else "deepcam-hvd"


def launch_prefix(launch: str, ranks: int, threads: int, srun_mpi: str = "pmi2") -> list[str]:
    """The launcher part of the command line for ``ranks`` ranks of ``threads`` cores each."""
    if launch == "mpirun":
        # MPICH Hydra: bind each rank to its own T cores (threads.py then uses them all).
        return ["mpirun", "-np", str(ranks), "-bind-to", f"core:{threads}"]
    if launch == "srun":
        return ["srun", f"--mpi={srun_mpi}", "-N", "1", "-n", str(ranks), "-c", str(threads),
                "--cpu-bind=cores", "--kill-on-bad-exit=1"]
    raise LaunchError(f"--launch {launch!r} is not one of {', '.join(LAUNCHES)}")


@dataclass
class Finished:
    """A finished launch: the command, its exit code and output."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def command_line(self) -> str:
        """The command as one shell line."""
        return " ".join(shlex.quote(c) for c in self.command)


def run_ranks(launch: str, ranks: int, threads: int, args: list[str], timeout: float,
              cwd: Path | None = None) -> Finished:
    """Run ``deepcam-hvd ARGS`` on ``ranks`` ranks; LaunchError on timeout or failure."""
    command = [*launch_prefix(launch, ranks, threads), deepcam_command(), *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    env.pop("SLURM_CPUS_PER_TASK", None)  # inside a job, the study sets threads itself
    proc = subprocess.Popen(command, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise LaunchError(f"{' '.join(command[:6])} ... ran past {timeout:.0f} s and was "
                          f"killed; last output: {(err or out)[-500:]}") from None
    done = Finished(command, proc.returncode, out, err)
    if proc.returncode != 0:
        tail = (err.strip() or out.strip())[-800:]
        raise LaunchError(f"{done.command_line} exited {proc.returncode}: {tail}")
    return done
