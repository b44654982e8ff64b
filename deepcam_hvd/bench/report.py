"""Per-rank and aggregate figures of a step benchmark, as one JSON-ready dict."""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict
from typing import Any

import torch

from deepcam_hvd.allocator import active_allocator
from deepcam_hvd.bench.step import StepSettings, StepTimes


def rank_figures(times: StepTimes, settings: StepSettings, flop: float, rank: int,
                 threads: int) -> dict[str, Any]:
    """This rank's medians: step seconds, samples/s, GFLOP/s and the phases."""
    median = times.median_step_s
    return {
        "rank": rank,
        "threads": threads,
        "median_step_s": median,
        "samples_per_s": settings.batch / median,
        "gflop_per_s": flop / median / 1e9,
        "step_s": times.totals,
        # CPU seconds of the whole process (all threads): steadier than wall time on a
        # shared machine, and equal to threads x wall time on an idle one
        "cpu_s": times.cpu,
        "median_cpu_s": statistics.median(times.cpu),
        **times.median_phases(),
        "losses": times.losses,
    }


def combine(ranks: list[dict[str, Any]], settings: StepSettings, flop: float, backend: str,
            launcher: str, warmup: int) -> dict[str, Any]:
    """The job's figures from every rank's: a step lasts as long as its slowest rank."""
    step = max(r["median_step_s"] for r in ranks)
    size = len(ranks)
    root = ranks[0]
    comm = max(r["comm_wait_s"] for r in ranks)
    return {
        **asdict(settings),
        "ranks": size,
        "backend": backend,
        "launcher": launcher,
        "threads_per_rank": root["threads"],
        "steps": len(root["step_s"]),
        "warmup": warmup,
        "median_step_s": step,
        "samples_per_s": size * settings.batch / step,
        "samples_per_s_per_rank": settings.batch / step,
        "gflop_per_s": size * flop / step / 1e9,
        "step_tflop": flop / 1e12,
        "comm_wait_fraction": comm / step,
        "median_cpu_s_per_rank": max(r["median_cpu_s"] for r in ranks),
        "loss_first_step": root["losses"][0],
        "loss_after_one_step": root["losses"][1] if len(root["losses"]) > 1 else None,
        "per_rank": ranks,
        "torch": torch.__version__,
        "allocator": active_allocator(),
        "load_average": list(os.getloadavg()),
    }


def format_text(doc: dict[str, Any]) -> str:
    """Human-readable summary of :func:`combine`'s dict."""
    lines = [
        f"{doc['model']} {doc['height']}x{doc['width']} batch {doc['batch']} {doc['precision']}"
        f"{' channels-last' if doc['channels_last'] else ''}"
        f"{' compiled' if doc['compile'] else ''}: {doc['ranks']} rank(s) x "
        f"{doc['threads_per_rank']} thread(s), backend {doc['backend']}, "
        f"allocator {doc['allocator']}",
        f"median step {doc['median_step_s']:.3f} s over {doc['steps']} steps "
        f"(warm-up {doc['warmup']}); {doc['samples_per_s']:.4g} samples/s; "
        f"{doc['gflop_per_s']:.1f} GFLOP/s ({doc['step_tflop']:.3f} TFLOP/step per rank)",
    ]
    for r in doc["per_rank"]:
        lines.append(
            f"  rank {r['rank']}: step {r['median_step_s']:.3f} s = forward {r['forward_s']:.3f}"
            f" + backward {r['backward_s']:.3f} + allreduce wait {r['comm_wait_s']:.3f}"
            f" + optimizer {r['optimizer_s']:.3f} (medians)")
    lines.append(f"first loss {doc['loss_first_step']:.6f}"
                 + (f", after one step {doc['loss_after_one_step']:.6f}"
                    if doc["loss_after_one_step"] is not None else ""))
    return "\n".join(lines)
