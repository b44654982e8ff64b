"""Data roots and pipelines: listing, sharding over ranks, epochs, batches, compression."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="CosmoFlow needs TensorFlow")

from deepcam_hvd.cosmoflow.data import dataset, npy, tfrecord  # noqa: E402
from deepcam_hvd.cosmoflow.data.layout import list_split  # noqa: E402
from deepcam_hvd.data import sharding  # noqa: E402
from deepcam_hvd.errors import ConfigError, DataError  # noqa: E402

from .conftest import CosmoRoot  # noqa: E402


def index_by_y(files: list[Path]) -> dict[tuple[float, ...], int]:
    """Sample index of each file's y (the synthetic y are all different)."""
    found = {tuple(tfrecord.read_sample(f)[1].tolist()): i for i, f in enumerate(files)}
    assert len(found) == len(files)
    return found


def read_indices(data: tf.data.Dataset, files: list[Path]) -> list[int]:
    """Indices of the samples a dataset yields, in order."""
    index = index_by_y(files)
    return [index[tuple(y.tolist())] for _, ys in data for y in ys.numpy()]


def test_list_split(cosmo_root: CosmoRoot) -> None:
    root = cosmo_root(8, 4)
    files = list_split(root, "train")
    assert [f.name for f in files] == [f"univ_synth_train_{i:06d}.tfrecord" for i in range(8)]
    assert list_split(root, "validation", limit=3) == list_split(root, "validation")[:3]
    with pytest.raises(DataError, match=r"validation: 5 samples requested, 4 present"):
        list_split(root, "validation", limit=5)
    with pytest.raises(DataError, match="unknown split 'test'"):
        list_split(root, "test")


def test_list_split_errors(tmp_path: Path, cosmo_root: CosmoRoot) -> None:
    with pytest.raises(DataError, match=rf"^{tmp_path / 'train'}: no such directory$"):
        list_split(tmp_path, "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match=r"train: no \*\.tfrecord samples$"):
        list_split(tmp_path, "train")
    npy_root = cosmo_root(2, 1, fmt="npy")
    for entry in (npy_root / "train").iterdir():
        shutil.copy(entry, tmp_path / "train")
    assert [f.name for f in list_split(tmp_path, "train")] == [
        "univ_synth_train_000000-x.npy", "univ_synth_train_000001-x.npy"]
    (tmp_path / "train" / "univ_synth_train_000001-y.npy").unlink()
    with pytest.raises(DataError, match=r"univ_synth_train_000001-x\.npy: no matching -y\.npy"):
        list_split(tmp_path, "train")
    shutil.copy(list_split(cosmo_root(8, 4), "train")[0], tmp_path / "train")
    with pytest.raises(DataError, match=r"holds both \*\.tfrecord and \*-x\.npy samples"):
        list_split(tmp_path, "train")


def test_training_shards_are_disjoint_and_cover_every_file(cosmo_root: CosmoRoot) -> None:
    files = list_split(cosmo_root(8, 4), "train")
    seen = []
    for rank in range(2):
        data = dataset.make_dataset(files, 1, rank, 2, shuffle=True, seed=5, epochs=3)
        got = read_indices(data, files)
        assert len(got) == 3 * dataset.steps_per_epoch(8, 1, rank, 2, shuffle=True) == 12
        epochs = [got[4 * e : 4 * e + 4] for e in range(3)]
        assert epochs == [sharding.train_shard(8, rank, 2, 5, e) for e in range(3)]
        seen.append(epochs)
    for e in range(3):
        assert sorted(seen[0][e] + seen[1][e]) == list(range(8))  # disjoint, all files
    assert seen[0][0] != seen[0][1]  # a new order each epoch


def test_same_seed_same_order_and_resume(cosmo_root: CosmoRoot) -> None:
    files = list_split(cosmo_root(8, 4), "train")
    whole = read_indices(dataset.make_dataset(files, 2, 1, 2, True, seed=9, epochs=2), files)
    again = read_indices(dataset.make_dataset(files, 2, 1, 2, True, seed=9, epochs=2), files)
    resumed = read_indices(
        dataset.make_dataset(files, 2, 1, 2, True, seed=9, epochs=1, start_epoch=1), files)
    other = read_indices(dataset.make_dataset(files, 2, 1, 2, True, seed=10, epochs=2), files)
    assert whole == again and resumed == whole[4:] and other != whole


def test_validation_shards_cover_every_file_once(cosmo_root: CosmoRoot) -> None:
    files = list_split(cosmo_root(8, 4), "validation")
    got = [read_indices(dataset.make_dataset(files, 1, r, 3, drop_remainder=False, epochs=2),
                        files) for r in range(3)]
    assert got == [[0, 3, 0, 3], [1, 1], [2, 2]]
    assert [dataset.steps_per_epoch(4, 1, r, 3, shuffle=False) for r in range(3)] == [2, 1, 1]


def test_batches_never_straddle_epochs(cosmo_root: CosmoRoot) -> None:
    files = list_split(cosmo_root(8, 4), "train")
    kept = dataset.make_dataset(files, 3, 0, 2, shuffle=True, seed=1, epochs=2)
    assert [x.shape[0] for x, _ in kept] == [3, 3]  # 4 files per epoch: one full batch each
    assert dataset.steps_per_epoch(8, 3, 0, 2, True) == 1
    loose = dataset.make_dataset(files, 3, 0, 2, True, seed=1, epochs=2, drop_remainder=False)
    assert [x.shape[0] for x, _ in loose] == [3, 1, 3, 1]
    assert dataset.steps_per_epoch(8, 3, 0, 2, True, drop_remainder=False) == 2


def test_shuffle_buffer_keeps_each_epochs_samples(cosmo_root: CosmoRoot) -> None:
    files = list_split(cosmo_root(8, 4), "train")
    plain = read_indices(dataset.make_dataset(files, 1, 0, 1, True, seed=2, epochs=2), files)
    mixed = read_indices(dataset.make_dataset(files, 1, 0, 1, True, seed=2, epochs=2,
                                              shuffle_buffer=4), files)
    assert sorted(mixed[:8]) == sorted(plain[:8]) == list(range(8))
    assert sorted(mixed[8:]) == list(range(8))


def test_batches_hold_the_parsed_samples(cosmo_root: CosmoRoot) -> None:
    files = list_split(cosmo_root(8, 4), "validation")
    (bx, by), = list(dataset.read_dataset(files, 4, 16))
    assert bx.shape == (4, 16, 16, 16, 4) and bx.dtype == tf.float32 and by.shape == (4, 4)
    for i, path in enumerate(files):
        x, y = tfrecord.read_sample(path)
        np.testing.assert_allclose(bx[i].numpy(), np.log1p(x.astype(np.float32)), rtol=1e-6)
        np.testing.assert_array_equal(by[i].numpy(), y)


def test_gzip_and_plain_files_mix(tmp_path: Path, cosmo_root: CosmoRoot) -> None:
    gz = list_split(cosmo_root(8, 4), "validation")[:2]
    plain = list_split(cosmo_root(8, 4, compression="none"), "validation")[2:]
    assert tfrecord.detect_compression(gz[0]) == "GZIP"
    assert tfrecord.detect_compression(plain[0]) == ""
    files = [gz[0], plain[0], gz[1], plain[1]]
    (_, by), = list(dataset.read_dataset(files, 4, 16))
    want = np.stack([tfrecord.read_sample(f)[1] for f in files])
    np.testing.assert_array_equal(by.numpy(), want)
    with pytest.raises(tf.errors.OpError) as info:
        list(dataset.read_dataset(files, 4, 16, compression="gzip"))
    error = dataset.explain_error(info.value, files, 16, compression="gzip")
    assert str(error) == (f"{plain[0]}: a plain TFRecord, but compression gzip was set "
                          "(and 1 more bad file(s))")


def test_open_root(cosmo_root: CosmoRoot) -> None:
    root = cosmo_root(8, 4)
    data = dataset.open_root(root, n_train=6)
    assert data.cube == 16
    assert data.train_files == [str(p) for p in list_split(root, "train", 6)]
    assert data.validation_files == [str(p) for p in list_split(root, "validation")]
    order = [data.validation_files[i] for i in (3, 1, 0)]
    (_, by), = list(data.dataset(order, 3, drop_remainder=True))
    want = np.stack([tfrecord.read_sample(f)[1] for f in order])
    np.testing.assert_array_equal(by.numpy(), want)


def test_open_root_npy(cosmo_root: CosmoRoot) -> None:
    root = cosmo_root(2, 2, fmt="npy")
    data = dataset.open_root(root)
    assert data.cube == 16 and len(data.train_files) == 2
    assert all(f.endswith("-x.npy") for f in data.train_files + data.validation_files)
    (bx, by), = list(data.dataset(data.validation_files, 2, drop_remainder=True))
    for i, path in enumerate(data.validation_files):
        x, y = npy.read_sample(path)
        np.testing.assert_allclose(bx[i].numpy(), np.log1p(x.astype(np.float32)), rtol=1e-6)
        np.testing.assert_array_equal(by[i].numpy(), y)
    with pytest.raises(DataError, match=r"train: no \*\.tfrecord samples"):
        dataset.open_root(root, data_format="tfrecord")


def test_bad_settings(cosmo_root: CosmoRoot) -> None:
    files = list_split(cosmo_root(8, 4), "validation")
    with pytest.raises(DataError, match="4 training files cannot give each of 5 ranks one"):
        dataset.make_dataset(files, 1, 0, 5, shuffle=True)
    with pytest.raises(ConfigError, match="rank 2 out of range for 2 ranks"):
        dataset.make_dataset(files, 1, 2, 2)
    with pytest.raises(DataError, match="batch size must be >= 1"):
        dataset.make_dataset(files, 0)
    with pytest.raises(DataError, match="a npy sample among tfrecord samples"):
        dataset.read_dataset([files[0], Path("u-x.npy")], 1, 16)
