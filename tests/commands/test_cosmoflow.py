"""``deepcam-hvd cosmoflow`` as a user runs it: bad input is one line naming the file, option or
value (exit 2); ``data synth`` writes the same files on 1 and 2 ranks; on 2 Horovod ranks
``train`` logs and checkpoints, a signal to one rank stops both after the same step (exit 75)
and ``--resume auto`` finishes the run; ``bench step`` times the step on both layouts."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

# Not installed where its wheels do not exist (Python >= 3.12, not x86_64): see setup.cfg.
pytest.importorskip("tensorflow", reason="CosmoFlow needs TensorFlow")

from tests.launch import DEEPCAM, LAUNCHERS, run_ranks, strip_rank_prefixes  # noqa: E402

EXIT_PREEMPTED = 75


def horovod_tf() -> bool:
    """Whether this environment's Horovod has its TensorFlow extension."""
    from deepcam_hvd.cosmoflow.runtime import horovod_tf_build

    return bool(horovod_tf_build()["installed"])


def launcher() -> str:
    """mpirun where Horovod was built with MPI, else horovodrun --gloo."""
    from deepcam_hvd.cosmoflow.runtime import horovod_tf_build

    return "mpirun" if horovod_tf_build().get("mpi") else "horovodrun-gloo"


# A string condition: evaluated in this module when the test runs, not at collection.
needs_horovod_tf = pytest.mark.skipif(
    "not horovod_tf()",
    reason="needs Horovod's TensorFlow extension (/tmp/tfvenv or backends/install.sh)")


def cosmo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``deepcam-hvd cosmoflow ARGS`` as one process."""
    return subprocess.run([DEEPCAM, "cosmoflow", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "2"})


def digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 training + 4 validation synthetic 32^3 universes, written by one process."""
    root = tmp_path_factory.mktemp("cosmo-synth") / "root"
    proc = cosmo("data", "synth", "--output", str(root), "--cube", "32", "--train", "16",
                 "--validation", "4", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wrote 20 samples (16 train + 4 validation, 32^3, tfrecord)")
    assert len(list((root / "train").glob("*.tfrecord"))) == 16
    return root


@pytest.mark.slow  # ten processes that import TensorFlow: ~35 s
def test_bad_input_is_one_line_naming_it(synth32: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "validation").mkdir()
    small = tmp_path / "cube16"
    made = cosmo("data", "synth", "--output", str(small), "--cube", "16", "--train", "4",
                 "--validation", "1")
    assert made.returncode == 0, made.stderr
    first16 = sorted((small / "train").glob("*.tfrecord"))[0]
    first32 = sorted((synth32 / "train").glob("*.tfrecord"))[0]
    cases = [
        (["--data_dir", str(tmp_path / "missing")], f"{tmp_path / 'missing' / 'train'}: no such "
         "directory"),
        (["--data_dir", str(empty)], f"{empty / 'train'}: no *.tfrecord samples"),
        (["--data_dir", str(synth32), "--cube", "64"],
         f"{first32}: holds 32^3 samples but --cube is 64"),
        (["--data_dir", str(small)], f"{first16}: 16^3 samples; the network needs a cube "
         "divisible by 32"),
        (["--data_dir", str(synth32), "--local_batch_size", "32"],
         "16 training files are fewer than one global batch (32 x 1 ranks)"),
        (["--data_dir", str(synth32), "--local_batch_size", "0"],
         "--local_batch_size 0 must be at least 1"),
        (["--data_dir", str(synth32), "--decay_schedule", "32=0.5"],
         "--decay_schedule '32=0.5': write EPOCH:FACTOR pairs"),
        (["--data_dir", str(synth32), "--backend", "torch"],
         "--backend 'torch': CosmoFlow runs on TensorFlow"),
        (["--data_dir", str(synth32), "--division", "closed"],
         "--division closed needs the full data set (524288 training / 65536 validation "
         "samples); this run has 16 / 4"),
    ]
    for args, message in cases:
        proc = cosmo("train", "--output_dir", str(tmp_path / "out"), *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr == f"deepcam-hvd: error: {message}" + proc.stderr[
            len(f"deepcam-hvd: error: {message}"):], proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.multirank
@needs_horovod_tf
def test_synth_on_two_ranks_writes_the_same_files(synth32: Path, tmp_path: Path) -> None:
    root = tmp_path / "two"
    proc = run_ranks([DEEPCAM, "cosmoflow", "data", "synth", "--output", str(root), "--cube",
                      "32", "--train", "16", "--validation", "4", "--seed", "5"], launcher(),
                     timeout=180)
    assert proc.returncode == 0, proc.stderr
    stdout = strip_rank_prefixes(proc.stdout)
    assert "on 2 rank(s)" in stdout and stdout.count("wrote ") == 1
    assert digests(root) == digests(synth32)


TRAIN_ARGS = ["--base_lr", "0.01", "--lr_scaling", "none", "--warmup_epochs", "0",
              "--decay_schedule", "none", "--seed", "3", "--local_batch_size", "2"]


@pytest.mark.multirank
@pytest.mark.slow
@needs_horovod_tf
def test_two_ranks_stop_together_on_a_signal_and_resume(synth32: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # 16 files / (2 per rank x 2 ranks) = 4 steps an epoch; checks every 2 steps.
    cmd = [*LAUNCHERS[launcher()](2), DEEPCAM, "cosmoflow", "train", "--data_dir", str(synth32),
           "--output_dir", str(out), "--max_epochs", "6", "--stop_check_steps", "2",
           *TRAIN_ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list((out / "checkpoints").glob("*.ckpt")):  # epoch 1 done on both ranks
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.5)
        from tests.launch import rank_processes

        ranks = sorted(rank_processes(out), key=lambda p: p.pid)
        assert len(ranks) == 2
        ranks[-1].send_signal(signal.SIGUSR1)  # one rank only: the other must agree
        stdout, stderr = proc.communicate(timeout=240)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"] == "signal SIGUSR1", stdout + stderr
    assert summary["status"] == "aborted" and summary["ranks"] == 2
    assert summary["global_batch_size"] == 4 and 1 <= summary["epochs_run"] < 6
    from deepcam_hvd.train.checkpoint import latest_valid_checkpoint, load_checkpoint

    state = load_checkpoint(latest_valid_checkpoint(out / "checkpoints", "cosmoflow"))
    assert state["step"] == 4 * state["epoch"] + state["batch"]
    assert state["batch"] in (0, 2)  # at an agreement point (every 2 steps) or an epoch end
    assert strip_rank_prefixes(stdout).count("summary: ") == 1

    resumed = run_ranks([DEEPCAM, "cosmoflow", "train", "--data_dir", str(synth32),
                         "--output_dir", str(out), "--max_epochs", "6", "--resume", "auto",
                         *TRAIN_ARGS], launcher(), timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from {out / 'checkpoints'}" in resumed.stdout
    final = json.loads((out / "summary.json").read_text())
    assert final["stopped_by"] == "max_epochs" and final["epochs_run"] == 6
    assert final["steps"] == 24 and len(final["eval_mae"]) == 6
    assert all(0 < v < 2.4 for v in final["eval_mae"])
    log = (out / "mlperf.log").read_text()
    assert log.count('"key": "eval_error"') == 6 - summary["epochs_run"]
    assert '"key": "number_of_ranks", "value": 2' in log and (out / "mlperf.1.log").is_file()


@pytest.mark.multirank
@needs_horovod_tf
def test_bench_step_on_both_layouts(tmp_path: Path) -> None:
    one = cosmo("bench", "step", "--cube", "32", "--steps", "3", "--warmup", "1",
                "--launcher", "single")
    assert one.returncode == 0, one.stderr
    solo = json.loads(one.stdout.splitlines()[-1])
    two = run_ranks([DEEPCAM, "cosmoflow", "bench", "step", "--cube", "32", "--steps", "3",
                     "--warmup", "1"], launcher(), timeout=180)
    assert two.returncode == 0, two.stderr
    pair = json.loads(strip_rank_prefixes(two.stdout).splitlines()[-1])
    assert (solo["ranks"], solo["threads_per_rank"]) == (1, min(2, os.cpu_count() or 1))
    assert (pair["ranks"], pair["threads_per_rank"]) == (2, 1)
    for figures in (solo, pair):
        assert figures["parameters"] == 4_778_788  # the 32^3 network (docs/REFERENCE.md)
        assert figures["samples_per_s"] == pytest.approx(
            4 * figures["ranks"] / figures["step_s_median"])
        assert 0 < figures["step_s_min"] <= figures["step_s_median"]
