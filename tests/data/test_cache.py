"""Evicting the data set from the page cache: really gone, or a one-line error naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deepcam_hvd.data.cache import clear_page_cache, data_files, evict_file, resident_pages
from deepcam_hvd.distributed.local import LocalBackend
from deepcam_hvd.errors import DataError

SHM = Path("/dev/shm")


def cached_file(directory: Path, size: int = 1 << 20) -> Path:
    path = directory / "sample.bin"
    path.write_bytes(os.urandom(size))
    path.read_bytes()  # in the page cache now
    return path


def test_evict_empties_the_cache(tmp_path: Path) -> None:
    path = cached_file(tmp_path)
    assert resident_pages(path) > 0
    evict_file(path)
    assert resident_pages(path) == 0
    path.read_bytes()
    assert resident_pages(path) > 0  # the check sees pages come back


@pytest.mark.skipif(not SHM.is_dir(), reason="no /dev/shm")
def test_tmpfs_cannot_evict_and_says_which_file(tmp_path: Path) -> None:
    directory = SHM / f"deepcam-cache-test-{os.getpid()}"
    directory.mkdir()
    try:
        path = cached_file(directory)
        with pytest.raises(DataError, match=rf"^{path}: \d+ page\(s\) stay in the page cache"):
            evict_file(path)
    finally:
        for f in directory.iterdir():
            f.unlink()
        directory.rmdir()


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"^{tmp_path / 'gone.h5'}: cannot evict"):
        evict_file(tmp_path / "gone.h5")


def test_clear_page_cache_evicts_every_data_file(tiny_root: Path) -> None:
    files = data_files(tiny_root)
    assert files[0].name == "stats.h5"
    assert len(files) == 1 + len(list((tiny_root / "train").glob("*.h5"))) + \
        len(list((tiny_root / "validation").glob("*.h5")))
    for f in files:
        f.read_bytes()
    assert clear_page_cache(tiny_root, LocalBackend()) == len(files)
    assert [resident_pages(f) for f in files] == [0] * len(files)
