"""`study run`'s per-workload specifics (study/workloads.py) and the rows it makes of them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepcam_hvd.cli import main
from deepcam_hvd.errors import ConfigError, DataError
from deepcam_hvd.study.outputs import plot_step_split, study_csv
from deepcam_hvd.study.runner import StudyConfig, StudyOptions, efficiencies, resolve, row
from deepcam_hvd.study.workloads import (
    PROFILE_KEYS,
    CosmoflowStudy,
    DeepcamStudy,
    study_workload,
)
from tests.report.run_dirs import make_cosmo_run
from tests.report.test_report import PNG_MAGIC, make_run

CFG = StudyConfig(ranks=2, threads=1, local_batch_size=2, series=("weak", "layout"))


def cosmo_opts(tmp_path: Path, **kw: object) -> StudyOptions:
    return resolve(StudyOptions(out=tmp_path, workload="cosmoflow", **kw))  # type: ignore[arg-type]


def test_sizes_default_per_workload(tmp_path: Path) -> None:
    cosmo = cosmo_opts(tmp_path)
    assert (cosmo.train_samples, cosmo.val_samples, cosmo.cube, cosmo.max_epochs) == \
        (1024, 64, 32, 8)
    assert (cosmo.height, cosmo.width) == (None, None)
    deepcam = resolve(StudyOptions(out=tmp_path))
    assert (deepcam.train_samples, deepcam.val_samples, deepcam.height, deepcam.width,
            deepcam.max_epochs, deepcam.cube) == (128, 32, 96, 144, 20, None)
    assert cosmo_opts(tmp_path, train_samples=16, cube=64).train_samples == 16


def test_options_of_the_other_workload_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--cube 32: not an option of --workload deepcam "
                                          r"\(it takes --train-samples, .*--height"):
        resolve(StudyOptions(out=tmp_path, cube=32))
    with pytest.raises(ConfigError, match="^--height 96: not an option of --workload cosmoflow"):
        cosmo_opts(tmp_path, height=96)
    with pytest.raises(ConfigError, match="^--max-epochs 0: must be >= 1"):
        cosmo_opts(tmp_path, max_epochs=0)
    with pytest.raises(ConfigError, match="--workload 'bert' is not one of deepcam, cosmoflow"):
        study_workload("bert")


def test_cosmoflow_commands(tmp_path: Path) -> None:
    w, opts = CosmoflowStudy(), cosmo_opts(tmp_path, extra_train_args=["--n_valid", "8"])
    assert w.train_args(CFG, Path("D"), Path("R"), opts) == [
        "cosmoflow", "train", "--data_dir", "D", "--output_dir", "R", "--cube", "32",
        "--local_batch_size", "2", "--max_epochs", "8", "--base_lr", "0.01",
        "--lr_scaling", "none", "--warmup_epochs", "1", "--decay_schedule", "none",
        "--dropout", "0.1", "--target_mae", "0.25", "--seed", "11", "--division", "open",
        "--n_valid", "8"]
    spec, args = w.synth(opts, Path("D"))
    assert spec == {"workload": "cosmoflow", "train": 1024, "val": 64, "cube": 32, "seed": 333,
                    "version": 2}  # a new version of the universes is never reused
    assert args == ["cosmoflow", "data", "synth", "--output", "D", "--cube", "32", "--train",
                    "1024", "--validation", "64", "--seed", "333", "--overwrite"]
    assert w.profile_args(CFG, Path("D"), opts, Path("p.json")) == [
        "cosmoflow", "bench", "step", "--cube", "32", "--batch", "2", "--steps", "5",
        "--warmup", "2", "--json", "p.json"]


def test_deepcam_commands_are_the_studys_before(tmp_path: Path) -> None:
    w, opts = DeepcamStudy(), resolve(StudyOptions(out=tmp_path))
    args = w.train_args(CFG, Path("D"), Path("R"), opts)
    assert args[:12] == ["train", "--data_dir", "D", "--output_dir", "R", "--run_tag",
                         "r2xt1-lb2", "--local_batch_size", "2", "--max_epochs", "20",
                         "--model"]
    assert args[-4:] == ["--target_iou", "0.82", "--division", "open"]
    assert w.synth(opts, Path("D"))[0] == {"train": 128, "val": 32, "height": 96,
                                           "width": 144, "seed": 333}
    assert w.profile_args(CFG, Path("D"), opts, Path("p.json"))[:4] == [
        "study", "profile", "--model", "deeplab-xception-small"]


def test_target_follows_the_last_train_option() -> None:
    w = CosmoflowStudy()
    assert w.target() == 0.25
    assert w.target(["--target_mae", "0.3", "--dropout", "0.2"]) == 0.3
    assert w.target(["--target_mae=0.3", "--target_mae=0.2"]) == 0.2
    assert DeepcamStudy().target(["--target_mae", "0.3"]) == 0.82
    with pytest.raises(ConfigError, match="--target_mae 'low': expected a number"):
        w.target(["--target_mae", "low"])


def test_cosmoflow_profile_is_the_whole_step(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"step_s_median": 0.16, "samples_per_s": 25.0, "ranks": 2}))
    prof = CosmoflowStudy().read_profile(path)
    assert list(prof) == list(PROFILE_KEYS)
    assert (prof["profile_step_s"], prof["profile_samples_per_s"]) == (0.16, 25.0)
    assert prof["compute_s"] is None and prof["allreduce_s"] is None
    assert prof["load_average"] >= 0
    path.write_text(json.dumps({"samples_per_s": 25.0}))
    with pytest.raises(DataError, match=r"p\.json: profile has no step_s_median"):
        CosmoflowStudy().read_profile(path)
    with pytest.raises(DataError, match=r"missing\.json: no profile was written"):
        CosmoflowStudy().read_profile(tmp_path / "missing.json")


def test_cosmoflow_row_from_a_run_directory(tmp_path: Path) -> None:
    run = make_cosmo_run(tmp_path, CFG.name, 2, [10.0, 12.0, 14.0], [0.4, 0.3, 0.2], 8.0)
    prof = {**dict.fromkeys(PROFILE_KEYS), "profile_step_s": 0.5,
            "profile_samples_per_s": 8.0, "load_average": 1.0}
    r = row(CFG, prof, run, "cosmoflow")
    assert (r["workload"], r["epoch_s"], r["step_s"]) == ("cosmoflow", 8.0, 0.5)  # 16 steps
    assert (r["samples_per_s"], r["best_mae"], r["converged"]) == (13.0, 0.2, True)
    assert (r["epochs_to_target"], r["time_to_target_s"]) == (3, 27.0)
    assert r["data_wait_s"] is None and r["other_s"] is None
    assert r["time_to_16_epochs_s"] is None
    rows = [r, {**r, "name": "r1xt1-lb2", "ranks": 1, "samples_per_s": 8.0,
                "series": ["weak"]}]
    efficiencies(rows)
    assert r["efficiency"] == {"weak": pytest.approx(13.0 / 16.0), "layout": 1.0}
    assert r["efficiency_baseline"] == {"weak": "r1xt1-lb2", "layout": "r2xt1-lb2"}
    table = list(csv.DictReader(io.StringIO(study_csv({"configs": rows}))))
    assert (table[0]["workload"], table[0]["compute_s"], table[0]["step_s"]) == \
        ("cosmoflow", "", "0.5")
    assert table[0]["efficiency"] == "weak=0.812 layout=1.000"
    assert table[0]["efficiency_baseline"] == "weak=r1xt1-lb2 layout=r2xt1-lb2"
    png = plot_step_split({"configs": rows}, tmp_path / "split.png").read_bytes()
    assert png.startswith(PNG_MAGIC)


def test_deepcam_row_keeps_its_step_split(tmp_path: Path) -> None:
    run = make_run(tmp_path, CFG.name, 2, [10.0, 12.0, 14.0], [0.4, 0.6, 0.83], 8.0)
    prof = {**dict.fromkeys(PROFILE_KEYS), "compute_s": 0.3, "exposed_allreduce_s": 0.05,
            "profile_step_s": 0.35}
    r = row(CFG, prof, run)
    assert (r["workload"], r["step_s"], r["best_iou"]) == ("deepcam", 0.25, 0.83)  # 32 steps
    assert r["data_wait_s"] == pytest.approx(0.0025)
    assert r["other_s"] == pytest.approx(0.25 - 0.3 - 0.05 - 0.0025)


def test_cli_refuses_an_option_of_the_other_workload_before_launching(tmp_path: Path) -> None:
    out = tmp_path / "study"
    result = CliRunner().invoke(main, ["study", "run", "--workload", "cosmoflow", "--out",
                                       str(out), "--height", "32", "--no-train"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(
        "deepcam-hvd: error: --height 32: not an option of --workload cosmoflow")
    assert not out.exists()
