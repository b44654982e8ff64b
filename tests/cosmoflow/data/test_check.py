"""``check_files``: a good split passes; bad files are found, each named once, over ranks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

tf = pytest.importorskip("tensorflow", reason="CosmoFlow needs TensorFlow")

from deepcam_hvd.cosmoflow.data import tfrecord  # noqa: E402
from deepcam_hvd.cosmoflow.data.check import check_files, merge_checks  # noqa: E402
from deepcam_hvd.cosmoflow.data.layout import list_split  # noqa: E402

from .conftest import CosmoRoot  # noqa: E402
from .test_tfrecord import BAD  # noqa: E402


def copy_split(root: Path, tmp_path: Path) -> list[Path]:
    """A private copy of the training files of ``root``."""
    out = tmp_path / "train"
    shutil.copytree(root / "train", out)
    return list_split(tmp_path, "train")


def test_good_files_pass(cosmo_root: CosmoRoot) -> None:
    files = list_split(cosmo_root(8, 4), "train")
    result = check_files(files)
    assert result.ok and result.cube == 16
    assert sorted(result.cubes) == sorted(str(f) for f in files)


def test_bad_files_found_over_two_ranks(cosmo_root: CosmoRoot, tmp_path: Path) -> None:
    files = copy_split(cosmo_root(8, 4), tmp_path)
    BAD["truncated"][0](files[1])
    BAD["nan y"][0](files[4])
    x, y = tfrecord.read_sample(files[6])
    tfrecord.write_sample(files[6], x[:8, :8, :8].copy(), y)  # another cube
    parts = [check_files(files, rank=r, size=2) for r in range(2)]
    assert sum(len(p.cubes) + len(p.problems) for p in parts) == 8  # every file once
    assert not set(parts[0].cubes) & set(parts[1].cubes)
    merged = merge_checks(parts)
    assert merged.cube == 16
    problems = sorted(merged.problems)
    assert len(problems) == 3
    assert problems[0].startswith(f"{files[1]}: corrupt or truncated gzip TFRecord (")
    assert problems[1].startswith(f"{files[4]}: y holds NaN or Inf: [")
    assert problems[2] == f"{files[6]}: cube 8, most files have 16"


def test_given_cube_and_compression(cosmo_root: CosmoRoot) -> None:
    files = list_split(cosmo_root(8, 4), "train")[:2]
    assert check_files(files, cube=16, compression="gzip").ok
    wrong = check_files(files, cube=8)
    assert wrong.problems == [f"{f}: x holds 32768 bytes, expected 4096 (8^3 x 4 int16)"
                              for f in files]
    plain = check_files(files, compression="none")
    assert plain.problems == [f"{f}: a gzip TFRecord, but compression none was set"
                              for f in files]
