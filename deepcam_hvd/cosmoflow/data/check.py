"""Validate CosmoFlow sample files before training, split across ranks.

tf.data reports a corrupt file lazily, deep inside an epoch and without its name; a check pass
reads every file once (each rank its share: files r, r + size, ...) and reports each bad one
on one line naming it. ``merge_checks`` combines the ranks' results (after an allgather) and
flags files whose cube differs from that of most files.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from deepcam_hvd.data import sharding
from deepcam_hvd.errors import DataError

from . import npy, tfrecord
from .layout import sample_format


@dataclass
class FileCheck:
    """What a check found: one line per bad file, and the cube side of every good one."""

    problems: list[str] = field(default_factory=list)
    cubes: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    @property
    def cube(self) -> int | None:
        """The cube side of most good files (None if none was good)."""
        if not self.cubes:
            return None
        return Counter(self.cubes.values()).most_common(1)[0][0]


def read_any(
    path: str | os.PathLike[str], cube: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of a sample of either form, validated (DataError naming the file)."""
    reader = npy.read_sample if sample_format(path) == "npy" else tfrecord.read_sample
    return reader(path, cube)


def _check_compression(path: str | os.PathLike[str], expected: str, setting: str | None) -> None:
    found = tfrecord.detect_compression(path)
    if found != expected:
        kind = "a gzip" if found else "a plain"
        raise DataError(f"{path}: {kind} TFRecord, but compression {setting} was set")


def check_files(
    files: Sequence[str | os.PathLike[str]], cube: int | None = None, rank: int = 0,
    size: int = 1, compression: str | None = None,
) -> FileCheck:
    """Check this rank's share of ``files`` (all of them for rank 0 of 1); never raises for a
    bad file. ``cube`` None: each file's cube is read from it (compare with ``merge_checks``).
    ``compression`` (gzip or none): TFRecord files must be so; None: either.
    """
    expected = None if compression is None else tfrecord.tf_compression(compression)
    result = FileCheck()
    for i in sharding.strided_share(len(files), rank, size):
        path = files[i]
        try:
            if expected is not None and sample_format(path) == "tfrecord":
                _check_compression(path, expected, compression)
            x, _ = read_any(path, cube)
        except DataError as exc:
            result.problems.append(str(exc))
            continue
        result.cubes[str(path)] = int(x.shape[0])
    return result


def merge_checks(parts: Sequence[FileCheck]) -> FileCheck:
    """One result from every rank's: all problems, plus each file whose cube differs from the
    most common one."""
    merged = FileCheck()
    for part in parts:
        merged.problems.extend(part.problems)
        merged.cubes.update(part.cubes)
    common = merged.cube
    for path in sorted(merged.cubes):
        if merged.cubes[path] != common:
            merged.problems.append(f"{path}: cube {merged.cubes[path]}, most files have {common}")
    return merged
