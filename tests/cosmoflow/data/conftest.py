"""Fixtures for the CosmoFlow data tests: small synthetic roots and the reference's reader.

Tests here need TensorFlow; each test module skips itself where it is not installed.
"""

from __future__ import annotations

import ast
import functools
import glob
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REFERENCE = Path(os.environ.get("DEEPCAM_COSMOFLOW_REFERENCE", "/tmp/cosmo-ref/cosmoflow"))

#: A synthetic root factory: ``make(train, validation, cube=16, seed=7, compression="gzip",
#: fmt="tfrecord")``; each root is made once per session and must not be modified.
CosmoRoot = Callable[..., Path]


@pytest.fixture(scope="session")
def cosmo_root(tmp_path_factory: pytest.TempPathFactory) -> CosmoRoot:
    """Factory for small synthetic CosmoFlow roots (train/, validation/), shared read-only."""
    made: dict[tuple[Any, ...], Path] = {}

    def make(train: int, validation: int, cube: int = 16, seed: int = 7,
             compression: str = "gzip", fmt: str = "tfrecord") -> Path:
        from deepcam_hvd.cosmoflow.data.synth import synthesize

        key = (train, validation, cube, seed, compression, fmt)
        if key not in made:
            root = tmp_path_factory.mktemp(f"cosmo-{train}-{validation}-{cube}-{fmt}")
            synthesize(root, train, validation, cube=cube, seed=seed, compression=compression,
                       fmt=fmt)
            made[key] = root
        return made[key]

    return make


@pytest.fixture(scope="session")
def reference_data() -> dict[str, Any]:
    """``_parse_data`` and ``construct_dataset`` of the reference's ``data/cosmo.py``.

    That module imports Horovod and the reference's own packages at the top, so only these two
    functions are compiled from its source, beside the modules they use.
    """
    import tensorflow as tf

    source = REFERENCE / "data" / "cosmo.py"
    if not source.is_file():
        pytest.skip(f"no CosmoFlow reference at {source} (set DEEPCAM_COSMOFLOW_REFERENCE)")
    wanted = {"_parse_data", "construct_dataset"}
    tree = ast.parse(source.read_text())
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {n.name for n in body} == wanted, f"{source} no longer defines {sorted(wanted)}"
    namespace: dict[str, Any] = {"tf": tf, "np": np, "os": os, "glob": glob,
                                 "logging": logging, "partial": functools.partial}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(source), "exec"), namespace)
    return namespace
