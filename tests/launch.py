"""Run a command on several real processes (mpirun or horovodrun) with a hard time limit."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PYTHON = str(VENV_BIN / "python")
DEEPCAM = str(VENV_BIN / "deepcam-hvd")

LAUNCHERS = {
    "mpirun": lambda np: ["mpirun", "-np", str(np)],
    "horovodrun-gloo": lambda np: [str(VENV_BIN / "horovodrun"), "-np", str(np), "--gloo"],
    "horovodrun-mpi": lambda np: [str(VENV_BIN / "horovodrun"), "-np", str(np), "--mpi"],
}


def run_ranks(
    command: list[str], launcher: str = "mpirun", np: int = 2, timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Launch ``command`` on ``np`` ranks; kill the whole process group and fail on timeout."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    prefix = LAUNCHERS[launcher](np) if launcher != "none" else []
    proc = subprocess.Popen(prefix + command, cwd=ROOT, env=full_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{launcher} {' '.join(command)} hung for {timeout}s\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def strip_rank_prefixes(text: str) -> str:
    """Remove horovodrun's ``[1]<stdout>:`` / ``[1] `` line prefixes."""
    return re.sub(r"(?m)^\[\d+\](<std(out|err)>:| )", "", text)


def results(proc: subprocess.CompletedProcess[str]) -> dict[int, dict]:
    """Parse the ``RESULT <rank> <json>`` lines every rank prints; fail with the logs if absent."""
    found: dict[int, dict] = {}
    for line in strip_rank_prefixes(proc.stdout).splitlines():
        if line.startswith("RESULT "):
            _, rank, payload = line.split(" ", 2)
            found[int(rank)] = json.loads(payload)
    if proc.returncode != 0 or not found:
        pytest.fail(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return found


def rank_processes(output_dir: Path) -> list[psutil.Process]:
    """The ``deepcam-hvd`` rank processes (not their launcher) training into ``output_dir``."""
    launchers = ("mpirun", "mpiexec", "mpiexec.hydra", "horovodrun")
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if str(output_dir) in cmd and any(part.endswith("deepcam-hvd") for part in cmd) and \
                not any(part.endswith(launchers) for part in cmd):
            found.append(proc)
    return found
