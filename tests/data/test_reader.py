"""Reading samples: storage layouts, label dtypes, normalisation, channel selection, errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from deepcam_hvd.data.layout import DATA_KEY, LABEL_KEY, list_split
from deepcam_hvd.data.normalize import Normalizer, resolve_channels
from deepcam_hvd.data.reader import SampleReader, read_hdf5, read_npy, read_raw
from deepcam_hvd.data.stats import read_stats
from deepcam_hvd.errors import DataError

from .conftest import simple_stats, write_h5

H, W, C = 12, 20, 16


def _sample(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.uniform(-1.0, 2.0, size=(H, W, C)).astype(np.float32)
    label = rng.integers(0, 3, size=(H, W))
    return data, label


@pytest.mark.parametrize(
    ("compression", "chunks"),
    [(None, None), ("gzip", True), ("gzip", (4, 5, 16)), (None, (3, 7, 4)), ("lzf", True)],
)
def test_storage_layouts_read_identically(tmp_path: Path, compression, chunks) -> None:
    data, label = _sample()
    path = write_h5(tmp_path / "s.h5", data, label.astype(np.int32), compression, chunks)
    with h5py.File(path) as f:
        assert f[DATA_KEY].compression == compression
    got_data, got_label = read_raw((path,), "hdf5")
    assert got_data.dtype == np.float32 and got_label.dtype == np.int64
    np.testing.assert_array_equal(got_data, data)
    np.testing.assert_array_equal(got_label, label)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64, np.float32, np.float64])
def test_labels_become_int64(tmp_path: Path, dtype) -> None:
    data, label = _sample(1)
    path = write_h5(tmp_path / "s.h5", data, label.astype(dtype))
    _, got = read_raw((path,), "hdf5")
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, label)


def test_normalisation_values(tmp_path: Path) -> None:
    stats = simple_stats(tmp_path)  # minval -1, maxval 1 + c
    data = np.zeros((H, W, C), dtype=np.float32)
    data[0, 0, :] = -1.0  # -> 0
    data[0, 1, :] = 1.0 + np.arange(C)  # -> 1
    data[0, 2, 3] = 1.5  # channel 3: (1.5 + 1) / (4 + 1) = 0.5
    write_h5(tmp_path / "train" / "a.h5", data, np.zeros((H, W), np.int8))
    reader = SampleReader(list_split(tmp_path, "train"), Normalizer.from_stats(stats))
    x, y, name = reader.read(0)
    assert x.shape == (C, H, W) and x.dtype.is_floating_point and y.shape == (H, W)
    assert name.endswith("a.h5")
    x = x.numpy()
    np.testing.assert_allclose(x[:, 0, 0], 0.0, atol=1e-7)
    np.testing.assert_allclose(x[:, 0, 1], 1.0, atol=1e-6)
    assert x[3, 0, 2] == pytest.approx(0.5, abs=1e-6)
    # zeros map to 1 / (2 + c)
    np.testing.assert_allclose(x[:, 5, 5], 1.0 / (2.0 + np.arange(C)), rtol=1e-6)


def test_channel_selection_keeps_order(tmp_path: Path) -> None:
    stats = simple_stats(tmp_path)
    data, label = _sample(2)
    write_h5(tmp_path / "train" / "a.h5", data, label)
    channels = (7, 0, 15)
    norm = Normalizer.from_stats(stats, channels)
    x, _, _ = SampleReader(list_split(tmp_path, "train"), norm).read(0)
    assert x.shape == (3, H, W)
    for i, c in enumerate(channels):
        expect = (data[:, :, c] + 1.0) / (2.0 + c)
        np.testing.assert_allclose(x[i].numpy(), expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [[16], [-1], [0, 0], [], [1.5]])
def test_bad_channel_selection(bad) -> None:
    with pytest.raises(DataError):
        resolve_channels(bad, 16)


def test_out_of_range_channel_names_the_count(tmp_path: Path) -> None:
    stats = simple_stats(tmp_path)
    with pytest.raises(DataError, match="out of range.*16 channels"):
        Normalizer.from_stats(stats, [3, 16])


def test_missing_key_names_file(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f[DATA_KEY] = np.zeros((H, W, C), np.float32)
    with pytest.raises(DataError, match=rf"{path}.*missing key {LABEL_KEY}"):
        read_hdf5(path)


def test_truncated_file_names_file(tmp_path: Path) -> None:
    data, label = _sample()
    path = write_h5(tmp_path / "s.h5", data, label)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=str(path)):
        read_hdf5(path)


def test_not_hdf5_names_file(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    path.write_text("hello")
    with pytest.raises(DataError, match=rf"{path}: cannot open as HDF5"):
        read_hdf5(path)


def test_label_shape_mismatch(tmp_path: Path) -> None:
    data, _ = _sample()
    path = write_h5(tmp_path / "s.h5", data, np.zeros((H, W + 1), np.int32))
    with pytest.raises(DataError, match="labels_0 has shape"):
        read_hdf5(path)


def test_reader_rejects_other_shape(tmp_path: Path) -> None:
    stats = simple_stats(tmp_path)
    data, label = _sample()
    write_h5(tmp_path / "train" / "a.h5", data, label)
    write_h5(tmp_path / "train" / "b.h5", data[:, :-1], label[:, :-1])
    reader = SampleReader(list_split(tmp_path, "train"), Normalizer.from_stats(stats))
    reader.read(0)
    with pytest.raises(DataError, match=r"b\.h5: data has shape"):
        reader.read(1)


def test_npy_reads_like_hdf5(tmp_path: Path) -> None:
    data, label = _sample(3)
    h5 = write_h5(tmp_path / "s.h5", data, label.astype(np.int8))
    np.save(tmp_path / "s-data.npy", data)
    np.save(tmp_path / "s-label.npy", label.astype(np.int8))
    np.save(tmp_path / "f-data.npy", np.asfortranarray(data))
    a = read_raw((h5,), "hdf5")
    b = read_raw((tmp_path / "s-data.npy", tmp_path / "s-label.npy"), "npy")
    c = read_raw((tmp_path / "f-data.npy", tmp_path / "s-label.npy"), "npy")
    for got in (b, c):
        np.testing.assert_array_equal(got[0], a[0])
        np.testing.assert_array_equal(got[1], a[1])
        assert got[1].dtype == np.int64


def test_truncated_npy_names_file(tmp_path: Path) -> None:
    data, label = _sample()
    np.save(tmp_path / "s-data.npy", data)
    np.save(tmp_path / "s-label.npy", label)
    blob = (tmp_path / "s-data.npy").read_bytes()
    (tmp_path / "s-data.npy").write_bytes(blob[:-100])
    with pytest.raises(DataError, match=r"s-data\.npy.*truncated"):
        read_npy(tmp_path / "s-data.npy", tmp_path / "s-label.npy")


def test_stats_validation(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "stats.h5", "w") as f:
        f["climate/minval"] = np.zeros(16)
        f["climate/maxval"] = np.r_[np.ones(15), 0.0]
    with pytest.raises(DataError, match=r"maxval <= minval for channel\(s\) \[15\]"):
        read_stats(tmp_path / "stats.h5")
    with pytest.raises(DataError, match="stats file missing"):
        read_stats(tmp_path / "nope.h5")
