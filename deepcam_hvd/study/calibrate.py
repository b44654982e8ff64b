"""Calibrate the scaling model on this machine: the full model's CPU cost per sample at
768x1152 (fitted over two reduced resolutions, since full size does not fit a small machine's
memory and time budget) and how much of the allreduce the backward pass hides here.

The fit uses each resolution's fastest step: load from other processes only adds time, so the
minimum is the best estimate of the model's own cost on a shared machine.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.resources import Traversable
from deepcam_hvd.study.launch import run_ranks
from deepcam_hvd.study.model import Calibration

FULL_PIXELS = 768 * 1152
RESOLUTIONS = ((96, 144), (192, 288))


def fit_per_sample(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares line t = a + b x pixels through (pixels, seconds per sample) points."""
    if len({p for p, _ in points}) < 2:
        raise ConfigError("calibration needs timings at two different resolutions")
    n = len(points)
    mx = sum(p for p, _ in points) / n
    my = sum(t for _, t in points) / n
    b = sum((p - mx) * (t - my) for p, t in points) / sum((p - mx) ** 2 for p, _ in points)
    return my - b * mx, b


def calibrate(out: Path, launch: str = "mpirun", steps: int = 3,
              timeout_s: float = 1800) -> Calibration:
    """Profile the full model here (1 rank x 1 thread at two sizes; 2 ranks for overlap)."""
    out.mkdir(parents=True, exist_ok=True)
    points, commands, profiles = [], [], []
    for height, width in RESOLUTIONS:
        path = out / f"calibration-1r-{height}x{width}.json"
        done = run_ranks(launch, 1, 1, [
            "study", "profile", "--model", "deeplab-xception", "--local-batch-size", "1",
            "--height", str(height), "--width", str(width), "--steps", str(steps),
            "--out", str(path)], timeout_s)
        prof = json.loads(path.read_text())
        points.append((height * width, prof["compute_s_min"]))
        commands.append(done.command_line)
        profiles.append(prof)
    a, b = fit_per_sample(points)
    pair = out / "calibration-2r.json"
    done = run_ranks(launch, 2, 1, [
        "study", "profile", "--model", "deeplab-xception", "--local-batch-size", "1",
        "--height", str(RESOLUTIONS[0][0]), "--width", str(RESOLUTIONS[0][1]),
        "--steps", str(steps), "--out", str(pair)], timeout_s)
    two = json.loads(pair.read_text())
    commands.append(done.command_line)
    profiles.append(two)
    details: dict[str, Any] = {
        "fit": {"seconds_fixed": a, "seconds_per_pixel": b, "points": points},
        "allreduce_2_ranks_s": two["allreduce_s"], "gradient_bytes": two["gradient_bytes"],
        "exposed_allreduce_2_ranks_s": two["exposed_allreduce_s"],
        "load_average": [p["load_average"] for p in profiles],
    }
    cal = Calibration(
        cpu_s_per_sample=a + b * FULL_PIXELS,
        cpu_overlap=two["overlap"] if two["overlap"] is not None else 0.0,
        measured_by=" && ".join(commands),
        machine=f"{os.cpu_count()}-core {platform.machine()} {platform.processor() or ''}".strip(),
        details=details)
    (out / "calibration.json").write_text(json.dumps(asdict(cal), indent=2) + "\n")
    return cal


def load_calibration(path: Traversable) -> Calibration:
    """Read a calibration.json written by :func:`calibrate`."""
    try:
        return Calibration(**json.loads(path.read_text()))
    except OSError as exc:
        raise ConfigError(f"calibration {path}: {exc.strerror}; run 'deepcam-hvd study "
                          "calibrate' first") from None
    except (TypeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"calibration {path}: not a calibration file ({exc})") from None
