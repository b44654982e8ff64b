"""Validate a data root: every sample file and stats.h5, split across ranks.

Per sample: the file opens and is complete, has ``climate/data`` (float32, H x W x C, C = the
stats' channel count) and ``climate/labels_0`` (integer, or float holding whole numbers, H x W),
the same shape as most other files, no NaN/Inf, labels in {0, 1, 2}, and every channel within
[minval - tol * range, maxval + tol * range] of stats.h5. stats.h5 must exist with 16-entry
minval/maxval, maxval > minval, and (when present) mean within [minval, maxval] and
sqmean >= mean^2.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.errors import DataError
from deepcam_hvd.workloads.deepcam import CHANNEL_NAMES, NUM_CHANNELS, NUM_CLASSES

from . import sharding
from .layout import (
    DATA_KEY,
    LABEL_KEY,
    SPLITS,
    SplitFiles,
    list_split,
    present_splits,
    stats_path,
)
from .reader import read_stored
from .stats import Stats, read_stats

REQUIRED_SPLITS = ("train", "validation")


@dataclass
class CheckReport:
    """Result of ``check_dataset`` (the same on every rank)."""

    root: Path
    files: dict[str, int] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    class_counts: dict[str, list[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def class_frequencies(self, split: str) -> list[float]:
        """Pixel frequency of each class in ``split``."""
        counts = np.asarray(self.class_counts.get(split, [0] * NUM_CLASSES), dtype=np.float64)
        return (counts / max(counts.sum(), 1.0)).tolist()

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        lines = [f"data root {self.root}"]
        if self.shape is not None:
            lines.append(f"sample shape (H, W, C): {self.shape}")
        for split, n in self.files.items():
            freq = ", ".join(f"{f:.6f}" for f in self.class_frequencies(split))
            lines.append(f"{split}: {n} files; class frequencies (bg, TC, AR): {freq}")
        lines.append("OK" if self.ok else f"{len(self.problems)} problem(s)")
        return "\n".join(lines)


def check_stats(root: Path) -> tuple[Stats | None, list[str]]:
    """Read and check stats.h5 of ``root``; (stats or None, problems)."""
    path = stats_path(root)
    if not path.is_file():
        return None, [f"{path}: missing"]
    try:
        stats = read_stats(path)
    except DataError as exc:
        return None, [str(exc)]
    problems = []
    if stats.num_channels != NUM_CHANNELS:
        problems.append(f"{path}: {stats.num_channels} channels, expected {NUM_CHANNELS}")
    if stats.mean is not None:
        span = stats.maxval - stats.minval
        bad = np.flatnonzero(
            (stats.mean < stats.minval - 1e-6 * span) | (stats.mean > stats.maxval + 1e-6 * span)
        )
        if bad.size:
            problems.append(f"{path}: mean outside [minval, maxval] for channel(s) {bad.tolist()}")
        if stats.sqmean is not None:
            bad = np.flatnonzero(stats.sqmean < stats.mean**2 * (1 - 1e-6) - 1e-12)
            if bad.size:
                problems.append(f"{path}: sqmean < mean^2 for channel(s) {bad.tolist()}")
    return (None if problems else stats), problems


def _channel_name(c: int) -> str:
    return CHANNEL_NAMES[c] if c < len(CHANNEL_NAMES) else str(c)


def check_sample(
    paths: tuple[Path, ...], split: SplitFiles, stats: Stats | None, tolerance: float
) -> tuple[tuple[int, ...], np.ndarray]:
    """Check one sample; return (data shape, label class counts). Raises DataError."""
    data, label = read_stored(paths, split.fmt)
    where = paths[0]
    if data.dtype != np.float32:
        raise DataError(f"{where}: {DATA_KEY} has dtype {data.dtype}, expected float32")
    channels = stats.num_channels if stats is not None else NUM_CHANNELS
    if data.shape[2] != channels:
        raise DataError(f"{where}: {data.shape[2]} channels, expected {channels}")
    flat = data.reshape(-1, data.shape[2])
    finite = np.isfinite(flat).all(axis=0)
    if not finite.all():
        names = ", ".join(_channel_name(int(c)) for c in np.flatnonzero(~finite))
        raise DataError(f"{where}: NaN or Inf in channel(s) {names}")
    label_where = paths[-1]
    if label.dtype.kind == "f" and (
        not np.isfinite(label).all() or not np.array_equal(label, np.round(label))
    ):
        raise DataError(f"{label_where}: {LABEL_KEY} holds non-integer values")
    values = np.unique(label)
    bad = values[(values < 0) | (values >= NUM_CLASSES)]
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:5])
        raise DataError(f"{label_where}: labels outside {{0, 1, 2}}: {shown}")
    if stats is not None:
        lo, hi = flat.min(axis=0).astype(np.float64), flat.max(axis=0).astype(np.float64)
        slack = tolerance * (stats.maxval - stats.minval)
        out = np.flatnonzero((lo < stats.minval - slack) | (hi > stats.maxval + slack))
        if out.size:
            c = int(out[0])
            more = f" (+{out.size - 1} more channels)" if out.size > 1 else ""
            raise DataError(
                f"{where}: channel {_channel_name(c)} spans [{lo[c]:.6g}, {hi[c]:.6g}], outside "
                f"stats [{stats.minval[c]:.6g}, {stats.maxval[c]:.6g}]{more}"
            )
    counts = np.bincount(label.astype(np.int64).reshape(-1), minlength=NUM_CLASSES)
    return tuple(data.shape), counts


def check_dataset(
    root: str | os.PathLike[str], backend: Backend, tolerance: float = 0.05
) -> CheckReport:
    """Collective: check every sample of every split under ``root`` and its stats.h5.

    Returns the same CheckReport on every rank; never raises for bad files (they become
    ``problems``, one line each, naming the file).
    """
    root = Path(root)
    report = CheckReport(root=root)
    stats, stat_problems = check_stats(root)
    if backend.rank == 0:
        report.problems.extend(stat_problems)
    splits: dict[str, SplitFiles] = {}
    if not root.is_dir():
        report.problems.append(f"{root}: no such directory")
    else:
        present = present_splits(root)
        for split in REQUIRED_SPLITS:
            if split not in present:
                report.problems.append(f"{root / split}: missing")
        for split in present:
            try:
                splits[split] = list_split(root, split, use_manifest=False)
            except DataError as exc:
                report.problems.append(str(exc))
    if backend.rank != 0:
        report.problems.clear()  # rank 0 reports the root-level problems once

    work = [(s, name) for s in SPLITS if s in splits for name in splits[s].names]
    mine = sharding.strided_share(len(work), backend.rank, backend.size)
    shapes: dict[str, tuple[int, ...]] = {}
    counts = {s: np.zeros(NUM_CLASSES, dtype=np.int64) for s in splits}
    for k in mine:
        split, name = work[k]
        paths = splits[split].paths(name)
        try:
            shape, c = check_sample(paths, splits[split], stats, tolerance)
        except DataError as exc:
            report.problems.append(str(exc))
            continue
        shapes[str(paths[0])] = shape
        counts[split] += c

    gathered = backend.allgather_object((report.problems, shapes, counts))
    problems: list[str] = []
    all_shapes: dict[str, tuple[int, ...]] = {}
    total = {s: np.zeros(NUM_CLASSES, dtype=np.int64) for s in splits}
    for rank_problems, rank_shapes, rank_counts in gathered:
        problems.extend(rank_problems)
        all_shapes.update(rank_shapes)
        for s, c in rank_counts.items():
            total[s] += c
    if all_shapes:
        common, _ = Counter(all_shapes.values()).most_common(1)[0]
        for path in sorted(all_shapes):
            if all_shapes[path] != common:
                problems.append(f"{path}: shape {all_shapes[path]}, most files have {common}")
        report.shape = common
    report.problems = problems
    report.files = {s: len(splits[s]) for s in SPLITS if s in splits}
    report.class_counts = {s: total[s].tolist() for s in report.files}
    return report
