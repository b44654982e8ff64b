"""``summary.json`` of a CosmoFlow run: DeepCAM's ``RunSummary`` fields where they mean the same,
MAE where DeepCAM has IoU (the quality metric falls here, where IoU rises)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepcam_hvd.files import write_text_atomic
from deepcam_hvd.workloads.cosmoflow import TARGET_MAE


@dataclass
class CosmoSummary:
    """The run's figures; values arrive already reduced over ranks."""

    ranks: int
    nodes: int
    local_batch_size: int
    global_batch_size: int
    target_mae: float
    workload: str = "cosmoflow"  # which benchmark wrote this file (deepcam-hvd report reads it)
    train_samples: int = 0
    eval_samples: int = 0
    seed: int = 0
    epochs_run: int = 0
    steps: int = 0
    epoch_times_s: list[float] = field(default_factory=list)
    eval_mae: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_mae: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    train_samples_per_s: list[float] = field(default_factory=list)
    run_time_s: float = 0.0
    converged: bool = False
    epochs_to_target: int | None = None
    time_to_target_s: float | None = None
    status: str = "running"  # "success": --target_mae reached; "aborted": not (yet)
    mlperf_status: str = "running"  # run_stop's: "success" only at MLPerf's TARGET_MAE
    stopped_by: str = ""
    allocator: str = ""

    def record_epoch(self, seconds: float, samples_per_s: float, train_loss: float,
                     train_mae: float, lr: float, eval_mae: float, eval_loss: float) -> None:
        """Append one epoch's figures."""
        self.epoch_times_s.append(seconds)
        self.train_samples_per_s.append(samples_per_s)
        self.train_loss.append(train_loss)
        self.train_mae.append(train_mae)
        self.learning_rate.append(lr)
        self.eval_mae.append(eval_mae)
        self.eval_loss.append(eval_loss)
        self.epochs_run = len(self.epoch_times_s)

    def settle_status(self) -> None:
        """Set ``status`` from ``--target_mae`` and ``mlperf_status`` from MLPerf's own target:
        a run stopped by a looser target is never logged as an MLPerf success (the checker
        holds eval_error to MLPerf's target too)."""
        self.status = "success" if self.converged else "aborted"
        self.mlperf_status = "success" if self.eval_mae and min(self.eval_mae) <= TARGET_MAE \
            else "aborted"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def line(self) -> str:
        """One human line for the end of a run."""
        target = (f"reached MAE {self.target_mae} in {self.epochs_to_target} epochs, "
                  f"{self.time_to_target_s:.1f} s" if self.converged else
                  f"did not reach MAE {self.target_mae}")
        best = min(self.eval_mae) if self.eval_mae else float("nan")
        rate = (sum(self.train_samples_per_s) / len(self.train_samples_per_s)
                if self.train_samples_per_s else 0.0)
        mlperf = "" if self.mlperf_status == self.status else \
            f"; MLPerf run_stop {self.mlperf_status} (its target is MAE {TARGET_MAE})"
        return (f"summary: {self.status} ({self.stopped_by}); {target}; best MAE {best:.4f}; "
                f"{self.epochs_run} epochs, {self.steps} steps on {self.ranks} ranks in "
                f"{self.run_time_s:.1f} s; {rate:.2f} samples/s{mlperf}")

    def write(self, path: Path) -> None:
        """Write summary.json atomically."""
        write_text_atomic(path, json.dumps(self.as_dict(), indent=2) + "\n")
