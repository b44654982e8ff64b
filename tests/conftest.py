"""Fixtures shared by every test package: tiny synthetic DeepCAM data roots.

Markers (registered in pyproject.toml, ``--strict-markers``): ``multirank`` launches more than
one process (mpirun, horovodrun, a rendered job script), ``slurm`` needs the single-node Slurm
of ``backends/slurm/setup.sh``, ``slow`` takes more than ~20 s. The quick subset while editing:
``.venv/bin/python -m pytest -m "not multirank and not slurm and not slow"``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

#: A data root factory: ``make(train, val, height=32, width=48, seed=5)``.
SynthRoot = Callable[..., Path]


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> SynthRoot:
    """Factory for synthetic data roots (train/, validation/, stats.h5), each made once per
    session for its arguments and shared: tests must not modify one (copy it first)."""
    made: dict[tuple[int, int, int, int, int], Path] = {}

    def make(train: int, val: int, height: int = 32, width: int = 48, seed: int = 5) -> Path:
        from deepcam_hvd.data.synth_dataset import synthesize_dataset  # imports torch
        from deepcam_hvd.distributed.local import LocalBackend

        key = (train, val, height, width, seed)
        if key not in made:
            root = tmp_path_factory.mktemp(f"synth-{train}-{val}-{height}x{width}-s{seed}")
            synthesize_dataset(root, LocalBackend(), train, val, height=height, width=width,
                               seed=seed)
            made[key] = root
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_root(synth_root: SynthRoot) -> Path:
    """The common tiny root: 8 train + 4 validation samples of 32x48, seed 5 (read-only)."""
    return synth_root(8, 4, height=32, width=48, seed=5)


#: Mounts a tmpfs of the given size (e.g. "3m") under the test's tmp dir; yields its path.
SmallDisk = Callable[[str], Path]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A factory for tiny file systems that fill up (skips the test without root); each is
    unmounted at the end of the test."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        path = tmp_path / f"small-{len(mounts)}"
        path.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode != 0:
            pytest.skip("needs root to mount a small tmpfs")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", str(path)], check=False)
