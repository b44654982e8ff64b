"""Where things live in a CAM5 data root: split folders, sample files, HDF5 keys, stats.h5.

A data root holds ``train/``, ``validation/`` (and optionally ``test/``) with one sample per
file, and ``stats.h5``. Samples come in two forms:

* ``hdf5``: ``<name>.h5`` with ``climate/data`` (H, W, 16) float32 and ``climate/labels_0``
  (H, W);
* ``npy`` (written by ``deepcam-hvd data convert``): ``<name>-data.npy`` (H, W, 16) float32 and
  ``<name>-label.npy`` (H, W).

A sample's *name* is its file name without the form's suffix; it is the same in both forms.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from deepcam_hvd.errors import DataError
from deepcam_hvd.files import write_text_atomic
from deepcam_hvd.workloads.deepcam import CHANNEL_NAMES

SampleFormat = Literal["hdf5", "npy"]

DATA_KEY = "climate/data"
LABEL_KEY = "climate/labels_0"
STATS_FILE = "stats.h5"
STATS_GROUP = "climate"
STATS_KEYS = ("minval", "maxval", "count", "mean", "sqmean")

SPLITS = ("train", "validation", "test")
HDF5_SUFFIX = ".h5"
NPY_DATA_SUFFIX = "-data.npy"
NPY_LABEL_SUFFIX = "-label.npy"

CHANNEL = {name: index for index, name in enumerate(CHANNEL_NAMES)}


MANIFEST_FILE = "stage.json"


@dataclass(frozen=True)
class StageInfo:
    """How a staged root was filled (from its ``stage.json``).

    ``mode`` 'full': every file of the split is there. 'share': only the files of the ranks
    that staged into this folder, for ``size`` ranks and ``seed`` (see ``sharding.local_share``).
    """

    mode: str
    size: int
    seed: int
    source: str


@dataclass(frozen=True)
class SplitFiles:
    """The samples of one split: their folder, form and names (sorted, so equal on all ranks).

    For a staged root the names are the whole split's (from ``stage.json``), of which only
    this node's share may be present; ``staged`` then says how it was staged.
    """

    directory: Path
    fmt: SampleFormat
    names: tuple[str, ...]
    staged: StageInfo | None = None

    def __len__(self) -> int:
        return len(self.names)

    def paths(self, name: str) -> tuple[Path, ...]:
        """The file(s) holding sample ``name``: (h5,) or (data.npy, label.npy)."""
        return sample_paths(self.directory, name, self.fmt)

    def primary(self, name: str) -> Path:
        """The file that identifies sample ``name`` (the .h5, or the -data.npy)."""
        return self.paths(name)[0]


def split_dir(root: str | os.PathLike[str], split: str) -> Path:
    """Folder of ``split`` under data root ``root``."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}': choose one of {', '.join(SPLITS)}")
    return Path(root) / split


def stats_path(root: str | os.PathLike[str]) -> Path:
    """Path of ``stats.h5`` under data root ``root``."""
    return Path(root) / STATS_FILE


def sample_paths(directory: Path, name: str, fmt: SampleFormat) -> tuple[Path, ...]:
    """The file(s) of sample ``name`` in ``directory`` for form ``fmt``."""
    if fmt == "hdf5":
        return (directory / f"{name}{HDF5_SUFFIX}",)
    return (directory / f"{name}{NPY_DATA_SUFFIX}", directory / f"{name}{NPY_LABEL_SUFFIX}")


def detect_format(directory: Path) -> SampleFormat:
    """Which sample form ``directory`` holds; DataError if none or both."""
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory")
    entries = os.listdir(directory)
    has_h5 = any(e.endswith(HDF5_SUFFIX) for e in entries)
    has_npy = any(e.endswith(NPY_DATA_SUFFIX) for e in entries)
    if has_h5 and has_npy:
        raise DataError(f"{directory}: holds both .h5 and -data.npy samples; keep one form")
    if has_h5:
        return "hdf5"
    if has_npy:
        return "npy"
    raise DataError(f"{directory}: no samples (*.h5 or *-data.npy)")


def read_manifest(root: str | os.PathLike[str]) -> dict | None:
    """The ``stage.json`` of a staged root, or None if ``root`` was not staged."""
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
            raise ValueError("no 'splits' table")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable stage manifest ({exc})") from None
    return manifest


def write_manifest(root: str | os.PathLike[str], manifest: dict) -> None:
    """Write ``stage.json`` into ``root`` atomically (several ranks may write the same one)."""
    write_text_atomic(Path(root) / MANIFEST_FILE, json.dumps(manifest, indent=1, sort_keys=True))


def _staged_split(root: str | os.PathLike[str], split: str) -> SplitFiles | None:
    manifest = read_manifest(root)
    if manifest is None or split not in manifest["splits"]:
        return None
    entry = manifest["splits"][split]
    try:
        info = StageInfo(
            mode=str(entry["mode"]),
            size=int(manifest["size"]),
            seed=int(manifest["seed"]),
            source=str(manifest["source"]),
        )
        fmt = entry["fmt"]
        names = tuple(str(n) for n in entry["names"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{Path(root) / MANIFEST_FILE}: bad entry for {split} ({exc})") from None
    if fmt not in ("hdf5", "npy") or not names:
        raise DataError(f"{Path(root) / MANIFEST_FILE}: bad entry for {split}")
    return SplitFiles(directory=split_dir(root, split), fmt=fmt, names=names, staged=info)


def list_split(
    root: str | os.PathLike[str],
    split: str,
    fmt: SampleFormat | None = None,
    use_manifest: bool = True,
) -> SplitFiles:
    """Sorted sample names of ``split`` under ``root``; the form is detected unless given.

    In a staged root (with ``stage.json``) the names are the whole split's, from the manifest,
    unless ``use_manifest`` is False (then: the files actually present). For the npy form, a
    ``-data.npy`` without its ``-label.npy`` is a DataError.
    """
    if use_manifest:
        staged = _staged_split(root, split)
        if staged is not None:
            return staged
    directory = split_dir(root, split)
    fmt = fmt or detect_format(directory)
    entries = os.listdir(directory)
    if fmt == "hdf5":
        names = sorted(e[: -len(HDF5_SUFFIX)] for e in entries if e.endswith(HDF5_SUFFIX))
    else:
        names = sorted(e[: -len(NPY_DATA_SUFFIX)] for e in entries if e.endswith(NPY_DATA_SUFFIX))
        present = set(entries)
        for name in names:
            if f"{name}{NPY_LABEL_SUFFIX}" not in present:
                raise DataError(f"{directory / (name + NPY_DATA_SUFFIX)}: no matching label file")
    if not names:
        raise DataError(f"{directory}: no {fmt} samples")
    return SplitFiles(directory=directory, fmt=fmt, names=tuple(names))


def present_splits(root: str | os.PathLike[str]) -> list[str]:
    """The splits that exist as folders under ``root``, in the order of SPLITS."""
    return [s for s in SPLITS if (Path(root) / s).is_dir()]


_SPLIT_START_YEAR = {"train": 2106, "validation": 2206, "test": 2306}
_SLOTS_PER_DAY = 8


def synthetic_name(split: str, index: int) -> str:
    """Name of synthetic sample ``index`` of ``split``, shaped like the real ``data-...`` names.

    Real names are ``data-YYYY-MM-DD-01-1_N``; here day and slot ``N`` (0..7) count up from a
    split-specific year, so names never clash between splits and sort in index order.
    """
    if index < 0:
        raise DataError(f"sample index must be >= 0, got {index}")
    start = _dt.date(_SPLIT_START_YEAR[split], 1, 1)
    day = start + _dt.timedelta(days=index // _SLOTS_PER_DAY)
    return f"data-{day.isoformat()}-01-1_{index % _SLOTS_PER_DAY}"
