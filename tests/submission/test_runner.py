"""`deepcam-hvd submission run`: fresh directories and seeds; refusals (no real training)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from deepcam_hvd.cli import main
from deepcam_hvd.submission.runner import fresh_seed
from deepcam_hvd.submission.runset import check_runs

FAKE = Path(__file__).with_name("fake_train.py")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["submission", "run", *args])


def test_runs_get_fresh_dirs_and_distinct_seeds(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = run("--runs", "3", "--out", str(out), "--launcher-cmd",
                 f"{sys.executable} {FAKE}", "--timeout", "60", "--", "--max_epochs", "7")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines if "epochs" in line] == \
        ["run_0", "run_1", "run_2"]
    records = [json.loads((out / f"run_{i}/launch.json").read_text()) for i in range(3)]
    # the trainer draws each run's seed (PASS_SEEDS is off): no --seed is passed
    assert records[1]["command"][-2:] == ["--output_dir", str(out / "run_1")]
    assert records[1]["seed"] is None and records[1]["returncode"] == 0
    assert records[1]["train_options"] == ["--max_epochs", "7"]
    assert "fake training: train --max_epochs 7" in (out / "run_0/train.log").read_text()
    runs = check_runs([out / f"run_{i}/mlperf.log" for i in range(3)], allow_fewer=True)
    seeds = [r.seeds[0] for r in runs.runs]
    assert len(set(seeds)) == 3 and min(seeds) > 0
    for i, seed in enumerate(seeds):
        assert f"run_{i}: success, seed {seed}, 4 epochs" in result.output


def test_a_repeated_seed_stops_the_series(tmp_path: Path) -> None:
    result = run("--runs", "3", "--out", str(tmp_path / "runs"), "--launcher-cmd",
                 f"{sys.executable} {FAKE}", "--", "--fixed-seed")
    assert result.exit_code == 2
    assert "error: run_1 logged seed 333 as an earlier run did" in result.output
    assert not (tmp_path / "runs/run_2").exists()


def test_package_scripts_repeat_the_runs_command(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("run.toml").write_text('model = "deeplab-xception-small"\n')
    result = run("--runs", "2", "--out", "runs", "--launcher-cmd", f"{sys.executable} {FAKE}",
                 "--", "--config", "run.toml", "--data_dir=/data/cam5", "--start_lr", "0.002")
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["submission", "package", "runs/run_0", "runs/run_1",
                                       "--system", "box", "--out", "pkg", "--allow-fewer",
                                       "--no-check"])
    assert result.exit_code == 0, result.output
    box = tmp_path / "pkg/deepcam-hvd/benchmarks/deepcam/implementations/box"
    script = (box / "run_and_time.sh").read_text().splitlines()[-1]
    assert script == (f"${{LAUNCHER:-{sys.executable} {FAKE}}} deepcam-hvd train --config "
                      '"$(dirname "$0")/run.toml" --data_dir="${DATA_DIR:-/data/cam5}" '
                      '--start_lr 0.002 --output_dir "$OUTPUT_DIR"')
    assert (box / "run.toml").read_text() == 'model = "deeplab-xception-small"\n'


def test_existing_run_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "runs/run_1").mkdir(parents=True)
    result = run("--runs", "2", "--out", str(tmp_path / "runs"), "--launcher-cmd",
                 f"{sys.executable} {FAKE}")
    assert result.exit_code == 2
    assert result.output.strip() == (f"deepcam-hvd: error: {tmp_path / 'runs/run_1'} already "
                                     "exists: refusing to overwrite a run (choose another --out)")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["run_1"]


@pytest.mark.parametrize("option", ["--seed", "--resume", "--output_dir", "--seed=4"])
def test_options_the_runner_owns_are_refused(tmp_path: Path, option: str) -> None:
    result = run("--out", str(tmp_path / "runs"), "--", option, "x")
    assert result.exit_code == 2
    assert f"error: {option.split('=')[0]} in the train options: not allowed" in result.output
    assert not (tmp_path / "runs").exists()


def test_failed_training_stops_the_series(tmp_path: Path) -> None:
    result = run("--runs", "3", "--out", str(tmp_path / "runs"), "--launcher-cmd",
                 f"{sys.executable} {FAKE}", "--", "--fail")
    assert result.exit_code == 2
    assert f"run_0: training exited 3 (output: {tmp_path / 'runs/run_0/train.log'})" in \
        result.output
    assert not (tmp_path / "runs/run_1").exists()


def test_run_past_its_timeout_is_stopped(tmp_path: Path) -> None:
    result = run("--runs", "2", "--out", str(tmp_path / "runs"), "--launcher-cmd",
                 f"{sys.executable} {FAKE}", "--timeout", "2", "--", "--sleep", "60")
    assert result.exit_code == 2
    assert "run_0 ran past --timeout 2 s and was stopped" in result.output


def test_fresh_seed_is_positive_and_unused() -> None:
    used: set[int] = set()
    for _ in range(50):
        seed = fresh_seed(used)
        assert 0 < seed < 2**31 and seed not in used
        used.add(seed)
