"""``check``: a good root passes; each kind of bad file is found and named."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from deepcam_hvd.data.check import check_dataset
from deepcam_hvd.data.layout import DATA_KEY, LABEL_KEY
from deepcam_hvd.distributed.local import LocalBackend

from .threaded import run_ranks


def _first(root: Path, split: str = "train") -> Path:
    return sorted((root / split).glob("*.h5"))[0]


def test_good_root_passes(small_root: Path) -> None:
    report = check_dataset(small_root, LocalBackend())
    assert report.ok, report.problems
    assert report.files == {"train": 10, "validation": 5}
    assert report.shape == (32, 48, 16)
    freq = report.class_frequencies("train")
    assert sum(freq) == pytest.approx(1.0) and freq[1] > 0 and freq[2] > 0
    assert "train: 10 files" in report.summary()


def _truncate(path: Path) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 3])


def _drop_label(path: Path) -> None:
    with h5py.File(path, "a") as f:
        del f[LABEL_KEY]


def _wrong_shape(path: Path) -> None:
    with h5py.File(path, "a") as f:
        data, label = f[DATA_KEY][:, :40], f[LABEL_KEY][:, :40]
        del f[DATA_KEY], f[LABEL_KEY]
        f[DATA_KEY], f[LABEL_KEY] = data, label


def _nan(path: Path) -> None:
    with h5py.File(path, "a") as f:
        f[DATA_KEY][3, 4, 7] = np.nan


def _label3(path: Path) -> None:
    with h5py.File(path, "a") as f:
        f[LABEL_KEY][0, 0] = 3


def _float64(path: Path) -> None:
    with h5py.File(path, "a") as f:
        data = f[DATA_KEY][()].astype(np.float64)
        del f[DATA_KEY]
        f[DATA_KEY] = data


def _out_of_range(path: Path) -> None:
    with h5py.File(path, "a") as f:
        f[DATA_KEY][0, 0, 0] = 1e6  # TMQ


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate, "cannot open as HDF5"),
        (_drop_label, "missing key climate/labels_0"),
        (_wrong_shape, r"shape \(32, 40, 16\), most files have \(32, 48, 16\)"),
        (_nan, "NaN or Inf in channel.s. PSL"),
        (_label3, r"labels outside \{0, 1, 2\}: 3"),
        (_float64, "dtype float64, expected float32"),
        (_out_of_range, "channel TMQ spans"),
    ],
)
def test_bad_file_is_named(
    small_copy: Path, damage: Callable[[Path], None], message: str
) -> None:
    bad = _first(small_copy, "validation")
    damage(bad)
    report = check_dataset(small_copy, LocalBackend())
    assert len(report.problems) == 1, report.problems
    assert report.problems[0].startswith(str(bad))
    assert re.search(message, report.problems[0]), report.problems[0]


def test_missing_stats(small_copy: Path) -> None:
    (small_copy / "stats.h5").unlink()
    report = check_dataset(small_copy, LocalBackend())
    assert report.problems == [f"{small_copy / 'stats.h5'}: missing"]


def test_bad_stats(small_copy: Path) -> None:
    with h5py.File(small_copy / "stats.h5", "a") as f:
        maxval = f["climate/maxval"][()]
        maxval[5] = f["climate/minval"][5]
        f["climate/maxval"][...] = maxval
    report = check_dataset(small_copy, LocalBackend())
    assert any("maxval <= minval for channel(s) [5]" in p for p in report.problems)


def test_missing_split(small_copy: Path) -> None:
    for path in (small_copy / "validation").iterdir():
        path.unlink()
    (small_copy / "validation").rmdir()
    report = check_dataset(small_copy, LocalBackend())
    assert report.problems == [f"{small_copy / 'validation'}: missing"]


def test_several_ranks_find_all_bad_files(small_copy: Path) -> None:
    bad = sorted((small_copy / "train").glob("*.h5"))[2:6]
    for path in bad:
        _label3(path)
    reports = run_ranks(3, lambda b: check_dataset(small_copy, b))
    for report in reports:
        assert sorted(p.split(":")[0] for p in report.problems) == sorted(map(str, bad))
        assert report.files == {"train": 10, "validation": 5}
    assert reports[0].class_counts == check_dataset(small_copy, LocalBackend()).class_counts
