"""TFRecord samples: the reference's layout byte for byte, round trips, and each bad file named."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="CosmoFlow needs TensorFlow")

from deepcam_hvd.cosmoflow.data import tfrecord  # noqa: E402
from deepcam_hvd.cosmoflow.data.dataset import explain_error, read_dataset  # noqa: E402
from deepcam_hvd.cosmoflow.data.tensors import message_from_error  # noqa: E402
from deepcam_hvd.errors import DataError  # noqa: E402

CUBE = 8


def sample(seed: int = 0, cube: int = CUBE) -> tuple[np.ndarray, np.ndarray]:
    """Random counts and parameters."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 300, size=(cube, cube, cube, 4)).astype(np.int16)
    return x, rng.uniform(-1, 1, 4).astype(np.float32)


def write_example(path: Path, feature: dict, compression: str = "GZIP") -> Path:
    """Write one hand-made Example (any features) as a TFRecord file."""
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    with tf.io.TFRecordWriter(str(path), options=compression) as writer:
        writer.write(example.SerializeToString())
    return path


def bytes_feature(raw: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw]))


def float_feature(values: list[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_round_trip(tmp_path: Path, compression: str) -> None:
    x, y = sample()
    path = tmp_path / "a.tfrecord"
    size = tfrecord.write_sample(path, x, y, compression)
    assert size == path.stat().st_size > 0
    assert tfrecord.detect_compression(path) == ("GZIP" if compression == "gzip" else "")
    got_x, got_y = tfrecord.read_sample(path)
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    assert got_x.dtype == np.int16 and got_y.dtype == np.float32


def test_layout_is_the_reference_one(tmp_path: Path) -> None:
    """gzip file, one record: an Example with x = C-order little-endian int16 bytes, y = 4
    floats (what the reference's prepare.py writes and data/cosmo.py reads)."""
    x, y = sample(1)
    path = tmp_path / "a.tfrecord"
    tfrecord.write_sample(path, x, y, "gzip")
    blob = gzip.decompress(path.read_bytes())
    length = int.from_bytes(blob[:8], "little")
    assert len(blob) == 8 + 4 + length + 4  # exactly one record
    example = tf.train.Example.FromString(blob[12 : 12 + length])
    features = example.features.feature
    assert sorted(features) == ["x", "y"]
    assert features["x"].bytes_list.value[0] == x.astype("<i2").tobytes(order="C")
    assert list(features["y"].float_list.value) == y.tolist()


@pytest.mark.parametrize("apply_log", [True, False])
def test_parse_example_scales_as_the_reference(tmp_path: Path, apply_log: bool) -> None:
    x, y = sample(2)
    path = tmp_path / "a.tfrecord"
    tfrecord.write_sample(path, x, y)
    record = next(iter(tf.data.TFRecordDataset(str(path), "GZIP")))
    got_x, got_y = tfrecord.parse_example(record, CUBE, apply_log=apply_log)
    counts = x.astype(np.float32)
    want = np.log(counts + np.float32(1)) if apply_log else counts / counts.mean()
    np.testing.assert_allclose(got_x.numpy(), want, rtol=1e-6)
    np.testing.assert_array_equal(got_y.numpy(), y)


def _corrupt(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _two_records(path: Path) -> None:
    x, y = sample()
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(tfrecord.encode_example(x, y))
        writer.write(tfrecord.encode_example(x, y))


def _empty(path: Path) -> None:
    with tf.io.TFRecordWriter(str(path), options="GZIP"):
        pass


def _wrong_cube(path: Path) -> None:
    x, y = sample(cube=4)
    tfrecord.write_sample(path, x, y)


def _odd_size(path: Path) -> None:
    write_example(path, {"x": bytes_feature(b"\0" * 24), "y": float_feature([0.0] * 4)})


def _nan_y(path: Path) -> None:
    x, _ = sample()
    write_example(path, {"x": bytes_feature(x.tobytes()),
                         "y": float_feature([0.1, float("nan"), 0.2, 0.3])})


def _three_y(path: Path) -> None:
    x, _ = sample()
    write_example(path, {"x": bytes_feature(x.tobytes()), "y": float_feature([0.1, 0.2, 0.3])})


def _no_x(path: Path) -> None:
    write_example(path, {"y": float_feature([0.1, 0.2, 0.3, 0.4])})


def _no_y(path: Path) -> None:
    x, _ = sample()
    write_example(path, {"x": bytes_feature(x.tobytes())})


def _negative(path: Path) -> None:
    x, y = sample()
    x[1, 2, 3, 0] = -5
    write_example(path, {"x": bytes_feature(x.tobytes()), "y": float_feature(y.tolist())})


def _not_example(path: Path) -> None:
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        writer.write(b"\xff\xff\xff not a protocol buffer")


BAD: dict[str, tuple[Callable[[Path], None], str, int | None]] = {
    # name: (how to spoil the file, what the message says, cube given to the reader)
    "corrupt": (_corrupt, "corrupt or truncated gzip TFRecord", None),
    "truncated": (_truncate, "corrupt or truncated gzip TFRecord", None),
    "two records": (_two_records, "holds 2 records, expected one sample per file", None),
    "no record": (_empty, "holds 0 records", None),
    "wrong cube": (_wrong_cube, "x holds 512 bytes, expected 4096 (8^3 x 4 int16)", CUBE),
    "not a cube": (_odd_size, "x holds 24 bytes, which is not cube^3 x 4 int16", None),
    "nan y": (_nan_y, "y holds NaN or Inf", None),
    "three y": (_three_y, "feature 'y' must hold 4 floats, it holds 3", None),
    "missing x": (_no_x, "missing feature 'x'", None),
    "missing y": (_no_y, "missing feature 'y'", None),
    "negative": (_negative, "x holds negative counts (min -5)", None),
    "not an Example": (_not_example, "the record is not a tf.train.Example", None),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_file_is_named_on_one_line(tmp_path: Path, name: str) -> None:
    spoil, message, cube = BAD[name]
    path = tmp_path / "bad.tfrecord"
    x, y = sample()
    tfrecord.write_sample(path, x, y)
    spoil(path)
    with pytest.raises(DataError) as info:
        tfrecord.read_sample(path, cube)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.tfrecord: No such file"):
        tfrecord.read_sample(tmp_path / "missing.tfrecord")


def test_writer_refuses_bad_arrays(tmp_path: Path) -> None:
    x, y = sample()
    path = tmp_path / "a.tfrecord"
    with pytest.raises(DataError, match="x has dtype int32, expected int16"):
        tfrecord.write_sample(path, x.astype(np.int32), y)
    with pytest.raises(DataError, match=r"x has shape \(8, 8, 4, 4\)"):
        tfrecord.write_sample(path, x[:, :, :4], y)
    with pytest.raises(DataError, match="y holds NaN or Inf"):
        tfrecord.write_sample(path, x, np.array([0, np.inf, 0, 0], np.float32))
    with pytest.raises(DataError, match="compression 'zip' unknown"):
        tfrecord.write_sample(path, x, y, "zip")
    assert not path.exists()


# In the pipeline: a failed assertion names the file itself; a file TensorFlow cannot read is
# found by explain_error, which checks the files.
PIPELINE = {
    "wrong cube": "x holds 512 bytes, expected 4096 (8^3 x 4 int16)",
    "nan y": "y holds NaN or Inf",
    "three y": "y holds 3 values, expected 4",
    "missing x": "missing feature 'x'",
    "missing y": "missing feature 'y'",
    "no record": "holds no record",
    "corrupt": "corrupt or truncated gzip TFRecord",
    "truncated": "corrupt or truncated gzip TFRecord",
    "not an Example": "the record is not a tf.train.Example",
}
NAMED_BY_ASSERTION = {"wrong cube", "nan y", "three y", "missing x", "missing y", "no record"}


@pytest.mark.parametrize("name", list(PIPELINE))
def test_pipeline_error_names_the_file(tmp_path: Path, name: str) -> None:
    files = []
    for i in range(3):
        x, y = sample(i)
        files.append(tmp_path / f"s{i}.tfrecord")
        tfrecord.write_sample(files[-1], x, y)
    BAD[name][0](files[1])
    # TensorFlow raises UnicodeDecodeError for an error message that quotes binary garbage.
    with pytest.raises((tf.errors.OpError, UnicodeDecodeError)) as info:
        for _ in read_dataset(files, 1, CUBE):
            pass
    named = message_from_error(info.value)
    if name in NAMED_BY_ASSERTION:
        assert named == f"{files[1]}: {PIPELINE[name]}"
    else:
        assert named is None
    error = explain_error(info.value, files, CUBE)
    assert str(error).startswith(f"{files[1]}: {PIPELINE[name]}") and "\n" not in str(error)


def test_explain_error_without_a_bad_file(tmp_path: Path) -> None:
    x, y = sample()
    path = tmp_path / "a.tfrecord"
    tfrecord.write_sample(path, x, y)
    error = explain_error(tf.errors.UnknownError(None, None, "{{node x}} boom [Op:Foo]"), [path])
    assert str(error) == "reading the data failed: boom"
