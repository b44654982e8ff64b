"""``stats.h5``: per-channel summary statistics of a data root; reading, writing, accumulating.

Layout (as the reference ``summarize_data.py`` writes it), all under group ``climate``:

* ``count``: scalar, number of samples summarised;
* ``mean``: (16,), mean over samples of each sample's spatial mean (= pixel mean);
* ``sqmean``: (16,), the same for the squared values;
* ``minval`` / ``maxval``: (16,), smallest / largest value over all pixels and samples.

Only ``minval`` and ``maxval`` are needed for training (input normalisation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.errors import DataError
from deepcam_hvd.files import atomic_path

from .layout import STATS_GROUP


@dataclass(frozen=True)
class Stats:
    """Contents of a ``stats.h5``. ``count``/``mean``/``sqmean`` may be absent (None)."""

    minval: np.ndarray
    maxval: np.ndarray
    count: int | None = None
    mean: np.ndarray | None = None
    sqmean: np.ndarray | None = None

    @property
    def num_channels(self) -> int:
        """Number of channels the statistics describe."""
        return int(self.minval.shape[0])


def _read_vector(group: h5py.Group, key: str, path: Path) -> np.ndarray:
    if key not in group:
        raise DataError(f"{path}: missing key {STATS_GROUP}/{key}")
    obj = group[key]
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{path}: {STATS_GROUP}/{key} is not a dataset")
    arr = np.asarray(obj[()], dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"{path}: {STATS_GROUP}/{key} has shape {arr.shape}, expected (channels,)")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: {STATS_GROUP}/{key} holds NaN or Inf")
    return arr


def read_stats(path: str | os.PathLike[str]) -> Stats:
    """Read and validate ``stats.h5`` at ``path``.

    Requires ``minval``/``maxval`` of equal length with ``maxval > minval`` everywhere (else the
    normalisation divides by zero); ``count``/``mean``/``sqmean`` are read when present.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: stats file missing")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: cannot open as HDF5 ({_first_line(exc)})") from None
    with f:
        if STATS_GROUP not in f or not isinstance(f[STATS_GROUP], h5py.Group):
            raise DataError(f"{path}: missing group '{STATS_GROUP}'")
        group = f[STATS_GROUP]
        minval = _read_vector(group, "minval", path)
        maxval = _read_vector(group, "maxval", path)
        if minval.shape != maxval.shape:
            raise DataError(
                f"{path}: minval has {minval.shape[0]} entries but maxval {maxval.shape[0]}"
            )
        bad = np.flatnonzero(maxval <= minval)
        if bad.size:
            raise DataError(f"{path}: maxval <= minval for channel(s) {bad.tolist()}")
        count: int | None = None
        if "count" in group:
            count = int(np.asarray(group["count"][()]).reshape(-1)[0])
        mean = _read_vector(group, "mean", path) if "mean" in group else None
        sqmean = _read_vector(group, "sqmean", path) if "sqmean" in group else None
        for key, arr in (("mean", mean), ("sqmean", sqmean)):
            if arr is not None and arr.shape != minval.shape:
                raise DataError(
                    f"{path}: {key} has {arr.shape[0]} entries, minval {minval.shape[0]}"
                )
    return Stats(minval=minval, maxval=maxval, count=count, mean=mean, sqmean=sqmean)


def write_stats(path: str | os.PathLike[str], stats: Stats) -> None:
    """Write ``stats`` to ``path`` (atomically: a temporary file renamed into place)."""
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group(STATS_GROUP)
        group["minval"] = np.asarray(stats.minval, dtype=np.float32)
        group["maxval"] = np.asarray(stats.maxval, dtype=np.float32)
        if stats.count is not None:
            group["count"] = np.int64(stats.count)
        if stats.mean is not None:
            group["mean"] = np.asarray(stats.mean, dtype=np.float64)
        if stats.sqmean is not None:
            group["sqmean"] = np.asarray(stats.sqmean, dtype=np.float64)


@dataclass(frozen=True)
class SampleStats:
    """Per-channel statistics of one sample (float64 means, min and max)."""

    mean: np.ndarray
    sqmean: np.ndarray
    minval: np.ndarray
    maxval: np.ndarray


def sample_stats(hwc: np.ndarray) -> SampleStats:
    """Per-channel mean, mean of squares, min and max of one (H, W, C) sample."""
    flat = hwc.reshape(-1, hwc.shape[-1])
    return SampleStats(
        mean=flat.mean(axis=0, dtype=np.float64),
        sqmean=np.square(flat, dtype=np.float64).mean(axis=0),
        minval=flat.min(axis=0).astype(np.float64),
        maxval=flat.max(axis=0).astype(np.float64),
    )


class StatsAccumulator:
    """Collects per-sample statistics under a key (split, index), then combines them.

    Combining sorts by key and sums in that order, so the result is bit-identical however the
    samples were spread over ranks.
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], SampleStats] = {}

    def add(self, key: tuple[str, int], hwc: np.ndarray) -> None:
        """Record the statistics of sample ``hwc`` (H, W, C) under ``key``."""
        self.rows[key] = sample_stats(hwc)

    def allgather(self, backend: Backend) -> StatsAccumulator:
        """An accumulator holding every rank's rows (a collective: call on every rank)."""
        merged = StatsAccumulator()
        for part in backend.allgather_object(self.rows):
            merged.rows.update(part)
        return merged

    def to_stats(self) -> Stats:
        """Combine the rows into a Stats (count, mean, sqmean, minval, maxval)."""
        if not self.rows:
            raise DataError("no samples to summarise")
        keys = sorted(self.rows)
        rows = [self.rows[k] for k in keys]
        count = len(rows)
        mean = np.zeros_like(rows[0].mean)
        sqmean = np.zeros_like(rows[0].sqmean)
        for row in rows:
            mean += row.mean
            sqmean += row.sqmean
        return Stats(
            minval=np.min([r.minval for r in rows], axis=0),
            maxval=np.max([r.maxval for r in rows], axis=0),
            count=count,
            mean=mean / count,
            sqmean=sqmean / count,
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
