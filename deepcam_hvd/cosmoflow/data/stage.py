"""Copy this rank's share of the sample files to node-local storage, as the reference does.

The reference's ``utils/staging.py``: rank r copies files r, r + size, ... of the sorted list
into the staging folder, so a node-local folder ends up with the shares of that node's ranks;
its pipeline then lists that folder and shards it over the node's ranks (local rank of local
size). Here the same share (``sharding.strided_share``) is copied, each file through a
temporary name (``files.copy_atomic``); a file already there with the same size is kept.
Call it on every rank, then a barrier, then ``layout.list_split`` on the staging root.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deepcam_hvd.data import sharding
from deepcam_hvd.errors import DataError
from deepcam_hvd.files import copy_atomic

from .layout import sample_files


@dataclass(frozen=True)
class StageResult:
    """What one rank staged."""

    copied: int
    skipped: int
    bytes_copied: int


def stage_files(
    files: Sequence[str | os.PathLike[str]], dst_dir: str | os.PathLike[str], rank: int = 0,
    size: int = 1,
) -> StageResult:
    """Copy samples ``rank``, ``rank + size``, ... of ``files`` (all files of each) into
    ``dst_dir``; an OSError becomes a DataError naming the file."""
    target = Path(dst_dir)
    copied = skipped = nbytes = 0
    for i in sharding.strided_share(len(files), rank, size):
        for src in sample_files(files[i]):
            dst = target / src.name
            try:
                target.mkdir(parents=True, exist_ok=True)
                if dst.is_file() and dst.stat().st_size == src.stat().st_size:
                    skipped += 1
                    continue
                nbytes += copy_atomic(src, dst)
            except OSError as exc:
                raise DataError(f"{exc.filename or src}: staging to {target} failed "
                                f"({exc.strerror or exc})") from None
            copied += 1
    return StageResult(copied=copied, skipped=skipped, bytes_copied=nbytes)
