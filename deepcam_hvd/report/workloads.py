"""What a report needs to know about each workload, in one place: its quality metric (name,
direction, MLPerf log key, target), its ``summary.json`` and the columns its tables show.

A run directory's workload is decided here and nowhere else (:func:`detect`): the ``workload``
key of its ``summary.json``, or, for files written before that key existed, the keys only one
workload writes (``eval_iou``/``target_iou``: DeepCAM; ``eval_mae``/``target_mae``: CosmoFlow).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepcam_hvd.cosmoflow.summary import CosmoSummary
from deepcam_hvd.errors import ConfigError, DataError
from deepcam_hvd.train.reporting import RunSummary
from deepcam_hvd.workloads import cosmoflow, deepcam


@dataclass(frozen=True)
class WorkloadSpec:
    """One workload as reports and studies see it."""

    name: str
    """``deepcam`` or ``cosmoflow``: as ``summary.json``'s ``workload`` and ``--workload``."""
    title: str
    """How titles name it: ``DeepCAM``."""
    metric: str
    """The validation quality metric as the tables name it: ``IoU``, ``MAE``."""
    higher_is_better: bool
    """IoU rises as a run learns, MAE falls."""
    mllog_key: str
    """The MLPerf log key of each evaluation: ``eval_accuracy``, ``eval_error``."""
    curve_field: str
    """``summary.json``'s per-epoch validation values: ``eval_iou``, ``eval_mae``."""
    target_field: str
    """``summary.json``'s target (what its runs trained to): ``target_iou``, ``target_mae``."""
    mlperf_target: float
    """MLPerf HPC's quality target."""
    summary: type
    """The dataclass ``summary.json`` holds (:class:`RunSummary`, :class:`CosmoSummary`)."""
    table_columns: tuple[str, ...]
    """The Markdown table's columns, by their names in ``report/tables.py``."""
    csv_columns: tuple[str, ...]
    """The CSV's columns."""

    @property
    def short(self) -> str:
        """The metric in file and column names: ``iou`` (iou_vs_time.png, target_iou)."""
        return self.metric.lower()

    def reached(self, value: float, target: float) -> bool:
        """Whether ``value`` is at the ``target`` or beyond it, in the metric's direction."""
        return value >= target if self.higher_is_better else value <= target

    def best(self, values: Iterable[float]) -> float | None:
        """The best of ``values`` (max IoU, min MAE); None if there are none."""
        values = list(values)
        if not values:
            return None
        return max(values) if self.higher_is_better else min(values)


DEEPCAM = WorkloadSpec(
    name="deepcam", title="DeepCAM", metric="IoU", higher_is_better=True,
    mllog_key="eval_accuracy", curve_field="eval_iou", target_field="target_iou",
    mlperf_target=deepcam.TARGET_IOU, summary=RunSummary,
    table_columns=("run", "ranks", "nodes", "threads", "local_batch", "accumulation",
                   "epoch_time", "time_to_16", "epochs_to_target", "time_to_target",
                   "converged", "samples_per_s", "efficiency"),
    csv_columns=("run", "ranks", "nodes", "threads_per_rank", "local_batch_size",
                 "gradient_accumulation_frequency", "global_batch_size", "epochs_run",
                 "mean_epoch_s", "time_to_16_epochs_s", "time_to_16_epochs_estimated",
                 "target_iou", "epochs_to_target", "time_to_target_s", "converged",
                 "samples_per_s", "data_wait_fraction", "efficiency", "efficiency_baseline",
                 "status"),
)

COSMOFLOW = WorkloadSpec(
    name="cosmoflow", title="CosmoFlow", metric="MAE", higher_is_better=False,
    mllog_key=cosmoflow.EVAL_KEY, curve_field="eval_mae", target_field="target_mae",
    mlperf_target=cosmoflow.TARGET_MAE, summary=CosmoSummary,
    table_columns=("run", "ranks", "nodes", "threads", "local_batch", "epoch_time", "best",
                   "epochs_to_target", "time_to_target", "converged", "mlperf_status",
                   "samples_per_s", "efficiency"),
    csv_columns=("run", "ranks", "nodes", "threads_per_rank", "local_batch_size",
                 "global_batch_size", "epochs_run", "mean_epoch_s", "target_mae", "best_mae",
                 "epochs_to_target", "time_to_target_s", "converged", "samples_per_s",
                 "efficiency", "efficiency_baseline", "status", "mlperf_status"),
)

WORKLOADS: Mapping[str, WorkloadSpec] = {w.name: w for w in (DEEPCAM, COSMOFLOW)}


def get_workload(name: str) -> WorkloadSpec:
    """The workload called ``name``; ConfigError naming the choices if there is none."""
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ConfigError(f"--workload {name!r} is not one of {', '.join(WORKLOADS)}") from None


def detect(data: Mapping[str, Any], path: Path) -> WorkloadSpec:
    """The workload whose ``summary.json`` (read from ``path``) is ``data``: its ``workload``
    key, else the one workload whose metric keys it holds; DataError naming the file if
    neither tells."""
    if "workload" in data:
        if data["workload"] not in WORKLOADS:
            raise DataError(f"{path}: workload {data['workload']!r} is not one of "
                            f"{', '.join(WORKLOADS)}")
        return WORKLOADS[data["workload"]]
    found = [w for w in WORKLOADS.values() if w.curve_field in data or w.target_field in data]
    if len(found) != 1:
        keys = ", ".join(k for w in WORKLOADS.values() for k in (w.curve_field, w.target_field))
        raise DataError(f"{path}: not a deepcam-hvd summary (no workload key, and "
                        f"{'more than one' if found else 'none'} of {keys})")
    return found[0]
