"""This rank's loaders: which batches of a split it reads each epoch, and the checks around them.

:class:`ShardLoader` follows the shard plan of :mod:`.sharding` epoch by epoch and hands each
epoch's batches to :func:`.batches.read_batches` (reader threads). :func:`train_loader`,
:func:`validation_loader` and :func:`build_loaders` set one up per split and check, before the
first step, that the shard can be read (batch size, staged files, every rank's file list).
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.errors import ConfigError, DataError

from . import sharding
from .batches import Batch, read_batches
from .layout import SplitFiles, list_split, stats_path
from .normalize import Normalizer
from .reader import SampleReader
from .stats import read_stats

__all__ = [
    "SHUFFLE_MODES",
    "Batch",
    "LoaderSettings",
    "Loaders",
    "ShardLoader",
    "build_loaders",
    "make_reader",
    "train_loader",
    "validation_loader",
]

ShuffleMode = Literal["global", "local"]
SHUFFLE_MODES: tuple[str, ...] = ("global", "local")


@dataclass(frozen=True)
class LoaderSettings:
    """How to load.

    ``readers`` is the reference's ``max_inter_threads``: reader threads per rank (0: read in
    the calling thread). ``shuffle``: 'global' reshuffles all training files over all ranks
    every epoch (the reference); 'local' keeps a fixed per-rank share and reshuffles within it
    (for staged data). ``validation_batch_size`` defaults to ``local_batch_size``; the last
    validation batch of a rank may be short, so nothing is dropped. ``skip_bad_files``
    replaces an unreadable training sample by the next readable one, counting it, instead of
    stopping. ``pin_memory`` reads batches into page-locked memory (GPU runs only: it needs
    CUDA), so that their copies to the device run asynchronously.
    """

    local_batch_size: int = 1
    readers: int = 0
    channels: tuple[int, ...] | None = None
    seed: int = 333
    shuffle: ShuffleMode = "global"
    validation_batch_size: int | None = None
    skip_bad_files: bool = False
    pin_memory: bool = False

    def __post_init__(self) -> None:
        if self.local_batch_size < 1:
            raise ConfigError(f"local batch size must be >= 1, got {self.local_batch_size}")
        if self.readers < 0:
            raise ConfigError(f"number of readers must be >= 0, got {self.readers}")
        if self.shuffle not in SHUFFLE_MODES:
            raise ConfigError(f"shuffle '{self.shuffle}' unknown: choose global or local")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.validation_batch_size is not None and self.validation_batch_size < 1:
            raise ConfigError(
                f"validation batch size must be >= 1, got {self.validation_batch_size}"
            )


@dataclass
class ShardLoader:
    """Iterates this rank's batches of one split, epoch by epoch.

    ``order(epoch)`` gives the sample indices this rank reads in ``epoch``, in order. Iterating
    the loader reads epoch ``self.epoch`` (see ``set_epoch``); ``iter_epoch(epoch, start)``
    resumes inside an epoch. ``len(loader)`` is the number of batches per epoch.
    """

    reader: SampleReader
    order: Callable[[int], list[int]]
    batch_size: int
    drop_last: bool
    settings: LoaderSettings
    global_samples: int
    epoch: int = 0
    _passes: weakref.WeakSet[Generator[Batch, None, None]] = field(
        default_factory=weakref.WeakSet, init=False, repr=False
    )

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter(loader)`` read ``epoch`` (reproducible from seed and epoch)."""
        if epoch < 0:
            raise ConfigError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def indices(self, epoch: int) -> list[int]:
        """Sample indices read in ``epoch`` (after dropping a short last batch if asked)."""
        return [i for b in self.batches(epoch) for i in b]

    def batches(self, epoch: int) -> list[list[int]]:
        """Sample indices of each batch of ``epoch``."""
        return sharding.batches(self.order(epoch), self.batch_size, self.drop_last)

    @property
    def num_samples(self) -> int:
        """Samples this rank reads per epoch."""
        return len(self.indices(self.epoch))

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_epoch(self.epoch)

    def iter_epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """Batches of ``epoch`` from batch number ``start_batch`` on (to resume a run)."""
        plan = self.batches(epoch)
        if not 0 <= start_batch <= len(plan):
            raise ConfigError(f"start batch {start_batch} outside 0..{len(plan)}")
        batches = read_batches(self.reader, plan[start_batch:], self.settings.readers,
                               self.settings.pin_memory)
        self._passes.add(batches)
        return batches

    def close(self) -> None:
        """Stop the reader threads of any pass left unfinished (finished passes stop their own)."""
        for batches in list(self._passes):
            batches.close()
        self._passes.clear()

    def __enter__(self) -> ShardLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_reader(
    root: str | os.PathLike[str], split: str, channels: tuple[int, ...] | None = None
) -> SampleReader:
    """A SampleReader for ``split`` of data root ``root``, normalised with its stats.h5."""
    files = list_split(root, split)
    normalizer = Normalizer.from_stats(read_stats(stats_path(root)), channels)
    return SampleReader(files, normalizer)


def train_loader(
    root: str | os.PathLike[str], rank: int, size: int, settings: LoaderSettings
) -> ShardLoader:
    """This rank's training loader: equal shards reshuffled per (seed, epoch), drop_last."""
    reader = make_reader(root, "train", settings.channels)
    reader.skip_bad = settings.skip_bad_files
    n = len(reader.split)
    shard = sharding.local_train_shard if settings.shuffle == "local" else sharding.train_shard
    order = partial(shard, n, rank, size, settings.seed)
    per_rank = sharding.shard_length(n, size)
    if per_rank < settings.local_batch_size:
        raise DataError(
            f"{reader.split.directory}: {n} files give {per_rank} per rank over {size} ranks, "
            f"fewer than the local batch size {settings.local_batch_size}"
        )
    staged = reader.split.staged
    if staged is not None and staged.mode == "share":
        if (settings.shuffle, size, settings.seed) != ("local", staged.size, staged.seed):
            raise DataError(
                f"{root}: training files were staged as per-rank shares for {staged.size} ranks "
                f"and seed {staged.seed}; run with that many ranks, that seed and local "
                "shuffling, or stage with --full"
            )
        _require_present(reader.split, order(0))
    elif staged is not None:
        _require_present(reader.split, list(range(n)))
    return ShardLoader(
        reader=reader,
        order=order,
        batch_size=settings.local_batch_size,
        drop_last=True,
        settings=settings,
        global_samples=per_rank * size,
    )


def validation_loader(
    root: str | os.PathLike[str], rank: int, size: int, settings: LoaderSettings
) -> ShardLoader:
    """This rank's validation loader: every file once over all ranks, in file order."""
    reader = make_reader(root, "validation", settings.channels)
    n = len(reader.split)
    indices = sharding.validation_shard(n, rank, size)
    if reader.split.staged is not None:
        _require_present(reader.split, indices)
    return ShardLoader(
        reader=reader,
        order=lambda _epoch: list(indices),
        batch_size=settings.validation_batch_size or settings.local_batch_size,
        drop_last=False,
        settings=settings,
        global_samples=n,
    )


def _require_present(split: SplitFiles, indices: list[int]) -> None:
    """Fail early, naming the file, if a sample this rank needs is absent (e.g. not staged)."""
    for i in indices:
        for path in split.paths(split.names[i]):
            if not path.is_file():
                raise DataError(f"{path}: missing (needed by this rank's shard)")


@dataclass
class Loaders:
    """Training and validation loaders of one rank and the global sample counts."""

    train: ShardLoader
    validation: ShardLoader
    train_samples: int
    validation_samples: int

    def close(self) -> None:
        """Stop the reader threads of both loaders' unfinished passes."""
        self.train.close()
        self.validation.close()


def _fingerprint(split: SplitFiles) -> tuple[int, str]:
    digest = hashlib.sha1("\n".join(split.names).encode()).hexdigest()[:12]
    return len(split.names), digest


def build_loaders(
    root: str | os.PathLike[str], backend: Backend, settings: LoaderSettings
) -> Loaders:
    """Both loaders for this rank; checks that every rank sees the same file lists.

    A collective (an allgather): call on every rank. ``train_samples`` and
    ``validation_samples`` are the data set's sizes (files in each split, as the reference
    logs them), whatever the number of ranks; the training loader's ``global_samples`` is what
    an epoch reads over all ranks (``size * (n // size)``).
    """
    train = train_loader(root, backend.rank, backend.size, settings)
    validation = validation_loader(root, backend.rank, backend.size, settings)
    mine = (_fingerprint(train.reader.split), _fingerprint(validation.reader.split))
    seen = backend.allgather_object(mine)
    for other_rank, theirs in enumerate(seen):
        if theirs != mine:
            raise DataError(
                f"{root}: rank {backend.rank} sees (files, digest) {mine} but rank {other_rank} "
                f"sees {theirs}; every rank must see the same train/ and validation/ files"
            )
    return Loaders(
        train=train,
        validation=validation,
        train_samples=len(train.reader.split),
        validation_samples=len(validation.reader.split),
    )

