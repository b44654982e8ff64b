"""Fixtures for the job tests that really train CosmoFlow: a tiny synthetic data root."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.launch import DEEPCAM


def horovod_tf_missing() -> str:
    """Why CosmoFlow cannot train on several ranks here ("" when it can)."""
    try:
        from deepcam_hvd.cosmoflow.runtime import horovod_tf_build
    except ImportError as exc:  # no TensorFlow in this environment (see setup.cfg)
        return f"CosmoFlow needs TensorFlow: {exc}"
    build = horovod_tf_build()
    return "" if build["installed"] else f"no Horovod TensorFlow extension: {build['error']}"


@pytest.fixture(scope="session")
def cosmo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training + 4 validation synthetic 32^3 universes (the smallest cube the network
    takes), written by one process; skips where CosmoFlow cannot run distributed."""
    why = horovod_tf_missing()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("cosmo-jobs") / "root"
    proc = subprocess.run([DEEPCAM, "cosmoflow", "data", "synth", "--output", str(root),
                           "--cube", "32", "--train", "8", "--validation", "4", "--seed", "5"],
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr
    assert len(list((root / "train").glob("*.tfrecord"))) == 8
    return root
