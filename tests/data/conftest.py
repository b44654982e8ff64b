"""Fixtures for the data tests: small synthetic roots and hand-made HDF5 samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from deepcam_hvd.data.layout import DATA_KEY, LABEL_KEY
from deepcam_hvd.data.stats import Stats, write_stats
from tests.conftest import SynthRoot

SMALL = (32, 48)


def write_h5(
    path: Path,
    data: np.ndarray,
    label: np.ndarray,
    compression: str | None = None,
    chunks: tuple[int, ...] | bool | None = None,
) -> Path:
    """Write one sample with the given storage options."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA_KEY, data=data, compression=compression, chunks=chunks)
        f.create_dataset(
            LABEL_KEY, data=label, compression=compression,
            chunks=None if chunks is None or chunks is True else chunks[:2],
        )
    return path


def simple_stats(root: Path, channels: int = 16) -> Stats:
    """stats.h5 with minval = -1, maxval = 1 + channel index."""
    stats = Stats(
        minval=-np.ones(channels), maxval=1.0 + np.arange(channels, dtype=np.float64),
        count=1, mean=np.zeros(channels), sqmean=np.ones(channels),
    )
    root.mkdir(parents=True, exist_ok=True)
    write_stats(root / "stats.h5", stats)
    return stats


@pytest.fixture(scope="session")
def small_root(synth_root: SynthRoot) -> Path:
    """A synthetic 32x48 root: 10 train, 5 validation samples (do not modify: copy first)."""
    return synth_root(10, 5, height=SMALL[0], width=SMALL[1], seed=5)


@pytest.fixture
def small_copy(small_root: Path, tmp_path: Path) -> Path:
    """A private, modifiable copy of ``small_root``."""
    dst = tmp_path / "root"
    shutil.copytree(small_root, dst)
    return dst
