"""Loader: each shard sample once per epoch, same batches whatever the readers, clean errors."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from deepcam_hvd.data.layout import DATA_KEY
from deepcam_hvd.data.loader import (
    LoaderSettings,
    build_loaders,
    make_reader,
    train_loader,
    validation_loader,
)
from deepcam_hvd.errors import ConfigError, DataError

from .threaded import run_ranks


def _epoch(loader, epoch: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    out = []
    for batch in loader.iter_epoch(epoch):
        assert batch.data.dtype == torch.float32 and batch.label.dtype == torch.int64
        assert batch.data.shape[0] == batch.label.shape[0] == len(batch.filenames)
        out.extend(zip(batch.filenames, batch.data, batch.label, strict=True))
    return out


@pytest.mark.parametrize("readers", [0, 2])
def test_every_shard_sample_once(small_root: Path, readers: int) -> None:
    settings = LoaderSettings(local_batch_size=2, readers=readers, seed=4)
    reference = make_reader(small_root, "train")
    size = 2
    for rank in range(size):
        with train_loader(small_root, rank, size, settings) as loader:
            assert len(loader) == 2 and loader.num_samples == 4  # 10 files / 2 ranks, batch 2
            for epoch in (0, 1):
                got = _epoch(loader, epoch)
                expect = [reference.split.primary(reference.split.names[i]) for i in
                          loader.indices(epoch)]
                assert [name for name, _, _ in got] == [str(p) for p in expect]
                # the batch holds the data of the file it names
                for (name, x, y), index in zip(got, loader.indices(epoch), strict=True):
                    x_ref, y_ref, name_ref = reference.read(index)
                    assert name == name_ref
                    assert torch.equal(x, x_ref) and torch.equal(y, y_ref)


def test_ranks_partition_the_epoch(small_root: Path) -> None:
    settings = LoaderSettings(local_batch_size=1, readers=2)
    size = 3
    for epoch in (0, 5):
        names = [
            [n for n, _, _ in _epoch(train_loader(small_root, r, size, settings), epoch)]
            for r in range(size)
        ]
        assert [len(n) for n in names] == [3, 3, 3]
        flat = [n for per_rank in names for n in per_rank]
        assert len(set(flat)) == 9
    val = [
        [n for n, _, _ in _epoch(validation_loader(small_root, r, size, settings), 0)]
        for r in range(size)
    ]
    assert [len(v) for v in val] == [2, 2, 1]
    assert Counter(n for v in val for n in v) == Counter(
        str(p) for p in sorted((small_root / "validation").glob("*.h5"))
    )


def test_epoch_order_and_resume(small_root: Path) -> None:
    loader = train_loader(small_root, 0, 1, LoaderSettings(local_batch_size=3, readers=1, seed=2))
    assert len(loader) == 3  # 10 files, batch 3, short batch dropped
    e0 = [n for n, _, _ in _epoch(loader, 0)]
    e1 = [n for n, _, _ in _epoch(loader, 1)]
    assert e0 != e1 and len(e0) == len(e1) == 9
    loader.set_epoch(1)
    assert [n for b in loader for n in b.filenames] == e1
    resumed = [n for b in loader.iter_epoch(1, start_batch=2) for n in b.filenames]
    assert resumed == e1[6:]
    again = train_loader(small_root, 0, 1, LoaderSettings(local_batch_size=3, seed=2))
    assert [n for n, _, _ in _epoch(again, 1)] == e1


def test_validation_keeps_short_batch(small_root: Path) -> None:
    loader = validation_loader(small_root, 0, 1, LoaderSettings(local_batch_size=2))
    sizes = [len(b.filenames) for b in loader]
    assert sizes == [2, 2, 1]


def test_channel_selection(small_root: Path) -> None:
    settings = LoaderSettings(channels=(0, 7, 10))
    batch = next(iter(train_loader(small_root, 0, 1, settings)))
    assert batch.data.shape == (1, 3, 32, 48)
    full = next(iter(train_loader(small_root, 0, 1, LoaderSettings())))
    assert torch.equal(batch.data[0, 1], full.data[0, 7])
    with pytest.raises(DataError, match="out of range"):
        train_loader(small_root, 0, 1, LoaderSettings(channels=(0, 16)))


def _break(path: Path) -> None:
    with h5py.File(path, "a") as f:
        del f[DATA_KEY]


@pytest.mark.parametrize("readers", [0, 1, 2])
def test_bad_file_raises_naming_it(small_copy: Path, readers: int) -> None:
    bad = sorted((small_copy / "train").glob("*.h5"))[-1]
    _break(bad)
    settings = LoaderSettings(local_batch_size=2, readers=readers)
    with (
        train_loader(small_copy, 0, 1, settings) as loader,
        pytest.raises(DataError, match=rf"^{bad}: missing key climate/data$"),
    ):
        for _ in loader:
            pass


def _reader_threads() -> int:
    return sum(t.name.startswith("deepcam-reader") for t in threading.enumerate())


def test_close_stops_readers_of_an_unfinished_pass(small_root: Path) -> None:
    before = _reader_threads()
    with train_loader(small_root, 0, 1, LoaderSettings(local_batch_size=1, readers=2)) as loader:
        batches = iter(loader)
        first = next(batches)
        assert len(first.filenames) == 1
        assert _reader_threads() > before  # readers are reading ahead
    assert _reader_threads() == before
    with pytest.raises(StopIteration):
        next(batches)  # the pass is over


def test_build_loaders_checks_ranks_agree(small_root: Path, small_copy: Path) -> None:
    settings = LoaderSettings(local_batch_size=1, readers=1)
    loaders = run_ranks(2, lambda b: build_loaders(small_root, b, settings))
    assert [ld.train_samples for ld in loaders] == [10, 10]
    assert [ld.validation_samples for ld in loaders] == [5, 5]
    sorted((small_copy / "train").glob("*.h5"))[0].unlink()
    roots = [small_root, small_copy]
    with pytest.raises(DataError, match="every rank must see the same"):
        run_ranks(2, lambda b: build_loaders(roots[b.rank], b, settings))


def test_settings_validation(small_root: Path) -> None:
    with pytest.raises(ConfigError):
        LoaderSettings(readers=-1)
    with pytest.raises(ConfigError, match="shuffle 'none' unknown"):
        LoaderSettings(shuffle="none")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="fewer than the local batch size"):
        train_loader(small_root, 0, 2, LoaderSettings(local_batch_size=6))


def test_normalised_range(small_root: Path) -> None:
    data = torch.cat([b.data for b in train_loader(small_root, 0, 1, LoaderSettings())])
    # stats cover every sample, so the normalised values fill [0, 1] per channel
    lo = data.amin(dim=(0, 2, 3)).numpy()
    hi = data.amax(dim=(0, 2, 3)).numpy()
    assert np.all(lo >= -1e-6) and np.all(hi <= 1 + 1e-6)
    assert np.all(hi - lo > 0.3)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
@pytest.mark.parametrize("readers", [0, 2])
def test_pinned_batches_hold_the_same_samples(small_root: Path, readers: int) -> None:
    plain = LoaderSettings(local_batch_size=2, readers=readers, seed=4)
    pinned = LoaderSettings(local_batch_size=2, readers=readers, seed=4, pin_memory=True)
    with train_loader(small_root, 0, 1, plain) as a, train_loader(small_root, 0, 1, pinned) as b:
        for x, y in zip(a.iter_epoch(1), b.iter_epoch(1), strict=True):
            assert y.data.is_pinned() and y.label.is_pinned() and not x.data.is_pinned()
            assert x.filenames == y.filenames
            assert torch.equal(x.data, y.data) and torch.equal(x.label, y.label)
