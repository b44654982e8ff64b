"""``launch.json``: how ``submission run`` started a run (read back when packaging)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

FILE = "launch.json"


@dataclass
class LaunchRecord:
    """One run's launch: launcher, the user's train options, the seed given, the outcome."""

    launcher: list[str]
    train_options: list[str]
    seed: int | None
    output_dir: str
    cwd: str
    returncode: int | None = None
    wall_s: float | None = None
    command: list[str] = field(default_factory=list)

    def write(self, run_dir: Path) -> None:
        """Write launch.json into the run directory."""
        (run_dir / FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


def read_record(run_dir: Path) -> LaunchRecord | None:
    """The run's launch record, or None when it was not started by ``submission run``."""
    path = run_dir / FILE
    try:
        data = json.loads(path.read_text())
        return LaunchRecord(**data)
    except (OSError, ValueError, TypeError):
        return None
