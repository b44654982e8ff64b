"""Read one run's MLPerf log (``:::MLLOG {json}`` lines) into the facts a package needs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepcam_hvd.errors import DataError

TOKEN = ":::MLLOG "


@dataclass
class RunLog:
    """What a submission needs to know about one run, read from its MLPerf log."""

    path: Path
    values: dict[str, list[Any]] = field(default_factory=dict)  # key -> every value logged
    status: str | None = None  # run_stop's metadata status; None: the run never stopped
    eval_accuracy: list[tuple[float, float]] = field(default_factory=list)  # (epoch, value)

    def first(self, key: str) -> Any:
        """The first value logged under ``key``, or None."""
        found = self.values.get(key)
        return found[0] if found else None

    @property
    def division(self) -> str | None:
        """submission_division as logged."""
        return self.first("submission_division")

    @property
    def seeds(self) -> list[int]:
        """Every seed the run logged."""
        return [int(s) for s in self.values.get("seed", [])]

    @property
    def best_accuracy(self) -> float | None:
        """The highest eval_accuracy logged."""
        return max((v for _, v in self.eval_accuracy), default=None)

    @property
    def epochs_to_stop(self) -> float | None:
        """epoch_num of the last eval_accuracy: what the RCP checker counts for a success."""
        return self.eval_accuracy[-1][0] if self.eval_accuracy else None


def read_run_log(path: Path) -> RunLog:
    """Parse an MLPerf log; DataError naming the file and line if it is unreadable or empty."""
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the MLPerf log ({exc.strerror})") from None
    run = RunLog(path=path)
    found = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        at = line.find(TOKEN)
        if at < 0:
            continue
        try:
            record = json.loads(line[at + len(TOKEN):])
            key, value = record["key"], record.get("value")
            metadata = record.get("metadata") or {}
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path}:{lineno}: not a valid MLLOG record") from None
        found += 1
        run.values.setdefault(key, []).append(value)
        if key == "run_stop":
            run.status = metadata.get("status")
        elif key == "eval_accuracy" and "epoch_num" in metadata:
            run.eval_accuracy.append((float(metadata["epoch_num"]), float(value)))
    if not found:
        raise DataError(f"{path}: no MLLOG records: not an MLPerf log")
    return run
