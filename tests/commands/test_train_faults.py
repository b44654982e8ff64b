"""Faults for real: a rank killed mid-run, a process killed mid-save."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from deepcam_hvd.train.checkpoint import latest_valid_checkpoint, list_checkpoints, load_checkpoint
from tests.conftest import SynthRoot
from tests.launch import DEEPCAM, LAUNCHERS, ROOT, rank_processes


@pytest.fixture(scope="module")
def root(synth_root: SynthRoot) -> Path:
    return synth_root(16, 4, height=64, width=96, seed=4)


@pytest.mark.multirank
@pytest.mark.parametrize("launcher", ["mpirun", "horovodrun-gloo"])
def test_killed_rank_stops_the_job_within_60s(root: Path, tmp_path: Path, launcher: str) -> None:
    out = tmp_path / "run"
    command = [*LAUNCHERS[launcher](2), DEEPCAM, "train", "--data_dir", str(root),
               "--output_dir", str(out), "--model", "deeplab-xception-small",
               "--local_batch_size", "2", "--max_epochs", "50", "--max_inter_threads", "0"]
    job = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (len(rank_processes(out)) == 2 and list(out.glob("tensorboard/events.*"))):
            assert time.monotonic() < deadline and job.poll() is None, "training never started"
            time.sleep(0.3)
        victim, survivor = rank_processes(out)
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        job.wait(timeout=60)
        took = time.monotonic() - killed_at
        output = job.stdout.read() if job.stdout else ""
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        pytest.fail("the job did not end within 60 s of a rank being killed")
    assert job.returncode != 0
    assert took < 60
    assert not survivor.is_running() or survivor.status() == psutil.STATUS_ZOMBIE
    # the launcher names the failed process: Hydra by PID and exit, horovodrun by rank
    assert str(victim.pid) in output or "Process name: " in output, output[-2000:]


SAVER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from deepcam_hvd.train.checkpoint import checkpoint_path, save_checkpoint
    out = Path(sys.argv[1])
    state = {"w": torch.randn(4_000_000)}
    step = 0
    while True:
        step += 1
        state["step"] = step
        save_checkpoint(state, checkpoint_path(out, "model", step), keep=3)
        print(step, flush=True)
""")


@pytest.mark.slow
def test_kill_during_save_never_breaks_the_newest_checkpoint(tmp_path: Path) -> None:
    """SIGKILL a process that saves 16 MB checkpoints back to back, at several moments."""
    out = tmp_path / "ckpt"
    for delay in (0.35, 0.6, 0.9, 1.3):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(out)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one checkpoint exists
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=30)
        newest = latest_valid_checkpoint(out, "model")
        assert newest is not None and newest == list_checkpoints(out, "model")[-1]
        for path in list_checkpoints(out, "model"):
            assert load_checkpoint(path)["w"].numel() == 4_000_000
        assert len(list(out.glob(".*tmp*"))) <= 1  # at most the killed save's own debris
