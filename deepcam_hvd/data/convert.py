"""Convert an HDF5 data root to the npy form, split across ranks.

Each ``<split>/<name>.h5`` becomes ``<split>/<name>-data.npy`` ((H, W, C) float32, as stored)
and ``<split>/<name>-label.npy`` ((H, W), the stored label dtype); stats.h5 is copied. Rank r
converts files r, r + size, ... of the list of all samples of all splits.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepcam_hvd.distributed.agreement import agree, run_agreed
from deepcam_hvd.distributed.communicator import Communicator
from deepcam_hvd.errors import DataError
from deepcam_hvd.files import copy_atomic, save_npy

from . import sharding
from .layout import (
    SPLITS,
    SplitFiles,
    list_split,
    present_splits,
    sample_paths,
    stats_path,
)
from .reader import read_stored


@dataclass(frozen=True)
class ConvertReport:
    """What ``convert_dataset`` wrote (the same on every rank)."""

    counts: dict[str, int]
    seconds: float
    bytes_written: int


def convert_sample(src: SplitFiles, name: str, dst_dir: Path) -> int:
    """Convert one HDF5 sample of ``src`` into the npy pair in ``dst_dir``; bytes written."""
    data, label = read_stored(src.paths(name), "hdf5")
    if data.dtype != np.float32:
        data = data.astype(np.float32)
    data_path, label_path = sample_paths(dst_dir, name, "npy")
    return save_npy(data_path, data) + save_npy(label_path, label)


def _list_sources(src: Path, splits: list[str] | None) -> dict[str, SplitFiles]:
    wanted = splits or present_splits(src)
    if not wanted:
        raise DataError(f"{src}: no train/, validation/ or test/ folder")
    found = {}
    for split in wanted:
        files = list_split(src, split, use_manifest=False)
        if files.fmt != "hdf5":
            raise DataError(f"{files.directory}: holds npy samples; convert reads HDF5")
        found[split] = files
    if not stats_path(src).is_file():
        raise DataError(f"{stats_path(src)}: missing")
    return found


def convert_dataset(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    backend: Communicator,
    splits: list[str] | None = None,
) -> ConvertReport:
    """Collective: convert the HDF5 root ``src`` to the npy form under ``dst``.

    ``splits`` defaults to every split present in ``src``. Existing npy files are replaced.
    A bad source file fails the whole conversion on every rank, naming the file.
    """
    src_root, dst_root = Path(src), Path(dst)
    if splits:
        for split in splits:
            if split not in SPLITS:
                raise DataError(f"unknown split '{split}': choose one of {', '.join(SPLITS)}")
    start = time.perf_counter()
    sources = run_agreed(backend, lambda: _list_sources(src_root, splits))
    assert sources is not None

    def make_dirs() -> None:
        for split in sources:
            (dst_root / split).mkdir(parents=True, exist_ok=True)

    run_agreed(backend, make_dirs)
    if backend.rank == 0:
        run_agreed(backend, lambda: copy_atomic(stats_path(src_root), stats_path(dst_root)))
    else:
        agree(backend, None)

    work = [(s, name) for s, files in sources.items() for name in files.names]
    mine = sharding.strided_share(len(work), backend.rank, backend.size)

    def convert_mine() -> int:
        written = 0
        for k in mine:
            split, name = work[k]
            written += convert_sample(sources[split], name, dst_root / split)
        return written

    written = run_agreed(backend, convert_mine) or 0
    total = int(sum(backend.allgather_object(written)))
    backend.barrier()
    return ConvertReport(
        counts={s: len(f) for s, f in sources.items()},
        seconds=time.perf_counter() - start,
        bytes_written=total,
    )
