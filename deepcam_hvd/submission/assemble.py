"""Write a submission package: results, system description, implementation."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.submission.implementation import (
    check_source_dest,
    copy_source,
    write_system_files,
)
from deepcam_hvd.submission.layout import Layout
from deepcam_hvd.submission.record import LaunchRecord
from deepcam_hvd.submission.runset import RunSet


@dataclass(frozen=True)
class Written:
    """What :func:`assemble` wrote."""

    results: list[Path]
    system_file: Path
    source_copied: bool
    system_files: list[Path]


def preflight(layout: Layout, count: int) -> None:
    """Refuse, before anything is written, a package that would overwrite a file."""
    existing = sorted(layout.results_dir.glob("result_*.txt")) if \
        layout.results_dir.is_dir() else []
    targets = [layout.result_file(i) for i in range(count)]
    for path in [*targets, *existing, layout.system_file, layout.system_impl_dir]:
        if path.exists():
            raise ConfigError(f"{path} already exists: refusing to overwrite a package "
                              "(choose another --out, --org or --system)")
    check_source_dest(layout.impl_dir)


def assemble(layout: Layout, runs: RunSet, system_desc: dict[str, str],
             records: list[LaunchRecord | None]) -> Written:
    """Copy each run's log to result_<i>.txt (in the order given), write the system
    description and the implementation; nothing existing is overwritten."""
    preflight(layout, len(runs.runs))
    layout.results_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for i, run in enumerate(runs.runs):
        target = layout.result_file(i)
        shutil.copyfile(run.path, target)
        results.append(target)
    layout.system_file.parent.mkdir(parents=True, exist_ok=True)
    layout.system_file.write_text(json.dumps(system_desc, indent=2) + "\n")
    copied = copy_source(layout.impl_dir)
    system_files = write_system_files(layout, runs, records)
    return Written(results, layout.system_file, copied, system_files)
