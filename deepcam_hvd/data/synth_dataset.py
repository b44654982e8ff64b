"""Write a synthetic data root (train/, validation/, stats.h5) in parallel over ranks.

Rank r writes samples r, r + size, ... of the list (train 0..N-1, validation 0..M-1); the
statistics of every sample are gathered and combined in sample order, so files and stats.h5
are the same whatever the number of ranks. stats.h5 summarises all samples written (train and
validation), so that every file lies within [minval, maxval] (the reference summarises train).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from deepcam_hvd.distributed.agreement import agree, run_agreed
from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.errors import ConfigError, DataError
from deepcam_hvd.files import atomic_path

from . import sharding
from .layout import DATA_KEY, HDF5_SUFFIX, LABEL_KEY, SPLITS, stats_path, synthetic_name
from .stats import StatsAccumulator, write_stats
from .synth import make_grid, make_sample

COMPRESSIONS = ("none", "gzip")


@dataclass(frozen=True)
class SynthReport:
    """What ``synthesize_dataset`` wrote (the same on every rank)."""

    root: Path
    counts: dict[str, int]
    shape: tuple[int, int, int]
    class_frequencies: tuple[float, float, float]
    seconds: float
    bytes_written: int


def write_sample_hdf5(
    path: Path, data: np.ndarray, label: np.ndarray, compression: str | None = None
) -> int:
    """Write one sample in the CAM5 layout (atomically); return the file size in bytes.

    ``compression``: None/'none' (contiguous) or 'gzip' (chunked, level 4).
    """
    kwargs: dict = {}
    if compression not in (None, "none"):
        if compression != "gzip":
            raise ConfigError(f"compression '{compression}' unknown: choose none or gzip")
        kwargs = {"compression": "gzip", "compression_opts": 4}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset(DATA_KEY, data=data, **kwargs)
        f.create_dataset(LABEL_KEY, data=label, **kwargs)
    return path.stat().st_size


def _prepare(out: Path, counts: dict[str, int], overwrite: bool) -> None:
    for split in counts:
        directory = out / split
        if directory.is_dir():
            old = [e for e in os.listdir(directory) if e.endswith(HDF5_SUFFIX)]
            if old and not overwrite:
                raise DataError(
                    f"{directory}: already holds {len(old)} .h5 files (pass --overwrite)"
                )
            for entry in old:
                (directory / entry).unlink()
        directory.mkdir(parents=True, exist_ok=True)


def synthesize_dataset(
    out: str | os.PathLike[str],
    backend: Backend,
    train: int,
    validation: int,
    height: int = 768,
    width: int = 1152,
    seed: int = 333,
    compression: str | None = None,
    test: int = 0,
    overwrite: bool = False,
) -> SynthReport:
    """Collective: write ``train``/``validation``/``test`` synthetic samples and stats.h5."""
    if train < 1 or validation < 1 or test < 0:
        raise ConfigError("need at least one training and one validation sample")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    make_grid(height, width)  # validates the size on every rank
    if compression not in (None, "none", "gzip"):
        raise ConfigError(f"compression '{compression}' unknown: choose none or gzip")
    root = Path(out)
    counts = {s: n for s, n in zip(SPLITS, (train, validation, test), strict=True) if n > 0}
    start = time.perf_counter()
    if backend.rank == 0:
        run_agreed(backend, lambda: _prepare(root, counts, overwrite))
    else:
        agree(backend, None)
    backend.barrier()

    items = [(split, i) for split, n in counts.items() for i in range(n)]
    mine = [items[k] for k in sharding.strided_share(len(items), backend.rank, backend.size)]
    acc = StatsAccumulator()
    labels = np.zeros(3, dtype=np.int64)

    def write_mine() -> int:
        written = 0
        for split, index in mine:
            data, label = make_sample(seed, split, index, height, width)
            acc.add((split, index), data)
            labels[:] += np.bincount(label.reshape(-1), minlength=3)[:3]
            path = root / split / f"{synthetic_name(split, index)}{HDF5_SUFFIX}"
            written += write_sample_hdf5(path, data, label, compression)
        return written

    written = run_agreed(backend, write_mine) or 0
    everything = acc.allgather(backend)
    if backend.rank == 0:
        run_agreed(backend, lambda: write_stats(stats_path(root), everything.to_stats()))
    else:
        agree(backend, None)
    total_labels = np.sum(backend.allgather_object(labels), axis=0)
    total_bytes = int(sum(backend.allgather_object(written)))
    backend.barrier()
    freq = total_labels / max(int(total_labels.sum()), 1)
    return SynthReport(
        root=root,
        counts=counts,
        shape=(height, width, 16),
        class_frequencies=(float(freq[0]), float(freq[1]), float(freq[2])),
        seconds=time.perf_counter() - start,
        bytes_written=total_bytes,
    )
