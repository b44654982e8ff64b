"""CAM5 climate data: layout, reading, sharding, loading, and the ``data`` commands.

What the trainer calls::

    from deepcam_hvd.data import LoaderSettings, build_loaders

    loaders = build_loaders(root, backend, LoaderSettings(local_batch_size=8, readers=4))
    for epoch in range(start_epoch, max_epochs):
        loaders.train.set_epoch(epoch)
        for data, label, filenames in loaders.train:        # (B,C,H,W) f32, (B,H,W) i64
            ...
        for data, label, filenames in loaders.validation:   # every file once over all ranks
            ...  # sum metric and count locally, allreduce both with "sum", then divide
    loaders.close()
"""

from __future__ import annotations

from deepcam_hvd.workloads.deepcam import CHANNEL_NAMES, CLASS_NAMES, NUM_CHANNELS, NUM_CLASSES

from .layout import list_split, stats_path
from .loader import (
    Batch,
    Loaders,
    LoaderSettings,
    ShardLoader,
    build_loaders,
    make_reader,
    train_loader,
    validation_loader,
)
from .normalize import Normalizer, resolve_channels
from .reader import SampleReader, read_hdf5, read_npy, read_raw
from .sharding import (
    epoch_permutation,
    local_share,
    local_train_shard,
    train_shard,
    validation_counts,
    validation_shard,
)
from .stats import Stats, read_stats, write_stats

__all__ = [
    "CHANNEL_NAMES",
    "CLASS_NAMES",
    "NUM_CHANNELS",
    "NUM_CLASSES",
    "Batch",
    "LoaderSettings",
    "Loaders",
    "Normalizer",
    "SampleReader",
    "ShardLoader",
    "Stats",
    "build_loaders",
    "epoch_permutation",
    "list_split",
    "local_share",
    "local_train_shard",
    "make_reader",
    "read_hdf5",
    "read_npy",
    "read_raw",
    "read_stats",
    "resolve_channels",
    "stats_path",
    "train_loader",
    "train_shard",
    "validation_counts",
    "validation_loader",
    "validation_shard",
    "write_stats",
]
