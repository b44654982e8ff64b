"""`deepcam-hvd train` end to end, as a user runs it, on tiny synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SynthRoot
from tests.launch import DEEPCAM, run_ranks

TINY = ["--model", "deeplab-xception-small", "--local_batch_size", "2",
        "--start_lr", "0.002", "--max_inter_threads", "0"]


def check_mlperf_log(log: Path) -> list[str]:
    """Run the official checker (its own log beside ``log``); the failed checks' lines."""
    proc = subprocess.run(
        [sys.executable, "-m", "mlperf_logging.compliance_checker", "--usage", "hpc",
         "--ruleset", "3.0.0", "--log_output", str(log.parent / "compliance_checker.log"),
         str(log)], capture_output=True, text=True, cwd=log.parent, timeout=120)
    assert (log.parent / "compliance_checker.log").is_file()
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "Failed" in line
            or "ERROR" in line]


@pytest.mark.multirank
def test_two_ranks_train_and_log(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_ranks([DEEPCAM, "train", "--data_dir", str(tiny_root), "--output_dir", str(out),
                      "--max_epochs", "2", *TINY], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    # 8 files over 2 ranks, local batch 2: 2 steps an epoch
    assert (summary["ranks"], summary["epochs_run"], summary["steps"]) == (2, 2, 4)
    assert summary["global_batch_size"] == 4
    assert len(summary["eval_iou"]) == 2 and all(0 < v <= 1 for v in summary["eval_iou"])
    assert summary["train_loss"][1] < summary["train_loss"][0]
    assert summary["stopped_by"] == "max_epochs" and summary["status"] == "aborted"
    assert summary["time_to_16_epochs_estimated"] is True
    # the trainer times its own wait for gradient averaging, a share of each epoch
    assert len(summary["comm_wait_fraction"]) == 2
    assert all(0 < v < 1 for v in summary["comm_wait_fraction"])
    assert summary["allocator"] in ("jemalloc", "system", "system+hugepages")
    assert proc.stdout.count("summary: ") == 1  # rank 0 only
    assert list((out / "checkpoints").glob("model_step*.ckpt"))
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    # The log is complete; the only check a 2-epoch run can fail is reaching IoU 0.82.
    failures = check_mlperf_log(out / "mlperf.log")
    assert all("eval_accuracy" in f or "FAILED" in f for f in failures), failures
    log = (out / "mlperf.log").read_text()
    for key in ("submission_division\", \"value\": \"open", "number_of_nodes",
                "accelerators_per_node", "gradient_accumulation_frequency",
                "batchnorm_group_size", "run_stop"):
        assert key in log
    assert "staging_start" not in log  # staging is logged only when --stage_dir stages


@pytest.mark.multirank
@pytest.mark.slow
def test_demo_converges_and_its_log_passes_compliance(synth_root: SynthRoot,
                                                      tmp_path: Path) -> None:
    """The README demo's settings reach IoU 0.82 on 2 ranks; the official checker says SUCCESS."""
    data, out = synth_root(128, 32, height=96, width=144, seed=333), tmp_path / "run"
    proc = run_ranks([DEEPCAM, "train", "--config", "jobs/demo.toml", "--data_dir", str(data),
                      "--output_dir", str(out)], timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["converged"] and summary["status"] == "success"
    assert max(summary["eval_iou"]) >= 0.82 and summary["epochs_to_target"] <= 40
    checker = subprocess.run(
        [sys.executable, "-m", "mlperf_logging.compliance_checker", "--usage", "hpc",
         "--ruleset", "3.0.0", "--log_output", str(out / "compliance_checker.log"),
         str(out / "mlperf.log")], capture_output=True, text=True, cwd=out, timeout=120)
    assert checker.returncode == 0 and "SUCCESS" in checker.stdout + checker.stderr, \
        checker.stdout + checker.stderr
    assert "SUCCESS" in (out / "compliance_checker.log").read_text()


@pytest.mark.slow
def test_resume_equals_straight_run(tiny_root: Path, tmp_path: Path) -> None:
    common = ["--data_dir", str(tiny_root), *TINY, "--optimizer", "LAMB", "--seed", "7",
              "--lr_schedule", "type=multistep,milestones=3,decay_rate=0.5"]
    straight = tmp_path / "straight"
    split = tmp_path / "split"
    a = run_ranks([DEEPCAM, "train", "--output_dir", str(straight), "--max_epochs", "2",
                   *common], launcher="none")
    b1 = run_ranks([DEEPCAM, "train", "--output_dir", str(split), "--max_epochs", "1",
                    *common], launcher="none")
    b2 = run_ranks([DEEPCAM, "train", "--output_dir", str(split), "--max_epochs", "2",
                    "--checkpoint", "auto", *common], launcher="none")
    for proc in (a, b1, b2):
        assert proc.returncode == 0, proc.stderr
    assert "resumed from" in b2.stdout + b2.stderr
    one = json.loads((straight / "summary.json").read_text())
    two = json.loads((split / "summary.json").read_text())
    assert two["epochs_run"] == 2 and two["steps"] == one["steps"] == 8
    for key in ("train_loss", "eval_loss", "eval_iou"):
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
    assert (split / "mlperf.1.log").exists()  # the first attempt's log is kept


@pytest.mark.slow
def test_rules_and_bad_values_are_refused_before_starting(tiny_root: Path) -> None:
    cases = [
        (["--rules", "mlperf-closed", "--model", "deeplab-xception-small"],
         "--rules mlperf-closed: model is fixed at 'deeplab-xception'"),
        (["--preset", "esif-baseline", "--rules", "esif-baseline", "--save_frequency", "1"],
         "--rules esif-baseline: save_frequency is fixed at 400"),
        (["--preset", "mlperf-closed-128", "--local_batch_size", "2"],
         "--local_batch_size 2 contradicts --global_batch_size 128 on 1 ranks (needs 128)"),
        (["--global_batch_size", "6", "--gradient_accumulation_frequency", "4"],
         "--global_batch_size 6 is not divisible by 1 ranks x "
         "--gradient_accumulation_frequency 4"),
        (["--local_batch_size", "0"], "--local_batch_size must be at least 1"),
        (["--preset", "nope"], "--preset 'nope' is not known"),
    ]
    for args, message in cases:
        proc = subprocess.run([DEEPCAM, "train", "--data_dir", str(tiny_root), *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith(f"deepcam-hvd: error: {message}"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.multirank
def test_batchnorm_group_must_divide_ranks_reported_once(tiny_root: Path) -> None:
    proc = run_ranks([DEEPCAM, "train", "--data_dir", str(tiny_root),
                      "--batchnorm_group_size", "3"], timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.count("--batchnorm_group_size 3 does not divide the 2 ranks") == 1
