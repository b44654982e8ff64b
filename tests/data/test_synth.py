"""Synthetic data: determinism, independence from the rank count, physics and class balance."""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

import h5py
import numpy as np
import pytest

from deepcam_hvd.data.layout import CHANNEL, DATA_KEY, list_split
from deepcam_hvd.data.reader import read_stored
from deepcam_hvd.data.stats import read_stats
from deepcam_hvd.data.synth import make_grid, make_sample
from deepcam_hvd.data.synth_dataset import synthesize_dataset
from deepcam_hvd.distributed.local import LocalBackend
from deepcam_hvd.errors import ConfigError, DataError

from .threaded import run_ranks

MID = (96, 144)


@pytest.fixture(scope="module")
def mid_samples() -> list[tuple[np.ndarray, np.ndarray]]:
    return [make_sample(11, "train", i, *MID) for i in range(12)]


def test_same_seed_same_bytes() -> None:
    a = make_sample(3, "train", 4, *MID)
    b = make_sample(3, "train", 4, *MID)
    assert a[0].dtype == np.float32 and a[0].shape == (*MID, 16) and a[1].shape == MID
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    c = make_sample(4, "train", 4, *MID)
    d = make_sample(3, "validation", 4, *MID)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], d[0])


def _root_arrays(root: Path) -> dict[str, tuple[bytes, bytes]]:
    out = {}
    for split in ("train", "validation"):
        files = list_split(root, split)
        for name in files.names:
            data, label = read_stored(files.paths(name), "hdf5")
            out[f"{split}/{name}"] = (data.tobytes(), label.tobytes())
    return out


def test_dataset_independent_of_rank_count(tmp_path: Path) -> None:
    one = synthesize_dataset(tmp_path / "one", LocalBackend(), 5, 3, 32, 48, seed=8)
    reports = run_ranks(
        3, lambda b: synthesize_dataset(tmp_path / "three", b, 5, 3, 32, 48, seed=8)
    )
    assert all(r.class_frequencies == one.class_frequencies for r in reports)
    assert _root_arrays(tmp_path / "one") == _root_arrays(tmp_path / "three")
    s1, s3 = read_stats(tmp_path / "one/stats.h5"), read_stats(tmp_path / "three/stats.h5")
    assert s1.count == s3.count == 8
    for key in ("minval", "maxval", "mean", "sqmean"):
        assert getattr(s1, key).tobytes() == getattr(s3, key).tobytes(), key


def test_layout_names_and_stats(tmp_path: Path) -> None:
    synthesize_dataset(tmp_path, LocalBackend(), 10, 2, 32, 48, seed=1, compression="gzip")
    names = sorted(p.name for p in (tmp_path / "train").iterdir())
    assert len(names) == 10
    assert all(re.fullmatch(r"data-\d{4}-\d\d-\d\d-01-1_[0-7]\.h5", n) for n in names)
    assert names[0] == "data-2106-01-01-01-1_0.h5" and names[9] == "data-2106-01-02-01-1_1.h5"
    with h5py.File(tmp_path / "train" / names[0]) as f:
        assert f[DATA_KEY].compression == "gzip"
    stats = read_stats(tmp_path / "stats.h5")
    assert stats.num_channels == 16 and stats.count == 12
    assert np.all(stats.maxval > stats.minval)
    assert np.all((stats.mean >= stats.minval) & (stats.mean <= stats.maxval))
    assert np.all(stats.sqmean >= stats.mean**2 * (1 - 1e-9))
    # mean is the pixel mean over all samples
    pixels = [read_stored(list_split(tmp_path, s).paths(n), "hdf5")[0]
              for s in ("train", "validation") for n in list_split(tmp_path, s).names]
    expect = np.mean(np.asarray(pixels, dtype=np.float64), axis=(0, 1, 2))
    np.testing.assert_allclose(stats.mean, expect, rtol=1e-9, atol=1e-12)


def test_refuses_to_mix_with_old_files(tmp_path: Path) -> None:
    synthesize_dataset(tmp_path, LocalBackend(), 2, 1, 32, 48)
    with pytest.raises(DataError, match="already holds 2 .h5 files"):
        synthesize_dataset(tmp_path, LocalBackend(), 2, 1, 32, 48)
    synthesize_dataset(tmp_path, LocalBackend(), 3, 1, 32, 48, overwrite=True)
    assert len(list((tmp_path / "train").glob("*.h5"))) == 3


def test_bad_sizes() -> None:
    with pytest.raises(ConfigError):
        make_grid(8, 8)


def test_class_frequencies(mid_samples) -> None:
    counts = sum(np.bincount(lab.ravel(), minlength=3) for _, lab in mid_samples)
    freq = counts / counts.sum()
    assert 0.0005 <= freq[1] <= 0.01, freq
    assert 0.005 <= freq[2] <= 0.06, freq
    assert set(np.unique(np.concatenate([lab.ravel() for _, lab in mid_samples]))) == {0, 1, 2}


def test_value_ranges(mid_samples) -> None:
    data = np.stack([d for d, _ in mid_samples])
    bounds = {
        "TMQ": (0.5, 90.0), "U850": (-80, 80), "V850": (-80, 80), "UBOT": (-70, 70),
        "VBOT": (-70, 70), "QREFHT": (0.0, 0.035), "PS": (55_000, 106_000),
        "PSL": (95_000, 106_000), "T200": (200, 240), "T500": (220, 285), "PRECT": (0.0, 1e-5),
        "TS": (200, 315), "TREFHT": (200, 315), "Z1000": (-500, 600), "Z200": (10_300, 12_900),
        "ZBOT": (30, 75),
    }
    for name, (lo, hi) in bounds.items():
        x = data[..., CHANNEL[name]]
        assert lo <= x.min() and x.max() <= hi, (name, x.min(), x.max())
    psl = data[..., CHANNEL["PSL"]]
    assert 101_000 < psl.mean() < 101_800


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """Connected regions (4-neighbour, periodic in longitude) of a boolean mask."""
    seen = np.zeros_like(mask)
    regions = []
    h, w = mask.shape
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        queue, cells = deque([start]), []
        seen[start] = True
        while queue:
            i, j = queue.popleft()
            cells.append((i, j))
            for a, b in ((i + 1, j), (i - 1, j), (i, (j + 1) % w), (i, (j - 1) % w)):
                if 0 <= a < h and mask[a, b] and not seen[a, b]:
                    seen[a, b] = True
                    queue.append((a, b))
        regions.append(np.array(cells))
    return regions


def test_cyclones_are_rotating_pressure_lows(mid_samples) -> None:
    grid = make_grid(*MID)
    checked = 0
    deficits = []
    for data, label in mid_samples:
        psl = data[..., CHANNEL["PSL"]]
        for cells in _components(label == 1):
            if len(cells) < 8:
                continue  # clipped by another feature
            rows = np.unique(cells[:, 0])
            background = psl[rows][label[rows] == 0].mean()  # same latitudes, no feature
            values = psl[cells[:, 0], cells[:, 1]]
            ci, cj = cells[values.argmin()]
            assert values.min() < 100_800 and values.min() < background - 1_000
            deficits.append(background - values.mean())
            tmq = data[..., CHANNEL["TMQ"]]
            assert tmq[cells[:, 0], cells[:, 1]].mean() > 40.0
            # circulation: anticlockwise (positive) in the north, clockwise in the south
            dy = (cells[:, 0] - ci).astype(float)
            dx = ((cells[:, 1] - cj + MID[1] // 2) % MID[1] - MID[1] // 2).astype(float)
            u = data[cells[:, 0], cells[:, 1], CHANNEL["U850"]]
            v = data[cells[:, 0], cells[:, 1], CHANNEL["V850"]]
            circulation = np.sum(u * -dy + v * dx)
            hemisphere = np.sign(grid.lat[ci])
            assert circulation * hemisphere > 0
            checked += 1
    assert checked >= 5
    assert min(deficits) > 200 and np.mean(deficits) > 500, deficits


def test_rivers_are_moist_and_long(mid_samples) -> None:
    moist, lengths = [], []
    for data, label in mid_samples:
        tmq = data[..., CHANNEL["TMQ"]]
        lat_band = np.abs(make_grid(*MID).lat) < 60
        for cells in _components(label == 2):
            if len(cells) < 10:
                continue
            rows = np.unique(cells[:, 0])
            ref = tmq[rows][label[rows] == 0].mean()  # background at the same latitudes
            moist.append(tmq[cells[:, 0], cells[:, 1]].mean() - ref)
            extent = np.ptp(cells[:, 0]) + 1, len(np.unique(cells[:, 1]))
            lengths.append(max(extent) / (len(cells) / max(extent)))  # length / mean width
        assert lat_band.any()
    assert len(moist) >= 10
    assert np.mean(moist) > 8.0, moist
    assert np.median(lengths) > 2.0, lengths
