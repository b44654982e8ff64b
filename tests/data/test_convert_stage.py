"""convert (HDF5 -> npy) round trip, and staging shares to node-local folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deepcam_hvd.data.check import check_dataset
from deepcam_hvd.data.convert import convert_dataset
from deepcam_hvd.data.layout import list_split, read_manifest
from deepcam_hvd.data.loader import LoaderSettings, train_loader, validation_loader
from deepcam_hvd.data.reader import read_raw, read_stored
from deepcam_hvd.data.sharding import local_share, validation_shard
from deepcam_hvd.data.stage import stage_dataset
from deepcam_hvd.distributed.local import LocalBackend
from deepcam_hvd.errors import DataError

from .threaded import run_ranks


def test_convert_round_trip(small_root: Path, tmp_path: Path) -> None:
    dst = tmp_path / "npy"
    reports = run_ranks(2, lambda b: convert_dataset(small_root, dst, b))
    assert reports[0].counts == {"train": 10, "validation": 5}
    assert (dst / "stats.h5").read_bytes() == (small_root / "stats.h5").read_bytes()
    for split in ("train", "validation"):
        h5, npy = list_split(small_root, split), list_split(dst, split)
        assert npy.fmt == "npy" and npy.names == h5.names
        for name in h5.names:
            a_data, a_label = read_stored(h5.paths(name), "hdf5")
            b_data, b_label = read_stored(npy.paths(name), "npy")
            assert b_data.dtype == np.float32 and b_label.dtype == a_label.dtype
            np.testing.assert_array_equal(a_data, b_data)
            np.testing.assert_array_equal(a_label, b_label)
            assert np.load(npy.paths(name)[0]).shape == (32, 48, 16)  # plain HWC npy
    assert check_dataset(dst, LocalBackend()).ok
    # the loader gives the same batches from both forms
    settings = LoaderSettings(local_batch_size=2, readers=2, seed=3)
    for a, b in zip(
        train_loader(small_root, 0, 1, settings), train_loader(dst, 0, 1, settings), strict=True
    ):
        assert torch.equal(a.data, b.data) and torch.equal(a.label, b.label)
        assert [Path(n).name.split(".")[0] for n in a.filenames] == [
            Path(n).name.removesuffix("-data.npy") for n in b.filenames
        ]


def test_convert_bad_source_fails_everywhere(small_copy: Path, tmp_path: Path) -> None:
    bad = sorted((small_copy / "train").glob("*.h5"))[3]
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match=str(bad)):
        run_ranks(2, lambda b: convert_dataset(small_copy, tmp_path / "out", b))


def test_stage_shares_and_train_locally(small_root: Path, tmp_path: Path) -> None:
    size, seed = 2, 7
    # two pretend nodes with one rank each: each stages into its own folder
    dst = [tmp_path / "node0", tmp_path / "node1"]
    reports = run_ranks(
        size, lambda b: stage_dataset(small_root, dst[b.rank], b, seed=seed), local_size=1
    )
    train = list_split(small_root, "train")
    val = list_split(small_root, "validation")
    assert reports[0].files_copied == 10 + 5 and reports[0].seconds > 0
    for rank in range(size):
        present = sorted(p.name for p in (dst[rank] / "train").glob("*.h5"))
        expect = sorted(f"{train.names[i]}.h5" for i in local_share(10, rank, size, seed))
        assert present == expect
        vpresent = sorted(p.name for p in (dst[rank] / "validation").glob("*.h5"))
        assert vpresent == sorted(f"{val.names[i]}.h5" for i in validation_shard(5, rank, size))
        assert (dst[rank] / "stats.h5").is_file()
        assert read_manifest(dst[rank])["splits"]["train"]["names"] == list(train.names)
        local = LoaderSettings(shuffle="local", seed=seed, local_batch_size=1)
        names = [n for b in train_loader(dst[rank], rank, size, local) for n in b.filenames]
        assert sorted(Path(n).name for n in names) == expect
        vnames = [n for b in validation_loader(dst[rank], rank, size, local) for n in b.filenames]
        assert sorted(Path(n).name for n in vnames) == vpresent
        with pytest.raises(DataError, match="staged as per-rank shares"):
            train_loader(dst[rank], rank, size, LoaderSettings(seed=seed))  # global shuffle
    # staging again copies nothing
    again = run_ranks(
        size, lambda b: stage_dataset(small_root, dst[b.rank], b, seed=seed), local_size=1
    )
    assert again[0].files_copied == 0 and again[0].files_skipped == 15


def test_stage_full_splits_copies_over_node_ranks(small_root: Path, tmp_path: Path) -> None:
    dst = tmp_path / "shm"
    reports = run_ranks(
        2, lambda b: stage_dataset(small_root, dst, b, splits=("train",), full=True)
    )
    assert reports[0].files_copied == 10 and reports[0].mode == "full"
    assert len(list((dst / "train").glob("*.h5"))) == 10
    loader = train_loader(dst, 0, 2, LoaderSettings())  # global shuffle is fine
    assert loader.num_samples == 5
    x, y = read_raw(list_split(dst, "train").paths(list_split(dst, "train").names[0]), "hdf5")
    assert x.shape == (32, 48, 16) and y.dtype == np.int64
