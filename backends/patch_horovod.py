"""Patch an unpacked Horovod 0.28.1 source tree so it builds and runs with current tools.

Each fix is a literal text replacement that must match exactly once; a miss aborts the
install with the file and the anchor that was not found, so a different Horovod release
fails loudly instead of building something half-patched.

Why each fix exists:

1. C++17 everywhere.  PyTorch >= 2.1 headers refuse anything older than C++17, and
   Horovod 0.28.1 compiles its torch extension as C++14.  Switching only the torch
   extension is not enough: the bundled gloo (C++11 flags) then defines
   ``gloo::rendezvous::Store::kDefaultTimeout`` differently from the C++17 objects and the
   link fails with "multiple definition".  So the top level, the torch extension and gloo
   all move to C++17.
2. MPICH 4 detection.  ``horovodrun --mpi`` asks ``mpirun --version`` which MPI it is.
   MPICH 4's Hydra prints "HYDRA build details" without the word MPICH, so Horovod gives up
   with "unknown MPI".  Hydra is MPICH's launcher, so treat it as MPICH.
"""

from __future__ import annotations

import sys
from pathlib import Path

PATCHES: list[tuple[str, str, str]] = [
    ("CMakeLists.txt", "set(CMAKE_CXX_STANDARD 14)", "set(CMAKE_CXX_STANDARD 17)"),
    (
        "horovod/torch/CMakeLists.txt",
        "    set(CMAKE_CXX_STANDARD 14)",
        "    set(CMAKE_CXX_STANDARD 17)",
    ),
    (
        "third_party/gloo/CMakeLists.txt",
        '"${CMAKE_CXX_FLAGS} -std=c++11 -fPIC"',
        '"${CMAKE_CXX_FLAGS} -std=c++17 -fPIC"',
    ),
    (
        "horovod/runner/mpi_run.py",
        "elif 'MPICH' in output:",
        "elif 'MPICH' in output or 'HYDRA' in output:",
    ),
]


def apply(root: Path) -> None:
    """Apply every patch to the source tree at ``root``; exit with a message on a miss."""
    for rel, old, new in PATCHES:
        path = root / rel
        text = path.read_text()
        if text.count(old) != 1:
            if new in text:
                continue  # already patched: keep the step idempotent
            sys.exit(f"patch_horovod: {path}: expected exactly one '{old}', "
                     f"found {text.count(old)} (is this Horovod 0.28.1?)")
        path.write_text(text.replace(old, new))
        print(f"patch_horovod: patched {rel}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: patch_horovod.py HOROVOD_SOURCE_DIR")
    apply(Path(sys.argv[1]))
