"""`deepcam-hvd report` over CosmoFlow run directories: MAE (lower is better) where DeepCAM has
IoU, one workload per report."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepcam_hvd.cli import main
from deepcam_hvd.cosmoflow.summary import CosmoSummary
from deepcam_hvd.errors import DataError
from deepcam_hvd.report import efficiencies, read_run, to_csv, to_markdown, write_report
from deepcam_hvd.report.runs import quality_curve, read_summary, workload_of
from deepcam_hvd.report.tables import COLUMNS, _row
from deepcam_hvd.report.workloads import COSMOFLOW, DEEPCAM, WORKLOADS, detect
from tests.report.run_dirs import make_cosmo_run
from tests.report.test_report import PNG_MAGIC, make_run


@pytest.fixture
def cosmo_runs(tmp_path: Path) -> list[Path]:
    """c1 reaches MAE 0.25 at epoch 3 (33 s); c2, on 2 ranks, stops at 0.30."""
    return [
        make_cosmo_run(tmp_path, "c1", 1, [6.0, 8.0, 8.0], [0.45, 0.30, 0.24], 10.0, threads=1),
        make_cosmo_run(tmp_path, "c2", 2, [12.0, 14.4, 14.4], [0.45, 0.35, 0.30], 6.0,
                       threads=1),
    ]


def test_table_shows_mae_lower_is_better(cosmo_runs: list[Path]) -> None:
    records = [read_run(r) for r in cosmo_runs]
    assert [r.workload for r in records] == [COSMOFLOW, COSMOFLOW]
    assert (records[0].best, records[1].best) == (0.24, 0.30)
    md = to_markdown(records)
    assert md.startswith("# CosmoFlow runs\n")
    assert "| run | ranks | nodes | threads/rank | local batch size | ~ epoch time | best MAE | " \
           "epochs to 0.25 MAE | time to 0.25 MAE | converged? | MLPerf status | samples/s | " \
           "efficiency per core (vs baseline) |" in md
    assert "| c1 | 1 | 1 | 1 | 4 | 10.0 s | 0.2400 | 3 | 33.0 s | yes | aborted | 8.00 | " \
           "1.00 |" in md
    assert "| c2 | 2 | 1 | 1 | 4 | 6.0 s | 0.3000 | - (not in 3) | - | no | aborted | " \
           "14.40 | 0.90 |" in md
    assert "(lower is better)" in md and "(MAE <= 0.124)" in md and "Baseline: c1." in md
    assert "IoU" not in md and "16 epochs" not in md  # DeepCAM's metric and NERSC-10 figure


def test_csv_has_the_mae_columns(cosmo_runs: list[Path]) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv([read_run(r) for r in cosmo_runs]))))
    assert list(rows[0]) == list(COSMOFLOW.csv_columns)
    one, two = rows
    assert (one["target_mae"], one["best_mae"], one["converged"]) == ("0.25", "0.24", "True")
    assert (one["epochs_to_target"], float(one["time_to_target_s"])) == ("3", 33.0)
    assert (two["best_mae"], two["converged"], two["epochs_to_target"]) == ("0.3", "False", "")
    assert (two["efficiency"], two["efficiency_baseline"]) == ("all=0.900", "all=c1")
    assert (one["mlperf_status"], float(one["samples_per_s"])) == ("aborted", 8.0)
    assert "target_iou" not in one and "time_to_16_epochs_s" not in one


def test_converged_means_the_lowest_mae_at_or_below_the_target(tmp_path: Path) -> None:
    """At the target is enough; MLPerf's status says success only at MAE 0.124."""
    at = read_run(make_cosmo_run(tmp_path, "at", 1, [5.0], [0.5, 0.25], 4.0))
    above = read_run(make_cosmo_run(tmp_path, "above", 1, [5.0], [0.5, 0.2501], 4.0))
    mlperf = read_run(make_cosmo_run(tmp_path, "mlperf", 1, [5.0], [0.3, 0.12], 4.0))
    assert (at.converged, at.epochs_to_target, at.time_to_target_s) == (True, 2, 10.0)
    assert (above.converged, above.epochs_to_target, above.best) == (False, None, 0.2501)
    assert (mlperf.mlperf_status, mlperf.epochs_to_target) == ("success", 2)
    assert COSMOFLOW.reached(0.25, 0.25) and not COSMOFLOW.reached(0.2501, 0.25)
    assert DEEPCAM.reached(0.82, 0.82) and not DEEPCAM.reached(0.81, 0.82)
    assert (COSMOFLOW.best([0.3, 0.2, 0.4]), DEEPCAM.best([0.3, 0.2, 0.4])) == (0.2, 0.4)


def test_study_series_efficiencies_name_their_baselines(tmp_path: Path) -> None:
    runs = [
        make_cosmo_run(tmp_path, "r1xt1-lb2", 1, [10.0, 10.0], [0.4, 0.3], 5.0, threads=1,
                       series=["weak"]),
        make_cosmo_run(tmp_path, "r1xt2-lb4", 1, [16.0, 16.0], [0.4, 0.3], 5.0, threads=2,
                       series=["layout"]),
        make_cosmo_run(tmp_path, "r2xt1-lb2", 2, [12.0, 12.0], [0.4, 0.3], 5.0, threads=1,
                       series=["weak", "layout"]),
    ]
    records = [read_run(r) for r in runs]
    two = efficiencies(records)["r2xt1-lb2"]
    assert {k: e.value for k, e in two.items()} == {"weak": pytest.approx(0.6),
                                                   "layout": pytest.approx(0.75)}
    md = to_markdown(records, "CosmoFlow scaling study")
    assert "| 12.00 | weak 0.60, layout 0.75 |" in md
    assert "Baselines: weak r1xt1-lb2, layout r1xt2-lb4." in md
    row = list(csv.DictReader(io.StringIO(to_csv(records))))[2]
    assert row["efficiency_baseline"] == "weak=r1xt1-lb2 layout=r1xt2-lb4"


def test_curve_is_the_logs_eval_error_else_the_summarys(tmp_path: Path) -> None:
    logged = make_cosmo_run(tmp_path, "logged", 1, [5.0], [0.5, 0.4, 0.3], 9.0)
    assert quality_curve(logged, "eval_error") == [(10.0, 0.5), (20.0, 0.4), (30.0, 0.3)]
    assert quality_curve(logged) == []  # DeepCAM's eval_accuracy: none in this log
    bare = read_run(make_cosmo_run(tmp_path, "bare", 1, [5.0], [0.5, 0.4], 9.0, log=False))
    assert bare.curve == [(9.0, 0.5), (18.0, 0.4)]  # training time only


def test_workload_is_detected_from_the_summary(tmp_path: Path) -> None:
    old = make_cosmo_run(tmp_path, "old", 1, [5.0], [0.5], 4.0, workload_key=False)
    assert "workload" not in json.loads((old / "summary.json").read_text())
    spec, summary = read_summary(old)
    assert spec is COSMOFLOW and isinstance(summary, CosmoSummary)
    assert read_summary(make_run(tmp_path, "d", 1, [5.0], [0.5], 4.0))[0] is DEEPCAM
    assert detect({"workload": "deepcam", "eval_mae": []}, tmp_path) is DEEPCAM  # key wins
    with pytest.raises(DataError, match=r"s\.json: workload 'resnet' is not one of deepcam, "):
        detect({"workload": "resnet"}, tmp_path / "s.json")
    with pytest.raises(DataError, match="no workload key, and none of eval_iou, target_iou"):
        detect({"ranks": 1}, tmp_path / "s.json")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text(json.dumps({"eval_mae": [0.3], "target_mae": 0.25}))
    with pytest.raises(DataError, match=r"broken/summary.json: not a deepcam-hvd CosmoFlow "
                                        r"summary \(.*ranks"):
        read_run(broken)


def test_the_trainers_summary_says_its_workload(tmp_path: Path) -> None:
    """What CosmoSummary.write puts in summary.json is what the report reads back."""
    s = CosmoSummary(ranks=2, nodes=1, local_batch_size=4, global_batch_size=8,
                     target_mae=0.25)
    s.record_epoch(12.0, 30.0, 0.2, 0.3, 0.01, 0.24, 0.1)
    s.converged, s.epochs_to_target, s.time_to_target_s, s.status = True, 1, 13.0, "success"
    (tmp_path / "run").mkdir()
    s.write(tmp_path / "run" / "summary.json")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["workload"] == "cosmoflow"
    r = read_run(tmp_path / "run")
    assert (r.workload, r.target, r.best, r.samples_per_s, r.converged) == \
        (COSMOFLOW, 0.25, 0.24, 30.0, True)


def test_mixed_workloads_are_refused_naming_both(cosmo_runs: list[Path],
                                                 tmp_path: Path) -> None:
    deepcam = make_run(tmp_path / "dc", "d1", 1, [5.0], [0.5], 4.0)
    records = [read_run(cosmo_runs[0]), read_run(deepcam)]
    message = f"{cosmo_runs[0]} is a CosmoFlow run and {deepcam} a DeepCAM run"
    for fn in (workload_of, to_markdown, to_csv):
        with pytest.raises(DataError, match=message):
            fn(records)
    result = CliRunner().invoke(main, ["report", str(cosmo_runs[0]), str(deepcam), "--out",
                                       str(tmp_path / "rep")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"deepcam-hvd: error: {message}: report each workload's " \
                                    "runs separately"
    assert not (tmp_path / "rep").exists()


def test_write_report_plots_mae(cosmo_runs: list[Path], tmp_path: Path) -> None:
    files = write_report(cosmo_runs, tmp_path / "out")
    assert set(files) == {"markdown", "csv", "mae", "throughput", "efficiency"}
    assert files["mae"] == tmp_path / "out" / "mae_vs_time.png"
    assert not (tmp_path / "out" / "iou_vs_time.png").exists()
    for key in ("mae", "throughput", "efficiency"):
        data = files[key].read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_cli_reports_cosmoflow_runs(cosmo_runs: list[Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", *map(str, cosmo_runs), "--out",
                                       str(tmp_path / "rep"), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# CosmoFlow runs")
    assert "| c1 | 1 | 1 | 1 | 4 | 10.0 s | 0.2400 | 3 | 33.0 s | yes |" in result.stdout
    assert (tmp_path / "rep" / "report.csv").read_text().startswith("run,ranks,nodes,")


def test_every_workloads_columns_exist(tmp_path: Path) -> None:
    """A column a workload names is defined once: in COLUMNS (Markdown) or _row (CSV)."""
    for spec in WORKLOADS.values():
        assert set(spec.table_columns) <= set(COLUMNS), spec.name
        assert spec.target_field in {f.name for f in fields(spec.summary)}
        assert spec.curve_field in {f.name for f in fields(spec.summary)}
    for run in (make_cosmo_run(tmp_path, "c", 1, [5.0], [0.3], 2.0, threads=1),
                make_run(tmp_path, "d", 1, [5.0], [0.5], 2.0, threads=1)):
        record = read_run(run)
        assert set(record.workload.csv_columns) <= set(_row(record, {})), run.name
