"""A real single-node Slurm (backends/slurm/setup.sh): srun wires 2 ranks through PMI2, a
job rendered for the generic CPU system trains to IoU 0.82 and passes the MLPerf checker, and
a CosmoFlow job rendered for it completes on 2 ranks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepcam_hvd.report.runs import parse_mllog
from tests.launch import DEEPCAM, ROOT, run_ranks

pytestmark = [pytest.mark.slurm, pytest.mark.multirank, pytest.mark.slow]

SETUP = ROOT / "backends" / "slurm" / "setup.sh"
STOP = ROOT / "backends" / "slurm" / "stop.sh"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                "PREEMPTED", "BOOT_FAIL", "DEADLINE"}

# The README demo's settings (jobs/demo.toml) without its paths: the reduced model reaches
# IoU 0.82 in 9 epochs on 128 + 32 synthetic samples of 96x144 at global batch 4.
TRAIN_TOML = """\
model = "deeplab-xception-small"
local_batch_size = 2
local_batch_size_validation = 4
max_inter_threads = 1
optimizer = "AdamW"
start_lr = 0.002
weight_decay = 0.01
lr_warmup_steps = 0
lr_warmup_factor = 1.0
lr_schedule = "type=cosine_annealing,t_max=1500,eta_min=0.0001"
max_epochs = 30
save_frequency = 5
logging_frequency = 8
target_iou = 0.82
division = "open"
"""


def sh(command: list[str], timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess:
    """Run a command with a timeout, output captured as text."""
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def slurm() -> Iterator[None]:
    """Install (once), configure and start Slurm; stop it after this module's tests."""
    if os.geteuid() != 0:
        pytest.skip("the single-node Slurm needs root (it installs packages, starts daemons)")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        pytest.skip("no Slurm and no apt-get to install it")
    setup = sh(["bash", str(SETUP)], timeout=900)
    if setup.returncode != 0:
        sh(["bash", str(STOP)], timeout=120)
        pytest.fail(f"backends/slurm/setup.sh failed:\n{setup.stdout}\n{setup.stderr}")
    try:
        yield
    finally:
        stop = sh(["bash", str(STOP)], timeout=120)
        assert stop.returncode == 0, stop.stderr


def test_srun_pmi2_gives_horovod_two_ranks(slurm: None) -> None:
    proc = sh(["srun", "--mpi=pmi2", "-n", "2", "-c", "1", DEEPCAM, "info", "--json"],
              timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["size"] == 2
    assert [r["rank"] for r in doc["ranks"]] == [0, 1]
    assert {r["launcher"] for r in doc["ranks"]} == {"slurm"}
    assert {r["backend"] for r in doc["ranks"]} == {"horovod"}
    assert {r["local_size"] for r in doc["ranks"]} == {2}
    assert {r["thread_source"] for r in doc["ranks"]} == {"SLURM_CPUS_PER_TASK"}


def wait_for(job: str, timeout: float) -> dict[str, str]:
    """Poll scontrol until the job ends; its fields. Cancel it and fail on timeout."""
    deadline = time.monotonic() + timeout
    fields: dict[str, str] = {}
    while time.monotonic() < deadline:
        show = sh(["scontrol", "show", "job", "-o", job], timeout=30)
        fields = dict(re.findall(r"(\w+)=(\S*)", show.stdout))
        if fields.get("JobState") in FINAL_STATES:
            return fields
        time.sleep(2)
    sh(["scancel", job], timeout=30)
    pytest.fail(f"job {job} still {fields.get('JobState')} after {timeout:.0f} s")


@pytest.mark.timeout(1200)  # ~90 s on an idle 2-core machine; much longer when it is shared
def test_generic_cpu_job_trains_to_target(slurm: None, tmp_path: Path) -> None:
    data = tmp_path / "data"
    synth = run_ranks([DEEPCAM, "data", "synth", "--out", str(data), "--train", "128",
                       "--val", "32", "--height", "96", "--width", "144", "--seed", "333"],
                      timeout=300)
    assert synth.returncode == 0, synth.stderr
    (tmp_path / "train.toml").write_text(TRAIN_TOML)
    render = sh([DEEPCAM, "jobs", "render", "generic-cpu", "--nodes", "1",
                 "--tasks-per-node", "2", "--cpus-per-task", "1", "--data", str(data),
                 "--time", "00:20:00", "--config", "train.toml", "--output-root", "run",
                 "--job-name", "deepcam-test", "-o", "job.sbatch"], cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    job, log = run_to_completion(tmp_path, "deepcam-test", timeout=900)
    # The info step: srun started 2 ranks that Horovod sees as one world of 2.
    # 2 ranks x 1 thread on one node: gradients over MPI, Horovod's own thread on Gloo
    assert "launcher slurm, backend horovod (gloo beside mpi), 2 rank(s)" in log
    assert re.search(r"^\s+1\s+1/2\s", log, re.M)

    run = tmp_path / "run" / f"deepcam-test-{job}"  # the job's own directory
    assert [p.name for p in (tmp_path / "run").iterdir()] == [run.name]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["global_batch_size"] == 4
    assert summary["converged"] is True and summary["eval_iou"][-1] >= 0.82
    checker = sh([sys.executable, "-m", "mlperf_logging.compliance_checker", "--usage", "hpc",
                  "--ruleset", "3.0.0", "--log_output", str(run / "compliance_checker.log"),
                  str(run / "mlperf.log")], timeout=120, cwd=run)
    assert "SUCCESS" in checker.stdout + checker.stderr, checker.stdout + checker.stderr
    assert "SUCCESS" in (run / "compliance_checker.log").read_text()


def run_to_completion(tmp_path: Path, job_name: str, timeout: float) -> tuple[str, str]:
    """Submit ``tmp_path/job.sbatch``, wait for it, require COMPLETED with exit 0; return the
    job id and its output."""
    submit = sh(["sbatch", "--parsable", "job.sbatch"], cwd=tmp_path)
    assert submit.returncode == 0, submit.stderr
    job = submit.stdout.strip().split(";")[0]
    fields = wait_for(job, timeout=timeout)
    log = (tmp_path / f"{job_name}-{job}.out").read_text()
    assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", log[-3000:]
    return job, log


@pytest.mark.timeout(600)  # ~30 s on an idle 2-core machine
def test_generic_cpu_cosmoflow_job_completes(slurm: None, cosmo_root: Path,
                                            tmp_path: Path) -> None:
    render = sh([DEEPCAM, "jobs", "render", "generic-cpu", "--workload", "cosmoflow",
                 "--nodes", "1", "--tasks-per-node", "2", "--cpus-per-task", "1",
                 "--data", str(cosmo_root), "--time", "00:20:00", "--output-root", "run",
                 "--job-name", "cosmo-test", "-o", "job.sbatch", "--",
                 "--max_epochs", "1", "--local_batch_size", "2", "--target_mae", "10"],
                cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    job, log = run_to_completion(tmp_path, "cosmo-test", timeout=480)
    assert f"cosmoflow: job {job} on 1 node(s), 2 ranks" in log
    # the info step shows the TensorFlow wiring: srun's 2 ranks are Horovod's world of 2
    assert re.search(r"launcher slurm, backend horovod \(mpi\), 2 rank\(s\); .*"
                     r"horovod 0\.28\.1 for tensorflow with MPI", log), log[:3000]
    run = tmp_path / "run" / f"cosmo-test-{job}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["epochs_run"] == 1
    assert summary["converged"] is True and summary["status"] == "success"
    # the MLPerf log claims success only at MLPerf's MAE 0.124, not at this job's --target_mae
    mlperf = "success" if min(summary["eval_mae"]) <= 0.124 else "aborted"
    stops = [r for r in parse_mllog(run / "mlperf.log") if r["key"] == "run_stop"]
    assert [r["metadata"]["status"] for r in stops] == [mlperf] == [summary["mlperf_status"]]


def test_usr1_checkpoints_and_exits_75(slurm: None, tiny_root: Path, tmp_path: Path) -> None:
    """What --signal=USR1@300 does near the time limit, sent now with scancel."""
    data = tiny_root
    render = sh([DEEPCAM, "jobs", "render", "generic-cpu", "--nodes", "1",
                 "--tasks-per-node", "2", "--cpus-per-task", "1", "--data", str(data),
                 "--time", "00:20:00", "--output-root", "run", "--job-name", "deepcam-sig",
                 "--no-info", "-o", "job.sbatch", "--", "--model", "deeplab-xception-small",
                 "--max_epochs", "10000", "--local_batch_size", "2"], cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    submit = sh(["sbatch", "--parsable", "job.sbatch"], cwd=tmp_path)
    assert submit.returncode == 0, submit.stderr
    job = submit.stdout.strip().split(";")[0]
    out = tmp_path / f"deepcam-sig-{job}.out"
    deadline = time.monotonic() + 300
    while "epoch 1:" not in (out.read_text() if out.exists() else ""):
        if time.monotonic() > deadline:
            sh(["scancel", job])
            pytest.fail("training did not start: " + (out.read_text() if out.exists() else ""))
        time.sleep(1)
    sh(["scancel", "--signal=USR1", job])  # to the job step's tasks, as --signal does
    fields = wait_for(job, timeout=300)
    log = out.read_text()
    assert fields["ExitCode"] == "75:0", log[-2000:]
    assert "stopped before the time limit with a checkpoint" in log
    run = tmp_path / "run" / f"deepcam-sig-{job}"
    assert f"scontrol requeue {job}" in log and f"DEEPCAM_RUN_DIR={run} sbatch" in log
    assert list((run / "checkpoints").glob("*"))
    assert json.loads((run / "summary.json").read_text())["stopped_by"] == "signal SIGUSR1"
