"""The rendered mpirun and horovodrun scripts (machines without Slurm) really train."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.launch import DEEPCAM, run_ranks

pytestmark = pytest.mark.multirank


@pytest.mark.parametrize("system", ["mpirun", "horovodrun"])
def test_rendered_script_trains_two_ranks(system: str, tiny_root: Path, tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    render = subprocess.run(
        [DEEPCAM, "jobs", "render", system, "--nodes", "1", "--data", str(tiny_root),
         "--output-root", "out", "--no-info", "-o", str(script), "--",
         "--model", "deeplab-xception-small", "--max_epochs", "1", "--local_batch_size", "2"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    proc = run_ranks(["bash", str(script)], launcher="none", timeout=240)  # kills the group
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # the run got a directory of its own under the output root
    runs = sorted((tmp_path / "out").iterdir())
    assert len(runs) == 1, runs
    assert re.fullmatch(rf"deepcam-{system}-1n-\d{{8}}T\d{{6}}Z-\d+", runs[0].name), runs[0]
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["epochs_run"] == 1
