"""Fixtures shared by every test package: tiny synthetic DeepCAM data roots.

Markers (registered in pyproject.toml, ``--strict-markers``): ``multirank`` launches more than
one process (mpirun, horovodrun, a rendered job script), ``slurm`` needs the single-node Slurm
of ``backends/slurm/setup.sh``, ``slow`` takes more than ~20 s. The quick subset while editing:
``.venv/bin/python -m pytest -m "not multirank and not slurm and not slow"``.
"""

from __future__ import annotations

from collections.abc import Callable
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
