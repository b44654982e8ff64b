"""What rank 0 shows and writes while training: progress bar, TensorBoard, summary.json.

All of it is local to rank 0; values arrive already reduced over ranks.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from deepcam_hvd.errors import DataError
from deepcam_hvd.files import write_text_atomic
from deepcam_hvd.workloads.deepcam import TARGET_IOU

NERSC10_EPOCHS = 16
T = TypeVar("T")


@dataclass
class RunSummary:
    """The run's figures, in the form the NERSC-10, NREL and MLPerf reports use."""

    ranks: int
    nodes: int
    local_batch_size: int
    gradient_accumulation_frequency: int
    global_batch_size: int
    target_iou: float
    epochs_run: int = 0
    steps: int = 0
    epoch_times_s: list[float] = field(default_factory=list)
    eval_iou: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_samples_per_s: list[float] = field(default_factory=list)
    data_wait_fraction: list[float] = field(default_factory=list)
    comm_wait_fraction: list[float] = field(default_factory=list)  # allreduce not hidden
    run_time_s: float = 0.0
    converged: bool = False
    epochs_to_target: int | None = None
    time_to_target_s: float | None = None
    time_to_16_epochs_s: float | None = None
    time_to_16_epochs_estimated: bool = False
    skipped_files: int = 0  # unreadable training samples replaced (--skip_bad_files)
    status: str = "running"  # "success": --target_iou reached; "aborted": not
    mlperf_status: str = "running"  # run_stop's: "success" only at MLPerf's TARGET_IOU
    stopped_by: str = ""
    allocator: str = ""  # the malloc rank 0 ran on (deepcam_hvd.allocator)

    def record_epoch(self, train_loss: float, samples_per_s: float, data_wait: float,
                     comm_wait: float, eval_iou: float, eval_loss: float) -> None:
        """Append one epoch's figures to the per-epoch lists."""
        self.train_loss.append(train_loss)
        self.train_samples_per_s.append(samples_per_s)
        self.data_wait_fraction.append(data_wait)
        self.comm_wait_fraction.append(comm_wait)
        self.eval_iou.append(eval_iou)
        self.eval_loss.append(eval_loss)

    def settle_status(self) -> None:
        """Set ``status`` from ``--target_iou`` and ``mlperf_status`` from MLPerf's own target:
        a run to a looser target (NERSC-10's 0.80) is never logged as an MLPerf success."""
        self.status = "success" if self.converged else "aborted"
        self.mlperf_status = "success" if self.eval_iou and max(self.eval_iou) >= TARGET_IOU \
            else "aborted"

    def finish(self, estimate_16_epochs: bool = True) -> None:
        """Fill the derived figures from the per-epoch lists.

        The time to 16 epochs is measured once 16 epochs ran. Before that it is estimated
        from the mean epoch only when ``estimate_16_epochs`` (a run that stops at its target);
        a fixed-epoch run (NERSC-10) reports none rather than an estimate.
        """
        self.epochs_run = len(self.epoch_times_s)
        self.time_to_16_epochs_s = None
        self.time_to_16_epochs_estimated = False
        if self.epochs_run >= NERSC10_EPOCHS:
            self.time_to_16_epochs_s = sum(self.epoch_times_s[:NERSC10_EPOCHS])
        elif self.epochs_run and estimate_16_epochs:
            mean = sum(self.epoch_times_s) / self.epochs_run
            self.time_to_16_epochs_s = mean * NERSC10_EPOCHS
            self.time_to_16_epochs_estimated = True

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def line(self) -> str:
        """One human line for the end of a run."""
        target = (f"reached IoU {self.target_iou} in {self.epochs_to_target} epochs, "
                  f"{self.time_to_target_s:.1f} s" if self.converged else
                  f"did not reach IoU {self.target_iou}")
        best = max(self.eval_iou) if self.eval_iou else float("nan")
        rate = (sum(self.train_samples_per_s) / len(self.train_samples_per_s)
                if self.train_samples_per_s else 0.0)
        t16 = "not reached" if self.time_to_16_epochs_s is None else \
            f"{self.time_to_16_epochs_s:.1f} s"
        est = " (estimated)" if self.time_to_16_epochs_estimated else ""
        skipped = f"; {self.skipped_files} bad files skipped" if self.skipped_files else ""
        mlperf = "" if self.mlperf_status == self.status else \
            f"; MLPerf run_stop {self.mlperf_status} (its target is IoU {TARGET_IOU})"
        return (f"summary: {self.status}{skipped}; {target}; best IoU {best:.4f}; "
                f"{self.epochs_run} "
                f"epochs, {self.steps} steps on {self.ranks} ranks in {self.run_time_s:.1f} s; "
                f"{rate:.2f} samples/s; time to 16 epochs {t16}{est}{mlperf}")

    @classmethod
    def from_json(cls, path: Path) -> RunSummary:
        """Read a ``summary.json`` (keys this version does not know are ignored, missing ones
        take their defaults); DataError naming the file if it cannot be read."""
        return summary_from_dict(cls, read_summary_json(path), path)

    def write(self, path: Path) -> None:
        """Write summary.json atomically."""
        write_text_atomic(path, json.dumps(self.as_dict(), indent=2) + "\n")


def read_summary_json(path: Path) -> dict[str, Any]:
    """The JSON object of a ``summary.json`` (either workload's); DataError naming the file if
    it is missing, unreadable or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except OSError as exc:
        raise DataError(f"{path}: no readable summary.json ({exc.strerror}); is it a run "
                        "directory?") from None
    except ValueError as exc:
        raise DataError(f"{path}: not a deepcam-hvd summary ({exc})") from None
    return data


def summary_from_dict(cls: type[T], data: dict[str, Any], path: Path,
                      what: str = "summary") -> T:
    """A ``cls`` summary dataclass from ``summary.json``'s ``data``: keys ``cls`` does not know
    are ignored, missing ones take their defaults; DataError naming ``path`` (as a deepcam-hvd
    ``what``) if required ones are missing."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise DataError(f"{path}: not a deepcam-hvd {what} ({exc})") from None


def summary_writer(log_dir: Path) -> Any:
    """torch's TensorBoard writer, kept from importing TensorFlow.

    TensorBoard uses TensorFlow when it can import it (installed beside torch for CosmoFlow):
    2.5-4.5 s more per process and TF's start-up lines on stderr. The module
    ``tensorboard.compat.notf`` tells it to use its own stub, which writes the same files.
    """
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


class Reporter:
    """Progress bar and TensorBoard scalars on rank 0; does nothing on other ranks."""

    def __init__(self, active: bool, output_dir: Path, total_steps: int) -> None:
        self.active = active
        self._bar: Any = None
        self._writer: Any = None
        if not active:
            return
        from tqdm import tqdm

        self._writer = summary_writer(output_dir / "tensorboard")
        self._bar = tqdm(total=total_steps, unit="step", dynamic_ncols=True, file=sys.stderr,
                         disable=None, mininterval=1.0)

    def advance(self, steps: int, step: int, loss: float | None, samples_per_s: float,
                epoch: int) -> None:
        """Move the bar by ``steps`` optimizer steps."""
        if self._bar is not None:
            fields = {"epoch": epoch, "samples/s": f"{samples_per_s:.2f}"}
            if loss is not None:
                fields["loss"] = f"{loss:.4f}"
            self._bar.set_postfix(fields, refresh=False)
            self._bar.update(steps)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Write TensorBoard scalars at ``step``."""
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, step)

    def epoch(self, step: int, epoch: int, loss: float, samples_per_s: float, data_wait: float,
              comm_wait: float, iou: float, eval_loss: float) -> None:
        """One epoch's TensorBoard scalars and its line on stdout."""
        self.scalars(step, {
            "eval/iou": iou, "eval/loss": eval_loss, "train/epoch_loss": loss,
            "train/epoch_samples_per_s": samples_per_s, "train/data_wait_fraction": data_wait,
            "train/comm_wait_fraction": comm_wait})
        self.message(f"epoch {epoch}: train loss {loss:.4f}, eval loss {eval_loss:.4f}, "
                     f"eval IoU {iou:.4f}, {samples_per_s:.2f} samples/s, data wait "
                     f"{100 * data_wait:.1f}%, allreduce wait {100 * comm_wait:.1f}%")

    def message(self, text: str) -> None:
        """Print a line on stdout without breaking the progress bar (which is on stderr)."""
        if not self.active:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def close(self) -> None:
        """Flush and close the bar and the event file."""
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
