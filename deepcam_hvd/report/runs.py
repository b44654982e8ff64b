"""Read finished runs: ``summary.json`` plus the MLPerf log(s) of a run directory, DeepCAM's or
CosmoFlow's (``report/workloads.py`` says which, and what differs)."""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepcam_hvd.errors import DataError
from deepcam_hvd.report.workloads import DEEPCAM, WorkloadSpec, detect
from deepcam_hvd.train.reporting import read_summary_json, summary_from_dict

MLLOG = re.compile(r":::MLLOG (\{.*\})\s*$")


@dataclass
class RunRecord:
    """One run as the report shows it."""

    name: str
    path: Path
    ranks: int
    nodes: int
    local_batch_size: int
    gradient_accumulation_frequency: int
    global_batch_size: int
    threads_per_rank: int | None
    epochs_run: int
    epoch_times_s: list[float]
    time_to_16_epochs_s: float | None
    time_to_16_epochs_estimated: bool
    target: float  # the run's target, in its workload's metric (IoU, MAE)
    converged: bool
    epochs_to_target: int | None
    time_to_target_s: float | None
    samples_per_s: float | None
    data_wait_fraction: float | None
    status: str
    curve: list[tuple[float, float]] = field(default_factory=list)  # (wall s, IoU or MAE)
    extra: dict[str, Any] = field(default_factory=dict)
    workload: WorkloadSpec = DEEPCAM
    mlperf_status: str = ""  # run_stop's status in the MLPerf log ("" when not recorded)

    @property
    def best(self) -> float | None:
        """The best validation value of the run (highest IoU, lowest MAE)."""
        return self.workload.best(v for _, v in self.curve)

    @property
    def mean_epoch_s(self) -> float | None:
        """Mean training time of an epoch (evaluation excluded)."""
        return statistics.fmean(self.epoch_times_s) if self.epoch_times_s else None


def parse_mllog(path: Path) -> list[dict[str, Any]]:
    """The records of one MLPerf log (lines that are not ``:::MLLOG`` are ignored)."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        match = MLLOG.search(line)
        if match:
            try:
                records.append(json.loads(match.group(1)))
            except json.JSONDecodeError:
                continue
    return records


def _log_files(run_dir: Path) -> list[Path]:
    """``mlperf.N.log`` (earlier attempts, before a resume) in order, then ``mlperf.log``."""
    numbered = sorted(run_dir.glob("mlperf.*.log"),
                      key=lambda p: int(p.stem.split(".")[1]) if p.stem.split(".")[1].isdigit()
                      else 0)
    current = run_dir / "mlperf.log"
    return numbered + ([current] if current.exists() else [])


def quality_curve(run_dir: Path, key: str = DEEPCAM.mllog_key) -> list[tuple[float, float]]:
    """(seconds since run_start, value of the MLPerf log's ``key``) over every attempt of the
    run, in order.

    Attempts joined by a resume are laid end to end: each attempt's times start where the
    previous attempt's last record ended.
    """
    curve: list[tuple[float, float]] = []
    offset = 0.0
    for log in _log_files(run_dir):
        records = parse_mllog(log)
        start = next((r["time_ms"] for r in records if r.get("key") == "run_start"), None)
        if start is None:
            continue
        last = start
        for r in records:
            last = max(last, r.get("time_ms", last))
            if r.get("key") == key and r.get("value") is not None:
                curve.append((offset + (r["time_ms"] - start) / 1000.0, float(r["value"])))
        offset += (last - start) / 1000.0
    return curve


def iou_curve(run_dir: Path) -> list[tuple[float, float]]:
    """(seconds since run_start, eval IoU) of a DeepCAM run: :func:`quality_curve`."""
    return quality_curve(run_dir, DEEPCAM.mllog_key)


def _robust_rate(rates: list[float]) -> float | None:
    """Training samples/s of a run: the median epoch, skipping the first when there are more."""
    if not rates:
        return None
    return statistics.median(rates[1:] if len(rates) > 2 else rates)


def read_summary(run_dir: str | Path) -> tuple[WorkloadSpec, Any]:
    """The workload and the summary (its workload's dataclass) of a run directory; DataError
    naming the file if it is missing, unreadable or not a summary (keys this version does not
    know are ignored, missing ones take their defaults)."""
    path = Path(run_dir) / "summary.json"
    data = read_summary_json(path)
    spec = detect(data, path)
    return spec, summary_from_dict(spec.summary, data, path, f"{spec.title} summary")


def read_run(run_dir: str | Path) -> RunRecord:
    """Read a finished (or stopped) run directory of either workload; DataError if it has no
    summary.json. Figures one workload's summary does not hold (DeepCAM's time to 16 epochs
    and data wait) are left empty for the other."""
    path = Path(run_dir)
    spec, s = read_summary(path)
    meta: dict[str, Any] = {}
    meta_file = path / "study_meta.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
    curve = quality_curve(path, spec.mllog_key)
    values = getattr(s, spec.curve_field)
    if not curve and values:  # no log: training time only
        elapsed, curve = 0.0, []
        for seconds, value in zip(s.epoch_times_s, values, strict=False):
            elapsed += seconds
            curve.append((elapsed, value))
    waits = getattr(s, "data_wait_fraction", None)
    return RunRecord(
        name=meta.get("name") or path.name,
        path=path,
        ranks=s.ranks,
        nodes=s.nodes,
        local_batch_size=s.local_batch_size,
        gradient_accumulation_frequency=getattr(s, "gradient_accumulation_frequency", 1),
        global_batch_size=s.global_batch_size,
        threads_per_rank=meta.get("threads_per_rank"),
        epochs_run=s.epochs_run or len(s.epoch_times_s),
        epoch_times_s=[float(x) for x in s.epoch_times_s],
        time_to_16_epochs_s=getattr(s, "time_to_16_epochs_s", None),
        time_to_16_epochs_estimated=getattr(s, "time_to_16_epochs_estimated", False),
        target=getattr(s, spec.target_field),
        converged=s.converged,
        epochs_to_target=s.epochs_to_target,
        time_to_target_s=s.time_to_target_s,
        samples_per_s=_robust_rate([float(x) for x in s.train_samples_per_s]),
        data_wait_fraction=statistics.fmean(waits) if waits else None,
        status=s.status,
        curve=curve,
        extra=meta,
        workload=spec,
        mlperf_status=getattr(s, "mlperf_status", ""),
    )


def workload_of(runs: list[RunRecord]) -> WorkloadSpec:
    """The one workload of ``runs`` (DeepCAM for none); DataError naming a run directory of
    each when they mix: a report compares runs of one workload."""
    if not runs:
        return DEEPCAM
    first = runs[0]
    for r in runs[1:]:
        if r.workload != first.workload:
            raise DataError(f"{first.path} is a {first.workload.title} run and {r.path} a "
                            f"{r.workload.title} run: report each workload's runs separately")
    return first.workload
