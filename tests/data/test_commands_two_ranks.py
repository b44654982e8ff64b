"""The data commands from the CLI on 2 real ranks (mpirun), against the 1-rank results."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.launch import DEEPCAM, run_ranks

pytestmark = pytest.mark.multirank

SYNTH = ["data", "synth", "--train", "6", "--val", "3", "--height", "32", "--width", "48",
         "--seed", "21"]


def arrays(root: Path) -> dict[str, np.ndarray]:
    """Every array of every sample and of stats.h5, keyed by file and key."""
    found = {}
    for path in sorted(root.rglob("*.h5")):
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj, path=path: found.__setitem__(
                f"{path.relative_to(root)}:{name}", obj[...]) if isinstance(obj, h5py.Dataset)
                else None)
    return found


def test_synth_check_convert_stage_on_two_ranks(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert subprocess.run([DEEPCAM, *SYNTH, "--out", str(one)], capture_output=True,
                          timeout=120).returncode == 0
    proc = run_ranks([DEEPCAM, *SYNTH, "--out", str(two)])
    assert proc.returncode == 0, proc.stderr
    assert "on 2 rank(s)" in proc.stdout and proc.stdout.count("wrote ") == 1
    a, b = arrays(one), arrays(two)
    assert a.keys() == b.keys() and len(a) == 9 * 2 + 5
    assert all(np.array_equal(a[k], b[k]) for k in a)  # independent of the rank count

    check = run_ranks([DEEPCAM, "data", "check", str(two)])
    assert check.returncode == 0, check.stdout + check.stderr

    npy = tmp_path / "npy"
    convert = run_ranks([DEEPCAM, "data", "convert", str(two), str(npy)])
    assert convert.returncode == 0, convert.stderr
    assert len(list((npy / "train").glob("*-data.npy"))) == 6
    assert len(list((npy / "validation").glob("*-label.npy"))) == 3
    sample = sorted((two / "train").glob("*.h5"))[0]
    with h5py.File(sample, "r") as f:
        expected = f["climate/data"][...]
    assert np.array_equal(np.load(npy / "train" / f"{sample.stem}-data.npy"), expected)

    staged = tmp_path / "staged"
    stage = run_ranks([DEEPCAM, "data", "stage", str(two), str(staged)])
    assert stage.returncode == 0, stage.stderr
    copied = list((staged / "train").glob("*.h5")) + list((staged / "validation").glob("*.h5"))
    assert 0 < len(copied) <= 9 and (staged / "stats.h5").exists()
    assert re.search(r"staged \(share\) \d+ files.* in [0-9.]+ s", stage.stdout), stage.stdout
    # what stage tells the user to train with is accepted by train
    trained = run_ranks([DEEPCAM, "train", "--data_dir", str(staged), "--output_dir",
                         str(tmp_path / "run"), "--shuffle", "local", "--seed", "333",
                         "--model", "deeplab-xception-small", "--local_batch_size", "1",
                         "--max_epochs", "1", "--max_inter_threads", "0"])
    assert trained.returncode == 0, trained.stderr

    bad = sorted((two / "validation").glob("*.h5"))[-1]
    bad.write_bytes(bad.read_bytes()[:1000])
    broken = run_ranks([DEEPCAM, "data", "check", str(two)])
    assert broken.returncode != 0
    assert str(bad) in broken.stdout + broken.stderr
