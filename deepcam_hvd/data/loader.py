"""Batches of (data, label, filenames) for one rank's shard, read by parallel readers.

Readers are threads (default) or torch DataLoader worker processes started with 'spawn' or
'forkserver'; never 'fork', which is unsafe once MPI is initialised. ``readers=0`` reads
synchronously in the calling thread.

* Threads: the reader moves plain contiguous arrays with GIL-free ``readinto`` and normalises
  with numpy (GIL released), so threads overlap; only chunked/compressed HDF5 reads serialise
  under h5py's global lock. Each sample is written straight into its slot of the batch tensor.
* Processes: each worker builds whole batches in shared memory; no lock is shared, at the cost
  of starting interpreters (once: workers persist across epochs) and of shared-memory traffic.

Use ``benchmarks/loader_throughput.py`` to choose; the measured numbers are in its JSON.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.errors import ConfigError, DataError

from . import sharding
from .layout import SplitFiles, list_split, stats_path
from .normalize import Normalizer
from .reader import SampleReader
from .stats import read_stats

ReaderKind = Literal["thread", "spawn", "forkserver"]
ShuffleMode = Literal["global", "local"]
READER_KINDS: tuple[str, ...] = ("thread", "spawn", "forkserver")
SHUFFLE_MODES: tuple[str, ...] = ("global", "local")


class Batch(NamedTuple):
    """One batch: data (B, C, H, W) float32, label (B, H, W) int64, file path per sample."""

    data: torch.Tensor
    label: torch.Tensor
    filenames: list[str]


@dataclass(frozen=True)
class LoaderSettings:
    """How to load. ``readers`` is the reference's ``max_inter_threads``.

    ``shuffle``: 'global' reshuffles all training files over all ranks every epoch (the
    reference); 'local' keeps a fixed per-rank share and reshuffles within it (for staged data).
    ``validation_batch_size`` defaults to ``local_batch_size``; the last validation batch of a
    rank may be short, so nothing is dropped. ``skip_bad_files`` replaces an unreadable
    training sample by the next readable one, counting it, instead of stopping.
    """

    local_batch_size: int = 1
    readers: int = 0
    reader_kind: ReaderKind = "thread"
    channels: tuple[int, ...] | None = None
    seed: int = 333
    shuffle: ShuffleMode = "global"
    pin_memory: bool = False
    validation_batch_size: int | None = None
    skip_bad_files: bool = False

    def __post_init__(self) -> None:
        if self.local_batch_size < 1:
            raise ConfigError(f"local batch size must be >= 1, got {self.local_batch_size}")
        if self.readers < 0:
            raise ConfigError(f"number of readers must be >= 0, got {self.readers}")
        if self.reader_kind not in READER_KINDS:
            raise ConfigError(
                f"reader kind '{self.reader_kind}' unknown: choose one of {', '.join(READER_KINDS)}"
            )
        if self.shuffle not in SHUFFLE_MODES:
            raise ConfigError(f"shuffle '{self.shuffle}' unknown: choose global or local")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.validation_batch_size is not None and self.validation_batch_size < 1:
            raise ConfigError(
                f"validation batch size must be >= 1, got {self.validation_batch_size}"
            )


class _ReadFailure(NamedTuple):
    """What a worker process sends back instead of a batch when a read failed."""

    message: str


def _identity(batch: Any) -> Any:
    return batch


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)


def _new_batch(
    reader: SampleReader, size: int, pin: bool, shared: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    data_shape, label_shape = (size, *reader.output_shape), (size, *reader.shape[:2])
    if pin or shared:
        data = torch.empty(data_shape, dtype=torch.float32, pin_memory=pin)
        label = torch.empty(label_shape, dtype=torch.int64, pin_memory=pin)
        if shared:
            data.share_memory_()
            label.share_memory_()
        return data, label
    # numpy asks the kernel for huge pages on large arrays: first touch of a fresh 57 MB
    # sample costs ~8 ms instead of ~40 ms for torch.empty (measured, 4 KiB pages)
    return (
        torch.from_numpy(np.empty(data_shape, dtype=np.float32)),
        torch.from_numpy(np.empty(label_shape, dtype=np.int64)),
    )


def _read_batch(reader: SampleReader, indices: list[int], pin: bool, shared: bool) -> Batch:
    data, label = _new_batch(reader, len(indices), pin, shared)
    names = [reader.read_into(i, data[j].numpy(), label[j].numpy()) for j, i in enumerate(indices)]
    return Batch(data, label, names)


class _BatchDataset(Dataset):
    """Map-style dataset over a split whose fetch of a list of indices builds one Batch."""

    def __init__(self, reader: SampleReader) -> None:
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader.split)

    def __getitem__(self, index: int) -> Batch | _ReadFailure:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> Batch | _ReadFailure:
        try:
            return _read_batch(self.reader, list(indices), pin=False, shared=True)
        except DataError as exc:
            return _ReadFailure(str(exc))


class _BatchPlan:
    """Batch sampler whose batches the loader sets before each pass (lives in this process)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


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
    _dataloader: DataLoader | None = field(default=None, init=False, repr=False)
    _plan: _BatchPlan = field(default_factory=_BatchPlan, init=False, repr=False)

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
        plan = plan[start_batch:]
        if self.settings.reader_kind == "thread" or self.settings.readers == 0:
            return self._thread_batches(plan)
        return self._process_batches(plan)

    def _pin(self) -> bool:
        return self.settings.pin_memory and torch.cuda.is_available()

    def _thread_batches(self, plan: list[list[int]]) -> Iterator[Batch]:
        readers = self.settings.readers
        pin = self._pin()
        if readers == 0:
            for indices in plan:
                yield _read_batch(self.reader, indices, pin, shared=False)
            return
        in_flight = max(2, math.ceil(2 * readers / self.batch_size))
        pending: deque[tuple[torch.Tensor, torch.Tensor, list[Future[str]]]] = deque()
        todo = iter(plan)
        pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="deepcam-reader")

        def submit() -> None:
            indices = next(todo, None)
            if indices is None:
                return
            data, label = _new_batch(self.reader, len(indices), pin)
            futures = [
                pool.submit(self.reader.read_into, i, data[j].numpy(), label[j].numpy())
                for j, i in enumerate(indices)
            ]
            pending.append((data, label, futures))

        try:
            for _ in range(in_flight):
                submit()
            while pending:
                data, label, futures = pending.popleft()
                names = [f.result() for f in futures]
                submit()
                yield Batch(data, label, names)
        finally:
            for _, _, futures in pending:
                for f in futures:
                    f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _process_batches(self, plan: list[list[int]]) -> Iterator[Batch]:
        if self._dataloader is None:
            self._dataloader = DataLoader(
                _BatchDataset(self.reader),
                batch_sampler=self._plan,
                num_workers=self.settings.readers,
                collate_fn=_identity,
                multiprocessing_context=self.settings.reader_kind,
                persistent_workers=True,
                pin_memory=self._pin(),
                worker_init_fn=_worker_init,
                prefetch_factor=max(2, math.ceil(2 / self.batch_size)),
            )
        self._plan.batches = plan
        for item in self._dataloader:
            if isinstance(item, _ReadFailure):
                raise DataError(item.message)
            yield item

    def close(self) -> None:
        """Stop worker processes, if any (threads stop at the end of each pass)."""
        if self._dataloader is not None:
            iterator = getattr(self._dataloader, "_iterator", None)
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            self._dataloader = None

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
        """Stop any worker processes of both loaders."""
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


def read_all(loader: ShardLoader, epoch: int = 0) -> tuple[np.ndarray, list[str]]:
    """Read a whole epoch and return (label class counts, file paths) — for checks and tests."""
    counts = np.zeros(3, dtype=np.int64)
    names: list[str] = []
    for batch in loader.iter_epoch(epoch):
        counts += np.bincount(batch.label.reshape(-1).numpy(), minlength=3)[:3]
        names.extend(batch.filenames)
    return counts, names
