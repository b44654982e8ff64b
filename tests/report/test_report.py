"""`deepcam-hvd report`: the users' table (Markdown, CSV) and the plots, from run directories."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepcam_hvd.cli import main
from deepcam_hvd.errors import DataError
from deepcam_hvd.report import efficiencies, read_run, to_csv, to_markdown, write_report
from deepcam_hvd.report.runs import iou_curve
from deepcam_hvd.report.tables import Efficiency, Rated, duration, scaling_efficiencies
from deepcam_hvd.study.outputs import study_csv
from deepcam_hvd.study.runner import efficiencies as study_efficiencies
from tests.report.run_dirs import mllog, write_study_meta

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(root: Path, name: str, ranks: int, rates: list[float], ious: list[float],
             epoch_s: float, threads: int | None = None, log_name: str = "mlperf.log",
             start_ms: int = 1_000_000, series: list[str] | None = None) -> Path:
    """A run directory as the trainer leaves it: summary.json and mlperf.log."""
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    target = next((i + 1 for i, v in enumerate(ious) if v >= 0.82), None)
    n = len(ious)
    summary = {
        "ranks": ranks, "nodes": 1, "local_batch_size": 2,
        "gradient_accumulation_frequency": 1, "global_batch_size": 2 * ranks,
        "target_iou": 0.82, "epochs_run": n, "steps": 32 * n,
        "epoch_times_s": [epoch_s] * n, "eval_iou": ious, "train_samples_per_s": rates,
        "data_wait_fraction": [0.01] * n, "converged": target is not None,
        "epochs_to_target": target, "time_to_target_s": (target * (epoch_s + 1.0)
                                                         if target else None),
        "time_to_16_epochs_s": epoch_s * 16, "time_to_16_epochs_estimated": n < 16,
        "status": "success" if target else "aborted",
    }
    (run / "summary.json").write_text(json.dumps(summary))
    lines = [mllog("run_start", start_ms)]
    for epoch, iou in enumerate(ious, start=1):
        lines.append(mllog("eval_accuracy", start_ms + int(epoch * (epoch_s + 1.0) * 1000),
                           iou, epoch_num=epoch))
    (run / log_name).write_text("\n".join(lines) + "\n")
    write_study_meta(run, threads, series)
    return run


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    return [
        make_run(tmp_path, "r1", 1, [9.0, 10.0, 10.0], [0.4, 0.7, 0.83], 30.0, threads=1),
        make_run(tmp_path, "r2", 2, [17.0, 18.0, 18.0], [0.4, 0.6, 0.75], 16.0, threads=1),
    ]


def test_table_rows_hold_the_run_figures(runs: list[Path]) -> None:
    records = [read_run(r) for r in runs]
    md = to_markdown(records)
    assert "| run | ranks | nodes | threads/rank | local batch size | gradient accumulation " \
           "| ~ epoch time | time to 16 epochs | epochs to 0.82 IoU | time to 0.82 IoU | " \
           "converged? | samples/s | efficiency per core (vs baseline) |" in md
    assert "| r1 | 1 | 1 | 1 | 2 | 1 | 30.0 s | 8.00 min (est. from 3) | 3 | 93.0 s | yes | " \
           "10.00 | 1.00 |" in md
    assert "| r2 | 2 | 1 | 1 | 2 | 1 | 16.0 s | 4.27 min (est. from 3) | - (not in 3) | - | " \
           "no | 18.00 | 0.90 |" in md
    assert "Baseline: r1." in md
    rows = list(csv.DictReader(io.StringIO(to_csv(records))))
    assert [r["run"] for r in rows] == ["r1", "r2"]
    assert float(rows[0]["mean_epoch_s"]) == 30.0
    assert (rows[1]["efficiency"], rows[1]["efficiency_baseline"]) == ("all=0.900", "all=r1")
    assert rows[0]["converged"] == "True" and rows[1]["epochs_to_target"] == ""


def test_efficiency_is_per_core_against_the_fewest_cores(runs: list[Path]) -> None:
    eff = efficiencies([read_run(r) for r in runs])
    assert eff == {"r1": {"all": Efficiency(pytest.approx(1.0), "r1")},
                   "r2": {"all": Efficiency(pytest.approx(0.9), "r1")}}


@pytest.fixture
def study_runs(tmp_path: Path) -> list[Path]:
    """The four runs of `study run` (weak, strong, layout) as issue 14 measured them."""
    return [
        make_run(tmp_path, "r1xt1-lb2", 1, [15.0, 15.0], [0.4, 0.5], 8.0, threads=1,
                 series=["weak"]),
        make_run(tmp_path, "r1xt1-lb4", 1, [16.0, 16.0], [0.4, 0.5], 8.0, threads=1,
                 series=["strong"]),
        make_run(tmp_path, "r1xt2-lb4", 1, [21.7, 21.7], [0.4, 0.5], 6.0, threads=2,
                 series=["layout"]),
        make_run(tmp_path, "r2xt1-lb2", 2, [16.2, 16.2], [0.4, 0.5], 8.0, threads=1,
                 series=["weak", "strong", "layout"]),
    ]


def test_study_runs_get_the_study_efficiencies_and_name_their_baselines(
        study_runs: list[Path]) -> None:
    records = [read_run(r) for r in study_runs]
    two = efficiencies(records)["r2xt1-lb2"]
    assert {k: e.value for k, e in two.items()} == {
        "weak": pytest.approx(16.2 / 30.0), "strong": pytest.approx(16.2 / 32.0),
        "layout": pytest.approx(16.2 / 21.7)}
    assert {k: e.baseline for k, e in two.items()} == {
        "weak": "r1xt1-lb2", "strong": "r1xt1-lb4", "layout": "r1xt2-lb4"}
    md = to_markdown(records)
    assert "| 16.20 | weak 0.54, strong 0.51, layout 0.75 |" in md
    assert "Baselines: weak r1xt1-lb2, strong r1xt1-lb4, layout r1xt2-lb4." in md
    row = list(csv.DictReader(io.StringIO(to_csv(records))))[3]
    assert row["efficiency"] == "weak=0.540 strong=0.506 layout=0.747"
    assert row["efficiency_baseline"] == "weak=r1xt1-lb2 strong=r1xt1-lb4 layout=r1xt2-lb4"


def test_study_csv_and_report_agree(study_runs: list[Path]) -> None:
    """study.csv (study/runner.py) and report.csv (report/tables.py): one definition."""
    records = [read_run(r) for r in study_runs]
    rows = [{"name": r.name, "ranks": r.ranks, "threads_per_rank": r.threads_per_rank,
             "samples_per_s": r.samples_per_s, "series": r.extra["series"]} for r in records]
    study_efficiencies(rows)
    study = list(csv.DictReader(io.StringIO(study_csv({"configs": rows}))))
    report = list(csv.DictReader(io.StringIO(to_csv(records))))
    for s, r in zip(study, report, strict=True):
        assert (s["efficiency"], s["efficiency_baseline"]) == \
            (r["efficiency"], r["efficiency_baseline"])
    assert study[0]["efficiency"] == "weak=1.000"


def test_runs_without_throughput_have_no_efficiency() -> None:
    runs = [Rated("a", 1, 1, None), Rated("b", 2, None, 4.0), Rated("c", 4, None, 6.0)]
    eff = scaling_efficiencies(runs)
    assert eff["a"] == {}
    assert eff["c"]["all"] == Efficiency(pytest.approx(0.75), "b")


def test_iou_curve_joins_resumed_attempts(tmp_path: Path) -> None:
    run = make_run(tmp_path, "resumed", 2, [10.0], [0.5, 0.6], 9.0, log_name="mlperf.1.log")
    make_run(tmp_path, "resumed", 2, [10.0], [0.7, 0.85], 9.0, start_ms=5_000_000)
    curve = iou_curve(run)
    assert [iou for _, iou in curve] == [0.5, 0.6, 0.7, 0.85]
    assert [t for t, _ in curve] == pytest.approx([10.0, 20.0, 30.0, 40.0])


def test_write_report_makes_tables_and_pngs(runs: list[Path], tmp_path: Path) -> None:
    files = write_report(runs, tmp_path / "out")
    assert set(files) == {"markdown", "csv", "iou", "throughput", "efficiency"}
    for key in ("iou", "throughput", "efficiency"):
        data = files[key].read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_cli_prints_the_table_and_refuses_a_non_run(runs: list[Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", *map(str, runs), "--out",
                                       str(tmp_path / "rep"), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "| r2 | 2 | 1 |" in result.stdout
    assert not (tmp_path / "rep" / "iou_vs_time.png").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = CliRunner().invoke(main, ["report", str(empty), "--out", str(tmp_path / "rep2")])
    assert bad.exit_code == 2
    assert bad.stderr.strip().startswith("deepcam-hvd: error: ")
    assert "no readable summary.json" in bad.stderr
    with pytest.raises(DataError):
        read_run(empty)


def test_duration_formats_like_the_users_tables() -> None:
    assert duration(None) == "-"
    assert duration(48.21) == "48.2 s"
    assert duration(1051.8) == "17.53 min"
    assert duration(16763.669) == "4.66 h"
