"""Hand-written run directories as the trainers leave them: MLPerf log lines, study metadata,
and CosmoFlow runs (``deepcam-hvd cosmoflow train``)."""

from __future__ import annotations

import json
from pathlib import Path


def mllog(key: str, time_ms: int, value: object = None, **meta: object) -> str:
    """One ``:::MLLOG`` line."""
    return ":::MLLOG " + json.dumps({"namespace": "", "time_ms": time_ms, "event_type":
                                     "POINT_IN_TIME", "key": key, "value": value,
                                     "metadata": meta})


def write_study_meta(run: Path, threads: int | None, series: list[str] | None) -> None:
    """``study_meta.json`` as ``study run`` writes it (nothing when ``threads`` is None)."""
    if threads is not None:
        meta: dict[str, object] = {"threads_per_rank": threads}
        if series is not None:
            meta["series"] = series
        (run / "study_meta.json").write_text(json.dumps(meta))


def make_cosmo_run(root: Path, name: str, ranks: int, rates: list[float], maes: list[float],
                   epoch_s: float, threads: int | None = None, target: float = 0.25,
                   series: list[str] | None = None, workload_key: bool = True,
                   log: bool = True) -> Path:
    """A CosmoFlow run directory: summary.json (CosmoSummary's keys) and mlperf.log with one
    eval_error per epoch at (epoch_s + 1 s) x epoch after run_start. ``workload_key=False``
    writes a summary from before the ``workload`` key existed."""
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    reached = next((i + 1 for i, v in enumerate(maes) if v <= target), None)
    n = len(maes)
    summary: dict[str, object] = {
        "ranks": ranks, "nodes": 1, "local_batch_size": 4, "global_batch_size": 4 * ranks,
        "target_mae": target, "train_samples": 64, "eval_samples": 16, "seed": 11,
        "epochs_run": n, "steps": 16 * n, "epoch_times_s": [epoch_s] * n, "eval_mae": maes,
        "eval_loss": [m / 2 for m in maes], "train_loss": [0.1] * n, "train_mae": [0.3] * n,
        "learning_rate": [0.01] * n, "train_samples_per_s": rates,
        "run_time_s": n * (epoch_s + 1.0), "converged": reached is not None,
        "epochs_to_target": reached,
        "time_to_target_s": reached * (epoch_s + 1.0) if reached else None,
        "status": "success" if reached else "aborted",
        "mlperf_status": "success" if min(maes) <= 0.124 else "aborted",
        "stopped_by": "target" if reached else "max_epochs", "allocator": "jemalloc",
    }
    if workload_key:
        summary["workload"] = "cosmoflow"
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    if log:
        start = 1_000_000
        lines = [mllog("submission_benchmark", start, "cosmoflow"), mllog("run_start", start)]
        for epoch, mae in enumerate(maes, start=1):
            lines.append(mllog("eval_error", start + int(epoch * (epoch_s + 1.0) * 1000), mae,
                               epoch_num=epoch))
        (run / "mlperf.log").write_text("\n".join(lines) + "\n")
    write_study_meta(run, threads, series)
    return run
