"""Reading one sample (HDF5 or npy form) into normalised CHW float32 and HW int64 arrays.

Contiguous, uncompressed arrays (the usual CAM5 file, and every npy file) are located once
through h5py / the npy header and then read with plain ``readinto`` calls, which release the GIL
and skip h5py's global lock, so several reader threads really read in parallel. Chunked or
compressed (gzip, lzf, ...) datasets go through h5py, which serialises them under its lock.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from deepcam_hvd.errors import DataError

from .layout import DATA_KEY, LABEL_KEY, SampleFormat, SplitFiles
from .normalize import Normalizer


@dataclass(frozen=True)
class _Extent:
    """Where a contiguous array lies in a file: byte offset, shape, dtype."""

    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _buffer(shape: tuple[int, ...], dtype: np.dtype, scratch: np.ndarray | None) -> np.ndarray:
    """``scratch`` if it has this shape and dtype (reusing it spares page faults), else new."""
    if scratch is not None and scratch.shape == tuple(shape) and scratch.dtype == dtype:
        return scratch
    return np.empty(shape, dtype=dtype)


def _read_extent(
    path: Path, extent: _Extent, what: str, scratch: np.ndarray | None = None
) -> np.ndarray:
    """Read ``extent`` of ``path`` with plain file reads (no h5py), into ``scratch`` if it fits."""
    out = _buffer(extent.shape, extent.dtype, scratch)
    view = memoryview(out).cast("B")
    try:
        with open(path, "rb", buffering=0) as fh:
            fh.seek(extent.offset)
            done = 0
            while done < len(view):
                n = fh.readinto(view[done:])
                if not n:
                    raise DataError(f"{path}: file ends inside {what} (truncated)")
                done += n
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({_first_line(exc)})") from None
    return out


def _check_kind(path: Path, what: str, dtype: np.dtype, kinds: str) -> None:
    if dtype.kind not in kinds:
        raise DataError(f"{path}: {what} has unsupported dtype {dtype}")


def _dataset(f: h5py.File, key: str, path: Path) -> h5py.Dataset:
    try:
        obj = f.get(key)
    except (KeyError, OSError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot read {key} ({_first_line(exc)})") from None
    if obj is None:
        raise DataError(f"{path}: missing key {key}")
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{path}: {key} is not a dataset")
    return obj


def _locate_or_read(
    ds: h5py.Dataset, path: Path, key: str, scratch: np.ndarray | None = None
) -> _Extent | np.ndarray:
    """The extent of a plain contiguous dataset, or else its contents read through h5py."""
    if ds.chunks is None and ds.compression is None and ds.dtype.isnative and ds.size > 0:
        offset = ds.id.get_offset()
        if offset is not None:
            return _Extent(int(offset), tuple(ds.shape), np.dtype(ds.dtype))
    out = _buffer(ds.shape, np.dtype(ds.dtype), scratch)
    try:
        if ds.size:
            ds.read_direct(out)
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: cannot read {key} ({_first_line(exc)})") from None
    return out


def read_hdf5(
    path: str | os.PathLike[str], scratch: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one HDF5 sample: (data (H, W, C), label (H, W)), both in their stored dtypes.

    Checks keys, kinds of dtype (float data; integer or float labels) and shapes. The data
    goes into ``scratch`` when its shape and dtype fit (the result then shares its memory).
    """
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open as HDF5 ({_first_line(exc)})") from None
    with f:
        data_ds = _dataset(f, DATA_KEY, path)
        label_ds = _dataset(f, LABEL_KEY, path)
        _check_kind(path, DATA_KEY, data_ds.dtype, "f")
        _check_kind(path, LABEL_KEY, label_ds.dtype, "iuf")
        if data_ds.ndim != 3:
            raise DataError(f"{path}: {DATA_KEY} has shape {data_ds.shape}, expected (H, W, C)")
        if tuple(label_ds.shape) != tuple(data_ds.shape[:2]):
            raise DataError(
                f"{path}: {LABEL_KEY} has shape {label_ds.shape}, expected {data_ds.shape[:2]}"
            )
        data = _locate_or_read(data_ds, path, DATA_KEY, scratch)
        label = _locate_or_read(label_ds, path, LABEL_KEY)
    if isinstance(data, _Extent):
        data = _read_extent(path, data, DATA_KEY, scratch)
    if isinstance(label, _Extent):
        label = _read_extent(path, label, LABEL_KEY)
    return data, label


def _npy_extent(path: Path) -> _Extent | np.ndarray:
    """Parse an npy header: the extent of its array, or (Fortran order) the array itself."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a valid .npy file ({_first_line(exc)})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: holds Python objects, expected a numeric array")
    if fortran or not dtype.isnative:
        try:
            return np.ascontiguousarray(np.load(path, allow_pickle=False)).astype(
                dtype.newbyteorder("="), copy=False
            )
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a valid .npy file ({_first_line(exc)})") from None
    return _Extent(offset, tuple(shape), np.dtype(dtype))


def read_npy(
    data_path: str | os.PathLike[str],
    label_path: str | os.PathLike[str],
    scratch: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read one npy sample: (data (H, W, C), label (H, W)), both in their stored dtypes.

    The data goes into ``scratch`` when its shape and dtype fit.
    """
    data_path, label_path = Path(data_path), Path(label_path)
    arrays = []
    for path, what, kinds in ((data_path, "data", "f"), (label_path, "label", "iuf")):
        loc = _npy_extent(path)
        _check_kind(path, what, loc.dtype, kinds)
        if isinstance(loc, _Extent):
            size = os.path.getsize(path)
            if loc.offset + int(np.prod(loc.shape)) * loc.dtype.itemsize > size:
                raise DataError(f"{path}: file ends inside the {what} array (truncated)")
            loc = _read_extent(path, loc, what, scratch if what == "data" else None)
        arrays.append(loc)
    data, label = arrays
    if data.ndim != 3:
        raise DataError(f"{data_path}: data has shape {data.shape}, expected (H, W, C)")
    if label.shape != data.shape[:2]:
        raise DataError(f"{label_path}: label has shape {label.shape}, expected {data.shape[:2]}")
    return data, label


def read_stored(
    paths: tuple[Path, ...], fmt: SampleFormat, scratch: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one sample of form ``fmt`` from its file(s) exactly as stored (any float/int dtype).

    The data goes into ``scratch`` when its shape and dtype fit.
    """
    if fmt == "hdf5":
        return read_hdf5(paths[0], scratch)
    return read_npy(paths[0], paths[1], scratch)


def read_raw(
    paths: tuple[Path, ...], fmt: SampleFormat, scratch: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one sample, unnormalised: (data (H, W, C) float32, label (H, W) int64)."""
    data, label = read_stored(paths, fmt, scratch)
    return data.astype(np.float32, copy=False), label.astype(np.int64, copy=False)


def peek_shape(split: SplitFiles) -> tuple[int, int, int]:
    """(H, W, C) of the first sample of ``split`` present here (a staged root may hold a share)."""
    for name in split.names:
        paths = split.paths(name)
        if all(p.is_file() for p in paths):
            data, _ = read_raw(paths, split.fmt)
            return (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]))
    raise DataError(f"{split.directory}: none of the {len(split.names)} samples is present")


class SampleReader:
    """Reads samples of one split into normalised (C', H, W) float32 and (H, W) int64.

    Every sample must have shape ``shape`` (H, W, C) with C the channel count of the stats;
    any other is a DataError naming the file. Each thread that reads keeps one raw (H, W, C)
    buffer and reuses it from sample to sample.
    """

    def __init__(
        self, split: SplitFiles, normalizer: Normalizer, shape: tuple[int, int, int] | None = None
    ) -> None:
        self.split = split
        self.normalizer = normalizer
        self.skip_bad = False
        self.skipped: list[str] = []
        self._local = threading.local()
        self._skip_lock = threading.Lock()
        self.shape = tuple(shape) if shape is not None else peek_shape(split)
        if self.shape[2] != normalizer.num_input_channels:
            raise DataError(
                f"{split.directory}: samples have {self.shape[2]} channels but the stats "
                f"describe {normalizer.num_input_channels}"
            )

    def _scratch(self) -> np.ndarray:
        buf = getattr(self._local, "buffer", None)
        if buf is None:
            buf = self._local.buffer = np.empty(self.shape, dtype=np.float32)
        return buf

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(C', H, W) of the normalised data."""
        return (len(self.normalizer.channels), self.shape[0], self.shape[1])

    def read_into(self, index: int, data_out: np.ndarray, label_out: np.ndarray) -> str:
        """Read sample ``index`` of the split into ``data_out`` (C', H, W) and ``label_out``.

        Returns the sample's file path (the .h5 or -data.npy). With ``skip_bad`` set, an
        unreadable or invalid sample is reported, counted in ``skipped`` and replaced by the
        next readable sample of the split.
        """
        if not self.skip_bad:
            return self._read_checked(index, data_out, label_out)
        n = len(self.split.names)
        for attempt in range(n):
            try:
                return self._read_checked((index + attempt) % n, data_out, label_out)
            except DataError as exc:
                with self._skip_lock:
                    self.skipped.append(str(exc))
                print(f"deepcam-hvd: warning: skipping {exc} ({len(self.skipped)} skipped "
                      "so far)", file=sys.stderr, flush=True)
        raise DataError(f"{self.split.directory}: no readable sample left to replace "
                        f"{self.split.names[index]}")

    def _read_checked(self, index: int, data_out: np.ndarray, label_out: np.ndarray) -> str:
        name = self.split.names[index]
        paths = self.split.paths(name)
        data, label = read_raw(paths, self.split.fmt, self._scratch())
        if data.shape != self.shape:
            raise DataError(f"{paths[0]}: data has shape {data.shape}, expected {self.shape}")
        self.normalizer.apply(data, data_out)
        if not np.isfinite(data_out).all():  # ~10 ms at full size: nothing next to a step
            raise DataError(f"{paths[0]}: data holds NaN or Inf")
        label_out[...] = label
        low, high = int(label_out.min()), int(label_out.max())
        if low < 0 or high > 2:
            raise DataError(f"{paths[-1]}: labels outside {{0, 1, 2}} (min {low}, max {high})")
        return str(paths[0])

    def read(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        """Sample ``index`` as (data (C', H, W) float32, label (H, W) int64, file path)."""
        data = np.empty(self.output_shape, dtype=np.float32)  # numpy: huge pages, see batches
        label = np.empty(self.shape[:2], dtype=np.int64)
        filename = self.read_into(index, data, label)
        return torch.from_numpy(data), torch.from_numpy(label), filename
