"""The scaling model: formulas, labels, calibration fit and the published comparison."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepcam_hvd.cli import main
from deepcam_hvd.jobs import Hardware, get_system, load_systems
from deepcam_hvd.study import PREDICTION_LABEL, Calibration, Workload, allreduce_seconds, predict
from deepcam_hvd.study.calibrate import fit_per_sample, load_calibration
from deepcam_hvd.study.model import seconds_per_sample
from deepcam_hvd.study.published import SCENARIOS, compare

HW = Hardware(accelerator="A100", samples_per_s_per_rank=10.0, network_gbytes_per_s=10.0,
              intra_node_gbytes_per_s=100.0, latency_us=0.0, io_gbytes_per_s_per_node=1000.0,
              overlap=0.0)
CAL = Calibration(cpu_s_per_sample=64.0, cpu_overlap=0.0, measured_by="test")


def test_allreduce_is_the_ring_formula() -> None:
    gigabyte = 1e9
    assert allreduce_seconds(gigabyte, 1, 1, HW) == 0.0
    # 2 ranks on one node: 2 (r-1)/r x G / B_intra
    assert allreduce_seconds(gigabyte, 2, 1, HW) == pytest.approx(2 * 0.5 * 1 / 100)
    # 1 rank on each of 4 nodes: 2 (N-1)/N x G / B_net
    assert allreduce_seconds(gigabyte, 1, 4, HW) == pytest.approx(2 * 0.75 * 1 / 10)
    # latency: 2 ceil(log2 N) hops per fused call of 64 MiB
    slow = replace(HW, latency_us=1000.0, network_gbytes_per_s=1e9)
    calls = -(-gigabyte // (64 * 1024 * 1024))
    assert allreduce_seconds(gigabyte, 1, 4, slow) == pytest.approx(calls * 4 * 1e-3, rel=1e-3)


def test_prediction_splits_the_step_and_is_labelled() -> None:
    system = replace(get_system("perlmutter-gpu"), hardware=HW, tasks_per_node=1)
    work = Workload(local_batch_size=2, params=250_000_000, train_samples=1000, val_samples=30)
    one = predict(system, 1, work)
    assert one.label == PREDICTION_LABEL
    assert one.compute_s == pytest.approx(0.2) and one.allreduce_s == 0.0
    assert one.step_s == pytest.approx(0.2) and one.efficiency == pytest.approx(1.0)
    assert one.rank_efficiency == pytest.approx(1.0)
    assert one.epoch_train_s == pytest.approx(500 * 0.2)
    four = predict(system, 4, work)
    assert four.allreduce_s == pytest.approx(2 * 0.75 * 1.0 / 10)  # 1 GB of gradients
    assert four.step_s == pytest.approx(0.2 + 0.15)
    assert four.efficiency == pytest.approx(0.2 / 0.35)  # one node is one rank here
    assert four.samples_per_s == pytest.approx(8 / 0.35)
    assert four.epoch_train_s == pytest.approx(125 * 0.35)
    hidden = predict(replace(system, hardware=replace(HW, overlap=1.0)), 4, work)
    assert hidden.exposed_allreduce_s == pytest.approx(0.15 - 2 / 3 * 0.2)


def test_slow_storage_shows_as_data_time() -> None:
    system = replace(get_system("perlmutter-gpu"), tasks_per_node=1,
                     hardware=replace(HW, io_gbytes_per_s_per_node=0.1))
    p = predict(system, 1, Workload(local_batch_size=1))
    assert p.data_s == pytest.approx(Workload().sample_bytes / 0.1e9 - 0.1)


def test_cpu_rate_comes_from_the_calibration() -> None:
    hw = Hardware(accelerator="cpu", cores_per_rank=16, core_speed=0.5, thread_efficiency=0.5)
    assert seconds_per_sample(hw, CAL) == pytest.approx(64.0 / 4)
    with pytest.raises(ValueError, match="calibration"):
        seconds_per_sample(hw, None)
    cpu = predict(get_system("archer2-cpu"), 2, Workload(), CAL)
    assert cpu.efficiency < 1.0 and cpu.ranks == 16
    assert cpu.rank_efficiency <= cpu.efficiency


def test_calibration_fit_and_file(tmp_path: Path) -> None:
    a, b = fit_per_sample([(100, 3.0), (300, 7.0)])
    assert (a, b) == (pytest.approx(1.0), pytest.approx(0.02))
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(asdict(CAL)))
    assert load_calibration(path) == CAL


def test_compare_predicts_every_published_figure() -> None:
    rows = compare(load_systems(), CAL)
    assert len(rows) == len(SCENARIOS)
    for row in rows:
        assert row["label"] == PREDICTION_LABEL and row["predicted"] > 0
    nersc = next(r for r in rows if r["what"].startswith("NERSC-10 baseline, 16 epochs, 256"))
    assert nersc["ranks"] == 1024 and nersc["published"] == 240.0
    sc18 = next(r for r in rows if r["what"].startswith("SC18"))
    assert sc18["ranks"] == 27360 and 0 < sc18["predicted"] <= 1


def test_predict_and_compare_commands(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["study", "predict", "kestrel-gpu", "--nodes", "1,2,4",
                                       "--local-batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(PREDICTION_LABEL)
    assert len(result.stdout.strip().splitlines()) == 6
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps(asdict(CAL)))
    out = tmp_path / "compare.md"
    result = CliRunner().invoke(main, ["study", "compare", "--calibration", str(cal),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert PREDICTION_LABEL in out.read_text()
    assert len(json.loads(out.with_suffix(".json").read_text())) == len(SCENARIOS)
    bad = CliRunner().invoke(main, ["study", "predict", "archer2-cpu", "--calibration",
                                    str(tmp_path / "missing.json")])
    assert bad.exit_code == 2 and "run 'deepcam-hvd study calibrate' first" in bad.stderr
