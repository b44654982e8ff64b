"""Writing a file so that readers see the old one or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def temporary_name(path: Path) -> Path:
    """The hidden name beside ``path`` that a write goes to before it is renamed into place."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; once the block succeeds it replaces
    ``path`` in one rename, and if the block fails it is removed.

    ``durable`` also syncs the file and its directory, so the new file survives a crash.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` in one rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def prepare_output_dir(directory: Path) -> None:
    """Create ``directory`` and prove it writable (a probe file written and removed), so that a
    read-only or full output location fails at start, naming the path, not at a checkpoint."""
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f".write-test-{os.getpid()}"
    probe.write_text("ok")
    probe.unlink()


def save_npy(path: Path, array: np.ndarray) -> int:
    """Save ``array`` to ``path`` atomically (temporary file, then rename); return its size."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
    return path.stat().st_size


def copy_atomic(src: Path, dst: Path) -> int:
    """Copy file ``src`` to ``dst`` through a temporary name; return the bytes copied."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst.stat().st_size
