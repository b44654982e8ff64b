"""Synthetic CAM5-like samples: physically shaped fields with tropical cyclones and rivers.

One sample is a function of (seed, split, index, height, width) only, so the same seed gives
byte-identical arrays whatever the number of ranks writing them. The grid is the CAM5 one at any
resolution: ``height`` latitudes from -90 to 90 (row 0 at the South Pole), ``width`` longitudes
from 0 eastwards.

Background: a zonally varying climate (surface temperature falling with latitude, moisture
following it by Clausius-Clapeyron, subtropical highs and subpolar lows in PSL, trade winds and
mid-latitude westerlies) plus smooth random weather with geostrophic winds, and a fixed random
topography (per seed) that lowers PS and TS.

About 400 lines on purpose: the fields of the 16 channels and the two kinds of event are one
physical model, kept together so that their relations (moisture and temperature, pressure and
wind) stay consistent.

Tropical cyclones (label 1): Holland-profile pressure lows (centre ~96,700-100,200 Pa) between
8 and 28 degrees latitude, with cyclonic winds (anticlockwise in the north, clockwise in the
south), inflow near the surface, a moist warm core and heavy rain; labelled within a radius of
about 220-380 km of the centre.

Atmospheric rivers (label 2): curved filaments 3000-6000 km long and a few hundred km wide from
the subtropics poleward and eastward, carrying extra moisture (TMQ +15..25) with a wind jet
along them; labelled where the filament's intensity exceeds half its peak.

Features are sized in km, but never narrower than a few grid cells, so small grids (e.g. 96x144)
still carry learnable features (their class frequencies come out somewhat higher).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.workloads.deepcam import NUM_CHANNELS

from .layout import CHANNEL, SPLITS

KM_PER_DEG = 111.195
OMEGA = 7.292e-5
RHO_AIR = 1.15
MIN_HEIGHT = 16
MIN_WIDTH = 24
TC_MIN_RADIUS_CELLS = 2.5
AR_MIN_HALFWIDTH_CELLS = 1.8


@dataclass(frozen=True)
class Grid:
    """Latitudes (degrees, ascending), longitudes (degrees) and derived per-cell quantities."""

    lat: np.ndarray  # (H,)
    lon: np.ndarray  # (W,)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W)."""
        return (self.lat.size, self.lon.size)

    @property
    def dlat_km(self) -> float:
        """North-south size of a cell in km."""
        return float(180.0 / (self.lat.size - 1) * KM_PER_DEG)


@functools.lru_cache(maxsize=8)
def make_grid(height: int, width: int) -> Grid:
    """The CAM5 grid at ``height`` x ``width`` (768 x 1152 is the real one)."""
    if height < MIN_HEIGHT or width < MIN_WIDTH:
        raise ConfigError(
            f"grid {height}x{width} too small: need at least {MIN_HEIGHT}x{MIN_WIDTH}"
        )
    return Grid(lat=np.linspace(-90.0, 90.0, height), lon=np.arange(width) * (360.0 / width))


def _wrap(dlon: np.ndarray) -> np.ndarray:
    """Longitude differences folded into [-180, 180)."""
    return (dlon + 180.0) % 360.0 - 180.0


@functools.lru_cache(maxsize=32)
def _rbf_matrices(height: int, width: int, scale_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised Gaussian interpolation weights from a coarse node grid to the full grid."""
    grid = make_grid(height, width)
    n_lat = int(math.ceil(180.0 / scale_deg)) + 1
    n_lon = int(math.ceil(360.0 / scale_deg))
    node_lat = np.linspace(-90.0, 90.0, n_lat)
    node_lon = np.arange(n_lon) * (360.0 / n_lon)
    a_lat = np.exp(-0.5 * ((grid.lat[:, None] - node_lat[None, :]) / (0.6 * scale_deg)) ** 2)
    d_lon = _wrap(grid.lon[:, None] - node_lon[None, :])
    a_lon = np.exp(-0.5 * (d_lon / (0.6 * scale_deg)) ** 2)
    a_lat[a_lat < 1e-9] = 0.0  # no denormals: they make the products crawl
    a_lon[a_lon < 1e-9] = 0.0
    a_lat /= a_lat.sum(axis=1, keepdims=True)
    a_lon /= a_lon.sum(axis=1, keepdims=True)
    return np.ascontiguousarray(a_lat), np.ascontiguousarray(a_lon.T)


def smooth_noise(rng: np.random.Generator, height: int, width: int, scale_deg: float) -> np.ndarray:
    """A smooth random field of unit standard deviation with features ``scale_deg`` across."""
    a_lat, a_lon_t = _rbf_matrices(height, width, float(scale_deg))
    coarse = rng.standard_normal((a_lat.shape[1], a_lon_t.shape[0]))
    # einsum, not BLAS: single-threaded and bit-reproducible whatever the thread settings
    field = np.einsum("ij,jk->ik", np.einsum("ij,jk->ik", a_lat, coarse), a_lon_t)
    field -= field.mean()
    return field / max(float(field.std()), 1e-12)


@functools.lru_cache(maxsize=8)
def topography(seed: int, height: int, width: int) -> np.ndarray:
    """Surface height (m, >= 0) of the synthetic planet of ``seed``: about 30% land."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 7_000_001])))
    base = smooth_noise(rng, height, width, 14.0) + 0.5 * smooth_noise(rng, height, width, 6.0)
    base /= base.std()
    z = 2800.0 * (1.0 - np.exp(-0.9 * np.clip(base - 0.55, 0.0, None)))
    z.setflags(write=False)
    return z


def saturation_vapour_pressure(t_kelvin: np.ndarray) -> np.ndarray:
    """Saturation vapour pressure over water (Pa), Bolton's formula."""
    tc = t_kelvin - 273.15
    return 611.2 * np.exp(17.67 * tc / (tc + 243.5))


@dataclass
class Fields:
    """The 16 channels (float64 while building) and the label of one sample."""

    values: dict[str, np.ndarray]
    label: np.ndarray
    rh: np.ndarray  # near-surface relative humidity, for QREFHT

    def add(self, name: str, rows: np.ndarray, cols: np.ndarray, anomaly: np.ndarray) -> None:
        """Add ``anomaly`` to channel ``name`` on the window (rows x cols)."""
        self.values[name][np.ix_(rows, cols)] += anomaly


def _background(rng: np.random.Generator, grid: Grid, zs: np.ndarray) -> Fields:
    h, w = grid.shape
    phi = grid.lat[:, None]  # (H, 1): zonal profiles stay 1-D until they meet 2-D noise
    aphi = np.abs(phi)
    cphi = np.cos(np.radians(phi))
    n_p = smooth_noise(rng, h, w, 11.0)
    n_t = smooth_noise(rng, h, w, 16.0)
    n_t2 = smooth_noise(rng, h, w, 20.0)
    n_q = smooth_noise(rng, h, w, 8.0)
    n_u = smooth_noise(rng, h, w, 7.0)
    n_v = smooth_noise(rng, h, w, 7.0)
    n_r = smooth_noise(rng, h, w, 5.0)

    storm = 0.35 + 0.65 * np.exp(-(((aphi - 50.0) / 18.0) ** 2))
    psl = (
        101_450.0
        + 650.0 * np.exp(-(((aphi - 30.0) / 11.0) ** 2))
        - 1_100.0 * np.exp(-(((aphi - 62.0) / 10.0) ** 2))
        - 250.0 * np.exp(-((phi / 9.0) ** 2))
        + 850.0 * storm * n_p
    )
    # geostrophic wind of the pressure field, faded out towards the equator
    f = 2.0 * OMEGA * np.sin(np.radians(np.where(aphi < 15.0, np.sign(phi + 1e-9) * 15.0, phi)))
    dy = grid.dlat_km * 1000.0
    dx = (360.0 / w) * KM_PER_DEG * 1000.0 * np.maximum(cphi, 0.05)
    dpdy = np.gradient(psl, axis=0) / dy
    dpdx = (np.roll(psl, -1, axis=1) - np.roll(psl, 1, axis=1)) / (2.0 * dx)
    fade = 1.0 - np.exp(-((phi / 20.0) ** 2))
    ug = np.clip(-dpdy / (RHO_AIR * f) * fade, -35.0, 35.0)
    vg = np.clip(dpdx / (RHO_AIR * f) * fade, -35.0, 35.0)
    u850 = (
        8.0 * np.exp(-(((aphi - 48.0) / 13.0) ** 2))
        - 6.0 * np.exp(-(((aphi - 12.0) / 9.0) ** 2))
        + ug
        + 2.0 * n_u
    )
    v850 = vg + 2.0 * n_v
    # surface wind: weaker and turned towards low pressure (left in the north)
    turn = np.radians(20.0) * np.sign(phi)
    ubot = 0.7 * (u850 * np.cos(turn) - v850 * np.sin(turn))
    vbot = 0.7 * (u850 * np.sin(turn) + v850 * np.cos(turn))

    ts = 250.0 + 50.0 * np.maximum(cphi, 0.0) ** 1.5 - 0.0065 * zs + 2.5 * n_t
    trefht = ts - 0.8 - 0.4 * np.abs(n_r)
    t500 = 238.0 + 30.0 * cphi**2 + 1.5 * n_t
    t200 = 217.0 + 5.0 * (1.0 - cphi**2) + 1.5 * n_t2
    z200 = 11_000.0 + 1_400.0 * cphi**2 + 60.0 * n_t + 40.0 * n_t2
    rh = np.clip(0.72 + 0.1 * n_q - 0.08 * np.exp(-(((aphi - 25.0) / 8.0) ** 2)), 0.3, 0.97)
    tmq = 2.5 * np.exp(0.062 * (ts - 250.0)) * (1.0 + 0.22 * n_q)
    prect = 2.5e-8 * (
        3.0 * np.exp(-((phi / 8.0) ** 2)) + np.exp(-(((aphi - 45.0) / 12.0) ** 2)) + 0.2
    ) * np.exp(0.8 * n_r)
    values = {
        "TMQ": tmq,
        "U850": u850,
        "V850": v850,
        "UBOT": ubot,
        "VBOT": vbot,
        "PSL": psl,
        "T200": t200,
        "T500": t500,
        "PRECT": prect,
        "TS": ts,
        "TREFHT": trefht,
        "Z200": z200,
    }
    return Fields(values=values, label=np.zeros((h, w), dtype=np.int32), rh=rh)


def _window(grid: Grid, lat_c: float, lon_c: float, radius_km: float) -> tuple[np.ndarray, ...]:
    """Rows, columns and (dx, dy) in km (east, north) of cells within ``radius_km`` of a point."""
    h, w = grid.shape
    half_lat = radius_km / KM_PER_DEG
    rows = np.flatnonzero(np.abs(grid.lat - lat_c) <= half_lat)
    cos_c = max(math.cos(math.radians(min(abs(lat_c) + half_lat, 89.0))), 0.05)
    half_cols = min(int(math.ceil(radius_km / (KM_PER_DEG * cos_c) / (360.0 / w))), (w - 1) // 2)
    c0 = int(round(lon_c / (360.0 / w)))
    cols = (c0 + np.arange(-half_cols, half_cols + 1)) % w
    lat = grid.lat[rows][:, None]
    dx = _wrap(grid.lon[cols][None, :] - lon_c) * KM_PER_DEG * np.cos(np.radians(lat))
    dy = (lat - lat_c) * KM_PER_DEG * np.ones((1, cols.size))
    return rows, cols, dx, dy


def _add_cyclone(
    fields: Fields, rng: np.random.Generator, grid: Grid, lat_c: float, lon_c: float
) -> None:
    radius = rng.uniform(220.0, 380.0)
    stretch = max(1.0, TC_MIN_RADIUS_CELLS * grid.dlat_km / radius)
    radius *= stretch
    rmax = rng.uniform(0.22, 0.32) * radius
    dp = rng.uniform(1_700.0, 4_800.0)
    b = rng.uniform(1.2, 1.8)
    outer = 3.0 * radius
    rows, cols, dx, dy = _window(grid, lat_c, lon_c, outer)
    r = np.maximum(np.hypot(dx, dy), 1e-3)
    x = (rmax / r) ** b
    fade = np.exp(-((r / (0.8 * outer)) ** 4))
    strength = dp / 3_000.0
    fields.add("PSL", rows, cols, -dp * (1.0 - np.exp(-x)) * fade)
    speed = np.sqrt(b * dp / (RHO_AIR * math.e) * x * np.exp(1.0 - x)) * fade
    hemi = 1.0 if lat_c >= 0 else -1.0
    tu, tv = -dy / r * hemi, dx / r * hemi  # anticlockwise in the north, clockwise in the south
    fields.add("U850", rows, cols, speed * tu)
    fields.add("V850", rows, cols, speed * tv)
    inflow = math.tan(math.radians(20.0))
    fields.add("UBOT", rows, cols, 0.8 * speed * (tu - inflow * dx / r))
    fields.add("VBOT", rows, cols, 0.8 * speed * (tv - inflow * dy / r))
    core = np.exp(-((r / (0.9 * radius)) ** 2))
    fields.add("TMQ", rows, cols, rng.uniform(14.0, 22.0) * core)
    fields.rh[np.ix_(rows, cols)] += 0.2 * core
    fields.add("PRECT", rows, cols, 1.5e-6 * strength * np.exp(-((r / (0.5 * radius)) ** 2)))
    warm = np.exp(-((r / (0.6 * radius)) ** 2))
    fields.add("T500", rows, cols, 4.0 * strength * warm)
    fields.add("T200", rows, cols, 2.0 * strength * warm)
    fields.add("Z200", rows, cols, 45.0 * strength * warm)
    fields.add("TS", rows, cols, -1.0 * core)
    label = fields.label[np.ix_(rows, cols)]
    label[r <= radius] = 1
    fields.label[np.ix_(rows, cols)] = label


def _river_path(
    rng: np.random.Generator, lat0: float, lon0: float, length: float, step: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (lat, lon) every ``step`` km along a curved poleward-eastward filament, and the
    direction of travel at each (radians from east, positive poleward). Longitudes are not
    wrapped into [0, 360), so the path is continuous."""
    hemi = 1.0 if lat0 >= 0 else -1.0
    theta = math.radians(rng.uniform(30.0, 60.0))
    turn = math.radians(rng.uniform(10.0, 45.0)) / length  # turning east with distance
    wiggle_amp = math.radians(rng.uniform(0.0, 12.0))
    wiggle_len = rng.uniform(1_500.0, 3_000.0)
    phase = rng.uniform(0.0, 2.0 * math.pi)
    n = max(int(length / step), 2)
    lats, lons, heads = np.empty(n), np.empty(n), np.empty(n)
    lat, lon = lat0, lon0
    for k in range(n):
        s = k * step
        head = theta - turn * s + wiggle_amp * math.sin(2.0 * math.pi * s / wiggle_len + phase)
        lats[k], lons[k], heads[k] = lat, lon, head
        lat += hemi * step * math.sin(head) / KM_PER_DEG
        lon += step * math.cos(head) / (KM_PER_DEG * max(math.cos(math.radians(lat)), 0.1))
        if abs(lat) > 78.0:
            return lats[: k + 1], lons[: k + 1], heads[: k + 1]
    return lats, lons, heads


def _river_window(
    grid: Grid, lats: np.ndarray, lons: np.ndarray, margin_km: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and (unwrapped) column longitudes of the box around a path plus margin."""
    h, w = grid.shape
    lat_lo = float(lats.min()) - margin_km / KM_PER_DEG
    lat_hi = float(lats.max()) + margin_km / KM_PER_DEG
    rows = np.flatnonzero((grid.lat >= lat_lo) & (grid.lat <= lat_hi))
    cos_min = max(math.cos(math.radians(min(max(abs(lat_lo), abs(lat_hi)), 89.0))), 0.05)
    dlon = 360.0 / w
    pad = margin_km / (KM_PER_DEG * cos_min)
    c_lo = int(math.floor((float(lons.min()) - pad) / dlon))
    c_hi = int(math.ceil((float(lons.max()) + pad) / dlon))
    if c_hi - c_lo + 1 >= w:
        return rows, np.arange(w), grid.lon
    index = np.arange(c_lo, c_hi + 1)
    return rows, index % w, index * dlon


def _add_river(
    fields: Fields, rng: np.random.Generator, grid: Grid, lat0: float, lon0: float
) -> None:
    halfwidth = rng.uniform(250.0, 450.0)
    halfwidth = max(halfwidth, AR_MIN_HALFWIDTH_CELLS * grid.dlat_km)
    length = max(rng.uniform(3_000.0, 6_000.0), 8.0 * halfwidth)
    step = halfwidth / 2.5
    lats, lons, heads = _river_path(rng, lat0, lon0, length, step)
    hemi = 1.0 if lat0 >= 0 else -1.0
    rows, cols, col_lon = _river_window(grid, lats, lons, 3.0 * halfwidth)
    cell_lat = grid.lat[rows][:, None, None]
    cell_lon = col_lon[None, :, None]
    cos_lat = np.cos(np.radians(cell_lat))
    # squared distance of each cell to the nearest path point, and that point's number
    best_d2 = np.full((rows.size, cols.size), np.inf)
    best_k = np.zeros((rows.size, cols.size), dtype=np.int64)
    for start in range(0, len(lats), 16):  # 16 path points at a time bounds the memory
        ddx = _wrap(cell_lon - lons[None, None, start : start + 16]) * KM_PER_DEG * cos_lat
        ddy = (cell_lat - lats[None, None, start : start + 16]) * KM_PER_DEG
        d2 = ddx**2 + ddy**2
        k = d2.argmin(axis=2)
        d2k = np.take_along_axis(d2, k[..., None], axis=2)[..., 0]
        closer = d2k < best_d2
        best_d2[closer] = d2k[closer]
        best_k[closer] = k[closer] + start
    along = best_k / max(len(lats) - 1, 1)
    profile = np.exp(-best_d2 / halfwidth**2) * np.sin(np.pi * along) ** 0.5
    head = heads[best_k]
    jet = rng.uniform(4.0, 8.0) * profile
    fields.add("TMQ", rows, cols, rng.uniform(15.0, 25.0) * profile)
    fields.rh[np.ix_(rows, cols)] += 0.15 * profile
    fields.add("U850", rows, cols, jet * np.cos(head))
    fields.add("V850", rows, cols, hemi * jet * np.sin(head))
    fields.add("UBOT", rows, cols, 0.7 * jet * np.cos(head))
    fields.add("VBOT", rows, cols, 0.7 * hemi * jet * np.sin(head))
    fields.add("PSL", rows, cols, -300.0 * profile)
    fields.add("PRECT", rows, cols, 4.0e-7 * profile**2)
    window = np.ix_(rows, cols)
    label = fields.label[window]
    label[(profile > 0.5) & (label == 0)] = 2
    fields.label[window] = label


def _finish(fields: Fields, zs: np.ndarray) -> np.ndarray:
    v = fields.values
    tmq = np.maximum(v["TMQ"], 1.0)
    v["TMQ"] = np.where(tmq > 60.0, 60.0 + 22.0 * np.tanh((tmq - 60.0) / 22.0), tmq)
    v["PRECT"] = np.clip(v["PRECT"], 0.0, None)
    v["PS"] = v["PSL"] * np.exp(-zs / (29.3 * v["TS"]))
    rh = np.clip(fields.rh, 0.05, 0.99)
    v["QREFHT"] = 0.622 * rh * saturation_vapour_pressure(v["TREFHT"]) / v["PS"]
    v["Z1000"] = (v["PSL"] - 100_000.0) * 0.083
    v["ZBOT"] = 0.2056 * v["TREFHT"]
    h, w = fields.label.shape
    out = np.empty((h, w, NUM_CHANNELS), dtype=np.float32)
    for name, c in CHANNEL.items():
        out[:, :, c] = v[name]
    return out


def _split_code(split: str) -> int:
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'")
    return SPLITS.index(split)


def make_sample(
    seed: int, split: str, index: int, height: int = 768, width: int = 1152
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic sample ``index`` of ``split``: (data (H, W, 16) float32, label (H, W) int32).

    Deterministic in its arguments (independent of anything else, e.g. the number of ranks).
    """
    if seed < 0 or index < 0:
        raise ConfigError(f"seed and index must be >= 0, got {seed} and {index}")
    grid = make_grid(height, width)
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, _split_code(split), index]))
    )
    zs = topography(seed, height, width)
    fields = _background(rng, grid, zs)
    for _ in range(int(rng.integers(2, 6))):
        lat0 = rng.choice([-1.0, 1.0]) * rng.uniform(18.0, 34.0)
        _add_river(fields, rng, grid, lat0, rng.uniform(0.0, 360.0))
    n_tc = int(rng.choice(4, p=[0.2, 0.35, 0.3, 0.15]))
    centres: list[tuple[float, float]] = []
    for _ in range(n_tc):
        for _attempt in range(20):  # over the ocean, away from the other cyclones
            lat_c = rng.choice([-1.0, 1.0]) * rng.uniform(8.0, 28.0)
            lon_c = rng.uniform(0.0, 360.0)
            i = int(np.abs(grid.lat - lat_c).argmin())
            j = int(round(lon_c / (360.0 / width))) % width
            far = all(
                abs(lat_c - a) + abs(float(_wrap(np.array(lon_c - b)))) > 25.0 for a, b in centres
            )
            if zs[i, j] == 0.0 and far:
                break
        centres.append((lat_c, lon_c))
        _add_cyclone(fields, rng, grid, lat_c, lon_c)
    return _finish(fields, zs), fields.label
