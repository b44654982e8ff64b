"""Checkpoint files: atomic write, checksum, retention, compatibility."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deepcam_hvd.errors import ConfigError, DataError
from deepcam_hvd.train.checkpoint import (
    MAGIC_NUMPY,
    check_compatible,
    checkpoint_path,
    latest_valid_checkpoint,
    list_checkpoints,
    load_checkpoint,
    plain_state,
    save_checkpoint,
)


def state(step: int) -> dict:
    return {"step": step, "model": {"w": torch.full((3,), float(step))}, "meta": {"model": "x"}}


def test_round_trip_and_retention(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        save_checkpoint(state(step), checkpoint_path(tmp_path, "model", step), keep=2)
    kept = list_checkpoints(tmp_path, "model")
    assert [p.name for p in kept] == ["model_step000000030.ckpt", "model_step000000040.ckpt"]
    loaded = load_checkpoint(kept[-1])
    assert loaded["step"] == 40 and torch.equal(loaded["model"]["w"], torch.full((3,), 40.0))
    assert not list(tmp_path.glob(".*tmp*"))


def test_corruption_is_detected_and_skipped(tmp_path: Path) -> None:
    good = save_checkpoint(state(1), checkpoint_path(tmp_path, "model", 1), keep=5)
    bad = save_checkpoint(state(2), checkpoint_path(tmp_path, "model", 2), keep=5)
    raw = bytearray(bad.read_bytes())
    raw[-10] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="model_step000000002.ckpt: checksum mismatch"):
        load_checkpoint(bad)
    assert latest_valid_checkpoint(tmp_path, "model") == good
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    with pytest.raises(DataError, match="checksum mismatch|bad header"):
        load_checkpoint(bad)
    other = tmp_path / "other.ckpt"
    torch.save(state(3), other)  # a plain torch file is refused, not unpickled
    with pytest.raises(DataError, match="not a deepcam-hvd checkpoint"):
        load_checkpoint(other)


def test_incompatible_checkpoint_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="saved with model='deeplab-xception'.*'small'"):
        check_compatible({"model": "deeplab-xception", "in_channels": 16},
                         {"model": "small", "in_channels": 16}, tmp_path / "c.ckpt")


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot write checkpoint"):
        save_checkpoint(state(1), blocker / "sub" / "model_step000000001.ckpt")


def numpy_state(step: int) -> dict:
    return {"step": step, "weights": [np.arange(6, dtype=np.float32).reshape(2, 3) * step,
                                      np.array(step, dtype=np.int64)],
            "rng": [np.array([1, 2, 3], dtype=np.int64)],
            "summary": plain_state({"best": float("nan"), "history": (0.5, 0.25), 3: "x"})}


def test_numpy_payload_round_trip_without_torch_or_pickle(tmp_path: Path) -> None:
    path = save_checkpoint(numpy_state(7), checkpoint_path(tmp_path, "cosmoflow", 7),
                           payload_format="numpy")
    raw = path.read_bytes()
    assert raw.startswith(MAGIC_NUMPY)
    loaded = load_checkpoint(path)
    first, scalar = loaded["weights"]
    assert first.dtype == np.float32 and first.shape == (2, 3)
    np.testing.assert_array_equal(first, np.arange(6, dtype=np.float32).reshape(2, 3) * 7)
    assert scalar.shape == () and int(scalar) == 7
    np.testing.assert_array_equal(loaded["rng"][0], [1, 2, 3])
    assert loaded["step"] == 7
    assert loaded["summary"] == {"best": None, "history": [0.5, 0.25], "3": "x"}
    # the same checksum and damage handling as the torch payload
    path.write_bytes(raw[:-5])
    with pytest.raises(DataError, match="checksum mismatch"):
        load_checkpoint(path)


def test_numpy_payload_never_unpickles(tmp_path: Path) -> None:
    import hashlib
    import io

    buffer = io.BytesIO()
    np.savez(buffer, document=np.frombuffer(b"{}", dtype=np.uint8),
             array0=np.array([{"evil": 1}], dtype=object))  # an object array is a pickle
    payload = buffer.getvalue()
    path = tmp_path / "cosmoflow_step000000001.ckpt"
    path.write_bytes(MAGIC_NUMPY + hashlib.sha256(payload).hexdigest().encode() + b"\n"
                     + payload)
    with pytest.raises(DataError, match="cosmoflow_step000000001.ckpt: unreadable numpy "
                       "payload.*allow_pickle"):
        load_checkpoint(path)
