"""Which samples each rank reads: pure functions of (number of files, rank, size, seed, epoch).

Sample indices refer to the sorted file list of a split (``layout.list_split``), identical on
every rank. Nothing here talks to other ranks: every rank computes every rank's shard itself.

Training (``train_shard``): each epoch, one permutation of all files drawn from (seed, epoch)
(the same on every rank); rank r takes permutation positions r, r + size, ... of the first
``size * (n // size)`` positions. Shards are disjoint, all of length ``n // size``; the
``n % size`` files at the end of the permutation are skipped that epoch (a different set each
epoch), as the reference does with ``drop_last``.

Local shuffling (``local_train_shard``, for staged data): rank r owns a fixed share of
``n // size`` files (``local_share``, drawn from the seed alone) and only reorders it each
epoch, so it never needs files outside that share.

Validation (``validation_shard``): rank r takes files r, r + size, ...; every file is read
exactly once, the first ``n % size`` ranks read one more file than the others. Because shards
differ in size, the trainer must average a per-sample metric as
``allreduce(sum of metric over local samples, "sum") / allreduce(local sample count, "sum")``,
not as the mean of per-rank means (ranks with no sample contribute 0 and 0).

A resumed run restores the data order by calling these with the same (seed, epoch) and
skipping the batches already done in that epoch.
"""

from __future__ import annotations

import numpy as np

from deepcam_hvd.errors import ConfigError, DataError

_TRAIN_STREAM = 0
_SHARE_STREAM = 1
_LOCAL_STREAM = 2


def _check_rank(rank: int, size: int) -> None:
    if size < 1:
        raise ConfigError(f"number of ranks must be >= 1, got {size}")
    if not 0 <= rank < size:
        raise ConfigError(f"rank {rank} out of range for {size} ranks")


def _check_seed(seed: int, epoch: int) -> None:
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if epoch < 0:
        raise ConfigError(f"epoch must be >= 0, got {epoch}")


def _rng(*words: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(words))))


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of all ``n`` training files in ``epoch``: the same on every rank."""
    _check_seed(seed, epoch)
    return _rng(seed, _TRAIN_STREAM, epoch).permutation(n)


def shard_length(n: int, size: int) -> int:
    """Number of training files every rank reads per epoch (``n // size``); DataError if 0."""
    if n < size:
        raise DataError(f"{n} training files cannot give each of {size} ranks one file")
    return n // size


def train_shard(n: int, rank: int, size: int, seed: int, epoch: int) -> list[int]:
    """Indices of the training files ``rank`` reads in ``epoch``, in reading order."""
    _check_rank(rank, size)
    per_rank = shard_length(n, size)
    perm = epoch_permutation(n, seed, epoch)
    return perm[rank : per_rank * size : size].tolist()


def local_share(n: int, rank: int, size: int, seed: int) -> list[int]:
    """The fixed share of ``n // size`` training files that ``rank`` owns (sorted indices).

    Shares of different ranks are disjoint; they depend on (seed, size), not on the epoch.
    This is what ``deepcam-hvd data stage`` copies for training.
    """
    _check_rank(rank, size)
    _check_seed(seed, 0)
    per_rank = shard_length(n, size)
    perm = _rng(seed, _SHARE_STREAM).permutation(n)
    return sorted(perm[rank : per_rank * size : size].tolist())


def local_train_shard(n: int, rank: int, size: int, seed: int, epoch: int) -> list[int]:
    """``rank``'s local share in the reading order of ``epoch`` (shuffled within the share)."""
    share = local_share(n, rank, size, seed)
    _check_seed(seed, epoch)
    order = _rng(seed, _LOCAL_STREAM, epoch, rank).permutation(len(share))
    return [share[i] for i in order]


def validation_shard(n: int, rank: int, size: int) -> list[int]:
    """Indices of the validation files ``rank`` reads: ``rank, rank + size, ...`` (may be [])."""
    _check_rank(rank, size)
    if n < 0:
        raise DataError(f"number of files must be >= 0, got {n}")
    return list(range(rank, n, size))


def validation_counts(n: int, size: int) -> list[int]:
    """Number of validation files of each rank (sums to ``n``; differ by at most one)."""
    return [len(validation_shard(n, r, size)) for r in range(size)]


def strided_share(n: int, rank: int, size: int) -> list[int]:
    """Files ``rank`` handles in whole-dataset jobs (synth, check, convert): r, r + size, ..."""
    return validation_shard(n, rank, size)


def batches(indices: list[int], batch_size: int, drop_last: bool) -> list[list[int]]:
    """Split ``indices`` into consecutive batches of ``batch_size`` (the last may be short)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    stop = len(indices) - len(indices) % batch_size if drop_last else len(indices)
    return [indices[i : i + batch_size] for i in range(0, stop, batch_size)]
