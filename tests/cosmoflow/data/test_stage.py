"""``stage_files``: ranks copy disjoint shares that together are every file, once."""

from __future__ import annotations

from pathlib import Path

import pytest

tf = pytest.importorskip("tensorflow", reason="CosmoFlow needs TensorFlow")

from deepcam_hvd.cosmoflow.data.layout import list_split  # noqa: E402
from deepcam_hvd.cosmoflow.data.stage import stage_files  # noqa: E402
from deepcam_hvd.errors import DataError  # noqa: E402

from .conftest import CosmoRoot  # noqa: E402


@pytest.mark.parametrize("fmt", ["tfrecord", "npy"])
def test_two_ranks_stage_disjoint_shares(cosmo_root: CosmoRoot, tmp_path: Path,
                                         fmt: str) -> None:
    files = list_split(cosmo_root(2, 3, fmt=fmt), "validation")
    per_file = 2 if fmt == "npy" else 1
    node = [tmp_path / "node0", tmp_path / "node1"]  # one rank per pretend node
    results = [stage_files(files, node[r], rank=r, size=2) for r in range(2)]
    assert [r.copied for r in results] == [2 * per_file, 1 * per_file]
    staged = [sorted(p.name for p in d.iterdir()) for d in node]
    assert not set(staged[0]) & set(staged[1])
    assert sorted(staged[0] + staged[1]) == sorted(p.name for p in files[0].parent.iterdir())
    for d in node:
        for p in d.iterdir():
            assert p.read_bytes() == (files[0].parent / p.name).read_bytes()
    again = stage_files(files, node[0], rank=0, size=2)
    assert (again.copied, again.skipped, again.bytes_copied) == (0, 2 * per_file, 0)


def test_staged_folder_lists_like_the_source(cosmo_root: CosmoRoot, tmp_path: Path) -> None:
    files = list_split(cosmo_root(8, 4), "train")
    result = stage_files(files, tmp_path / "train")
    assert result.bytes_copied == sum(f.stat().st_size for f in files)
    assert [f.name for f in list_split(tmp_path, "train")] == [f.name for f in files]


def test_missing_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"gone\.tfrecord: staging to .* failed"):
        stage_files([tmp_path / "gone.tfrecord"], tmp_path / "out")
