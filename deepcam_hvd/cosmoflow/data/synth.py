"""Synthetic CosmoFlow universes whose statistics follow their 4 parameters, in the real layout.

Each sample draws ``y`` uniformly in [-1, 1]^4 (the real targets are the simulations'
``unitPar``, which ``prepare.py`` copies unchanged; the network's ``1.2 tanh`` head expects
them in about that range) and builds, with k in cycles per voxel:

* ``g``: a Gaussian random field with power spectrum ``P(k) = k^-1 exp(-(k / k_c)^2)``
  (``P(0) = 0``), scaled to zero mean and unit variance; ``k^3 P(k)`` peaks at ``k_c``, so
  ``k_c`` sets the size of the field's structures;
* channel ``c`` = 0..3 (four snapshots, growth ``D_c = a^c``, ``a`` the growth from one
  snapshot to the next): the log-normal density ``rho_c = nbar exp(s_c g - s_c^2 / 2)`` with
  ``s_c = sigma D_c`` (mean ``nbar``), and counts ``x_c ~ Poisson(rho_c)`` clipped to int16;
* ``sigma = 0.9 + 0.5 y0`` (0.4 .. 1.4), ``a = 0.75 + 0.15 y1`` (0.6 .. 0.9),
  ``k_c = 0.2 * 2^y2`` (0.1 .. 0.4), ``nbar = 12 * 2^(1.5 y3)`` (4.2 .. 34).

So the variance of ``log(1 + x)`` follows ``y0``, how fast it falls from snapshot to snapshot
``y1``, its high-k power relative to mid-k ``y2``, and the mean count ``y3``: a network can
learn all four, and the reference network does within minutes on 2 cores (an earlier version
set ``y1`` as the spectrum's low-k slope, which a 32^3 cube shows too weakly for that:
``benchmarks/RESULTS.md``, "CosmoFlow demo"). Every sample is a function of (seed, split,
index) alone, so the files are the same whatever the number of ranks that write them (rank r
writes samples r, r + size, ... of the list of all samples, train then validation).
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepcam_hvd.data import sharding
from deepcam_hvd.errors import ConfigError, DataError
from deepcam_hvd.workloads.cosmoflow import CUBE_SIZE, NUM_CHANNELS, NUM_TARGETS

from . import npy, tfrecord
from .layout import (
    FORMATS,
    NPY_X_SUFFIX,
    NPY_Y_SUFFIX,
    SPLITS,
    TFRECORD_SUFFIX,
    SampleFormat,
    y_path,
)

PARAM_RANGE = (-1.0, 1.0)
SLOPE = -1.0  # n in P(k) = k^n exp(-(k / k_c)^2)
MIN_CUBE = 4
_INT16_MAX = np.iinfo(np.int16).max
_SAMPLE_SUFFIXES = (TFRECORD_SUFFIX, NPY_X_SUFFIX, NPY_Y_SUFFIX)


@dataclass(frozen=True)
class FieldSettings:
    """What the parameters ``y`` set in a synthetic universe."""

    sigma: float  # standard deviation of the log density at growth 1 (the first snapshot)
    growth: float  # a: D_c = a^c, the growth of snapshot c relative to the first
    cutoff: float  # k_c, cycles per voxel
    mean_count: float  # nbar, mean particles per voxel

    def spreads(self, channels: int) -> np.ndarray:
        """``s_c = sigma a^c``: the log density's standard deviation of each snapshot."""
        return self.sigma * self.growth ** np.arange(channels)


def field_settings(y: np.ndarray) -> FieldSettings:
    """The settings for parameters ``y`` (4 values in [-1, 1])."""
    y0, y1, y2, y3 = (float(v) for v in y)
    return FieldSettings(sigma=0.9 + 0.5 * y0, growth=0.75 + 0.15 * y1,
                         cutoff=0.2 * 2.0**y2, mean_count=12.0 * 2.0 ** (1.5 * y3))


@functools.lru_cache(maxsize=4)
def wavenumbers(cube: int) -> np.ndarray:
    """|k| in cycles per voxel on the ``rfftn`` grid of a cube (read-only)."""
    full, half = np.fft.fftfreq(cube), np.fft.rfftfreq(cube)
    k = np.sqrt(full[:, None, None] ** 2 + full[None, :, None] ** 2 + half[None, None, :] ** 2)
    k.setflags(write=False)
    return k


def gaussian_field(cube: int, slope: float, cutoff: float, rng: np.random.Generator
                   ) -> np.ndarray:
    """A Gaussian random field with spectrum ``k^slope exp(-(k / cutoff)^2)``, mean 0, std 1."""
    k = wavenumbers(cube)
    power = np.zeros_like(k)
    positive = k > 0
    power[positive] = k[positive] ** slope * np.exp(-((k[positive] / cutoff) ** 2))
    noise = rng.standard_normal((cube, cube, cube))
    field = np.fft.irfftn(np.fft.rfftn(noise) * np.sqrt(power), s=noise.shape)
    field -= field.mean()
    return field / field.std()


def make_universe(y: np.ndarray, cube: int, rng: np.random.Generator) -> np.ndarray:
    """int16 counts (cube, cube, cube, 4) of a universe with parameters ``y``."""
    s = field_settings(y)
    g = gaussian_field(cube, SLOPE, s.cutoff, rng)
    spread = s.spreads(NUM_CHANNELS)
    density = s.mean_count * np.exp(g[..., None] * spread - spread**2 / 2)
    return np.minimum(rng.poisson(density), _INT16_MAX).astype(np.int16)


def make_sample(seed: int, split: str, index: int, cube: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x int16 (c, c, c, 4), y float32 (4,))`` of sample ``index`` of ``split``."""
    rng = np.random.Generator(np.random.PCG64(
        np.random.SeedSequence([seed, SPLITS.index(split), index])))
    y = rng.uniform(*PARAM_RANGE, size=NUM_TARGETS).astype(np.float32)
    return make_universe(y, cube, rng), y


def sample_name(split: str, index: int) -> str:
    """File name stem of sample ``index`` of ``split`` (sorts in index order)."""
    return f"univ_synth_{split}_{index:06d}"


def sample_path(root: Path, split: str, index: int, fmt: SampleFormat) -> Path:
    """Where sample ``index`` of ``split`` goes (its ``.tfrecord`` or ``-x.npy``)."""
    suffix = TFRECORD_SUFFIX if fmt == "tfrecord" else NPY_X_SUFFIX
    return root / split / f"{sample_name(split, index)}{suffix}"


@dataclass(frozen=True)
class SynthReport:
    """What one rank wrote."""

    root: Path
    counts: dict[str, int]
    cube: int
    files_written: int
    bytes_written: int
    seconds: float


def _expected_files(root: Path, counts: dict[str, int], fmt: SampleFormat) -> set[str]:
    names = set()
    for split, n in counts.items():
        for i in range(n):
            path = sample_path(root, split, i, fmt)
            names.add(path.name)
            if fmt == "npy":
                names.add(y_path(path).name)
    return names


def _clear_stale(root: Path, counts: dict[str, int], fmt: SampleFormat, overwrite: bool) -> None:
    """Remove (``overwrite``) or refuse sample files that this run will not write."""
    expected = _expected_files(root, counts, fmt)
    for split in counts:
        directory = root / split
        stale = sorted(e for e in os.listdir(directory)
                       if e.endswith(_SAMPLE_SUFFIXES) and e not in expected)
        if stale and not overwrite:
            raise DataError(f"{directory}: already holds {len(stale)} other sample files, e.g. "
                            f"{stale[0]} (pass overwrite)")
        for entry in stale:
            (directory / entry).unlink()


def synthesize(
    out: str | os.PathLike[str], train: int, validation: int, cube: int = CUBE_SIZE,
    seed: int = 333, compression: str | None = "gzip", fmt: SampleFormat = "tfrecord",
    rank: int = 0, size: int = 1, overwrite: bool = False,
) -> SynthReport:
    """Write this rank's share of ``train`` + ``validation`` synthetic samples under ``out``.

    Call it on every rank with the same arguments. Rank 0 also removes (``overwrite``) or
    refuses other sample files in the split folders; every rank refuses to replace its own
    files without ``overwrite``. Errors are DataErrors for this rank alone: agree on them.
    """
    if train < 1 or validation < 1:
        raise ConfigError("need at least one training and one validation sample")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if cube < MIN_CUBE:
        raise ConfigError(f"cube must be >= {MIN_CUBE} voxels, got {cube}")
    if fmt not in FORMATS:
        raise ConfigError(f"sample format '{fmt}' unknown: choose {' or '.join(FORMATS)}")
    tfrecord.tf_compression(compression)
    start = time.perf_counter()
    root = Path(out)
    counts = {"train": train, "validation": validation}
    items = [(split, i) for split, n in counts.items() for i in range(n)]
    mine = sharding.strided_share(len(items), rank, size)
    try:
        for split in counts:
            (root / split).mkdir(parents=True, exist_ok=True)
        if rank == 0:
            _clear_stale(root, counts, fmt, overwrite)
        written = 0
        for k in mine:
            split, index = items[k]
            path = sample_path(root, split, index, fmt)
            if path.exists() and not overwrite:
                raise DataError(f"{path}: already exists (pass overwrite)")
            x, y = make_sample(seed, split, index, cube)
            if fmt == "npy":
                written += npy.write_sample(path, x, y)
            else:
                written += tfrecord.write_sample(path, x, y, compression)
    except OSError as exc:
        raise DataError(f"{exc.filename or root}: {exc.strerror or exc}") from None
    return SynthReport(root=root, counts=counts, cube=cube, files_written=len(mine),
                       bytes_written=written, seconds=time.perf_counter() - start)
