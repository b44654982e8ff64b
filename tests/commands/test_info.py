"""`deepcam-hvd info` under each launcher, as a user runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.launch import DEEPCAM, run_ranks


def test_single_process_is_local() -> None:
    proc = run_ranks([DEEPCAM, "info", "--json"], launcher="none")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["size"] == 1
    (rank,) = doc["ranks"]
    assert (rank["launcher"], rank["backend"], rank["rank"], rank["device"]) == \
        ("single", "local", 0, "cpu")
    assert rank["horovod_build"]["mpi"] and rank["horovod_build"]["gloo"]
    assert rank["threads"] >= 1


@pytest.mark.multirank
@pytest.mark.parametrize(
    ("launcher", "expected_launcher", "controller"),
    [
        ("mpirun", "mpich-hydra", "mpi"),
        ("horovodrun-gloo", "horovodrun-gloo", "gloo"),
        ("horovodrun-mpi", "mpich-hydra", "mpi"),
    ],
)
def test_two_ranks_use_horovod(tmp_path: Path, launcher: str, expected_launcher: str,
                               controller: str) -> None:
    out = tmp_path / "info.json"
    proc = run_ranks([DEEPCAM, "info", "--json", "--output", str(out)], launcher=launcher)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["size"] == 2
    assert [r["rank"] for r in doc["ranks"]] == [0, 1]
    for r in doc["ranks"]:
        assert (r["launcher"], r["backend"], r["controller"]) == \
            (expected_launcher, "horovod", controller)
        assert (r["size"], r["local_size"], r["local_rank"]) == (2, 2, r["rank"])
        assert r["threads"] == 1  # 2 cores, 2 ranks, OMP_NUM_THREADS=1 from the test
        assert r["horovod_cycle_time_ms"] == "50"  # CPU ranks: long cycles, no stolen cores


@pytest.mark.multirank
def test_users_horovod_cycle_time_wins(tmp_path: Path) -> None:
    out = tmp_path / "info.json"
    proc = run_ranks([DEEPCAM, "info", "--output", str(out)], env={"HOROVOD_CYCLE_TIME": "7"})
    assert proc.returncode == 0, proc.stderr
    assert [r["horovod_cycle_time_ms"] for r in json.loads(out.read_text())["ranks"]] == ["7"] * 2


@pytest.mark.multirank
def test_threads_fill_the_node_without_oversubscribing(tmp_path: Path) -> None:
    out = tmp_path / "info.json"
    proc = run_ranks([DEEPCAM, "info", "--output", str(out)], env={"OMP_NUM_THREADS": "8"})
    assert proc.returncode == 0, proc.stderr
    ranks = json.loads(out.read_text())["ranks"]
    cores = ranks[0]["node_cores"]
    assert sum(r["threads"] for r in ranks) <= max(cores, 2)


@pytest.mark.multirank
def test_torch_backend_under_mpirun(tmp_path: Path) -> None:
    out = tmp_path / "info.json"
    proc = run_ranks([DEEPCAM, "info", "--backend", "torch", "--output", str(out)])
    assert proc.returncode == 0, proc.stderr
    ranks = json.loads(out.read_text())["ranks"]
    assert [(r["backend"], r["controller"]) for r in ranks] == [("torch", "gloo")] * 2


def test_bad_launcher_override_is_one_line() -> None:
    proc = subprocess.run([DEEPCAM, "info", "--launcher", "openmpi"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("deepcam-hvd: error: openmpi environment is incomplete")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
