"""The npy form of a CosmoFlow sample: ``<name>-x.npy`` and ``<name>-y.npy``, written and read.

``-x.npy``: int16, shape (cube, cube, cube, 4), C order, little-endian (the bytes of the
TFRecord's ``x``); ``-y.npy``: float32 little-endian, shape (4,). Written with ``np.save``
(no pickles), so uncompressed: a sample is read without decoding, at the cost of disk space.

``read_sample`` (Python, for checks and tests) validates the headers and the data and raises
a DataError naming the file. ``decode_sample`` is the tf.data reader: an .npy file ends with
its data, so it takes the bytes after the header, asserting the magic and the exact size with
the file's name in the message; dtype, shape and order are the header's, which only
``read_sample`` checks.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from deepcam_hvd.errors import DataError
from deepcam_hvd.files import save_npy
from deepcam_hvd.workloads.cosmoflow import NUM_CHANNELS, NUM_TARGETS

from .layout import NPY_X_SUFFIX, NPY_Y_SUFFIX, check_arrays, infer_cube, sample_bytes, y_path
from .tensors import require, scale_counts

X_DTYPE = np.dtype("<i2")
Y_DTYPE = np.dtype("<f4")
_MAGIC = b"\x93NUMPY"


def write_sample(x_path: str | os.PathLike[str], x: np.ndarray, y: np.ndarray) -> int:
    """Write ``x`` to ``x_path`` (an ``-x.npy`` name) and ``y`` beside it; total bytes."""
    target = y_path(x_path)
    check_arrays(x, y, x_path)
    return (save_npy(Path(x_path), np.asarray(x, dtype=X_DTYPE))
            + save_npy(target, np.asarray(y, dtype=Y_DTYPE)))


def _load(path: Path, dtype: np.dtype, shape: tuple[int, ...] | None) -> np.ndarray:
    """The array of ``path``, checked for dtype, C order, ``shape`` (if given) and exact size."""
    try:
        stored = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a complete .npy file ({exc})") from None
    if not isinstance(stored, np.memmap):
        raise DataError(f"{path}: not a plain .npy array")
    if stored.dtype != dtype:
        raise DataError(f"{path}: dtype {stored.dtype.str}, expected {dtype.str}")
    if stored.ndim > 1 and not stored.flags.c_contiguous:
        raise DataError(f"{path}: stored in Fortran order, expected C order")
    if shape is not None and stored.shape != shape:
        raise DataError(f"{path}: shape {stored.shape}, expected {shape}")
    extra = path.stat().st_size - stored.offset - stored.nbytes
    if extra:
        raise DataError(f"{path}: {extra} bytes after the array's data")
    return np.array(stored)


def read_sample(
    x_path: str | os.PathLike[str], cube: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of the npy sample named by ``x_path``, validated; ``cube`` None: any cube.

    DataError naming the file for a missing ``-y.npy``, a truncated or corrupt file, a wrong
    dtype, order or shape, NaN/Inf in ``y`` or negative counts in ``x``.
    """
    x_path = Path(x_path)
    x = _load(x_path, X_DTYPE, (cube, cube, cube, NUM_CHANNELS) if cube else None)
    if not cube:
        if x.ndim != 4 or x.shape[3] != NUM_CHANNELS or len(set(x.shape[:3])) != 1:
            raise DataError(f"{x_path}: shape {x.shape}, expected (cube, cube, cube, "
                            f"{NUM_CHANNELS})")
        infer_cube(x.nbytes, x_path)
    y_file = y_path(x_path)
    y = _load(y_file, Y_DTYPE, (NUM_TARGETS,))
    if not np.isfinite(y).all():
        raise DataError(f"{y_file}: y holds NaN or Inf: {y.tolist()}")
    if x.size and x.min() < 0:
        raise DataError(f"{x_path}: x holds negative counts (min {int(x.min())})")
    return x, y


def _payload(raw: tf.Tensor, where: tf.Tensor, nbytes: int) -> tf.Tensor:
    """The data bytes of an .npy file's contents ``raw``: exactly ``nbytes`` after its header."""
    length = tf.strings.length(raw)
    is_npy = require((length >= 12) & tf.equal(tf.strings.substr(raw, 0, 6), _MAGIC), where,
                     ": not an .npy file")
    with tf.control_dependencies([is_npy]):
        version = tf.io.decode_raw(tf.strings.substr(raw, 6, 1), tf.uint8)[0]
        # Format 1.0 stores the header length in 2 bytes, 2.0 and 3.0 in 4 (little-endian).
        short = tf.cast(tf.io.decode_raw(tf.strings.substr(raw, 8, 2), tf.uint16)[0], tf.int32)
        long = tf.io.decode_raw(tf.strings.substr(raw, 8, 4), tf.int32)[0]
        offset = tf.where(version == 1, short + 10, long + 12)
    exact = require(tf.equal(length - offset, nbytes), where, ": holds ",
                    tf.strings.as_string(length - offset), f" data bytes, expected {nbytes}")
    with tf.control_dependencies([exact]):
        return tf.strings.substr(raw, offset, nbytes)


def decode_sample(
    x_path: tf.Tensor, cube: int, apply_log: bool = True
) -> tuple[tf.Tensor, tf.Tensor]:
    """tf.data reader: ``-x.npy`` path -> (x float32 (c, c, c, 4), y float32 (4,)), scaled as
    the reference (``log(x + 1)`` with ``apply_log``)."""
    y_file = tf.strings.regex_replace(x_path, f"{NPY_X_SUFFIX.replace('.', '[.]')}$",
                                      NPY_Y_SUFFIX)
    raw_x = _payload(tf.io.read_file(x_path), x_path, sample_bytes(cube))
    raw_y = _payload(tf.io.read_file(y_file), y_file, NUM_TARGETS * Y_DTYPE.itemsize)
    y = tf.io.decode_raw(raw_y, tf.float32, little_endian=True)
    finite = require(tf.reduce_all(tf.math.is_finite(y)), y_file, ": y holds NaN or Inf")
    with tf.control_dependencies([finite]):
        counts = tf.io.decode_raw(raw_x, tf.int16, little_endian=True)
        x = tf.cast(tf.reshape(counts, [cube, cube, cube, NUM_CHANNELS]), tf.float32)
        y = tf.reshape(y, [NUM_TARGETS])
    return scale_counts(x, apply_log), y
