"""Which files each rank reads in each epoch, and the tf.data pipelines over them.

The order is a closed form of (seed, epoch) (``deepcam_hvd.data.sharding``, DeepCAM's): every
rank computes the same permutation of the training files and takes every ``ranks``-th file of
it from its rank on, cut to whole batches. So a run resumed at any epoch and batch reads
exactly what the uninterrupted run read, and every rank runs the same number of steps (a rank
with one step more would wait forever in the gradient allreduce).

Reading the files is the data package's job (``deepcam_hvd.cosmoflow.data``); a
:class:`DataSource` is all the trainer needs from it, so tests can hand in their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from deepcam_hvd.data import sharding
from deepcam_hvd.distributed.communicator import Communicator
from deepcam_hvd.errors import DataError

if TYPE_CHECKING:
    import tensorflow as tf

    from deepcam_hvd.cosmoflow.data.stage import StageResult


class DataSource(Protocol):
    """A CosmoFlow data root, split into training and validation files."""

    train_files: list[str]
    validation_files: list[str]
    cube: int  # voxels per side

    def dataset(self, files: list[str], batch_size: int, drop_remainder: bool
                ) -> tf.data.Dataset:
        """``(x, y)`` batches of ``files`` in the order given (no shuffling, no sharding)."""
        ...


@dataclass(frozen=True)
class EpochPlan:
    """The training steps of one epoch and this rank's files for them."""

    steps: int
    files: list[str]  # steps x local batch, in reading order


def steps_per_epoch(train_files: int, local_batch: int, ranks: int) -> int:
    """Full global batches in the training split; DataError when not even one fits."""
    steps = train_files // (local_batch * ranks)
    if steps == 0:
        raise DataError(f"{train_files} training files are fewer than one global batch "
                        f"({local_batch} x {ranks} ranks); lower --local_batch_size or use "
                        "more files")
    return steps


def epoch_plan(files: list[str], seed: int, epoch: int, local_batch: int, rank: int,
               ranks: int) -> EpochPlan:
    """This rank's files for the 0-based ``epoch``: its shard of the (seed, epoch)
    permutation (``deepcam_hvd.data.sharding.train_shard``), cut to whole batches."""
    steps = steps_per_epoch(len(files), local_batch, ranks)
    shard = sharding.train_shard(len(files), rank, ranks, seed, epoch)
    return EpochPlan(steps, [files[i] for i in shard[: steps * local_batch]])


def validation_shard(files: list[str], rank: int, ranks: int) -> list[str]:
    """This rank's validation files (``sharding.validation_shard``); DataError if a rank would
    get none (Keras cannot evaluate nothing)."""
    if len(files) < ranks:
        raise DataError(f"{len(files)} validation files for {ranks} ranks: every rank needs at "
                        "least one")
    return [files[i] for i in sharding.validation_shard(len(files), rank, ranks)]


def open_source(root: str, data_format: str = "auto", n_train: int = 0, n_valid: int = 0,
                cube: int = 0, layers: int = 5) -> DataSource:
    """The data root's files (``cosmoflow.data.dataset.open_root``), checked up front: a
    cube the network cannot take, or other than ``cube`` asked for, is a DataError naming the
    first training file."""
    from deepcam_hvd.cosmoflow.data.dataset import first_cube, open_root

    fmt: Any = None if data_format == "auto" else data_format
    source = open_root(root, fmt, n_train, n_valid)
    found = first_cube(source.train_files)
    first = source.train_files[0]
    if cube and cube != found:
        raise DataError(f"{first}: holds {found}^3 samples but --cube is {cube}")
    if found % 2**layers:
        raise DataError(f"{first}: {found}^3 samples; the network needs a cube divisible by "
                        f"{2**layers} ({layers} poolings)")
    return source


def stage_root(source: DataSource, staging_dir: str, backend: Communicator) -> StageResult:
    """Copy both splits to ``staging_dir`` (node-local), this rank's share of them (the node's
    ranks share the copying). Every node gets every file, since each epoch's order draws
    from all of them. Call it through ``run_agreed``, whose collective waits for all ranks."""
    from deepcam_hvd.cosmoflow.data.stage import StageResult, stage_files

    total = StageResult(0, 0, 0)
    for split, files in (("train", source.train_files), ("validation", source.validation_files)):
        done = stage_files(files, Path(staging_dir) / split, backend.local_rank,
                           backend.local_size)
        total = StageResult(total.copied + done.copied, total.skipped + done.skipped,
                            total.bytes_copied + done.bytes_copied)
    return total
