"""Copy the files each rank will read to node-local storage (e.g. /dev/shm), timed.

Two modes:

* share (default): rank r copies its fixed training share (``sharding.local_share`` for the
  given seed and number of ranks) and its validation shard. Train afterwards with
  ``shuffle='local'``, the same seed and the same number of ranks. Node-local storage then holds
  only 1/size of the data per rank.
* full (``full=True``): every node gets every file; the ranks of a node split the copying
  (local rank l copies files l, l + local_size, ...). Any shuffle works afterwards.

stats.h5 is copied, and ``stage.json`` records the whole file lists and how they were staged,
so the loader knows the global list even where a node holds only its share. Files already
present with the same size are not copied again.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from deepcam_hvd.distributed.agreement import agree, run_agreed
from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.errors import ConfigError, DeepcamError
from deepcam_hvd.files import copy_atomic

from . import sharding
from .layout import SplitFiles, list_split, stats_path, write_manifest


@dataclass(frozen=True)
class StageReport:
    """Staging outcome, the same on every rank. ``seconds``: wall time of the slowest rank."""

    seconds: float
    files_copied: int
    files_skipped: int
    bytes_copied: int
    mode: str

    @property
    def gbytes_per_second(self) -> float:
        """Aggregate copy rate over all ranks (GB/s)."""
        return self.bytes_copied / 1e9 / max(self.seconds, 1e-9)


def files_to_stage(
    split: SplitFiles, split_name: str, rank: int, size: int, local_rank: int, local_size: int,
    seed: int, full: bool,
) -> list[int]:
    """Indices of the samples of ``split`` that this rank copies."""
    n = len(split)
    if full:
        return sharding.strided_share(n, local_rank, local_size)
    if split_name == "train":
        return sharding.local_share(n, rank, size, seed)
    return sharding.validation_shard(n, rank, size)


def _copy_if_needed(src: Path, dst: Path) -> int | None:
    """Copy ``src`` to ``dst`` unless a file of the same size is there; bytes copied or None."""
    try:
        if dst.stat().st_size == src.stat().st_size:
            return None
    except FileNotFoundError:
        pass
    return copy_atomic(src, dst)


def _bytes_to_copy(listed: dict[str, SplitFiles], dst_root: Path, backend: Backend, seed: int,
                   full: bool) -> int:
    """Bytes this rank still has to copy (files already staged with the same size skipped)."""
    total = 0
    for s, files in listed.items():
        for i in files_to_stage(files, s, backend.rank, backend.size, backend.local_rank,
                                backend.local_size, seed, full):
            for src_path in files.paths(files.names[i]):
                size = src_path.stat().st_size
                dst = dst_root / s / src_path.name
                if not (dst.exists() and dst.stat().st_size == size):
                    total += size
    return total


def _check_space(backend: Backend, dst_root: Path, mine: int) -> None:
    """Collective: fail on every rank, naming the directory, if a node's ranks together need
    more than its free space (checked before anything is copied)."""
    need = backend.allgather_object((socket.gethostname(), mine))
    node_need = sum(n for host, n in need if host == socket.gethostname())
    free = shutil.disk_usage(dst_root).free
    error = None
    if node_need > free:
        error = (f"--stage_dir {dst_root}: staging needs {node_need / 1e6:.1f} MB on "
                 f"{socket.gethostname()}, only {free / 1e6:.1f} MB free")
    agree(backend, error)


def stage_dataset(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    backend: Backend,
    splits: tuple[str, ...] = ("train", "validation"),
    seed: int = 333,
    full: bool = False,
) -> StageReport:
    """Collective: stage ``splits`` of data root ``src`` into ``dst``; see the module doc."""
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    src_root, dst_root = Path(src), Path(dst)
    mode = "full" if full else "share"
    listed = run_agreed(
        backend, lambda: {s: list_split(src_root, s, use_manifest=False) for s in splits}
    )
    assert listed is not None

    def make_dirs() -> None:
        for s in splits:
            (dst_root / s).mkdir(parents=True, exist_ok=True)
        if backend.local_rank == 0:
            copy_atomic(stats_path(src_root), stats_path(dst_root))
            write_manifest(
                dst_root,
                {
                    "version": 1,
                    "source": str(src_root.resolve()),
                    "size": backend.size,
                    "seed": seed,
                    "splits": {
                        s: {"mode": mode, "fmt": f.fmt, "names": list(f.names)}
                        for s, f in listed.items()
                    },
                },
            )

    run_agreed(backend, make_dirs)
    _check_space(backend, dst_root, run_agreed(backend, lambda: _bytes_to_copy(
        listed, dst_root, backend, seed, full)) or 0)
    backend.barrier()
    start = time.perf_counter()

    def copy_mine() -> tuple[int, int, int]:
        copied = skipped = nbytes = 0
        for s, files in listed.items():
            for i in files_to_stage(
                files, s, backend.rank, backend.size, backend.local_rank, backend.local_size,
                seed, full,
            ):
                name = files.names[i]
                for src_path in files.paths(name):
                    got = _copy_if_needed(src_path, dst_root / s / src_path.name)
                    if got is None:
                        skipped += 1
                    else:
                        copied += 1
                        nbytes += got
        return copied, skipped, nbytes

    error: str | None = None
    mine = (0, 0, 0)
    try:
        mine = copy_mine()
    except DeepcamError as exc:
        error = str(exc)
    except OSError as exc:
        error = f"staging into {dst_root} failed: {exc}"
    elapsed = time.perf_counter() - start
    agree(backend, error)
    gathered = backend.allgather_object((mine, elapsed))
    return StageReport(
        seconds=max(t for _, t in gathered),
        files_copied=sum(m[0] for m, _ in gathered),
        files_skipped=sum(m[1] for m, _ in gathered),
        bytes_copied=sum(m[2] for m, _ in gathered),
        mode=mode,
    )
