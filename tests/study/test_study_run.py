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


@pytest.mark.multirank  # the study launches 2 ranks with mpirun
@pytest.mark.slow
@pytest.mark.timeout(330)
def test_cosmoflow_layout_series(tmp_path: Path) -> None:
    """`study run --workload cosmoflow --kind layout`: synthetic universes, `cosmoflow bench
    step` profiles and one-epoch `cosmoflow train` runs of 1x2 and 2x1 ranks x threads
    (about a minute on 2 cores)."""
    out = tmp_path / "study"
    proc = run_ranks([DEEPCAM, "study", "run", "--workload", "cosmoflow", "--out", str(out),
                      "--kind", "layout", "--train-samples", "16", "--val-samples", "8",
                      "--max-epochs", "1", "--profile-steps", "1", "--timeout", "240"],
                     launcher="none", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = json.loads((out / "study.json").read_text())
    assert study["workload"] == "cosmoflow"
    assert study["metric"] == {"name": "MAE", "higher_is_better": False, "target": 0.25}
    assert study["baselines"] == {"layout": "r1xt2-lb4"}
    assert (out / "data" / "train").is_dir() and (out / "data" / "validation").is_dir()
    assert "cosmoflow data synth" in study["commands"]["synth"]
    threads, ranks = study["configs"]
    assert (threads["name"], ranks["name"]) == ("r1xt2-lb4", "r2xt1-lb2")
    for cfg in (threads, ranks):
        assert cfg["workload"] == "cosmoflow" and cfg["series"] == ["layout"]
        assert cfg["profile_step_s"] > 0 and cfg["profile_samples_per_s"] > 0
        assert cfg["compute_s"] is None  # bench step times whole steps
        assert cfg["epochs_run"] == 1 and cfg["samples_per_s"] > 0
        assert 0 < cfg["best_mae"] < 2 and cfg["efficiency_baseline"] == {"layout": "r1xt2-lb4"}
    assert threads["efficiency"] == {"layout": 1.0}
    assert ranks["efficiency"]["layout"] == pytest.approx(
        ranks["samples_per_s"] / threads["samples_per_s"])
    assert "mpirun -np 2" in study["commands"]["r2xt1-lb2"]["train"]
    assert "cosmoflow bench step --cube 32 --batch 2" in study["commands"]["r2xt1-lb2"]["profile"]
    assert "--target_mae 0.25" in study["commands"]["r1xt2-lb4"]["train"]
    rows = list(csv.DictReader((out / "study.csv").open()))
    assert [(r["name"], r["workload"]) for r in rows] == [("r1xt2-lb4", "cosmoflow"),
                                                           ("r2xt1-lb2", "cosmoflow")]
    summary = json.loads((out / "runs" / "r2xt1-lb2" / "summary.json").read_text())
    assert (summary["workload"], summary["ranks"], summary["target_mae"]) == \
        ("cosmoflow", 2, 0.25)
    report = (out / "report" / "report.md").read_text()
    assert report.startswith("# CosmoFlow scaling study (measured on this machine)")
    assert "| r2xt1-lb2 | 2 | 1 | 1 | 2 |" in report and "best MAE" in report
    assert "Baselines: layout r1xt2-lb4." in report
    for name in ("step_split.png", "report/mae_vs_time.png", "report/efficiency_vs_ranks.png"):
        assert (out / name).exists(), name
