"""Bad input: a one-line error naming the culprit and a non-zero exit, never a hang."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import SmallDisk, SynthRoot
from tests.launch import DEEPCAM, run_ranks

FAST = ["--model", "deeplab-xception-small", "--local_batch_size", "2", "--max_epochs", "1",
        "--max_inter_threads", "0"]


@pytest.fixture(scope="module")
def good_root(synth_root: SynthRoot) -> Path:
    return synth_root(8, 4, height=32, width=48, seed=2)


def first_train_file(root: Path) -> Path:
    return sorted((root / "train").glob("*.h5"))[0]


def last_train_file(root: Path) -> Path:
    return sorted((root / "train").glob("*.h5"))[-1]


def truncate(root: Path, pick: Callable[[Path], Path] = first_train_file) -> str:
    path = pick(root)
    path.write_bytes(path.read_bytes()[:2000])
    return f"{path}: cannot open as HDF5"


def put_nan(root: Path) -> str:
    path = first_train_file(root)
    with h5py.File(path, "r+") as f:
        f["climate/data"][3, 4, 0] = np.nan
    return f"{path}: data holds NaN or Inf"


def bad_label(root: Path) -> str:
    path = first_train_file(root)
    with h5py.File(path, "r+") as f:
        f["climate/labels_0"][0, 0] = 3
    return f"{path}: labels outside {{0, 1, 2}}"


def wrong_channels(root: Path) -> str:
    path = first_train_file(root)
    with h5py.File(path, "r+") as f:
        data = f["climate/data"][...]
        del f["climate/data"]
        f["climate/data"] = data[:, :, :12]
    return "12 channels"


def missing_key(root: Path) -> str:
    path = first_train_file(root)
    with h5py.File(path, "r+") as f:
        del f["climate/labels_0"]
    return f"{path}: missing key climate/labels_0"


def no_stats(root: Path) -> str:
    (root / "stats.h5").unlink()
    return f"{root / 'stats.h5'}"


def inconsistent_stats(root: Path) -> str:
    with h5py.File(root / "stats.h5", "r+") as f:
        f["climate/maxval"][0] = f["climate/minval"][0] - 1.0
    return f"{root / 'stats.h5'}"


def no_validation(root: Path) -> str:
    shutil.rmtree(root / "validation")
    return f"{root / 'validation'}"


def empty_root(root: Path) -> str:
    shutil.rmtree(root / "train")
    shutil.rmtree(root / "validation")
    return f"{root / 'train'}"


CASES: dict[str, Callable[[Path], str]] = {
    "truncated": truncate, "nan": put_nan, "label": bad_label, "channels": wrong_channels,
    "missing_key": missing_key, "no_stats": no_stats, "bad_stats": inconsistent_stats,
    "no_validation": no_validation, "empty": empty_root,
}


# NaN and bad labels are found by the reader in the first epoch, after start-up: slow
FOUND_WHILE_TRAINING = ("label", "nan")


@pytest.mark.parametrize("case", [
    pytest.param(case, marks=pytest.mark.slow) if case in FOUND_WHILE_TRAINING else case
    for case in sorted(CASES)])
def test_bad_data_is_one_clear_line(case: str, good_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(good_root, root)
    expected = CASES[case](root)
    proc = subprocess.run([DEEPCAM, "train", "--data_dir", str(root), "--output_dir",
                           str(tmp_path / "out"), *FAST], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepcam-hvd: error: "), proc.stderr
    assert expected in lines[0]


@pytest.mark.multirank
def test_bad_file_on_one_of_two_ranks_stops_both(good_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(good_root, root)
    expected = truncate(root, last_train_file)  # read by one rank, during the epoch
    proc = run_ranks([DEEPCAM, "train", "--data_dir", str(root), "--output_dir",
                      str(tmp_path / "out"), *FAST], timeout=90)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("deepcam-hvd: error")]
    culprit = [line for line in errors if expected in line]
    assert len(culprit) == 1 and "[rank " in culprit[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # trains
def test_skip_bad_files_counts_and_continues(good_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(good_root, root)
    truncate(root, last_train_file)
    out = tmp_path / "out"
    proc = subprocess.run([DEEPCAM, "train", "--data_dir", str(root), "--output_dir", str(out),
                           *FAST, "--max_epochs", "2", "--skip_bad_files"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("deepcam-hvd: warning: skipping") == 2  # once per epoch
    assert "2 bad files skipped" in proc.stdout


def test_unwritable_output_dir(good_root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = subprocess.run([DEEPCAM, "train", "--data_dir", str(good_root), "--output_dir",
                           str(blocker / "run"), *FAST], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("deepcam-hvd: error: ") and str(blocker) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # trains
def test_disk_full_during_save(good_root: Path, small_disk: SmallDisk) -> None:
    """A 3 MB file system holds the logs but not the ~13 MB checkpoint."""
    mount = small_disk("3m")
    proc = subprocess.run([DEEPCAM, "train", "--data_dir", str(good_root), "--output_dir",
                           str(mount / "run"), *FAST], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "cannot write checkpoint" in proc.stderr and "No space left" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not list((mount / "run" / "checkpoints").glob(".*tmp*"))  # no debris left
