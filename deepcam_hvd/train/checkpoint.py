"""Checkpoints: atomic, checksummed, the last K kept, never unpickled.

File layout: an 8-byte magic, the 64-character hex SHA-256 of the payload, a newline, then the
payload. The magic says how the payload was written: ``DCHVDCK1`` by ``torch.save`` (PyTorch
runs; read back with ``weights_only=True``), ``DCHVDNP1`` as a numpy ``.npz`` holding the
arrays and a JSON document of everything else (TensorFlow runs, which never import torch; read
back with ``allow_pickle=False``). Files are written to a temporary name, flushed to disk and
renamed, so a kill during a save leaves the previous checkpoints intact and never a truncated
file under a checkpoint's name.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepcam_hvd.errors import ConfigError, DataError
from deepcam_hvd.files import atomic_path

MAGIC = b"DCHVDCK1"  # payload written by torch.save
MAGIC_NUMPY = b"DCHVDNP1"  # payload: .npz of the arrays + JSON of the rest
PayloadFormat = Literal["torch", "numpy"]
_ARRAY_KEY = "__array__"
_NAME = re.compile(r"^(?P<prefix>.+)_step(?P<step>\d{9})\.ckpt$")


def checkpoint_path(directory: Path, prefix: str, step: int) -> Path:
    """Where the checkpoint of optimizer step ``step`` goes (zero-padded so names sort)."""
    return directory / f"{prefix}_step{step:09d}.ckpt"


def save_checkpoint(state: dict[str, Any], path: Path, keep: int = 2,
                    payload_format: PayloadFormat = "torch") -> Path:
    """Write ``state`` atomically to ``path``; then delete all but the newest ``keep``.

    ``payload_format`` "torch": ``state`` holds torch tensors and plain values; "numpy": numpy
    arrays and values that ``plain_state`` has made JSON-ready."""
    if payload_format == "numpy":
        magic, payload = MAGIC_NUMPY, _numpy_payload(state)
    else:
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        magic, payload = MAGIC, buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, durable=True) as tmp, open(tmp, "wb") as fh:
            fh.write(magic + digest + b"\n")
            fh.write(payload)
    except OSError as exc:
        raise DataError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
    # Temporary files of saves that were killed midway (one writer per directory: rank 0).
    for debris in path.parent.glob(".*.ckpt.tmp*"):
        debris.unlink(missing_ok=True)
    prefix = _NAME.match(path.name)
    if prefix:
        for old in list_checkpoints(path.parent, prefix["prefix"])[:-keep]:
            old.unlink(missing_ok=True)
    return path


def plain_state(value: Any) -> Any:
    """``value`` as only the types both payloads read back (``torch.load(weights_only=True)``,
    JSON): dict keys as strings, tuples as lists, numpy scalars as Python numbers, non-finite
    floats as None."""
    if isinstance(value, dict):
        return {str(k): plain_state(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_state(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return plain_state(value.item())
    return value


def list_checkpoints(directory: Path, prefix: str) -> list[Path]:
    """Checkpoints of ``prefix`` in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir()
             if (m := _NAME.match(p.name)) and m["prefix"] == prefix]
    return sorted(found, key=lambda p: p.name)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and verify a checkpoint; DataError naming the file if it is damaged."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"checkpoint {path}: {exc.strerror}") from None
    header = len(MAGIC) + 65
    magic = raw[:len(MAGIC)]
    if len(raw) < header or magic not in (MAGIC, MAGIC_NUMPY) or raw[header - 1:header] != b"\n":
        raise DataError(f"checkpoint {path}: not a deepcam-hvd checkpoint (bad header)")
    digest, payload = raw[len(MAGIC):header - 1], raw[header:]
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise DataError(f"checkpoint {path}: checksum mismatch (truncated or corrupted)")
    if magic == MAGIC_NUMPY:
        try:
            return _from_numpy_payload(payload)
        except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:  # e.g. a pickle
            raise DataError(f"checkpoint {path}: unreadable numpy payload ({exc})") from None
    import torch

    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


def _numpy_payload(state: dict[str, Any]) -> bytes:
    """``state`` as an .npz: each array its own member, the rest one JSON document in which an
    array stands as ``{"__array__": index}``."""
    arrays: list[np.ndarray] = []

    def strip(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            arrays.append(value)
            return {_ARRAY_KEY: len(arrays) - 1}
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [strip(v) for v in value]
        return value

    document = json.dumps(strip(state), allow_nan=False).encode()
    buffer = io.BytesIO()
    np.savez(buffer, document=np.frombuffer(document, dtype=np.uint8),
             **{f"array{i}": a for i, a in enumerate(arrays)})
    return buffer.getvalue()


def _from_numpy_payload(payload: bytes) -> dict[str, Any]:
    """Inverse of `_numpy_payload` (no pickle is ever read)."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as members:
        arrays = {name: members[name] for name in members.files}
    document = json.loads(arrays.pop("document").tobytes().decode())

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {_ARRAY_KEY}:
                return arrays[f"array{value[_ARRAY_KEY]}"]
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return fill(document)


def latest_valid_checkpoint(directory: Path, prefix: str) -> Path | None:
    """The newest checkpoint that passes its checksum, or None."""
    for candidate in reversed(list_checkpoints(directory, prefix)):
        try:
            load_checkpoint(candidate)
        except DataError:
            continue
        return candidate
    return None


def check_compatible(saved: dict[str, Any], expected: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose model identity differs, naming the first mismatch."""
    for key, value in expected.items():
        if saved.get(key) != value:
            raise ConfigError(f"checkpoint {path} was saved with {key}={saved.get(key)!r}, "
                              f"this run has {key}={value!r}")
