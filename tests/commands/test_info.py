"""`deepcam-hvd info` under each launcher, as a user runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from deepcam_hvd.commands.info import format_table, horovod_lines
from deepcam_hvd.horovod_tuning import MAIN_THREAD_CYCLE_MS, Workload, estimate_step_s
from deepcam_hvd.packages import installed_version
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
    # both frameworks, found without importing TensorFlow (the install builds Horovod for both)
    assert rank["tensorflow"] == installed_version("tensorflow")
    assert rank["horovod_build"]["frameworks"] == \
        (["torch", "tensorflow"] if rank["tensorflow"] else ["torch"])
    table = run_ranks([DEEPCAM, "info"], launcher="none").stdout
    assert f"tensorflow {rank['tensorflow']}" in table.splitlines()[0]


@pytest.mark.multirank
@pytest.mark.parametrize(
    ("launcher", "expected_launcher", "controller"),
    [
        ("mpirun", "mpich-hydra", "gloo beside mpi"),
        ("horovodrun-gloo", "horovodrun-gloo", "gloo"),
        ("horovodrun-mpi", "mpich-hydra", "gloo beside mpi"),
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
        # one thread per rank on 2 cores, one node: under MPI the gradients go through MPI
        # from the training thread, Horovod's thread idles (200 ms) on Gloo beside it; under
        # Gloo, Horovod's optimizer with the full-size cycle (no workload: step unknown)
        main_thread = controller == "gloo beside mpi"
        cycle_ms = "200" if main_thread else "50"
        assert r["horovod_cycle_time_ms"] == cycle_ms
        cycle, fusion, affinity, gradients, reduction, chosen = r["horovod_tuning"]["settings"]
        assert (cycle["variable"], cycle["value"], cycle["source"]) == \
            ("HOROVOD_CYCLE_TIME", cycle_ms, "chosen")
        assert (fusion["value"], affinity["value"]) == (None, None)  # Horovod's own
        assert gradients["value"] == ("main-thread" if main_thread else "horovod")
        assert r["gradient_averaging"] == gradients["value"]
        # on one node the main thread's sum goes through a shared-memory window, opened at
        # the first averaging (info averages nothing); Horovod's thread sums for itself
        assert reduction["value"] == ("shared-memory" if main_thread else None)
        assert r["gradient_reduction"] == ("shared-memory (asked)" if main_thread else
                                           "horovod")
        # Gloo either way: chosen beside MPI, or set by horovodrun --gloo itself
        assert (chosen["variable"], chosen["value"], chosen["source"]) == \
            ("HOROVOD_CONTROLLER", "gloo", "chosen" if main_thread else "user")
        assert r["horovod_tuning"]["shape"]["step_estimate_s"] is None


@pytest.mark.multirank
def test_users_horovod_cycle_time_wins(tmp_path: Path) -> None:
    out = tmp_path / "info.json"
    proc = run_ranks([DEEPCAM, "info", "--output", str(out)], env={"HOROVOD_CYCLE_TIME": "7"})
    assert proc.returncode == 0, proc.stderr
    assert [r["horovod_cycle_time_ms"] for r in json.loads(out.read_text())["ranks"]] == ["7"] * 2
    assert "HOROVOD_CYCLE_TIME=7  [user: set before the run]" in proc.stdout
    assert "HOROVOD_FUSION_THRESHOLD=(horovod default)  [horovod default:" in proc.stdout


@pytest.mark.multirank
def test_a_training_config_sets_the_step_the_cycle_is_chosen_from(tmp_path: Path,
                                                                  tiny_root: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(f'model = "deeplab-xception-small"\ndata_dir_prefix = "{tiny_root}"\n'
                      "local_batch_size = 2\n")
    out = tmp_path / "info.json"
    proc = run_ranks([DEEPCAM, "info", "--config", str(config), "--output", str(out)],
                     env={"DEEPCAM_GRADIENT_AVERAGING": "main-thread"})
    assert proc.returncode == 0, proc.stderr
    step = estimate_step_s(Workload("deeplab-xception-small", 32, 48, 2), 1)
    for r in json.loads(out.read_text())["ranks"]:
        assert r["horovod_tuning"]["shape"]["step_estimate_s"] == pytest.approx(step)
        assert r["horovod_cycle_time_ms"] == f"{MAIN_THREAD_CYCLE_MS:g}"
        assert r["gradient_averaging"] == "main-thread"


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


def test_table_shows_each_horovod_setting_and_why() -> None:
    settings = [{"variable": "HOROVOD_CYCLE_TIME", "value": "1.2", "source": "chosen",
                 "reason": "step ~0.121 s (estimated) / 100"},
                {"variable": "HOROVOD_THREAD_AFFINITY", "value": None,
                 "source": "horovod default", "reason": "every core computes"}]
    rank = {"launcher": "mpich-hydra", "backend": "horovod", "controller": "mpi",
            "torch": "2", "allocator": "jemalloc", "horovod_build": {"installed": False},
            "rank": 0, "local_rank": 0, "local_size": 2, "host": "h", "device": "cpu",
            "threads": 1, "bound_cores": [0, 1], "thread_source": "OMP_NUM_THREADS",
            "horovod_tuning": {"settings": settings}}
    other = {**rank, "rank": 1, "horovod_tuning": {"settings": settings[:1]}}
    lines = horovod_lines([rank, other])
    assert lines[1:] == [
        "  HOROVOD_CYCLE_TIME=1.2  [chosen: step ~0.121 s (estimated) / 100]",
        "  HOROVOD_THREAD_AFFINITY=(horovod default)  [horovod default: every core computes]",
        "  ranks 1 chose differently (see --json)"]
    assert format_table([rank]).endswith(lines[2])
    assert horovod_lines([{**rank, "horovod_tuning": None}]) == []
