"""`deepcam-hvd study run` end to end on tiny data: 1 and 2 ranks, profiled and trained."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.launch import DEEPCAM, run_ranks


@pytest.mark.multirank  # the study launches 2 ranks with mpirun
@pytest.mark.slow
def test_weak_series_on_one_and_two_ranks(tiny_root: Path, tmp_path: Path) -> None:
    data = tiny_root  # 8 + 4 samples of 32x48
    out = tmp_path / "study"
    proc = run_ranks([DEEPCAM, "study", "run", "--out", str(out), "--kind", "weak",
                      "--ranks", "1,2", "--data", str(data),
                      "--height", "32", "--width", "48", "--max-epochs", "1",
                      "--profile-steps", "1", "--timeout", "240"], launcher="none",
                     timeout=290)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = json.loads((out / "study.json").read_text())
    one, two = study["configs"]
    assert (one["name"], two["name"]) == ("r1xt1-lb2", "r2xt1-lb2")
    assert one["series"] == ["weak"] and two["global_batch_size"] == 4
    assert one["compute_s"] > 0 and two["compute_s"] > 0
    assert one["allreduce_s"] == 0.0 and two["allreduce_s"] > 0
    assert one["read_s"] > 0 and one["epochs_run"] == 1
    assert one["efficiency"]["weak"] == 1.0 and two["efficiency"]["weak"] > 0
    assert "mpirun -np 2" in study["commands"]["r2xt1-lb2"]["train"]
    rows = list(csv.DictReader((out / "study.csv").open()))
    assert [r["name"] for r in rows] == ["r1xt1-lb2", "r2xt1-lb2"]
    for name in ("step_split.png", "report/report.md", "report/iou_vs_time.png",
                 "report/efficiency_vs_ranks.png", "runs/r2xt1-lb2/summary.json"):
        assert (out / name).exists(), name
    report = (out / "report" / "report.md").read_text()
    assert "| r2xt1-lb2 | 2 | 1 | 1 | 2 | 1 |" in report
