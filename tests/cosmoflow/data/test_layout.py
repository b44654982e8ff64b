"""Sample layout facts read without TensorFlow (layout.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tensorflow", reason="the synthetic roots are written with TensorFlow")

from deepcam_hvd.cosmoflow.data.layout import peek_cube  # noqa: E402

from .conftest import CosmoRoot  # noqa: E402


@pytest.mark.parametrize(("fmt", "compression", "cube"),
                         [("tfrecord", "gzip", 16), ("tfrecord", "none", 32), ("npy", "gzip", 16)])
def test_cube_is_read_from_the_first_sample_size(cosmo_root: CosmoRoot, fmt: str,
                                                 compression: str, cube: int) -> None:
    assert peek_cube(cosmo_root(2, 1, cube=cube, compression=compression, fmt=fmt)) == cube


def test_no_cube_where_nothing_can_be_read(tmp_path: Path) -> None:
    assert peek_cube(tmp_path / "none") is None
    (tmp_path / "train").mkdir()
    assert peek_cube(tmp_path) is None  # no samples
    (tmp_path / "train" / "a.tfrecord").write_bytes(b"")
    assert peek_cube(tmp_path) is None  # empty file
