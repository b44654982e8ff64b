"""Sharding: disjoint equal training shards, full validation coverage, reproducible orders."""

from __future__ import annotations

from collections import Counter

import pytest

from deepcam_hvd.data import sharding
from deepcam_hvd.errors import ConfigError, DataError


@pytest.mark.parametrize(("n", "size"), [(10, 1), (10, 3), (64, 4), (101, 8), (8, 8)])
def test_train_shards_disjoint_equal(n: int, size: int) -> None:
    for epoch in (0, 1, 7):
        shards = [sharding.train_shard(n, r, size, 333, epoch) for r in range(size)]
        lengths = {len(s) for s in shards}
        assert lengths == {n // size}
        flat = [i for s in shards for i in s]
        assert len(set(flat)) == len(flat) == size * (n // size)
        assert all(0 <= i < n for i in flat)


def test_train_order_depends_on_seed_and_epoch_only() -> None:
    a = sharding.train_shard(100, 1, 4, seed=333, epoch=2)
    assert a == sharding.train_shard(100, 1, 4, seed=333, epoch=2)  # reproducible (resume)
    assert a != sharding.train_shard(100, 1, 4, seed=333, epoch=3)
    assert a != sharding.train_shard(100, 1, 4, seed=334, epoch=2)
    # every rank computes the same permutation
    perm = sharding.epoch_permutation(100, 333, 2).tolist()
    assert a == perm[1:100:4]


def test_dropped_files_change_between_epochs() -> None:
    n, size = 10, 4  # 2 files skipped per epoch
    used = [
        {i for r in range(size) for i in sharding.train_shard(n, r, size, 1, e)} for e in range(8)
    ]
    assert len(set.union(*used)) == n
    assert len({frozenset(u) for u in used}) > 1


@pytest.mark.parametrize(("n", "size"), [(15, 4), (7, 8), (0, 3), (16, 4), (5, 1)])
def test_validation_covers_every_file_once(n: int, size: int) -> None:
    shards = [sharding.validation_shard(n, r, size) for r in range(size)]
    counts = Counter(i for s in shards for i in s)
    assert sorted(counts) == list(range(n)) and set(counts.values()) <= {1}
    lengths = [len(s) for s in shards]
    assert lengths == sharding.validation_counts(n, size)
    assert max(lengths) - min(lengths) <= (1 if n else 0)
    assert lengths == sorted(lengths, reverse=True)  # the first n % size ranks get one more


def test_local_share_fixed_and_local_order_per_epoch() -> None:
    n, size = 30, 4
    shares = [sharding.local_share(n, r, size, 9) for r in range(size)]
    flat = [i for s in shares for i in s]
    assert len(set(flat)) == len(flat) == size * (n // size)
    for r in range(size):
        e0 = sharding.local_train_shard(n, r, size, 9, 0)
        e1 = sharding.local_train_shard(n, r, size, 9, 1)
        assert sorted(e0) == sorted(e1) == shares[r]
        assert e0 == sharding.local_train_shard(n, r, size, 9, 0)
    assert any(
        sharding.local_train_shard(n, r, size, 9, 0) != sharding.local_train_shard(n, r, size, 9, 1)
        for r in range(size)
    )


def test_batches_drop_last() -> None:
    assert sharding.batches(list(range(7)), 3, True) == [[0, 1, 2], [3, 4, 5]]
    assert sharding.batches(list(range(7)), 3, False)[-1] == [6]


def test_bad_arguments() -> None:
    with pytest.raises(DataError, match="3 training files"):
        sharding.train_shard(3, 0, 4, 1, 0)
    with pytest.raises(ConfigError):
        sharding.train_shard(10, 4, 4, 1, 0)
    with pytest.raises(ConfigError):
        sharding.train_shard(10, 0, 2, -1, 0)
    with pytest.raises(ConfigError):
        sharding.batches([1], 0, True)
