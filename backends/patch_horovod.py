"""Patch an unpacked Horovod 0.28.1 source tree so it builds and runs with current tools.

Each fix is a literal text replacement that must match exactly once; a miss aborts the
install with the file and the anchor that was not found, so a different Horovod release
fails loudly instead of building something half-patched.

Why each fix exists:

1. One C++ standard everywhere: C++17, or C++20 for PyTorch 2.14 and later.  PyTorch >= 2.1
   headers refuse anything older than C++17, and Horovod 0.28.1 compiles its torch
   extension as C++14.  Switching only the torch extension is not enough: the bundled gloo
   (C++11 flags) then defines ``gloo::rendezvous::Store::kDefaultTimeout`` differently from
   the C++17 objects and the link fails with "multiple definition".  So the top level, the
   torch extension and gloo all move together.  PyTorch 2.14's headers use
   ``std::strong_ordering`` (c10/util/intrusive_ptr.h), which needs C++20; the whole build
   then moves to C++20 (built and run against torch 2.14.1+cu130 with NCCL and Gloo).  Older
   torch keeps C++17, the standard every earlier build of ours used.
2. MPICH 4 detection.  ``horovodrun --mpi`` asks ``mpirun --version`` which MPI it is.
   MPICH 4's Hydra prints "HYDRA build details" without the word MPICH, so Horovod gives up
   with "unknown MPI".  Hydra is MPICH's launcher, so treat it as MPICH.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: The first PyTorch whose headers need C++20.
TORCH_NEEDING_CXX20 = (2, 14)


def patches(standard: int) -> list[tuple[str, str, str]]:
    """(file, text, replacement) of every fix, for C++ ``standard`` (17 or 20)."""
    return [
        ("CMakeLists.txt", "set(CMAKE_CXX_STANDARD 14)", f"set(CMAKE_CXX_STANDARD {standard})"),
        (
            "horovod/torch/CMakeLists.txt",
            "    set(CMAKE_CXX_STANDARD 14)",
            f"    set(CMAKE_CXX_STANDARD {standard})",
        ),
        (
            "third_party/gloo/CMakeLists.txt",
            '"${CMAKE_CXX_FLAGS} -std=c++11 -fPIC"',
            f'"${{CMAKE_CXX_FLAGS}} -std=c++{standard} -fPIC"',
        ),
        (
            "horovod/runner/mpi_run.py",
            "elif 'MPICH' in output:",
            "elif 'MPICH' in output or 'HYDRA' in output:",
        ),
    ]


def standard_for_torch(torch_version: str | None) -> int:
    """The C++ standard to build against ``torch_version`` (None: no torch): 20 from
    :data:`TORCH_NEEDING_CXX20` on, else 17."""
    if torch_version is None:
        return 17
    try:
        major, minor = (int(part) for part in torch_version.split("+")[0].split(".")[:2])
    except ValueError:
        sys.exit(f"patch_horovod: cannot read the torch version {torch_version!r}")
    return 20 if (major, minor) >= TORCH_NEEDING_CXX20 else 17


def installed_torch() -> str | None:
    """The version of the torch distribution this Python has, or None."""
    try:
        return version("torch")
    except PackageNotFoundError:
        return None


def apply(root: Path, standard: int = 17) -> None:
    """Apply every patch for C++ ``standard`` to the source tree at ``root``; exit with a
    message on a miss."""
    for rel, old, new in patches(standard):
        path = root / rel
        text = path.read_text()
        if text.count(old) != 1:
            if new in text:
                continue  # already patched: keep the step idempotent
            sys.exit(f"patch_horovod: {path}: expected exactly one '{old}', "
                     f"found {text.count(old)} (is this Horovod 0.28.1?)")
        path.write_text(text.replace(old, new))
        print(f"patch_horovod: patched {rel}")


def main(argv: list[str]) -> None:
    """``patch_horovod.py SRC [--cxx-standard 17|20]`` (default: what this Python's torch
    needs)."""
    parser = argparse.ArgumentParser(prog="patch_horovod.py")
    parser.add_argument("source", type=Path, help="the unpacked Horovod 0.28.1 source tree")
    parser.add_argument("--cxx-standard", type=int, choices=(17, 20), default=None,
                        help="default: 20 for the installed torch 2.14 or later, else 17")
    args = parser.parse_args(argv)
    torch_version = installed_torch()
    standard = args.cxx_standard or standard_for_torch(torch_version)
    print(f"patch_horovod: C++{standard} (torch {torch_version or 'not installed'})")
    apply(args.source, standard)


if __name__ == "__main__":
    main(sys.argv[1:])
