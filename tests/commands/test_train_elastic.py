"""Horovod elastic training: a worker killed mid-run, the others finish on their own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import SynthRoot
from tests.launch import DEEPCAM, ROOT, VENV_BIN, rank_processes

DISCOVER = ROOT / "jobs" / "elastic" / "discover_hosts.sh"
#: The job's own limit (a run takes ~50 s on an idle 2-core machine); pytest-timeout's is
#: longer, so that a stuck job fails here with its log rather than in pytest-timeout.
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def root(synth_root: SynthRoot) -> Path:
    return synth_root(24, 8, height=64, width=96, seed=4)


def _discovery_script(tmp_path: Path) -> Path:
    """Three one-slot hosts that all are this machine (so a failure blacklists one slot)."""
    hosts = subprocess.run([str(DISCOVER), "3"], capture_output=True, text=True,
                           check=True).stdout.split()
    if len(hosts) < 3:
        pytest.skip(f"this machine has only {len(hosts)} local host names: {hosts}")
    script = tmp_path / "discover.sh"
    script.write_text("#!/bin/sh\n" + "".join(f"echo {host}\n" for host in hosts))
    script.chmod(0o755)
    return script


def _rank(proc: psutil.Process) -> int | None:
    try:
        return int(proc.environ().get("HOROVOD_RANK", "-1"))
    except (psutil.Error, ValueError):
        return None


@pytest.mark.multirank
@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 90)
def test_lost_worker_training_continues_to_target(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    log = tmp_path / "job.log"
    command = [str(VENV_BIN / "horovodrun"), "-np", "3", "--min-np", "2", "--max-np", "3",
               "--gloo", "--host-discovery-script", str(_discovery_script(tmp_path)),
               DEEPCAM, "train", "--elastic", "--data_dir", str(root), "--output_dir", str(out),
               "--model", "deeplab-xception-small", "--local_batch_size", "2",
               "--max_inter_threads", "0", "--target_iou", "0.3", "--max_epochs", "12"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "DEEPCAM_ELASTIC_COMMIT_STEPS": "2"}
    with log.open("w") as sink:
        job = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            # Kill once the first epoch is reported, so the loss lands inside epoch 2.
            while "epoch 1:" not in log.read_text():
                assert job.poll() is None, "job ended early:\n" + log.read_text()[-3000:]
                assert time.monotonic() < deadline, "no epoch within the time limit"
                time.sleep(0.3)
            workers = rank_processes(out)
            assert len(workers) == 3, workers
            victim = next(p for p in workers if (_rank(p) or 0) > 0)
            victim.send_signal(signal.SIGKILL)
            job.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
            pytest.fail("elastic job did not finish in time:\n" + log.read_text()[-3000:])
        finally:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait()
    output = log.read_text()
    assert job.returncode == 0, output[-3000:]
    assert "elastic: continuing on 2 ranks (was 3)" in output, output[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["converged"] and summary["status"] == "success", summary
    assert summary["stopped_by"] == "target"
    assert summary["ranks"] == 2 and summary["global_batch_size"] == 4
    assert max(summary["eval_iou"]) >= 0.3
    mlperf = "success" if max(summary["eval_iou"]) >= 0.82 else "aborted"  # MLPerf's target
    assert summary["mlperf_status"] == mlperf
    assert f'"status": "{mlperf}"' in (out / "mlperf.log").read_text()
    assert list((out / "checkpoints").glob("*.ckpt"))


def test_elastic_needs_horovodrun_gloo(root: Path, tmp_path: Path) -> None:
    proc = subprocess.run([DEEPCAM, "train", "--elastic", "--data_dir", str(root),
                           "--output_dir", str(tmp_path / "run"),
                           "--model", "deeplab-xception-small"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert "--elastic needs horovodrun --gloo" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
