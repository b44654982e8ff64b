"""Evict the data set from the page cache before a run (MLPerf: "flush caches before each run").

Without root the only per-file tool is ``posix_fadvise(POSIX_FADV_DONTNEED)``; it drops the
clean pages of a file, so each file is first synced. Whether the pages really left is then
checked with ``mincore`` on a mapping of the file, because fadvise succeeds silently where it
cannot evict (tmpfs, ``/dev/shm``, some network file systems): a cache clear is only logged
when it happened. As root, the node's whole page cache is dropped as well.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

from deepcam_hvd.distributed.agreement import run_agreed
from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.errors import DataError

from .layout import list_split, stats_path

_PAGE = mmap.PAGESIZE
_DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    return libc


def resident_pages(path: str | os.PathLike[str]) -> int:
    """How many pages of ``path`` are in the page cache now (mincore over a mapping)."""
    libc = _libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        length = os.fstat(fd).st_size
        if length == 0:
            return 0
        addr = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap failed", str(path))
        try:
            pages = (length + _PAGE - 1) // _PAGE
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, length, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed", str(path))
            return sum(b & 1 for b in vec)
        finally:
            libc.munmap(addr, length)
    finally:
        os.close(fd)


def evict_file(path: str | os.PathLike[str]) -> None:
    """Drop ``path`` from the page cache; DataError naming the file if its pages stay."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages (a file just written) survive DONTNEED
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        left = resident_pages(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot evict from the page cache ({exc.strerror or exc})"
                        ) from None
    if left:
        raise DataError(f"{path}: {left} page(s) stay in the page cache after "
                        "posix_fadvise(DONTNEED) (tmpfs or a file system that ignores it); "
                        "leave out --clear_cache or read the data from another file system")


def data_files(root: str | os.PathLike[str]) -> list[Path]:
    """Every file of the data root that a run reads: samples of each split and stats.h5."""
    files = [stats_path(root)]
    for split in ("train", "validation"):
        listed = list_split(root, split, use_manifest=False)
        for name in listed.names:
            files.extend(listed.paths(name))
    return files


def drop_node_caches() -> bool:
    """As root, drop the whole page cache of this node; False where that is not allowed."""
    if os.geteuid() != 0:
        return False
    try:
        os.sync()
        _DROP_CACHES.write_text("1\n")
    except OSError:
        return False  # e.g. a container's read-only /proc/sys
    return True


def clear_page_cache(root: str | os.PathLike[str], backend: Backend) -> int:
    """Collective: evict every data file on every node; returns how many files were evicted.

    The ranks of a node split the files (local rank l takes files l, l + local_size, ...);
    local rank 0 also drops the node's cache when running as root. Any rank's failure fails
    every rank with the file it names.
    """
    def evict_mine() -> int:
        files = data_files(root)
        if backend.local_rank == 0:
            drop_node_caches()
        for path in files[backend.local_rank::backend.local_size]:
            evict_file(path)
        return len(files)

    evicted = run_agreed(backend, evict_mine)
    assert evicted is not None
    return evicted
