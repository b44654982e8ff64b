"""tf.data pipelines of CosmoFlow ``(x, y)`` batches, built as the reference's ``data/cosmo.py``.

The reference lists ``<data_dir>/train`` and ``<data_dir>/validation`` (``*.tfrecord``, sorted,
the first ``n_train`` / ``n_valid``), shuffles the training file list each epoch (the same
permutation on every rank only because ``train.py`` seeds TensorFlow alike everywhere), gives
rank r files r, r + size, ... of it (``Dataset.shard``), parses them in parallel, batches with
``drop_remainder=True`` and prefetches. Here the permutation is a closed form of (seed, epoch)
from ``deepcam_hvd.data.sharding``, so shards are disjoint by construction and a resumed run
reads what the uninterrupted one read: training takes ``sharding.train_shard`` (the reference's
strided shard of the permutation, ``n // size`` files each), validation
``sharding.validation_shard``. Batches never straddle two epochs.

Files are read ``parallel_reads`` at a time. A bad file fails the pipeline when it is reached;
``explain_error`` turns that error into a one-line DataError naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from deepcam_hvd.data import sharding
from deepcam_hvd.errors import DataError

from .check import check_files, read_any
from .layout import GZIP_MAGIC, SampleFormat, files_format, list_split
from .npy import decode_sample
from .tensors import error_reason, message_from_error, require
from .tfrecord import parse_example, tf_compression

#: Files read and parsed at once, and batches read ahead: fixed, with tf.data's autotuner off.
#: The trainer builds a new pipeline every epoch, and the autotuner left some epochs at a fixed
#: ~25 samples/s instead of ~46 (one step every 0.32 s whatever the batch: reading no longer
#: overlapped the step): with AUTOTUNE interleave 3 of 12 epochs (one process, 2 threads, 32^3,
#: batch 8), with 4 reads but the prefetch autotuned 4 of 8 (2 ranks x 1 thread, batch 4),
#: with both fixed 0 of 12 (benchmarks/RESULTS.md, "CosmoFlow demo"). The order is the same
#: either way (a deterministic interleave).
PARALLEL_READS = 4
PREFETCH = 2
Paths = Sequence[str | os.PathLike[str]]


def first_cube(files: Paths) -> int:
    """The cube side of the first sample of ``files`` (read and validated)."""
    if not files:
        raise DataError("no sample files given")
    x, _ = read_any(files[0])
    return int(x.shape[0])


def _probe_compression(path: tf.Tensor) -> tf.Tensor:
    """``GZIP`` or ``''`` for the file ``path``, from its first bytes (inside the graph)."""
    head = tf.data.FixedLengthRecordDataset(path, 1, buffer_size=16).take(len(GZIP_MAGIC))
    magic = head.reduce(tf.constant(b""), lambda joined, byte: joined + byte)
    return tf.where(tf.equal(magic, GZIP_MAGIC), tf.constant("GZIP"), tf.constant(""))


def _read_files(
    paths: tf.data.Dataset, fmt: SampleFormat, cube: int, apply_log: bool,
    compression: str | None, parallel_reads: int,
) -> tf.data.Dataset:
    """``(x, y)`` of each path of ``paths``, in order, ``parallel_reads`` files at a time."""
    if fmt == "npy":
        return paths.map(lambda path: decode_sample(path, cube, apply_log),
                         num_parallel_calls=parallel_reads, deterministic=True)

    def read(path: tf.Tensor) -> tf.data.Dataset:
        kind = (_probe_compression(path) if compression is None
                else tf.constant(tf_compression(compression)))
        # One sample per file: the first record, or b"" when the file holds none.
        first = (tf.data.TFRecordDataset(path, compression_type=kind)
                 .concatenate(tf.data.Dataset.from_tensors(tf.constant(b""))).take(1))

        def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            present = require(tf.strings.length(record) > 0, path, ": holds no record")
            with tf.control_dependencies([present]):
                record = tf.identity(record)
            return parse_example(record, cube, apply_log, source=path)

        return first.map(parse)

    return paths.interleave(read, cycle_length=parallel_reads,
                            num_parallel_calls=parallel_reads, deterministic=True)


def _untuned(data: tf.data.Dataset) -> tf.data.Dataset:
    """``data`` with tf.data's autotuner off (see ``PREFETCH``)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.with_options(options)


def _path_strings(files: Paths) -> np.ndarray:
    return np.array([os.fsencode(f) for f in files], dtype=object)


def read_dataset(
    files: Paths, batch_size: int, cube: int, *, drop_remainder: bool = True,
    apply_log: bool = True, compression: str | None = None, parallel_reads: int = PARALLEL_READS,
) -> tf.data.Dataset:
    """``(x, y)`` batches of ``files`` in the order given (no shuffling, no sharding).

    ``compression`` None: detected per file (one extra small read each); ``gzip``/``none``:
    all files are taken to be so. The files must all be of one form (tfrecord or npy).
    """
    if batch_size < 1:
        raise DataError(f"batch size must be >= 1, got {batch_size}")
    fmt = files_format(list(files))
    paths = tf.data.Dataset.from_tensor_slices(tf.constant(_path_strings(files), tf.string))
    return _untuned(_read_files(paths, fmt, cube, apply_log, compression, parallel_reads)
                    .batch(batch_size, drop_remainder=drop_remainder).prefetch(PREFETCH))


def shard_files(n: int, rank: int, size: int, shuffle: bool, seed: int, epoch: int) -> list[int]:
    """Indices of the files ``rank`` reads in ``epoch``: a shuffled training shard
    (``sharding.train_shard``, ``n // size`` files) or the fixed validation shard."""
    if shuffle:
        return sharding.train_shard(n, rank, size, seed, epoch)
    return sharding.validation_shard(n, rank, size)


def steps_per_epoch(
    n_files: int, batch_size: int, shard_rank: int, shard_count: int, shuffle: bool,
    drop_remainder: bool = True,
) -> int:
    """Batches ``make_dataset`` yields per epoch on ``shard_rank``."""
    count = len(shard_files(n_files, shard_rank, shard_count, shuffle, 0, 0))
    return count // batch_size if drop_remainder else -(-count // batch_size)


def make_dataset(
    files: Paths, batch_size: int, shard_rank: int = 0, shard_count: int = 1,
    shuffle: bool = False, seed: int = 0, *, cube: int | None = None,
    epochs: int | None = None, start_epoch: int = 0, apply_log: bool = True,
    compression: str | None = None, drop_remainder: bool = True, shuffle_buffer: int = 0,
    parallel_reads: int = PARALLEL_READS, prefetch: int = PREFETCH,
) -> tf.data.Dataset:
    """``(x, y)`` batches of this rank's shard of ``files``, epoch after epoch.

    ``shuffle``: a new order of all files each epoch from (seed, epoch), then this rank's
    ``n // shard_count`` of it (training); else files ``shard_rank``, ``shard_rank +
    shard_count``, ... every epoch (validation). ``epochs`` None: without end, from
    ``start_epoch``. ``shuffle_buffer`` > 0 also shuffles samples within a buffer, as the
    reference's ``shuffle_buffer_size``. ``cube`` None: read from the first file.
    """
    if batch_size < 1:
        raise DataError(f"batch size must be >= 1, got {batch_size}")
    if epochs is not None and epochs < 1:
        raise DataError(f"number of epochs must be >= 1, got {epochs}")
    fmt = files_format(list(files))
    side = cube or first_cube(files)
    names = _path_strings(files)
    per_epoch = len(shard_files(len(names), shard_rank, shard_count, shuffle, seed, start_epoch))

    def order(epoch: np.int64) -> np.ndarray:
        return names[shard_files(len(names), shard_rank, shard_count, shuffle, seed, int(epoch))]

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        paths = tf.numpy_function(order, [epoch], tf.string, stateful=False)
        paths = tf.data.Dataset.from_tensor_slices(tf.ensure_shape(paths, [per_epoch]))
        samples = _read_files(paths, fmt, side, apply_log, compression, parallel_reads)
        if shuffle and shuffle_buffer > 0:
            samples = samples.shuffle(shuffle_buffer, seed=seed)
        return samples.batch(batch_size, drop_remainder=drop_remainder)

    stop = start_epoch + epochs if epochs is not None else np.iinfo(np.int64).max
    return _untuned(tf.data.Dataset.range(start_epoch, stop).flat_map(one_epoch)
                    .prefetch(prefetch))


def explain_error(
    exc: BaseException, files: Paths, cube: int | None = None, compression: str | None = None
) -> DataError:
    """A one-line DataError naming the bad file behind a failed pipeline's error ``exc``.

    A failed assertion already names it; otherwise (a corrupt or truncated file, which
    TensorFlow reports without its name) ``files``, e.g. this rank's, are checked to find it,
    with the ``cube`` and ``compression`` the pipeline was given.
    ``exc`` is a ``tf.errors.OpError``, or the UnicodeDecodeError that TensorFlow raises
    instead when its message quotes a record that is not an Example.
    """
    named = message_from_error(exc)
    if named:
        return DataError(named)
    found = check_files(files, cube, compression=compression)
    if found.problems:
        more = len(found.problems) - 1
        return DataError(found.problems[0] + (f" (and {more} more bad file(s))" if more else ""))
    return DataError(f"reading the data failed: {error_reason(exc)}")


@dataclass
class DataRoot:
    """A CosmoFlow data root's training and validation files (``inputs.DataSource``)."""

    train_files: list[str]
    validation_files: list[str]
    cube: int
    apply_log: bool = True
    compression: str | None = None

    def dataset(self, files: list[str], batch_size: int, drop_remainder: bool
                ) -> tf.data.Dataset:
        """``(x, y)`` batches of ``files`` in the order given (no shuffling, no sharding)."""
        return read_dataset(files, batch_size, self.cube, drop_remainder=drop_remainder,
                            apply_log=self.apply_log, compression=self.compression)


def open_root(
    root: str | os.PathLike[str], data_format: SampleFormat | None = None, n_train: int = 0,
    n_valid: int = 0, cube: int = 0, apply_log: bool = True, compression: str | None = None,
) -> DataRoot:
    """The first ``n_train`` / ``n_valid`` samples (0: all) of ``root``'s ``train/`` and
    ``validation/`` in name order; ``cube`` 0: read from the first training sample."""
    train = list_split(root, "train", n_train, data_format)
    validation = list_split(root, "validation", n_valid, data_format)
    return DataRoot(
        train_files=[str(p) for p in train],
        validation_files=[str(p) for p in validation],
        cube=cube or first_cube(train),
        apply_log=apply_log,
        compression=compression,
    )
