"""The ``data`` click group: synth, check, convert, stage end to end on one rank."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepcam_hvd.data import commands
from deepcam_hvd.distributed.local import LocalBackend
from deepcam_hvd.errors import DataError


@pytest.fixture(autouse=True)
def _local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "_backend", lambda *a, **k: LocalBackend())


def _run(*args: str):
    return CliRunner().invoke(commands.data, list(args))


def test_group_has_subcommands() -> None:
    assert set(commands.data.commands) == {"synth", "check", "convert", "stage"}


def test_synth_check_convert_stage(tmp_path: Path) -> None:
    root = tmp_path / "root"
    start = time.perf_counter()
    res = _run("synth", "--out", str(root), "--train", "64", "--val", "8",
               "--height", "96", "--width", "144", "--seed", "3")
    elapsed = time.perf_counter() - start
    assert res.exit_code == 0, res.output
    assert "wrote 64 train, 8 validation samples of (96, 144, 16)" in res.output
    assert elapsed < 30  # a few seconds on an idle core
    assert len(list((root / "train").glob("data-*.h5"))) == 64

    res = _run("check", str(root))
    assert res.exit_code == 0, res.output
    assert "train: 64 files" in res.output and "OK" in res.output

    res = _run("convert", str(root), str(tmp_path / "npy"), "--split", "validation")
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "npy" / "validation").glob("*-data.npy"))) == 8
    assert not (tmp_path / "npy" / "train").exists()

    res = _run("stage", str(root), str(tmp_path / "shm"), "--seed", "5")
    assert res.exit_code == 0, res.output
    assert "staged (share) 72 files" in res.output


def test_check_fails_naming_each_bad_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert _run("synth", "--out", str(root), "--train", "4", "--val", "2",
                "--height", "32", "--width", "48").exit_code == 0
    bad = sorted((root / "train").glob("*.h5"))[:2]
    for path in bad:
        path.write_bytes(b"not hdf5")
    res = _run("check", str(root))
    assert res.exit_code != 0
    assert isinstance(res.exception, DataError)
    assert "2 problem(s) found" in str(res.exception)
    bad_lines = [line for line in res.output.splitlines() if line.startswith("BAD ")]
    assert [line.split()[1].rstrip(":") for line in bad_lines] == [str(p) for p in bad]
