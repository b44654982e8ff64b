"""Synthetic universes: read alike by the reference and by us, parameter-dependent statistics,
determinism, and the same files whatever the number of ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="CosmoFlow needs TensorFlow")

from deepcam_hvd.cosmoflow.data import synth  # noqa: E402
from deepcam_hvd.cosmoflow.data.dataset import read_dataset  # noqa: E402
from deepcam_hvd.cosmoflow.data.layout import list_split  # noqa: E402
from deepcam_hvd.cosmoflow.data.tfrecord import parse_example, read_sample  # noqa: E402
from deepcam_hvd.errors import ConfigError, DataError  # noqa: E402

from .conftest import CosmoRoot  # noqa: E402


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize(("compression", "reference_compression"),
                         [("gzip", "GZIP"), ("none", None)])
@pytest.mark.parametrize("apply_log", [True, False])
def test_reference_reads_what_we_read(cosmo_root: CosmoRoot, reference_data: dict,
                                      compression: str, reference_compression: str | None,
                                      apply_log: bool) -> None:
    root = cosmo_root(8, 4, compression=compression)
    theirs, steps = reference_data["construct_dataset"](
        file_dir=str(root / "validation"), n_samples=4, batch_size=2, n_epochs=1,
        sample_shape=[16, 16, 16, 4], compression=reference_compression, apply_log=apply_log)
    ours = read_dataset(list_split(root, "validation"), 2, 16, apply_log=apply_log)
    pairs = list(zip(theirs, ours, strict=True))
    assert steps == len(pairs) == 2
    for (ref_x, ref_y), (x, y) in pairs:
        assert ref_x.dtype == x.dtype == tf.float32 and ref_x.shape == x.shape
        np.testing.assert_array_equal(x.numpy(), ref_x.numpy())
        np.testing.assert_array_equal(y.numpy(), ref_y.numpy())


def test_reference_parse_of_one_record(cosmo_root: CosmoRoot, reference_data: dict) -> None:
    path = list_split(cosmo_root(8, 4), "train")[0]
    record = next(iter(tf.data.TFRecordDataset(str(path), "GZIP")))
    ref_x, ref_y = reference_data["_parse_data"](record, [16, 16, 16, 4], apply_log=True)
    x, y = parse_example(record, 16)
    np.testing.assert_array_equal(x.numpy(), ref_x.numpy())
    np.testing.assert_array_equal(y.numpy(), ref_y.numpy())
    counts, params = read_sample(path)
    np.testing.assert_allclose(ref_x.numpy(), np.log1p(counts.astype(np.float32)), rtol=1e-6)
    np.testing.assert_array_equal(ref_y.numpy(), params)


def covariance(a: np.ndarray, b: np.ndarray) -> float:
    """Covariance of two fields over their voxels."""
    return float(((a - a.mean()) * (b - b.mean())).mean())


def statistics(x: np.ndarray) -> dict[str, float]:
    """Per-sample statistics of log(1 + x) (channel 0, and 3 against 0) and of the counts."""
    cube = x.shape[0]
    logs = np.log1p(x.astype(np.float64))
    field = logs[..., 0]
    power = np.abs(np.fft.rfftn(field - field.mean())) ** 2
    k = synth.wavenumbers(cube)

    def band(low: float, high: float) -> float:
        return float(power[(k >= low) & (k < high)].mean())

    return {
        "variance": float(field.var()),
        # s_3 s_0 / (s_1 s_0) = a^2, free of the snapshots' independent Poisson noise
        "snapshot decay": float(np.log(covariance(logs[..., 3], field)
                                       / covariance(logs[..., 1], field))),
        "high-k power": np.log(band(0.2, 0.3) / band(0.1, 0.15)),
        "mean count": float(x.mean()),
    }


# parameter -> (statistic that follows it, sign of the correlation)
FOLLOWS = {0: ("variance", 1), 1: ("snapshot decay", 1), 2: ("high-k power", 1),
           3: ("mean count", 1)}


def test_statistics_follow_each_parameter() -> None:
    samples = [synth.make_sample(11, "train", i, 32) for i in range(32)]
    y = np.stack([s[1] for s in samples])
    stats = [statistics(s[0]) for s in samples]
    assert (y >= -1).all() and (y <= 1).all() and y.std(axis=0).min() > 0.4
    for j, (name, sign) in FOLLOWS.items():
        r = np.corrcoef([s[name] for s in stats], y[:, j])[0, 1]
        assert sign * r > 0.7, f"{name} vs y{j}: correlation {r:.2f}"


def test_settings_span_the_documented_ranges() -> None:
    low = synth.field_settings(np.full(4, -1.0))
    high = synth.field_settings(np.full(4, 1.0))
    assert (low.sigma, low.growth, low.cutoff, low.mean_count) == pytest.approx(
        (0.4, 0.6, 0.1, 12 / 2**1.5))
    assert (high.sigma, high.growth, high.cutoff, high.mean_count) == pytest.approx(
        (1.4, 0.9, 0.4, 12 * 2**1.5))
    assert low.spreads(4) == pytest.approx([0.4, 0.24, 0.144, 0.0864])


def test_counts_have_the_set_mean_and_growth() -> None:
    y = np.array([0.5, 0.0, 0.0, 0.0], np.float32)  # sigma 1.15, a 0.75
    x = synth.make_universe(y, 32, np.random.default_rng(0))
    assert x.dtype == np.int16 and x.shape == (32, 32, 32, 4) and x.min() >= 0
    assert x.reshape(-1, 4).mean(axis=0) == pytest.approx([12.0] * 4, rel=0.1)
    spread = np.log1p(x.reshape(-1, 4).astype(np.float64)).std(axis=0)
    assert (np.diff(spread) < 0).all()  # less clustered at earlier snapshots


def test_cutoff_sets_the_size_of_structures() -> None:
    """``k^3 P(k)`` of the unit-variance field peaks at ``k_c`` (within the grid's bins)."""
    k = synth.wavenumbers(32)
    for cutoff in (0.1, 0.2, 0.4):
        g = synth.gaussian_field(32, synth.SLOPE, cutoff, np.random.default_rng(1))
        assert g.mean() == pytest.approx(0, abs=1e-12) and g.std() == pytest.approx(1)
        power = np.abs(np.fft.rfftn(g)) ** 2
        edges = np.linspace(0.02, 0.5, 25)
        per_log_k = [k[(k >= lo) & (k < hi)].mean() ** 3 * power[(k >= lo) & (k < hi)].mean()
                     for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        peak = edges[int(np.argmax(per_log_k))]
        assert abs(peak - cutoff) < 0.06, (cutoff, peak)


def test_same_seed_same_files(tmp_path: Path) -> None:
    synth.synthesize(tmp_path / "a", 3, 2, cube=8, seed=4)
    synth.synthesize(tmp_path / "b", 3, 2, cube=8, seed=4)
    synth.synthesize(tmp_path / "c", 3, 2, cube=8, seed=5)
    a, b, c = tree(tmp_path / "a"), tree(tmp_path / "b"), tree(tmp_path / "c")
    assert sorted(a) == [f"train/univ_synth_train_00000{i}.tfrecord" for i in range(3)] + [
        f"validation/univ_synth_validation_00000{i}.tfrecord" for i in range(2)]
    assert a == b
    assert sorted(c) == sorted(a) and all(c[k] != a[k] for k in a)


@pytest.mark.parametrize("fmt", ["tfrecord", "npy"])
def test_two_ranks_write_the_files_of_one(tmp_path: Path, fmt: str) -> None:
    one = synth.synthesize(tmp_path / "one", 3, 2, cube=8, seed=6, fmt=fmt)
    two = [synth.synthesize(tmp_path / "two", 3, 2, cube=8, seed=6, fmt=fmt, rank=r, size=2)
           for r in (1, 0)]
    assert one.files_written == 5 and [t.files_written for t in two] == [2, 3]
    assert one.bytes_written == sum(t.bytes_written for t in two)
    assert tree(tmp_path / "one") == tree(tmp_path / "two")


def test_overwrite(tmp_path: Path) -> None:
    synth.synthesize(tmp_path, 3, 2, cube=8, seed=1)
    with pytest.raises(DataError, match=r"univ_synth_train_000000\.tfrecord: already exists"):
        synth.synthesize(tmp_path, 3, 2, cube=8, seed=1)
    with pytest.raises(DataError, match=r"train: already holds 1 other sample files, e\.g\. "
                                        r"univ_synth_train_000002\.tfrecord"):
        synth.synthesize(tmp_path, 2, 2, cube=8, seed=1)
    synth.synthesize(tmp_path, 2, 1, cube=8, seed=2, overwrite=True)
    assert [p.name for p in list_split(tmp_path, "train")] == [
        "univ_synth_train_000000.tfrecord", "univ_synth_train_000001.tfrecord"]
    assert len(list_split(tmp_path, "validation")) == 1


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="need at least one training and one validation"):
        synth.synthesize(tmp_path, 0, 1)
    with pytest.raises(ConfigError, match="cube must be >= 4 voxels, got 2"):
        synth.synthesize(tmp_path, 1, 1, cube=2)
    with pytest.raises(ConfigError, match="sample format 'h5' unknown"):
        synth.synthesize(tmp_path, 1, 1, fmt="h5")
    with pytest.raises(DataError, match="compression 'lzma' unknown"):
        synth.synthesize(tmp_path, 1, 1, compression="lzma")
    assert not any(tmp_path.iterdir())
