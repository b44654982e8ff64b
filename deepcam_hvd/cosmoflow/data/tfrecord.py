"""One CosmoFlow sample per ``.tfrecord`` file, in the reference's layout, written and read.

The reference's ``prepare.py`` writes a ``tf.train.Example`` with ``x`` = the raw bytes of an
int16 (cube, cube, cube, 4) array and ``y`` = 4 floats, gzip-compressed for the MLPerf data
set; its ``data/cosmo.py`` parses ``x`` back with ``decode_raw`` (int16, little-endian),
reshapes it to the sample shape, casts it to float32 and, with ``apply_log`` (on in
``configs/cosmo.yaml``), takes ``log(x + 1)``; without it, divides by the sample's mean.

Reading here detects gzip per file from its first bytes, so gzip and plain files both work
without a flag. ``read_sample`` (Python, for checks and tests) validates everything and raises
a DataError naming the file; ``parse_example`` (the tf.data parse function) asserts what it can
cheaply check, with the file's name in the message (``tensors.message_from_error``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from deepcam_hvd.errors import DataError
from deepcam_hvd.files import atomic_path
from deepcam_hvd.workloads.cosmoflow import NUM_CHANNELS, NUM_TARGETS

from .layout import (
    FEATURE_X,
    FEATURE_Y,
    GZIP_MAGIC,
    check_arrays,
    infer_cube,
    sample_bytes,
)
from .tensors import error_reason, require, scale_counts

COMPRESSIONS = ("gzip", "none")
_TF_COMPRESSION = {"gzip": "GZIP", "none": ""}
# Counts compress about as well at level 1 as at zlib's default 6, several times faster.
GZIP_LEVEL = 1


def tf_compression(compression: str | None) -> str:
    """TensorFlow's ``compression_type`` for ``gzip`` or ``none`` (None and '' mean none)."""
    key = (compression or "none").lower()
    if key not in _TF_COMPRESSION:
        raise DataError(f"compression '{compression}' unknown: choose gzip or none")
    return _TF_COMPRESSION[key]


def detect_compression(path: str | os.PathLike[str]) -> str:
    """``GZIP`` if the file starts with the gzip magic, else ``''`` (TensorFlow's names)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(GZIP_MAGIC))
    except OSError as exc:
        raise DataError(f"{path}: {exc.strerror or exc}") from None
    return "GZIP" if head == GZIP_MAGIC else ""


def encode_example(x: np.ndarray, y: np.ndarray) -> bytes:
    """The serialized ``tf.train.Example`` of one sample (``x`` int16 (c, c, c, 4), ``y`` 4)."""
    raw = np.ascontiguousarray(x, dtype="<i2").tobytes()
    values = np.asarray(y, dtype=np.float32).tolist()
    feature = {
        FEATURE_X: tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw])),
        FEATURE_Y: tf.train.Feature(float_list=tf.train.FloatList(value=values)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_sample(
    path: str | os.PathLike[str], x: np.ndarray, y: np.ndarray, compression: str | None = "gzip"
) -> int:
    """Write one sample to ``path`` (atomically), ``gzip`` or ``none``; return the file size."""
    check_arrays(x, y, path)
    kind = tf_compression(compression)
    options = tf.io.TFRecordOptions(compression_type=kind,
                                    compression_level=GZIP_LEVEL if kind else None)
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp), options=options) as writer:
        writer.write(encode_example(x, y))
    return Path(path).stat().st_size


def read_records(path: str | os.PathLike[str]) -> list[bytes]:
    """Every record of a TFRecord file, gzip or plain (detected); DataError if unreadable."""
    compression = detect_compression(path)
    try:
        return [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression)]
    except tf.errors.OpError as exc:
        kind = "gzip TFRecord" if compression else "TFRecord"
        raise DataError(f"{path}: corrupt or truncated {kind} ({error_reason(exc)})") from None


def _feature_kind(feature: tf.train.Feature) -> str:
    return feature.WhichOneof("kind") or "nothing"


def decode_example(
    record: bytes, where: str | os.PathLike[str], cube: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of one serialized Example: x int16 (c, c, c, 4), y float32 (4,).

    ``cube`` None: inferred from the size of ``x``. DataError naming ``where`` for a record
    that is not an Example, a missing or mistyped feature, a wrong size, NaN/Inf in ``y`` or
    negative counts in ``x``.
    """
    try:
        features = tf.train.Example.FromString(record).features.feature
    except DecodeError:
        raise DataError(f"{where}: the record is not a tf.train.Example") from None
    for key in (FEATURE_X, FEATURE_Y):
        if key not in features:
            raise DataError(f"{where}: missing feature '{key}'")
    fx, fy = features[FEATURE_X], features[FEATURE_Y]
    if _feature_kind(fx) != "bytes_list" or len(fx.bytes_list.value) != 1:
        raise DataError(f"{where}: feature 'x' must hold one bytes value, it holds "
                        f"{_feature_kind(fx)}")
    if _feature_kind(fy) != "float_list" or len(fy.float_list.value) != NUM_TARGETS:
        count = len(getattr(fy, _feature_kind(fy)).value) if fy.WhichOneof("kind") else 0
        raise DataError(f"{where}: feature 'y' must hold {NUM_TARGETS} floats, it holds "
                        f"{count} of {_feature_kind(fy)}")
    raw = fx.bytes_list.value[0]
    side = cube if cube else infer_cube(len(raw), where)
    if len(raw) != sample_bytes(side):
        raise DataError(f"{where}: x holds {len(raw)} bytes, expected {sample_bytes(side)} "
                        f"({side}^3 x {NUM_CHANNELS} int16)")
    y = np.asarray(fy.float_list.value, dtype=np.float32)
    if not np.isfinite(y).all():
        raise DataError(f"{where}: y holds NaN or Inf: {y.tolist()}")
    x = np.frombuffer(raw, dtype="<i2").reshape(side, side, side, NUM_CHANNELS)
    if x.min() < 0:
        raise DataError(f"{where}: x holds negative counts (min {int(x.min())})")
    return x, y


def read_sample(
    path: str | os.PathLike[str], cube: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of the one-sample TFRecord file ``path``, validated (see ``decode_example``)."""
    records = read_records(path)
    if len(records) != 1:
        raise DataError(f"{path}: holds {len(records)} records, expected one sample per file")
    return decode_example(records[0], path, cube)


def parse_example(
    record: tf.Tensor, cube: int, apply_log: bool = True, source: tf.Tensor | str | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """tf.data parse function: serialized Example -> (x float32 (c, c, c, 4), y float32 (4,)).

    A missing feature, a wrong size of ``x`` or ``y`` or NaN/Inf in ``y`` fails an assertion
    whose message starts with ``source`` (the file name).
    """
    where = tf.convert_to_tensor("<record>" if source is None else source, dtype=tf.string)
    parsed = tf.io.parse_single_example(record, {
        FEATURE_X: tf.io.FixedLenFeature([], tf.string, default_value=""),
        FEATURE_Y: tf.io.VarLenFeature(tf.float32),
    })
    raw, y = parsed[FEATURE_X], parsed[FEATURE_Y].values
    nbytes, ny = tf.strings.length(raw), tf.size(y)
    expected = sample_bytes(cube)
    # Conditions are disjoint so that the message names the actual fault.
    checks = [
        require(nbytes > 0, where, ": missing feature 'x'"),
        require((nbytes == 0) | (nbytes == expected), where, ": x holds ",
                tf.strings.as_string(nbytes), f" bytes, expected {expected} ({cube}^3 x "
                f"{NUM_CHANNELS} int16)"),
        require(ny > 0, where, ": missing feature 'y'"),
        require((ny == 0) | (ny == NUM_TARGETS), where, ": y holds ", tf.strings.as_string(ny),
                f" values, expected {NUM_TARGETS}"),
        require(tf.reduce_all(tf.math.is_finite(y)), where, ": y holds NaN or Inf"),
    ]
    with tf.control_dependencies(checks):
        counts = tf.io.decode_raw(raw, tf.int16, little_endian=True)
        x = tf.cast(tf.reshape(counts, [cube, cube, cube, NUM_CHANNELS]), tf.float32)
        y = tf.reshape(y, [NUM_TARGETS])
    return scale_counts(x, apply_log), y
