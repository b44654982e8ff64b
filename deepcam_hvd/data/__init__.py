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

import importlib
from typing import Any

# Names resolve on first use (PEP 562), so that importing a light submodule (``sharding``, which
# CosmoFlow's TensorFlow ranks use) does not load the torch loader with it.
_SOURCES = {
    "CHANNEL_NAMES": "deepcam_hvd.workloads.deepcam",
    "CLASS_NAMES": "deepcam_hvd.workloads.deepcam",
    "NUM_CHANNELS": "deepcam_hvd.workloads.deepcam",
    "NUM_CLASSES": "deepcam_hvd.workloads.deepcam",
    **dict.fromkeys(("list_split", "stats_path"), "deepcam_hvd.data.layout"),
    **dict.fromkeys(("Batch", "Loaders", "LoaderSettings", "ShardLoader", "build_loaders",
                     "make_reader", "train_loader", "validation_loader"),
                    "deepcam_hvd.data.loader"),
    **dict.fromkeys(("Normalizer", "resolve_channels"), "deepcam_hvd.data.normalize"),
    **dict.fromkeys(("SampleReader", "read_hdf5", "read_npy", "read_raw"),
                    "deepcam_hvd.data.reader"),
    **dict.fromkeys(("epoch_permutation", "local_share", "local_train_shard", "train_shard",
                     "validation_counts", "validation_shard"), "deepcam_hvd.data.sharding"),
    **dict.fromkeys(("Stats", "read_stats", "write_stats"), "deepcam_hvd.data.stats"),
}


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'deepcam_hvd.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_SOURCES[name]), name)


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
