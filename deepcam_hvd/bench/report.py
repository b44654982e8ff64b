"""Per-rank and aggregate figures of a step benchmark, as one JSON-ready dict."""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict
from typing import Any

import torch

from deepcam_hvd.allocator import active_allocator
from deepcam_hvd.bench.memory import gib
from deepcam_hvd.bench.step import StepSettings, StepTimes

#: Per-rank memory figures (:func:`deepcam_hvd.bench.memory.peak_memory`) the job reports as
#: the largest over its ranks.
MEMORY_KEYS = ("max_memory_allocated_bytes", "max_memory_reserved_bytes",
               "device_total_memory_bytes", "max_rss_bytes")


def rank_figures(times: StepTimes, settings: StepSettings, flop: float, rank: int,
                 threads: int, memory: dict[str, int | None] | None = None) -> dict[str, Any]:
    """This rank's medians: step seconds, samples/s, GFLOP/s and the phases, and its peak
    memory (``memory``: :func:`deepcam_hvd.bench.memory.peak_memory`; all ``None`` if not
    given)."""
    median = times.median_step_s
    memory = memory or {}
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
        **{key: memory.get(key) for key in MEMORY_KEYS},
    }


def _largest(ranks: list[dict[str, Any]], key: str) -> int | None:
    """The largest of the ranks' ``key``, or ``None`` if any rank has none."""
    values = [r.get(key) for r in ranks]
    return None if any(v is None for v in values) else max(values)


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
        **{key: _largest(ranks, key) for key in MEMORY_KEYS},
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
        f"{' compiled' if doc['compile'] else ''}"
        f"{' cudnn-benchmark' if doc.get('cudnn_benchmark') else ''}"
        f"{'' if doc.get('input', 'device') == 'device' else ', input ' + doc['input']}"
        f": {doc['ranks']} rank(s) x "
        f"{doc['threads_per_rank']} thread(s), backend {doc['backend']}, "
        f"allocator {doc['allocator']}",
        f"median step {doc['median_step_s']:.3f} s over {doc['steps']} steps "
        f"(warm-up {doc['warmup']}); {doc['samples_per_s']:.4g} samples/s; "
        f"{doc['gflop_per_s']:.1f} GFLOP/s ({doc['step_tflop']:.3f} TFLOP/step per rank)",
    ]
    if doc.get("max_memory_allocated_bytes") is not None:
        lines.append(f"peak device memory {gib(doc['max_memory_allocated_bytes'])} allocated, "
                     f"{gib(doc['max_memory_reserved_bytes'])} reserved, of "
                     f"{gib(doc['device_total_memory_bytes'])} (largest rank)")
    elif doc.get("max_rss_bytes") is not None:
        lines.append(f"peak resident memory {gib(doc['max_rss_bytes'])} (largest rank)")
    for r in doc["per_rank"]:
        lines.append(
            f"  rank {r['rank']}: step {r['median_step_s']:.3f} s = input {r['input_s']:.3f}"
            f" + forward {r['forward_s']:.3f}"
            f" + backward {r['backward_s']:.3f} + allreduce wait {r['comm_wait_s']:.3f}"
            f" + optimizer {r['optimizer_s']:.3f} (medians)")
    lines.append(f"first loss {doc['loss_first_step']:.6f}"
                 + (f", after one step {doc['loss_after_one_step']:.6f}"
                    if doc["loss_after_one_step"] is not None else ""))
    return "\n".join(lines)
