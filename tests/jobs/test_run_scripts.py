"""The rendered mpirun and horovodrun scripts (machines without Slurm) really train."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from deepcam_hvd.data.synth_dataset import synthesize_dataset
from deepcam_hvd.distributed.local import LocalBackend
from tests.launch import DEEPCAM, run_ranks


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    synthesize_dataset(root, LocalBackend(), 8, 4, height=32, width=48, seed=5)
    return root


@pytest.mark.parametrize("system", ["mpirun", "horovodrun"])
def test_rendered_script_trains_two_ranks(system: str, tiny: Path, tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    render = subprocess.run(
        [DEEPCAM, "jobs", "render", system, "--nodes", "1", "--data", str(tiny),
         "--output-dir", "out", "--no-info", "-o", str(script), "--",
         "--model", "deeplab-xception-small", "--max_epochs", "1", "--local_batch_size", "2"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    proc = run_ranks(["bash", str(script)], launcher="none", timeout=240)  # kills the group
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["epochs_run"] == 1
