"""Where CosmoFlow samples live and how many bytes they hold (no TensorFlow needed here).

A data root holds ``train/`` and ``validation/`` (the reference's ``get_datasets``), one sample
per file, in one of two forms:

* ``tfrecord`` (the reference's ``prepare.py``): ``<name>.tfrecord``, gzip-compressed or plain,
  holding one ``tf.train.Example`` with ``x`` (one bytes value: the int16 counts of a
  cube x cube x cube x 4 array in C order, little-endian) and ``y`` (4 float32 parameters);
* ``npy``: ``<name>-x.npy`` (int16, shape (cube, cube, cube, 4), C order, little-endian) and
  ``<name>-y.npy`` (float32, shape (4,)).

A split lists its samples in name order, as the reference's sorted glob does; a sample is
named by its ``.tfrecord`` or its ``-x.npy`` path.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Literal

import numpy as np

from deepcam_hvd.errors import DataError
from deepcam_hvd.workloads.cosmoflow import NUM_CHANNELS, NUM_TARGETS

SampleFormat = Literal["tfrecord", "npy"]
FORMATS: tuple[SampleFormat, ...] = ("tfrecord", "npy")

SPLITS = ("train", "validation")
TFRECORD_SUFFIX = ".tfrecord"
NPY_X_SUFFIX = "-x.npy"
NPY_Y_SUFFIX = "-y.npy"

FEATURE_X = "x"
FEATURE_Y = "y"
X_ITEM_BYTES = 2  # int16
GZIP_MAGIC = b"\x1f\x8b\x08"  # gzip member header with the deflate method


def sample_bytes(cube: int) -> int:
    """Bytes of ``x`` for a cube of ``cube`` voxels per side (int16, NUM_CHANNELS channels)."""
    return cube**3 * NUM_CHANNELS * X_ITEM_BYTES


def infer_cube(nbytes: int, where: str | os.PathLike[str]) -> int:
    """The cube side whose ``x`` holds ``nbytes`` bytes; DataError naming ``where`` if none."""
    voxels = nbytes // (NUM_CHANNELS * X_ITEM_BYTES)
    side = round(voxels ** (1 / 3)) if voxels > 0 else 0
    if side < 1 or sample_bytes(side) != nbytes:
        raise DataError(f"{where}: x holds {nbytes} bytes, which is not cube^3 x "
                        f"{NUM_CHANNELS} int16 for any cube")
    return side


def check_arrays(x: np.ndarray, y: np.ndarray, where: str | os.PathLike[str]) -> int:
    """Check that ``x`` is int16 (c, c, c, 4) and ``y`` has 4 finite values; return c."""
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype != np.int16:
        raise DataError(f"{where}: x has dtype {x.dtype}, expected int16")
    if x.ndim != 4 or x.shape[3] != NUM_CHANNELS or len(set(x.shape[:3])) != 1:
        raise DataError(f"{where}: x has shape {x.shape}, expected (cube, cube, cube, "
                        f"{NUM_CHANNELS})")
    if y.shape != (NUM_TARGETS,):
        raise DataError(f"{where}: y has shape {y.shape}, expected ({NUM_TARGETS},)")
    if not np.isfinite(y).all():
        raise DataError(f"{where}: y holds NaN or Inf: {y.tolist()}")
    return int(x.shape[0])


def y_path(x_path: str | os.PathLike[str]) -> Path:
    """The ``-y.npy`` file beside an ``-x.npy`` sample file."""
    path = Path(x_path)
    if not path.name.endswith(NPY_X_SUFFIX):
        raise DataError(f"{path}: not an npy sample (its name must end in {NPY_X_SUFFIX})")
    return path.with_name(path.name[: -len(NPY_X_SUFFIX)] + NPY_Y_SUFFIX)


def sample_format(path: str | os.PathLike[str]) -> SampleFormat:
    """The form of the sample named by ``path``, from its suffix."""
    name = Path(path).name
    if name.endswith(TFRECORD_SUFFIX):
        return "tfrecord"
    if name.endswith(NPY_X_SUFFIX):
        return "npy"
    raise DataError(f"{path}: not a sample file (*{TFRECORD_SUFFIX} or *{NPY_X_SUFFIX})")


def sample_files(path: str | os.PathLike[str]) -> tuple[Path, ...]:
    """Every file of the sample named by ``path``: (tfrecord,) or (x.npy, y.npy)."""
    if sample_format(path) == "npy":
        return (Path(path), y_path(path))
    return (Path(path),)


def files_format(files: list[str] | list[Path]) -> SampleFormat:
    """The one form of all ``files``; DataError naming the first file of another form."""
    if not files:
        raise DataError("no sample files given")
    fmt = sample_format(files[0])
    for path in files:
        if sample_format(path) != fmt:
            raise DataError(f"{path}: a {sample_format(path)} sample among {fmt} samples")
    return fmt


def list_split(
    root: str | os.PathLike[str],
    split: str,
    limit: int = 0,
    fmt: SampleFormat | None = None,
) -> list[Path]:
    """The samples of ``split`` under ``root`` in name order; the first ``limit`` if > 0.

    The form is detected unless given; a folder holding both forms, no samples, fewer than
    ``limit``, or an ``-x.npy`` without its ``-y.npy`` is a DataError naming the folder or file.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}': choose one of {', '.join(SPLITS)}")
    directory = Path(root) / split
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory")
    entries = set(os.listdir(directory))
    found = {
        "tfrecord": sorted(e for e in entries if e.endswith(TFRECORD_SUFFIX)),
        "npy": sorted(e for e in entries if e.endswith(NPY_X_SUFFIX)),
    }
    if fmt is None:
        if found["tfrecord"] and found["npy"]:
            raise DataError(f"{directory}: holds both *{TFRECORD_SUFFIX} and *{NPY_X_SUFFIX} "
                            "samples; keep one form")
        fmt = "npy" if found["npy"] else "tfrecord"
    elif fmt not in FORMATS:
        raise DataError(f"unknown sample format '{fmt}': choose one of {', '.join(FORMATS)}")
    names = found[fmt]
    if not names:
        suffix = TFRECORD_SUFFIX if fmt == "tfrecord" else NPY_X_SUFFIX
        raise DataError(f"{directory}: no *{suffix} samples")
    if limit < 0:
        raise DataError(f"number of samples must be >= 0, got {limit}")
    if limit > len(names):
        raise DataError(f"{directory}: {limit} samples requested, {len(names)} present")
    names = names[:limit] if limit else names
    if fmt == "npy":
        for name in names:
            if y_path(name).name not in entries:
                raise DataError(f"{directory / name}: no matching {NPY_Y_SUFFIX} file")
    return [directory / name for name in names]


def peek_cube(root: str | os.PathLike[str]) -> int | None:
    """The cube side of the first training sample under ``root``, from its size alone (no
    TensorFlow, no parsing: for estimates made before TensorFlow starts); None when there is
    none to read. An npy sample's header gives it; a TFRecord's first record is ``x``'s
    bytes plus a little framing, so its length gives it to the nearest side."""
    try:
        first = list_split(root, "train")[0]
        if sample_format(first) == "npy":
            return int(np.load(first, mmap_mode="r").shape[0])
        with open(first, "rb") as raw:
            gzipped = raw.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        opener = gzip.open if gzipped else open
        with opener(first, "rb") as stream:
            length = int.from_bytes(stream.read(8), "little")
    except (DataError, OSError, ValueError, IndexError, EOFError):
        return None
    side = round((length / (NUM_CHANNELS * X_ITEM_BYTES)) ** (1 / 3))
    return side if side > 0 else None
