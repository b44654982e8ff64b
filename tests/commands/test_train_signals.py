"""SIGTERM / SIGUSR1: finish the step, checkpoint, exit 75; --resume auto continues exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from deepcam_hvd.train.signals import EXIT_PREEMPTED
from tests.conftest import SynthRoot
from tests.launch import DEEPCAM, ROOT, rank_processes, run_ranks

ARGS = ["--model", "deeplab-xception-small", "--local_batch_size", "2", "--max_inter_threads",
        "0", "--optimizer", "AdamW", "--start_lr", "0.002", "--max_epochs", "3", "--seed", "5"]


@pytest.fixture(scope="module")
def root(synth_root: SynthRoot) -> Path:
    return synth_root(24, 4, height=64, width=96, seed=9)


def interrupt(command: list[str], out: Path, sig: signal.Signals, only_one: bool) -> int:
    """Start ``command``, signal its rank(s) once step 3 is done, return the exit code."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ranks = rank_processes(out)
            # the TensorBoard file appears when training starts: signal within the first epoch
            if ranks and list(out.glob("tensorboard/events.*")):
                for r in ranks[:1] if only_one else ranks:
                    r.send_signal(sig)
                break
            time.sleep(0.2)
        else:
            pytest.fail("training never started")
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"no exit after {sig.name}: {proc.stdout.read() if proc.stdout else ''}")
    return proc.returncode


@pytest.mark.slow
@pytest.mark.parametrize(("launcher", "sig", "only_one"), [
    ("none", signal.SIGTERM, False),
    # one rank signalled: all ranks agree to stop
    pytest.param("mpirun", signal.SIGUSR1, True, marks=pytest.mark.multirank),
])
def test_signal_checkpoints_and_resume_matches(root: Path, tmp_path: Path, launcher: str,
                                               sig: signal.Signals, only_one: bool) -> None:
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    prefix = [] if launcher == "none" else ["mpirun", "-np", "2"]
    base = [*prefix, DEEPCAM, "train", "--data_dir", str(root), *ARGS]
    ref = run_ranks([*base, "--output_dir", str(straight)], launcher="none", timeout=300)
    assert ref.returncode == 0, ref.stderr

    code = interrupt([*base, "--output_dir", str(cut)], cut, sig, only_one)
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["stopped_by"] == f"signal {sig.name}"
    if launcher == "none":  # Hydra's mpirun reports 0 after forwarding a signal
        assert code == EXIT_PREEMPTED
    stopped_at = summary["steps"]
    assert summary["epochs_run"] < 3
    assert list((cut / "checkpoints").glob("*.ckpt"))

    again = run_ranks([*base, "--output_dir", str(cut), "--resume", "auto"], launcher="none",
                      timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout
    one = json.loads((straight / "summary.json").read_text())
    two = json.loads((cut / "summary.json").read_text())
    assert two["steps"] == one["steps"] and two["epochs_run"] == one["epochs_run"] == 3
    for key in ("train_loss", "eval_loss", "eval_iou"):
        assert two[key] == pytest.approx(one[key], abs=1e-6), (key, stopped_at)
