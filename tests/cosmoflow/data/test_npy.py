"""npy samples (``<name>-x.npy`` + ``<name>-y.npy``): round trip, pipeline, each bad file named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="CosmoFlow needs TensorFlow")

from deepcam_hvd.cosmoflow.data import npy  # noqa: E402
from deepcam_hvd.cosmoflow.data.dataset import explain_error, read_dataset  # noqa: E402
from deepcam_hvd.cosmoflow.data.layout import y_path  # noqa: E402
from deepcam_hvd.cosmoflow.data.tensors import message_from_error  # noqa: E402
from deepcam_hvd.errors import DataError  # noqa: E402

from .test_tfrecord import CUBE, sample  # noqa: E402


def write(directory: Path, name: str, seed: int = 0) -> Path:
    """One good npy sample; returns its ``-x.npy`` path."""
    x, y = sample(seed)
    path = directory / f"{name}-x.npy"
    npy.write_sample(path, x, y)
    return path


def test_round_trip_and_layout(tmp_path: Path) -> None:
    x, y = sample(3)
    path = tmp_path / "u-x.npy"
    size = npy.write_sample(path, x, y)
    assert y_path(path) == tmp_path / "u-y.npy"
    assert size == path.stat().st_size + y_path(path).stat().st_size
    stored_x, stored_y = np.load(path), np.load(y_path(path))
    assert stored_x.dtype.str == "<i2" and stored_x.shape == (CUBE, CUBE, CUBE, 4)
    assert stored_x.flags.c_contiguous and stored_y.dtype.str == "<f4"
    got_x, got_y = npy.read_sample(path)
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)


@pytest.mark.parametrize("apply_log", [True, False])
def test_pipeline_reads_what_numpy_reads(tmp_path: Path, apply_log: bool) -> None:
    files = [write(tmp_path, f"s{i}", seed=i) for i in range(3)]
    batches = list(read_dataset(files, 3, CUBE, apply_log=apply_log))
    assert len(batches) == 1
    bx, by = batches[0]
    for i, path in enumerate(files):
        x, y = npy.read_sample(path)
        counts = x.astype(np.float32)
        want = np.log(counts + np.float32(1)) if apply_log else counts / counts.mean()
        np.testing.assert_allclose(bx[i].numpy(), want, rtol=1e-6)
        np.testing.assert_array_equal(by[i].numpy(), y)


def test_pipeline_reads_format_2_headers(tmp_path: Path) -> None:
    """npy format 2.0 keeps the header length in 4 bytes instead of 2."""
    x, y = sample(4)
    path = tmp_path / "v-x.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, x, version=(2, 0))
    np.save(y_path(path), y)
    (bx, by), = list(read_dataset([path], 1, CUBE))
    np.testing.assert_allclose(bx[0].numpy(), np.log1p(x.astype(np.float32)), rtol=1e-6)
    np.testing.assert_array_equal(by[0].numpy(), y)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not an npy file at all" * 10)


def _extra(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\0\0")


def _int32(path: Path) -> None:
    np.save(path, np.load(path).astype(np.int32))


def _fortran(path: Path) -> None:
    np.save(path, np.asfortranarray(np.load(path)))


def _small_cube(path: Path) -> None:
    np.save(path, np.load(path)[:4, :4, :4])


def _nan_y(path: Path) -> None:
    np.save(y_path(path), np.array([0.0, np.nan, 0.0, 0.0], np.float32))


def _no_y(path: Path) -> None:
    y_path(path).unlink()


def _negative(path: Path) -> None:
    x = np.load(path)
    x[0, 0, 0, 1] = -2
    np.save(path, x)


BAD: dict[str, tuple[Callable[[Path], None], str, bool]] = {
    # name: (how to spoil the sample, what the message says, whether it names the y file)
    "truncated": (_truncate, "not a complete .npy file", False),
    "garbage": (_garbage, "not a complete .npy file", False),
    "extra bytes": (_extra, "2 bytes after the array's data", False),
    "int32": (_int32, "dtype <i4, expected <i2", False),
    "fortran": (_fortran, "stored in Fortran order, expected C order", False),
    "wrong cube": (_small_cube, "shape (4, 4, 4, 4), expected (8, 8, 8, 4)", False),
    "nan y": (_nan_y, "y holds NaN or Inf", True),
    "missing y": (_no_y, "no such file", True),
    "negative": (_negative, "x holds negative counts (min -2)", False),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_sample_is_named_on_one_line(tmp_path: Path, name: str) -> None:
    spoil, message, names_y = BAD[name]
    path = write(tmp_path, "bad")
    spoil(path)
    with pytest.raises(DataError) as info:
        npy.read_sample(path, CUBE)
    named = y_path(path) if names_y else path
    text = str(info.value)
    assert text.startswith(f"{named}: ") and message in text and "\n" not in text


# What the pipeline asserts itself (the header's dtype and order are left to the check).
PIPELINE = {
    "truncated": (False, "holds 4086 data bytes, expected 4096"),
    "garbage": (False, "not an .npy file"),
    "extra bytes": (False, "holds 4098 data bytes, expected 4096"),
    "wrong cube": (False, "holds 512 data bytes, expected 4096"),
    "nan y": (True, "y holds NaN or Inf"),
}


@pytest.mark.parametrize("name", list(PIPELINE))
def test_pipeline_error_names_the_file(tmp_path: Path, name: str) -> None:
    files = [write(tmp_path, f"s{i}", seed=i) for i in range(3)]
    BAD[name][0](files[2])
    with pytest.raises(tf.errors.OpError) as info:
        for _ in read_dataset(files, 1, CUBE):
            pass
    names_y, message = PIPELINE[name]
    named = y_path(files[2]) if names_y else files[2]
    assert message_from_error(info.value) == f"{named}: {message}"
    assert str(explain_error(info.value, files, CUBE)) == f"{named}: {message}"


def test_missing_y_in_the_pipeline_is_explained(tmp_path: Path) -> None:
    files = [write(tmp_path, f"s{i}", seed=i) for i in range(2)]
    _no_y(files[0])
    with pytest.raises(tf.errors.NotFoundError) as info:
        for _ in read_dataset(files, 1, CUBE):
            pass
    assert str(explain_error(info.value, files, CUBE)) == f"{y_path(files[0])}: no such file"
